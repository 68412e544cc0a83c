"""M2 (Kingma et al. 2014): the bounds by hand, vectorised enumeration, label masking, a short fit, errors."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.distributions import kl_divergence

from lvm.data import SemiSupervisedDataModule, TensorDataModule
from lvm.semi_supervised import M2Model, SemiSupervisedVAE

C, D, LATENT = 3, 12, 2


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny tensors: one thread avoids OpenMP hand-offs, which cost 5-10x on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_model(seed: int = 0) -> M2Model:
    torch.manual_seed(seed)
    mlp = {"name": "mlp", "hidden": [16]}
    return M2Model.build((D,), LATENT, C, encoder=mlp, classifier=mlp, decoder=mlp)


def binary(n: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, D, generator=torch.Generator().manual_seed(seed)).bernoulli(
        generator=torch.Generator().manual_seed(seed + 1)
    )


def clustered(n: int, seed: int = 0, flip: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary data from C fixed prototypes (one per class) with ``flip`` of the bits flipped."""
    g = torch.Generator().manual_seed(seed)
    protos = (torch.rand(C, D, generator=torch.Generator().manual_seed(123)) > 0.5).float()
    y = torch.randint(0, C, (n,), generator=g)
    x = (protos[y] + (torch.rand(n, D, generator=g) < flip).float()) % 2
    return x, y


def test_elbo_by_hand_includes_log_prior_of_y() -> None:
    m, x, y = tiny_model(), binary(5), torch.tensor([0, 2, 1, 1, 0])
    torch.manual_seed(7)
    got = m.elbo(x, y)
    torch.manual_seed(7)
    q = m.posterior(x, y)
    z = q.base_dist.loc + q.base_dist.scale * torch.randn(1, 5, LATENT)
    rec = m.observation(z, y).log_prob(x)[0]
    want = rec - kl_divergence(q, m.prior_dist()) - math.log(C)
    assert got.shape == (5,)
    torch.testing.assert_close(got, want)


def test_enumeration_is_one_batched_pass_equal_to_a_loop_over_classes() -> None:
    m, x = tiny_model(), binary(5)
    calls: list[tuple[int, ...]] = []
    m.decoder.register_forward_hook(lambda mod, inp, out: calls.append(tuple(inp[0].shape)))
    torch.manual_seed(3)
    enum = m.enumerate_elbo(x)
    assert enum.shape == (C, 5)
    assert calls == [(1, C, 5, LATENT + C)]  # one decoder call over (S, C, B, L + C)
    for c in range(C):  # noise is shared across classes, so each row equals the class drawn alone
        torch.manual_seed(3)
        torch.testing.assert_close(enum[c], m.elbo(x, torch.full((5,), c)))


def test_unlabelled_bound_by_hand_and_below_log_sum_exp() -> None:
    m, x = tiny_model(), binary(6)
    torch.manual_seed(11)
    b = m.bound(x)  # every label unobserved
    torch.manual_seed(11)
    enum = m.enumerate_elbo(x)  # (C, B), same noise
    q = m.classify(x).probs  # (B, C)
    by_hand = (q * enum.T).sum(-1) - (q * q.log()).sum(-1)
    torch.testing.assert_close(b.value, by_hand)
    torch.testing.assert_close(b.entropy, -(q * q.log()).sum(-1))
    assert not b.labelled.any() and (b.log_q_y == 0).all()
    # sum_y q L + H(q) <= log sum_y exp L(x, y), a bound on log p(x); equality only at q = softmax(L)
    lse = torch.logsumexp(enum, 0)
    assert (b.value <= lse + 1e-5).all(), (b.value, lse)
    assert (lse - b.value).max() > 1e-3
    q_star = enum.T.softmax(-1)
    torch.testing.assert_close((q_star * enum.T).sum(-1) - (q_star * q_star.log()).sum(-1), lse)


def test_mixed_batch_splits_labelled_and_unlabelled_terms() -> None:
    m, x = tiny_model(), binary(6)
    y = torch.tensor([0, -1, 2, -1, -1, 1])
    lab, unl = y >= 0, y < 0
    torch.manual_seed(5)
    b = m.bound(x, y, alpha=2.0)
    torch.manual_seed(5)  # labelled points draw first, then the enumeration of the unlabelled ones
    want_lab = m.elbo(x[lab], y[lab])
    want_unl = m.bound(x[unl]).value
    torch.testing.assert_close(b.value[lab], want_lab)
    torch.testing.assert_close(b.value[unl], want_unl)
    log_q = m.classify(x).logits.log_softmax(-1)
    torch.testing.assert_close(b.log_q_y[lab], log_q[lab].gather(-1, y[lab, None]).squeeze(-1))
    torch.testing.assert_close(b.objective, b.value + 2.0 * b.log_q_y)


def test_labelled_loss_uses_the_given_labels() -> None:
    m, x = tiny_model(), binary(4)
    y = torch.tensor([0, 1, 2, 0])
    torch.manual_seed(0)
    b1 = m.bound(x, y, alpha=1.0)
    torch.manual_seed(0)
    b2 = m.bound(x, torch.tensor([1, 1, 2, 0]), alpha=1.0)
    assert b1.objective[0] != b2.objective[0] and b1.log_q_y[0] != b2.log_q_y[0]
    torch.testing.assert_close(b1.objective[1:], b2.objective[1:])


def test_unlabelled_points_train_the_classifier() -> None:
    m, x = tiny_model(), binary(8)
    m.bound(x).objective.mean().backward()
    grads = [p.grad for p in m.classifier.parameters()] + [m.classifier_head.weight.grad]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_class_conditional_samples() -> None:
    m = tiny_model()
    y = torch.arange(C).repeat_interleave(4)
    s = m.sample(y)
    assert s.shape == (3 * 4, D) and s.min() >= 0 and s.max() <= 1
    assert m.sample(y, mean=False).unique().tolist() in ([0.0, 1.0], [0.0], [1.0])
    vae = SemiSupervisedVAE(data_shape=[D], num_classes=C, latent_dim=LATENT)
    assert vae.model.sample(torch.tensor([0, 2])).shape == (2, D)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\); got min=-1"):
        m.sample(torch.tensor([0, -1]))


@pytest.mark.parametrize("bad", [torch.tensor([0, 3]), torch.tensor([-2, 0]), torch.tensor([0.0, 1.0])])
def test_labels_outside_range_are_rejected(bad: torch.Tensor) -> None:
    m, x = tiny_model(), binary(2)
    with pytest.raises(ValueError, match=r"labels must (be in \[0, 3\)|be an integer)"):
        m.bound(x, bad)
    with pytest.raises(ValueError, match="shape"):
        m.bound(x, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\); got min=-1"):
        m.elbo(x, torch.tensor([0, -1]))  # L(x, y) needs an observed y


def semi_dm(n: int = 60, num_labels: int = 12, **kw: object) -> SemiSupervisedDataModule:
    x, y = clustered(n)
    base = TensorDataModule(x, x[:10], train_labels=y, val_labels=y[:10], batch_size=8)
    return SemiSupervisedDataModule(base, num_labels=num_labels, num_classes=C, **kw)  # type: ignore[arg-type]


def test_datamodule_keeps_a_balanced_seeded_subset_and_mixes_batches() -> None:
    dm = semi_dm(labelled_batch_size=4)
    dm.setup()
    x, y_true = clustered(60)
    y = dm.split("train").y
    assert (y >= 0).sum() == 12 and torch.bincount(y[y >= 0], minlength=C).tolist() == [4, 4, 4]
    assert torch.equal(y[y >= 0], y_true[y >= 0]) and torch.equal(dm.labelled_index, (y >= 0).nonzero()[:, 0])
    same, other = semi_dm(labelled_batch_size=4), semi_dm(labelled_batch_size=4, label_seed=1)
    same.setup(), other.setup()
    assert torch.equal(same.labelled_index, dm.labelled_index)
    assert not torch.equal(other.labelled_index, dm.labelled_index)
    batches = list(dm.train_dataloader())
    assert len(batches) == math.ceil(48 / 8) == len(dm.train_dataloader())
    seen = torch.cat([b["index"][4:] for b in batches])
    assert sorted(seen.tolist()) == (y < 0).nonzero()[:, 0].tolist()  # each unlabelled point once
    for b in batches:
        assert (b["y"][:4] >= 0).all() and (b["y"][4:] == -1).all()
        assert torch.equal(b["y"][:4], y_true[b["index"][:4]]) and torch.equal(b["x"], x[b["index"]])


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"num_labels": 13}, "multiple of num_classes=3"),
        ({"num_labels": 0}, "positive multiple"),
        ({"num_labels": 63}, "exceeds the 60 training points"),
        ({"num_labels": 60}, "needs 20 points per class"),
    ],
)
def test_datamodule_errors(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        semi_dm(**kw).setup()


def test_datamodule_rejects_labels_outside_range_and_missing_labels() -> None:
    x, y = clustered(30)
    bad = TensorDataModule(x, train_labels=y + 1, batch_size=8)  # labels 1..3 with C = 3
    with pytest.raises(ValueError, match=r"train labels must be in \[0, 3\); got min=1, max=3"):
        SemiSupervisedDataModule(bad, num_labels=3, num_classes=C).setup()
    with pytest.raises(ValueError, match="no training labels"):
        SemiSupervisedDataModule(TensorDataModule(x), num_labels=3, num_classes=C).setup()


def test_short_fit_on_clustered_data_with_few_labels_beats_chance(tmp_path: Path) -> None:
    L.seed_everything(0)
    x, y = clustered(600, seed=0)
    xt, yt = clustered(600, seed=1)
    base = TensorDataModule(x, test=xt, train_labels=y, test_labels=yt, batch_size=50, eval_batch_size=600)
    dm = SemiSupervisedDataModule(base, num_labels=6, num_classes=C, labelled_batch_size=6)  # 2 per class
    mlp = {"name": "mlp", "hidden": [32]}
    vae = SemiSupervisedVAE(
        data_shape=[D], num_classes=C, latent_dim=LATENT, encoder=mlp, classifier=mlp, decoder=mlp, lr=1e-2
    )
    trainer = L.Trainer(
        max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path),
    )  # fmt: skip
    trainer.fit(vae, datamodule=dm)
    out = trainer.test(vae, datamodule=dm, verbose=False)[0]
    # chance is 1/3; 6 labels and 594 unlabelled points of 3 well separated clusters
    assert out["test/accuracy"] >= 0.9, out
    assert out["test/count"] == 600 and math.isfinite(out["test/bound"])
