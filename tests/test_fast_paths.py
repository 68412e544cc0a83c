"""The speed-ups of issue 6 change no result: the Bernoulli kernels, the logging cadence, fused Adam."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import Logger

import lvm
from lvm.data import TensorDataModule
from lvm.likelihoods import create_likelihood
from lvm.likelihoods.bernoulli import bernoulli_log_prob, bernoulli_log_prob_sum


def _torch_log_prob(f: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    f, x = torch.broadcast_tensors(f, x)
    return -F.binary_cross_entropy_with_logits(f, x, reduction="none")


@pytest.mark.parametrize(
    ("f_shape", "x_shape"),
    [
        ((2, 2, 125), (2, 125)),
        ((2, 125), (2, 2, 125)),
        ((3, 4, 7), (3, 4, 7)),
        ((2, 3, 5), (5,)),
        ((5,), (5,)),
    ],
)
def test_kernels_match_torch_values_and_gradients_in_float64(f_shape: tuple, x_shape: tuple) -> None:
    g = torch.Generator().manual_seed(0)
    f = (5 * torch.randn(f_shape, generator=g, dtype=torch.float64)).requires_grad_()
    x = torch.rand(x_shape, generator=g, dtype=torch.float64).requires_grad_()  # grey values too
    ref = _torch_log_prob(f, x)
    torch.testing.assert_close(bernoulli_log_prob(f, x), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bernoulli_log_prob_sum(f, x), ref.sum(-1), rtol=1e-12, atol=1e-10)
    for fn in (bernoulli_log_prob, bernoulli_log_prob_sum):
        assert torch.autograd.gradcheck(fn, (f, x))
        assert torch.autograd.gradgradcheck(fn, (f, x))


def test_sum_kernel_in_blocks_of_samples_matches_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """An estimator's chunk (S, B, D) is summed in blocks of S; every block and the last partial one count."""
    import lvm.likelihoods.bernoulli as bern

    monkeypatch.setattr(bern, "_BLOCK_BYTES", 3 * 4 * 7 * 8)  # 3 samples of (4, 7) float64 per block
    g = torch.Generator().manual_seed(3)
    f = (5 * torch.randn(10, 4, 7, generator=g, dtype=torch.float64)).requires_grad_()
    x = torch.rand(4, 7, generator=g, dtype=torch.float64)
    assert bern._block_rows(f) == 3
    ref = _torch_log_prob(f, x).sum(-1)
    torch.testing.assert_close(bernoulli_log_prob_sum(f, x), ref, rtol=1e-12, atol=1e-10)
    assert torch.autograd.gradcheck(lambda f: bernoulli_log_prob_sum(f, x), (f,))


def test_sum_kernel_in_float32_over_the_whole_logit_range() -> None:
    f = torch.linspace(-200, 200, 784 * 4).reshape(4, 784).requires_grad_()
    x = (torch.rand(4, 784, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    lp = bernoulli_log_prob_sum(f, x)
    ref = _torch_log_prob(f.double(), x.double()).sum(-1)
    torch.testing.assert_close(lp.double(), ref, rtol=1e-6, atol=1e-3)
    (grad,) = torch.autograd.grad(lp.sum(), f)
    torch.testing.assert_close(grad, x - torch.sigmoid(f.detach()))
    assert torch.isfinite(lp).all()


@pytest.mark.parametrize("d", [7, 125, 784, 3072])
def test_sum_kernel_at_zero_logits_is_d_log_half_without_underflow(d: int) -> None:
    """f = 0: p(x_j) = 1/2 for every x_j, so log p = -d log 2; a product of more than 126 halves
    would underflow in float32 (784 = 7 x 112 and 3072 = 32 x 96 without remainder, 125 with)."""
    x = (torch.rand(3, d, generator=torch.Generator().manual_seed(d)) < 0.5).float()
    lp = bernoulli_log_prob_sum(torch.zeros(5, 3, d), x)
    torch.testing.assert_close(lp, torch.full((5, 3), -d * math.log(2)), rtol=1e-6, atol=0)


def test_low_precision_logits_are_summed_in_float32() -> None:
    f = 3 * torch.randn(2, 784, generator=torch.Generator().manual_seed(2))
    x = (torch.rand(2, 784) < 0.5).float()
    lp = bernoulli_log_prob_sum(f.to(torch.bfloat16), x)
    assert lp.dtype == torch.float32
    torch.testing.assert_close(
        lp, _torch_log_prob(f.to(torch.bfloat16).float(), x).sum(-1), rtol=1e-5, atol=1e-3
    )


def test_the_likelihood_folds_image_event_dims() -> None:
    lk = create_likelihood("bernoulli", (1, 4, 4))
    raw = torch.randn(3, 5, 16, dtype=torch.float64)
    x = (torch.rand(5, 1, 4, 4) < 0.5).double()
    expected = _torch_log_prob(raw.reshape(3, 5, 1, 4, 4), x).sum((-3, -2, -1))
    torch.testing.assert_close(lk(raw).log_prob(x), expected)


class _Rows(Logger):
    """Keeps every ``log_metrics`` call in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[int, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "rows"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.rows.append((int(step or 0), dict(metrics)))


@pytest.mark.parametrize("objective", ["elbo", "iwae"])
def test_training_values_reach_the_logger_every_log_every_n_steps(tmp_path: Path, objective: str) -> None:
    vae = lvm.VAE(data_shape=[20], latent_dim=2, encoder={"name": "mlp", "hidden": [16]},
                  decoder={"name": "mlp", "hidden": [16]}, objective=objective, num_samples=4)  # fmt: skip
    logger = _Rows()
    L.Trainer(
        max_steps=12, accelerator="cpu", logger=logger, log_every_n_steps=4, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, default_root_dir=tmp_path,
    ).fit(vae, datamodule=TensorDataModule((torch.rand(400, 20) < 0.3).float(), batch_size=10))  # fmt: skip
    steps = [step for step, m in logger.rows if "train/loss" in m]
    assert steps == [3, 7, 11], logger.rows
    for _, m in logger.rows:
        if "train/loss" in m:
            assert {
                "train/elbo",
                "train/bound",
                "train/reconstruction",
                "train/kl",
                "train/kl_weight",
            } <= set(m)
            assert m["train/loss"] == pytest.approx(-m["train/bound"], rel=1e-5)
            assert m["train/elbo"] == pytest.approx(m["train/reconstruction"] - m["train/kl"], rel=1e-5)
            if objective == "elbo":
                assert m["train/bound"] == pytest.approx(m["train/elbo"], rel=1e-5)
            else:  # log-mean-exp >= mean-log on the same 4 samples, datapoint by datapoint (Jensen)
                assert m["train/bound"] > m["train/elbo"] + 1e-3


def test_adam_is_fused_on_the_cpu() -> None:
    vae = lvm.VAE(data_shape=[20], latent_dim=2, encoder={"name": "mlp", "hidden": [16]},
                  decoder={"name": "mlp", "hidden": [16]})  # fmt: skip
    opt = vae.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    assert opt.param_groups[0]["fused"] is True
