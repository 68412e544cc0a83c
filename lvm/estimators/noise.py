"""Counter-based standard normal noise, a pure function of (seed, datapoint index, sample, dimension)."""

from __future__ import annotations

import enum
import math

import torch
from torch import Tensor

__all__ = ["NormalNoise", "Stream", "mix64", "normal_noise", "stream_seed", "transition_seed"]

_MASK64 = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15  # splitmix64's increment, 2^64 / golden ratio
_MUL1 = 0xBF58476D1CE4E5B9
_MUL2 = 0x94D049BB133111EB


def _signed(u: int) -> int:
    """The int64 with the same 64 bits as the unsigned ``u``."""
    u &= _MASK64
    return u - (1 << 64) if u >= 1 << 63 else u


def _mix64_int(z: int) -> int:
    """splitmix64's finaliser on a Python int (the reference for :func:`mix64`)."""
    z &= _MASK64
    z = ((z ^ (z >> 30)) * _MUL1) & _MASK64
    z = ((z ^ (z >> 27)) * _MUL2) & _MASK64
    return z ^ (z >> 31)


class Stream(enum.IntEnum):
    """The noise streams of one evaluation seed, one per purpose, each with a seed of its own (:func:`stream_seed`).

    The evaluation seed itself keys the noise every estimator draws for its counted samples
    (importance samples, AIS chain starts), so the streams below never overlap it. A member's
    value is the splitmix64 counter its seed is derived at; the values fix the numbers a seed
    gives, so none is ever renumbered. AIS's transitions take the positive counters
    (:func:`transition_seed`).
    """

    AIS_PILOT = -1  #: forward AIS: the pilot chains that adapt the step sizes (their starts and transitions)
    REVERSE_AIS = -2  #: reverse AIS (BDMC's upper bound): the transitions of the counted chains
    REVERSE_AIS_PILOT = -3  #: reverse AIS: the transitions of the pilot chains
    BDMC_SIMULATION = -4  #: BDMC: the simulated latents z ~ p(z)


def stream_seed(seed: int, stream: Stream) -> int:
    """The seed of ``stream`` under the evaluation seed ``seed`` (a 63-bit int)."""
    return _derived_seed(seed, int(Stream(stream)))


def transition_seed(seed: int, step: int) -> int:
    """The seed of the noise of AIS's annealing transition ``step`` >= 1 (its momenta and Metropolis uniforms)."""
    if step < 1:
        raise ValueError(f"annealing transitions are numbered from 1; got {step}")
    return _derived_seed(seed, step)


def _derived_seed(seed: int, counter: int) -> int:
    """splitmix64's output at ``counter`` of the stream that starts at ``seed``, in 63 bits."""
    return _mix64_int(seed + counter * _GAMMA) >> 1


def _xor_shift_(z: Tensor, s: int) -> Tensor:
    """z ^= z >>> s in place, a logical shift emulated on int64 (``>>`` is arithmetic there)."""
    return z.bitwise_xor_(torch.bitwise_right_shift(z, s).bitwise_and_((1 << (64 - s)) - 1))


def mix64(z: Tensor) -> Tensor:
    """splitmix64's finaliser (Steele, Lea & Flood 2014) on the 64 bits of an int64 tensor, in place.

    A bijection of 64-bit words with full avalanche: z ^= z >>> 30; z *= C1; z ^= z >>> 27;
    z *= C2; z ^= z >>> 31, all modulo 2^64 (int64 multiplication wraps in two's complement).
    """
    _xor_shift_(z, 30).mul_(_signed(_MUL1))
    _xor_shift_(z, 27).mul_(_signed(_MUL2))
    return _xor_shift_(z, 31)


def _keys(index: Tensor, seed: int) -> Tensor:
    """One 64-bit stream key per datapoint, (B,): mix64(mix64(seed) ^ index)."""
    base = _signed(_mix64_int(seed))
    return mix64(index.to(torch.int64).bitwise_xor(base))


def normal_noise(
    index: Tensor, seed: int, start: int, count: int, dim: int, dtype: torch.dtype = torch.float32
) -> Tensor:
    r"""Standard normal draws eps[k, b, d] for samples k in [start, start + count), (count, B, dim).

    eps[k, b, d] is a pure function of (seed, index[b], k, d): it does not depend on the other
    datapoints in the batch, on how the samples are split into chunks, or on the device. Pairs
    (d, d + 1) for even d come from one 64-bit hash h = mix64(key_b + (2^32 k + d/2 + 1) gamma),
    key_b = mix64(mix64(seed) ^ index[b]) (a splitmix64 stream per datapoint), split into two
    24-bit uniforms u = (bits + 1/2) 2^-24 in (0, 1) and mapped by Box & Muller (1958):
    sqrt(-2 log u1) (cos 2 pi u2, sin 2 pi u2). Tails are cut at 5.9.

    Args:
        index: Dataset indices of the datapoints, integer (B,).
        seed: Seed of the whole evaluation.
        start: First sample number.
        count: Number of samples.
        dim: Size of each draw (the latent dimension).
        dtype: Floating dtype of the result.

    Returns:
        Tensor (count, B, dim) on ``index``'s device.

    Raises:
        ValueError: for a non-integer or non-1-D ``index``, or a negative ``start``/``count``.
    """
    if index.dim() != 1 or index.is_floating_point() or index.is_complex():
        raise ValueError(
            f"index must be an integer tensor of shape (B,); got {index.dtype} {tuple(index.shape)}"
        )
    if start < 0 or count < 0 or dim < 1:
        raise ValueError(
            f"need start >= 0, count >= 0, dim >= 1; got start={start}, count={count}, dim={dim}"
        )
    device = index.device
    pairs = (dim + 1) // 2
    k = torch.arange(start, start + count, device=device, dtype=torch.int64)
    j = torch.arange(1, pairs + 1, device=device, dtype=torch.int64)
    counter = (k[:, None] * 2**32 + j).mul_(_signed(_GAMMA))  # (C, P)
    h = mix64(counter[:, None, :] + _keys(index, seed)[None, :, None])  # (C, B, P)
    scale = 2.0**-24
    u1 = torch.bitwise_right_shift(h, 40).bitwise_and_(0xFFFFFF).to(dtype).add_(0.5).mul_(scale)
    u2 = h.bitwise_and_(0xFFFFFF).to(dtype).add_(0.5).mul_(scale)
    radius = u1.log_().mul_(-2.0).sqrt_()
    angle = u2.mul_(2 * math.pi)
    out = torch.stack((radius * angle.cos(), radius.mul_(angle.sin_())), dim=-1)  # (C, B, P, 2)
    out = out.reshape(count, index.shape[0], 2 * pairs)
    return out if dim == 2 * pairs else out[..., :dim]


class NormalNoise:
    """The standard normal noise of one batch, drawn chunk by chunk over samples.

    With dataset indices it is :func:`normal_noise`, so a datapoint's estimate does not depend on
    its batch or on the number of processes. Without them it falls back to ``torch.randn`` from a
    generator seeded with ``seed``: reproducible for the same batch and chunking only.

    Args:
        index: Dataset indices (B,), or None.
        seed: Evaluation seed.
        batch_size: B.
        dim: Size of each draw.
        device: Device of the draws.
        dtype: Floating dtype of the draws.
    """

    def __init__(
        self,
        index: Tensor | None,
        seed: int,
        batch_size: int,
        dim: int,
        device: torch.device | str,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if index is not None:
            index = torch.as_tensor(index, device=device)
            if index.shape != (batch_size,):
                raise ValueError(
                    f"index must have shape ({batch_size},) like the batch; got {tuple(index.shape)}"
                )
        self.index = index
        self.seed = int(seed)
        self.batch_size, self.dim, self.dtype = batch_size, dim, dtype
        self.device = torch.device(device)
        self.generator: torch.Generator | None = None
        if index is None:
            self.generator = torch.Generator(device=self.device)
            self.generator.manual_seed(self.seed & _MASK64)

    def draw(self, start: int, count: int) -> Tensor:
        """Draws for samples [start, start + count), (count, B, dim)."""
        if self.index is not None:
            return normal_noise(self.index, self.seed, start, count, self.dim, self.dtype)
        shape = (count, self.batch_size, self.dim)
        return torch.randn(shape, generator=self.generator, device=self.device, dtype=self.dtype)
