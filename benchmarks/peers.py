"""The reference VAE trained by lvm's peers, pythae and Pyro: optional cases of ``bench_train.py``.

Neither is a dependency of lvm. Install them apart from lvm's environment, for instance
``pip install --target /tmp/peers --no-deps pythae pyro-ppl ...`` (see benchmarks/README.md), and
run ``PYTHONPATH=/tmp/peers python benchmarks/run.py --peers``.

Both train the network of ``baselines.MLPVAE`` (784-200-200-(2x50) encoder, 50-200-200-784
decoder, tanh), Bernoulli likelihood, analytic KL, Adam 1e-3, batch 100, each the way its
documentation shows: pythae through its ``TrainingPipeline`` (its trainer and ``DataLoader``),
Pyro through ``SVI`` with ``TraceMeanField_ELBO`` (analytic KL) on batches sliced from the
in-memory tensor, as a Pyro user writes the loop. The epoch is timed as in ``bench_train.py``:
pythae from ``on_epoch_begin`` to ``on_epoch_end``; Pyro around the loop of ``svi.step``.
"""

from __future__ import annotations

import argparse
import tempfile
from typing import Any

import torch
import torch.nn.functional as F
from baselines import MIN_SCALE, MLPVAE
from torch import Tensor, nn

__all__ = ["run_pyro", "run_pythae"]


def _require(module: str, package: str) -> Any:
    try:
        return __import__(module)
    except ImportError as err:
        raise SystemExit(
            f"the {module!r} case needs {package}, which is not a dependency of lvm: install it apart "
            f"(pip install --target DIR {package}) and put DIR on PYTHONPATH; see benchmarks/README.md"
        ) from err


def run_pythae(x: Tensor, args: argparse.Namespace, clock: Any) -> None:
    """pythae's ``VAE`` (bce reconstruction loss) with the reference networks, via ``TrainingPipeline``."""
    _require("pythae", "pythae")
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.pipelines import TrainingPipeline
    from pythae.trainers import BaseTrainerConfig
    from pythae.trainers.training_callbacks import TrainingCallback

    nets = MLPVAE()

    class Encoder(BaseEncoder):
        def __init__(self) -> None:
            super().__init__()
            self.net = nets.encoder

        def forward(self, x: Tensor) -> ModelOutput:
            loc, log_var = self.net(x).chunk(2, dim=-1)
            return ModelOutput(embedding=loc, log_covariance=log_var)

    class Decoder(BaseDecoder):
        def __init__(self) -> None:
            super().__init__()
            self.net = nets.decoder

        def forward(self, z: Tensor) -> ModelOutput:
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))

    class EpochTimer(TrainingCallback):
        def on_epoch_begin(self, training_config: Any, **kwargs: Any) -> None:
            clock.start()

        def on_epoch_end(self, training_config: Any, **kwargs: Any) -> None:
            clock.stop()

    model = VAE(VAEConfig(input_dim=(784,), latent_dim=50, reconstruction_loss="bce"), Encoder(), Decoder())
    with tempfile.TemporaryDirectory() as out:
        config = BaseTrainerConfig(
            output_dir=out, num_epochs=args.epochs, learning_rate=1e-3, per_device_train_batch_size=args.batch_size,
            optimizer_cls="Adam", no_cuda=True, seed=args.seed,
        )  # fmt: skip
        TrainingPipeline(training_config=config, model=model)(train_data=x, callbacks=[EpochTimer()])


def run_pyro(x: Tensor, args: argparse.Namespace, clock: Any) -> None:
    """Pyro ``SVI`` with ``TraceMeanField_ELBO`` (analytic KL) and ``pyro.optim.Adam``."""
    _require("pyro", "pyro-ppl")
    import pyro
    import pyro.distributions as dist
    from pyro.infer import SVI, TraceMeanField_ELBO

    class PyroVAE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            nets = MLPVAE()
            self.encoder, self.decoder = nets.encoder, nets.decoder

        def model(self, x: Tensor) -> None:
            pyro.module("decoder", self.decoder)
            with pyro.plate("data", x.shape[0]):
                prior = dist.Normal(x.new_zeros(x.shape[0], 50), x.new_ones(x.shape[0], 50)).to_event(1)
                z = pyro.sample("z", prior)
                pyro.sample(
                    "x", dist.Bernoulli(logits=self.decoder(z), validate_args=False).to_event(1), obs=x
                )

        def guide(self, x: Tensor) -> None:
            pyro.module("encoder", self.encoder)
            with pyro.plate("data", x.shape[0]):
                loc, raw = self.encoder(x).chunk(2, dim=-1)
                pyro.sample("z", dist.Normal(loc, F.softplus(raw) + MIN_SCALE).to_event(1))

    pyro.set_rng_seed(args.seed)
    pyro.clear_param_store()
    vae = PyroVAE()
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), loss=TraceMeanField_ELBO())
    for _ in range(args.epochs):
        clock.start()
        perm = torch.randperm(x.shape[0])
        for start in range(0, x.shape[0], args.batch_size):
            svi.step(x[perm[start : start + args.batch_size]])
        clock.stop()
