"""The LightningModule that trains a latent variable model composed from registered parts."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from lvm.checkpoint import record_datamodule, rng_state, set_rng_state
from lvm.encoders import DECODERS, ENCODERS
from lvm.likelihoods import LIKELIHOODS
from lvm.metrics import MeanWithStdErr
from lvm.model import LatentVariableModel
from lvm.objectives import OBJECTIVES, Bound
from lvm.registry import Registry, UnknownNameError

__all__ = ["VAE"]

Spec = str | dict[str, Any]
_TERMS = ("elbo", "bound", "reconstruction", "kl")
#: The estimator that computes an objective's bound in evaluation, with per-datapoint noise.
_EVAL_BOUND = {"elbo": "elbo", "iwae": "importance"}
_SCHEDULES = ("constant", "iwae")


def iwae_lr_factor(epoch: int) -> float:
    """Burda et al. (2016): epochs [sum_{j<i} 3^j, sum_{j<=i} 3^j) use 10^(-i/7), i = 0..7."""
    i, start = 0, 0
    while i < 7 and epoch >= start + 3**i:
        start += 3**i
        i += 1
    return 10 ** (-i / 7)


def _name(spec: Spec) -> str:
    return spec if isinstance(spec, str) else str(spec.get("name"))


def _plugin_names(spec: Spec) -> list[str]:
    """Names a spec uses, composite parts included."""
    if isinstance(spec, str):
        return [spec]
    names = [str(spec.get("name"))]
    for part in spec.get("parts", []) or []:
        names += _plugin_names(part)
    return names


def _drop_failing_nvml_probe() -> None:
    """Unset ``PYTORCH_NVML_BASED_CUDA_CHECK`` where NVML cannot be loaded; the answers stay the same.

    Lightning sets it on import so that ``torch.cuda.is_available()`` asks NVML instead of
    initialising CUDA. Without NVML (no NVIDIA driver), torch tries to load it on every call and
    then asks the CUDA runtime anyway, and ``Adam.step`` makes that call every step: a failed
    ``dlopen`` that cost 0.1-0.5 ms per step on a 2-core machine, up to 8% of the IWAE MLP's step.
    """
    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") != "1":
        return
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        del os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]


class VAE(L.LightningModule):
    """A VAE (Kingma & Welling 2014) or IWAE (Burda et al. 2016) trained with Lightning.

    Composes, by registry name, an encoder body f_e, a decoder body f_d, an observation model
    p(x | z) (any registered or plugin likelihood) and a standard-normal prior. The maths lives
    in :class:`~lvm.model.LatentVariableModel`, :mod:`lvm.objectives` and :mod:`lvm.estimators`;
    the steps here only call them and log nats per datapoint under ``{stage}/...``:
    ``elbo`` (always the ELBO), ``bound`` (the training objective's bound: the ELBO, or the IWAE
    bound L_k), ``reconstruction``, ``kl``, their ``*_stderr``, ``count`` (datapoints seen, summed
    across ranks) and ``log_px/{estimator}`` for each configured estimator.

    Args:
        data_shape: Shape of one datapoint, e.g. ``[784]`` or ``[1, 28, 28]``.
        latent_dim: Size of z.
        encoder: Encoder name or ``{"name": ..., **kwargs}`` (see ``lvm.list_encoders()``).
        decoder: Decoder name or spec (see ``lvm.list_decoders()``).
        likelihood: Likelihood name or spec (see ``lvm.list_likelihoods()``).
        objective: ``"elbo"`` or ``"iwae"`` (see ``lvm.objectives.OBJECTIVES``).
        num_samples: Samples of z per datapoint in the objective (k of the IWAE bound).
        kl_warmup_steps: Linearly raise the KL weight from 0 to 1 over this many steps (0: off).
        lr: Adam learning rate (seed 001: 1e-3).
        betas: Adam betas (seed 001: 0.9, 0.999).
        eps: Adam epsilon (seed 001: 1e-8).
        lr_schedule: ``"constant"``, or ``"iwae"``: Burda et al. (2016)'s schedule, 3^i epochs at
            lr * 10^(-i/7) for i = 0..7 (3,280 epochs in all), applied per epoch.
        init_output_bias: Set the decoder output bias to the training mean (Burda et al. 2016).
        estimators: log p(x) estimators run on validation and test batches, by name or spec,
            e.g. ``[{"name": "importance", "num_samples": 5000}]``.
        eval_seed: Seed of the per-datapoint randomness used in evaluation.
        check_finite: Stop with a message naming the step and term when the loss is not finite.
        plugins: Filled in automatically: the distributions that provide plugin parts, so a
            checkpoint can name what is missing.
    """

    def __init__(
        self,
        data_shape: Sequence[int] = (784,),
        latent_dim: int = 50,
        encoder: Spec = "mlp",
        decoder: Spec = "mlp",
        likelihood: Spec = "bernoulli",
        objective: str = "elbo",
        num_samples: int = 1,
        kl_warmup_steps: int = 0,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        lr_schedule: str = "constant",
        init_output_bias: bool = False,
        estimators: Sequence[Spec] = (),
        eval_seed: int = 0,
        check_finite: bool = True,
        plugins: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1; got {num_samples}")
        if lr_schedule not in _SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(_SCHEDULES)}; got {lr_schedule!r}")
        self.objective_fn = OBJECTIVES.get(objective)
        plugins = dict(plugins or {})
        registries: list[tuple[Registry, Spec]] = [(ENCODERS, encoder), (DECODERS, decoder)]
        registries += [(LIKELIHOODS, likelihood)]
        try:
            self.model = LatentVariableModel.build(
                tuple(data_shape), latent_dim, encoder, decoder, likelihood
            )
        except UnknownNameError as err:
            missing = {n: d for n, d in plugins.items() if d and n in str(err)}
            if missing:
                raise UnknownNameError(
                    f"{err} This model was saved with plugin(s) "
                    + ", ".join(f"{n!r} from distribution {d!r}" for n, d in missing.items())
                    + "; install them (pip install "
                    + " ".join(sorted(set(missing.values())))
                    + ")."
                ) from err
            raise
        for registry, spec in registries:
            for n in _plugin_names(spec):
                dist = registry.plugin_distribution(n) if n in registry else None
                if dist:
                    plugins[n] = dist
        from lvm.estimators import create_estimator  # local: estimators import the model

        self.estimators = {_name(s): create_estimator(s) for s in estimators}
        # evaluation noise is keyed by (eval_seed, dataset index): the same for any batching or process count
        self._eval_elbo = create_estimator({"name": "elbo", "num_samples": num_samples})
        bound = _EVAL_BOUND.get(objective)
        self._eval_bound = self._eval_elbo if bound == "elbo" else None
        if bound not in (None, "elbo"):
            self._eval_bound = create_estimator({"name": bound, "num_samples": num_samples})
        self._resume_rng: dict[str, Tensor] | None = None
        self.save_hyperparameters()
        self.hparams["plugins"] = plugins
        self.metrics = nn.ModuleDict(  # estimators apart from the terms: an estimator may be named "elbo"
            {
                f"{stage}_{term}": MeanWithStdErr()
                for stage in ("val", "test")
                for term in (*_TERMS, *(f"log_px_{e}" for e in self.estimators))
            }
        )

    # -- setup -------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Check the data against the model before any step runs (runs before a checkpoint restore)."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None:
            return
        shape = getattr(dm, "data_shape", None)
        if shape is not None and tuple(shape) != tuple(self.model.event_shape):
            raise ValueError(
                f"data shape {tuple(shape)} does not match the model's data_shape "
                f"{tuple(self.model.event_shape)}; set model.data_shape or the data module's flatten option"
            )
        if hasattr(dm, "check"):
            dm.check(self.model.likelihood)
        if stage == "fit" and self.hparams.init_output_bias and hasattr(dm, "train_mean"):
            self.model.init_output_bias(dm.train_mean().to(self.device))

    def on_fit_start(self) -> None:
        _drop_failing_nvml_probe()

    # -- steps -------------------------------------------------------------------------
    def kl_weight(self) -> float:
        warm = self.hparams.kl_warmup_steps
        return 1.0 if warm <= 0 else min(1.0, self.global_step / warm)

    def forward(self, x: Tensor) -> Bound:
        return self.objective_fn(self.model, x, self.hparams.num_samples, self.kl_weight())

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        bound = self(batch["x"])
        loss = -bound.objective.mean()
        if self.hparams.check_finite and not torch.isfinite(loss):
            self._raise_non_finite(bound)
        if self._logs_this_step():
            self.log_dict(
                {
                    "train/loss": loss.detach(),
                    "train/elbo": (bound.reconstruction - bound.kl).detach().mean(),
                    "train/bound": bound.value.detach().mean(),
                    "train/reconstruction": bound.reconstruction.detach().mean(),
                    "train/kl": bound.kl.detach().mean(),
                    "train/kl_weight": self.kl_weight(),
                },
                prog_bar=False,
            )
        return loss

    def _logs_this_step(self) -> bool:
        """Whether Lightning writes this step's values to the loggers (every ``log_every_n_steps`` steps).

        ``self.log`` costs about as much as a small model's step, so the training values are
        logged only on the steps the loggers receive, as Lightning's own monitors do; what the
        loggers get is unchanged. ``trainer.callback_metrics`` then holds the last logged step's.
        """
        trainer = self._trainer
        connector = getattr(trainer, "_logger_connector", None)
        return connector is None or bool(trainer.fast_dev_run) or connector.should_update_logs

    def _raise_non_finite(self, bound: Bound) -> None:
        terms = {t: getattr(bound, t).detach() for t in ("reconstruction", "kl", "objective")}
        bad = [
            f"{t} (mean {v.mean().item():.4g}, {int((~torch.isfinite(v)).sum())} bad)"
            for t, v in terms.items()
            if not torch.isfinite(v).all()
        ]
        raise FloatingPointError(
            f"non-finite loss at global step {self.global_step} (epoch {self.current_epoch}): "
            f"non-finite term(s): {', '.join(bad) or 'loss'}. Lower the learning rate, check the data, "
            f"or use a likelihood with a scale floor; the last checkpoint is intact."
        )

    def _eval_terms(self, x: Tensor, index: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(ELBO, bound, reconstruction, KL) per datapoint, (B,) each, noise keyed by (eval_seed, index).

        The ELBO is always the ELBO (analytic KL, averaged over ``num_samples`` draws of z); the
        bound is the training objective's: the ELBO again, or the IWAE bound L_k with the same k
        (Burda et al. 2016, eq. 8), so an IWAE run's ``val/elbo`` and ``val/bound`` differ and
        neither is mislabelled. Reconstruction = ELBO + KL with the closed-form KL. A plugin
        objective's bound is its own ``value``, drawn from the global RNG.
        """
        seed = self.hparams.eval_seed
        elbo = self._eval_elbo.estimate(self.model, x, index=index, seed=seed).log_px
        kl = self.model.kl(self.model.posterior(x))
        if self._eval_bound is None:
            bound = self(x).value
        elif self._eval_bound is self._eval_elbo:
            bound = elbo
        else:
            bound = self._eval_bound.estimate(self.model, x, index=index, seed=seed).log_px
        return elbo, bound, elbo + kl, kl

    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> None:
        x = batch["x"]
        for term, value in zip(_TERMS, self._eval_terms(x, batch.get("index")), strict=True):
            self.metrics[f"{stage}_{term}"].update(value)
        for name, est in self.estimators.items():
            out = est.estimate(self.model, x, index=batch.get("index"), seed=self.hparams.eval_seed)
            self.metrics[f"{stage}_log_px_{name}"].update(out.log_px)

    def _eval_epoch_end(self, stage: str) -> None:
        logs: dict[str, Tensor] = {}
        for key, metric in self.metrics.items():
            if not key.startswith(stage + "_"):
                continue
            name = key[len(stage) + 1 :]
            mean, stderr, count = metric.compute()  # already summed across ranks
            if name.startswith("log_px_"):
                logs[f"{stage}/log_px/{name[7:]}"] = mean.float()
                logs[f"{stage}/log_px/{name[7:]}_stderr"] = stderr.float()
            else:
                logs[f"{stage}/{name}"] = mean.float()
                if name in ("elbo", "bound"):
                    logs[f"{stage}/{name}_stderr"] = stderr.float()
                if name == "elbo":
                    logs[f"{stage}/count"] = count.float()
            metric.reset()
        self.log_dict(logs, prog_bar=stage == "val", sync_dist=False)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    # -- checkpoints: the RNG state, so a resumed run draws what an uninterrupted one would ----
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["lvm_rng_state"] = rng_state(self.device)
        record_datamodule(checkpoint, self._trainer)  # so that lvm compare rebuilds the same data

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._resume_rng = checkpoint.get("lvm_rng_state")

    def on_train_start(self) -> None:
        """When resuming a fit (``ckpt_path``), restore the RNG state saved with the checkpoint."""
        if self._resume_rng is not None and self.trainer.ckpt_path:
            set_rng_state(self._resume_rng, self.device)
        self._resume_rng = None

    def configure_optimizers(self) -> Any:
        h = self.hparams
        # The fused kernel updates every parameter in one call: 3-4x faster than the default per-tensor
        # loop on the CPU (about 1 ms of a 6 ms step for the IWAE MLP); same update up to float rounding.
        fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in self.parameters())
        opt = torch.optim.Adam(
            self.parameters(), lr=h.lr, betas=tuple(h.betas), eps=h.eps, fused=fused or None
        )
        if h.lr_schedule == "constant":
            return opt
        sched = torch.optim.lr_scheduler.LambdaLR(opt, iwae_lr_factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    # -- using a trained model -----------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, mean: bool = True) -> Tensor:
        """n draws x ~ p(x | z), z ~ p(z), (n, *data_shape); ``mean=True`` gives E[x | z] (seed 001, 3.1)."""
        z = self.model.prior().sample((n,))
        p = self.model.observation(z)
        return p.mean if mean else p.sample()

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Posterior means E_q[z | x], (B, L)."""
        return self.model.posterior(x.to(self.device)).mean

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """E[x | z] with z ~ q(z | x), (B, *data_shape) (seed 001, Task 3.2)."""
        z = self.model.posterior(x.to(self.device)).sample()
        return self.model.observation(z).mean

    @torch.no_grad()
    def interpolate(self, x_a: Tensor, x_b: Tensor, steps: int = 25) -> Tensor:
        """E[x | z_s] along z_s = s z_a + (1 - s) z_b for ``steps`` values of s from 1 down to 0.

        Seed 001, Task 3.3: z_a, z_b are the posterior means of x_a, x_b, so each row runs from
        x_a to x_b. ``x_a``, ``x_b`` are single datapoints or batches (B, ...); returns
        (steps, *data_shape) or (B, steps, *data_shape).
        """
        single = x_a.dim() == len(self.model.event_shape)
        xa, xb = (x_a[None], x_b[None]) if single else (x_a, x_b)
        za, zb = self.encode(xa), self.encode(xb)  # (B, L)
        s = torch.linspace(1.0, 0.0, steps, device=za.device)[None, :, None]  # (1, steps, 1)
        z = za[:, None] * s + (1 - s) * zb[:, None]  # (B, steps, L)
        out = self.model.observation(z).mean
        return out[0] if single else out
