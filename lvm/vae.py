"""The Lightning plan that trains a latent variable model composed from registered parts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from lvm.encoders import DECODERS, ENCODERS
from lvm.evaluation import EvaluatedModule
from lvm.likelihoods import LIKELIHOODS
from lvm.model import LatentVariableModel
from lvm.objectives import Bound, create_objective
from lvm.optim import iwae_lr_factor, optimizer_settings
from lvm.registry import Spec, require_plugins, spec_name

__all__ = ["VAE", "iwae_lr_factor"]

_TERMS = ("elbo", "bound", "reconstruction", "kl")
#: The estimator that computes an objective's bound in evaluation, with per-datapoint noise.
_EVAL_BOUND = {"elbo": "elbo", "iwae": "importance", "prior_mc": "prior"}
_SCHEDULES = ("constant", "iwae")


class VAE(EvaluatedModule):
    """A VAE (Kingma & Welling 2014) or IWAE (Burda et al. 2016) trained with Lightning.

    Composes, by registry name, an encoder body f_e, a decoder body f_d, an observation model
    p(x | z) (any registered or plugin likelihood) and a standard-normal prior. The maths lives
    in :class:`~lvm.model.LatentVariableModel`, :mod:`lvm.objectives` and :mod:`lvm.estimators`;
    the steps here only call them and log nats per datapoint under ``{stage}/...``:
    ``elbo`` (always the ELBO), ``bound`` (the training objective's bound: the ELBO, or the IWAE
    bound L_k), ``reconstruction``, ``kl``, their ``*_stderr``, ``count`` (datapoints seen, summed
    across ranks) and ``log_px/{estimator}`` for each configured estimator. Sampling, encoding,
    reconstruction and interpolation are methods of ``vae.model``.

    Args:
        data_shape: Shape of one datapoint, e.g. ``[784]`` or ``[1, 28, 28]``.
        latent_dim: Size of z.
        encoder: Encoder name or ``{"name": ..., **kwargs}`` (see ``lvm.list_encoders()``).
        decoder: Decoder name or spec (see ``lvm.list_decoders()``).
        likelihood: Likelihood name or spec (see ``lvm.list_likelihoods()``).
        objective: ``"elbo"``, ``"iwae"`` or ``"prior_mc"``, or with its gradient estimator
            ``{"name": "iwae", "gradient": "dreg"}`` (see :func:`lvm.objectives.create_objective`).
        num_samples: Samples of z per datapoint in the objective (k of the IWAE bound).
        kl_warmup_steps: Linearly raise the KL weight from 0 to 1 over this many steps (0: off).
        lr: Learning rate of the default optimiser, :class:`lvm.optim.Adam` (Kingma & Ba 2015's
            default, 1e-3); unused with ``optimizer``.
        betas: The default Adam's betas (Kingma & Ba 2015: 0.9, 0.999).
        eps: The default Adam's epsilon (Kingma & Ba 2015: 1e-8).
        lr_schedule: Deprecated: ``"iwae"`` is ``lr_scheduler="lvm.optim.IWAESchedule"``.
        init_output_bias: Set the decoder output bias to the training mean (Burda et al. 2016).
        estimators: log p(x) estimators run on validation and test batches, by name or spec,
            e.g. ``[{"name": "importance", "num_samples": 5000}]``.
        eval_seed: Seed of the per-datapoint randomness used in evaluation.
        check_finite: Stop with a message naming the step and term when the loss is not finite.
        plugins: Filled in automatically: the distributions that provide plugin parts
            (``Registry.distributions``), so loading a checkpoint names what to install.
        optimizer: Any torch optimiser, by class path (``"torch.optim.SGD"``) or as
            ``{"class_path": ..., "init_args": {...}}`` (:func:`lvm.optim.class_spec`); None: the
            fused :class:`lvm.optim.Adam` with ``lr``, ``betas``, ``eps``. ``lvm fit`` sets it
            from ``--optimizer``.
        lr_scheduler: Any torch learning-rate scheduler in the same form, stepped once per epoch,
            e.g. :class:`lvm.optim.IWAESchedule`, Burda et al. (2016)'s schedule; None: a constant
            rate. ``lvm fit`` sets it from ``--lr_scheduler``.
    """

    def __init__(
        self,
        data_shape: Sequence[int] = (784,),
        latent_dim: int = 50,
        encoder: Spec = "mlp",
        decoder: Spec = "mlp",
        likelihood: Spec = "bernoulli",
        objective: Spec = "elbo",
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
        optimizer: dict[str, Any] | str | None = None,
        lr_scheduler: dict[str, Any] | str | None = None,
    ) -> None:
        super().__init__()
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1; got {num_samples}")
        if lr_schedule not in _SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(_SCHEDULES)}; got {lr_schedule!r}")
        self.objective_fn = create_objective(objective, num_samples)
        with require_plugins(plugins or {}):
            self.model = LatentVariableModel.build(
                tuple(data_shape), latent_dim, encoder, decoder, likelihood
            )
        if self.objective_fn.name == "prior_mc":  # q is unused: frozen, so DDP waits for no gradient of it
            for module in (self.model.encoder, self.model.posterior_head):
                module.requires_grad_(False)
        from lvm.estimators import create_estimator  # local: estimators import the model

        names = [spec_name(s) for s in estimators]  # metric keys: {stage}/log_px/{name}
        if len(set(names)) < len(names):
            raise ValueError(
                f"each estimator is logged under its name, so names must differ; got {names} "
                f"(to compare variants of one estimator, use lvm compare or lvm.compare_estimators)"
            )
        self.estimators = {name: create_estimator(s) for name, s in zip(names, estimators, strict=True)}
        # evaluation noise is keyed by (eval_seed, dataset index): the same for any batching or process count
        self._eval_elbo = create_estimator({"name": "elbo", "num_samples": num_samples})
        bound = _EVAL_BOUND.get(self.objective_fn.name)
        self._eval_bound = self._eval_elbo if bound == "elbo" else None  # None: from ``self(x)``
        if bound not in (None, "elbo"):
            self._eval_bound = create_estimator({"name": bound, "num_samples": num_samples})
        optimizer, lr_scheduler = optimizer_settings(
            optimizer, lr_scheduler, lr_schedule, lr=lr, betas=betas, eps=eps
        )
        lr_schedule = "constant"  # "iwae" is now the scheduler lvm.optim.IWAESchedule
        self.save_hyperparameters()
        self.hparams["plugins"] = {
            **(plugins or {}),
            **ENCODERS.distributions(encoder),
            **DECODERS.distributions(decoder),
            **LIKELIHOODS.distributions(likelihood),
        }
        # estimators apart from the terms: an estimator may be named "elbo"
        self.track([*_TERMS, *(f"log_px/{e}" for e in self.estimators)])

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
        loggers get is unchanged. ``trainer.callback_metrics`` then holds the last logged step's
        (the timing: benchmarks/README.md, "Speed devices in the code"). The rule is Lightning's,
        from public trainer attributes: the step about to be taken, ``global_step + 1`` (one
        optimiser), is a multiple of ``log_every_n_steps``, or the run stops after it.
        """
        try:
            trainer = self.trainer
        except RuntimeError:  # called by hand, without a Trainer
            return True
        if trainer.fast_dev_run:
            return True
        return (trainer.global_step + 1) % trainer.log_every_n_steps == 0 or trainer.should_stop

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
        bound is the training objective's: the ELBO again, the IWAE bound L_k with the same k
        (Burda et al. 2016, eq. 8), or the prior Monte Carlo bound with the same K, so an IWAE run's ``val/elbo`` and ``val/bound`` differ and
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
        x, index = batch["x"], batch.get("index")
        for term, value in zip(_TERMS, self._eval_terms(x, index), strict=True):
            self.record(stage, term, value)
        for name, est in self.estimators.items():
            out = est.estimate(self.model, x, index=index, seed=self.hparams.eval_seed)
            self.record(stage, f"log_px/{name}", out.log_px)
