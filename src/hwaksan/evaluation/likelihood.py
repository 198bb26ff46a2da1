"""Exact likelihood of images in bits/dim through the probability-flow ODE.

The model's probability-flow ODE is an invertible flow, so the instantaneous change of variables
(Chen et al. 2018; Song et al. 2021, app. D) gives the exact log-density of a continuous input:
``log p_0(x) = log p_T(x_T) + int div u(x_t, t) dt`` (:func:`hwaksan.samplers.log_likelihood`).
The divergence is exact (one backward pass per dimension) or Hutchinson's unbiased estimate with
``probes`` Rademacher or Gaussian probes per image, whose spread is reported.

**Dequantisation.** 8-bit images ``k`` in ``0..255`` are scaled to ``x = a k + b`` with
``a = 2/255, b = -1``. A continuous density ``p`` on ``x`` defines a discrete model
``P(k) = int_[0,1)^D p(a (k + u - 1/2) + b) a^D du`` (uniform dequantisation, centred on ``x``;
Theis et al. 2016), and by Jensen's inequality
``-log P(k) <= E_u[-log p(x + a (u - 1/2))] - D log a``. In bits per dimension:
``bits/dim = NLL_x / (D ln 2) - log2(a)``, with ``-log2(2/255) = log2(127.5) = 6.994`` (the round
``+7`` often quoted is ``log2(128)``, for ``a = 1/128``). With ``levels`` other than 256,
``a = 2 / (levels - 1)``.

Example:
    >>> from hwaksan.evaluation.likelihood import dequantization_offset_bits
    >>> round(dequantization_offset_bits(256), 4)
    6.9944
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from .._typing import Cond, Denoiser
from ..samplers.likelihood import PROBES, log_likelihood
from ..utils import GeneratorLike, rand

__all__ = [
    "NLLResult",
    "image_nll",
    "bin_width",
    "dequantize_images",
    "dequantization_offset_bits",
    "check_images",
]


def bin_width(levels: int = 256) -> float:
    """Width ``a = 2 / (levels - 1)`` of one quantisation level of data scaled to [-1, 1]."""
    if levels < 2:
        raise ValueError(f"levels must be >= 2, got {levels}")
    return 2.0 / (levels - 1)


def dequantization_offset_bits(levels: int = 256) -> float:
    """``-log2(a)`` bits per dimension added to a continuous density's NLL in bits/dim to bound the
    discrete NLL (``log2(127.5) = 6.9944`` for 8-bit data in [-1, 1])."""
    return -math.log2(bin_width(levels))


def dequantize_images(
    images: torch.Tensor, generator: GeneratorLike = None, levels: int = 256
) -> torch.Tensor:
    """Uniform dequantisation ``x + a (u - 1/2)``, ``u ~ U[0, 1)^D``, ``a = bin_width(levels)``.

    Shapes: ``(N, *shape)`` -> ``(N, *shape)``; per-image noise with a list of generators."""
    u = rand(images.shape, generator, dtype=images.dtype, device=images.device)
    return images + bin_width(levels) * (u - 0.5)


def check_images(images: torch.Tensor) -> None:
    """Raise one clear error unless ``images (N, ...)`` are finite values in [-1, 1]."""
    if images.ndim < 2 or images.shape[0] == 0:
        raise ValueError(f"images must be a non-empty batch (N, *shape), got shape {tuple(images.shape)}")
    if not bool(torch.isfinite(images).all()):
        raise ValueError("images contain NaN or infinite values")
    lo, hi = float(images.min()), float(images.max())
    if lo < -1 - 1e-6 or hi > 1 + 1e-6:
        raise ValueError(
            f"images must lie in [-1, 1] (8-bit k scaled by k / 127.5 - 1), got values in "
            f"[{lo:.3g}, {hi:.3g}]: "
            "rescale them with x / 127.5 - 1 (from 0..255) or 2 x - 1 (from [0, 1])"
        )


@dataclass(frozen=True)
class NLLResult:
    """Negative log-likelihood of a set of images under a model's probability-flow ODE.

    Attributes:
        bits_per_dim: mean over the images of ``per_sample``.
        std_error: standard error of that mean over images (it includes the Hutchinson and
            dequantisation noise, which are independent per image).
        n: number of images.
        per_sample: ``(N,)`` bits/dim of each image (with the dequantisation offset).
        nll: ``(N,)`` nats of the continuous density at the (dequantised) input.
        hutchinson_std: ``(N,)`` Monte-Carlo standard error in bits/dim of each image's Hutchinson
            estimate, from the spread of its ``probes`` estimates (None when exact or one probe).
        hutchinson_std_error: the part of ``std_error`` due to the probes,
            ``sqrt(sum hutchinson_std^2) / N`` (None when exact or one probe).
        exact: whether the divergence was exact.
        probes: Hutchinson probes per image (0 when exact).
        probe: the probe distribution.
        dequantized: whether uniform dequantisation noise was added; ``offset_bits`` is then
            ``-log2(bin width)`` and ``bits_per_dim`` bounds the discrete NLL; else 0 and it is the
            continuous density's bits/dim at the grid values.
        offset_bits: bits/dim added for the dequantisation.
        nfe: ODE function evaluations (one network call each), summed over batches.
        seconds: wall time.
    """

    bits_per_dim: float
    std_error: float
    n: int
    per_sample: torch.Tensor
    nll: torch.Tensor
    hutchinson_std: torch.Tensor | None
    hutchinson_std_error: float | None
    exact: bool
    probes: int
    probe: str
    dequantized: bool
    offset_bits: float
    nfe: int
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (per-image values as lists)."""
        return {
            "metric": "nll_pf_ode",
            "bits_per_dim": self.bits_per_dim,
            "std_error": self.std_error,
            "n": self.n,
            "per_sample": self.per_sample.tolist(),
            "hutchinson_std_error": self.hutchinson_std_error,
            "exact": self.exact,
            "probes": self.probes,
            "probe": self.probe,
            "dequantized": self.dequantized,
            "offset_bits": self.offset_bits,
            "nfe": self.nfe,
            "seconds": self.seconds,
            **self.settings,
        }


def _slice_generator(generator: GeneratorLike, start: int, stop: int) -> GeneratorLike:
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    return list(generator)[start:stop]


def _slice_cond(cond: Cond, start: int, stop: int) -> Cond:
    if cond is None:
        return None
    if isinstance(cond, dict):
        return {k: v[start:stop] for k, v in cond.items()}
    return cond[start:stop]


def image_nll(
    model: Denoiser,
    images: torch.Tensor,
    *,
    exact: bool | None = None,
    probes: int = 1,
    probe: str = "rademacher",
    dequantize: bool = True,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    generator: GeneratorLike = None,
    cond: Cond = None,
    levels: int = 256,
    batch_size: int = 64,
    t_start: float | None = None,
    t_end: float | None = None,
    method: str = "dopri5",
    progress: bool = True,
) -> NLLResult:
    """Bits/dim of ``images`` under ``model``'s probability-flow ODE (Song et al. 2021, app. D).

    Works for every process and prediction (the flow interpolant too): the ODE velocity is
    ``alpha' x0^ + sigma' eps^`` of the denoiser. Integration runs from ``t_start`` (``1e-5`` where
    the log-SNR is infinite at 0, else 0: the VE SDE's density is that of ``p_0``, the data
    convolved with ``N(0, sigma_min^2)``) to ``t_end`` (``t_max``), with the prior
    ``N(0, sigma(t_end)^2 I)``; see :func:`hwaksan.samplers.log_likelihood`.

    Args:
        model: a denoiser (e.g. a :class:`~hwaksan.parameterizations.ModelDenoiser` from
            :func:`hwaksan.io.checkpoint.load_model`).
        images: ``(N, *shape)`` in [-1, 1] (8-bit ``k`` scaled by ``k / 127.5 - 1``).
        exact: exact divergence (``D`` backward passes per function evaluation); default when
            ``D <= 16``, else Hutchinson.
        probes: Hutchinson probes per image (their spread gives ``hutchinson_std``).
        probe: ``"rademacher"`` (lower variance) or ``"gaussian"``.
        dequantize: add uniform noise over each level's bin and the ``-log2(a)`` offset (a bound
            on the discrete NLL); False: the continuous density at the grid values, no offset.
        rtol, atol: the adaptive ODE solver's tolerances.
        generator: randomness of the dequantisation and the probes: None, one generator, or one
            per image (then each image's result is independent of ``batch_size``).
        cond: a condition for every image (e.g. labels ``(N,)``), or None (the unconditional /
            null-class model).
        levels: quantisation levels of the data (256 for 8-bit).
        batch_size: images per ODE solve (the adaptive step sizes are shared within a batch).
        progress: show a progress bar over batches.

    Returns:
        :class:`NLLResult` (``bits_per_dim``, ``std_error``, ``n``, per-image values).
    """
    check_images(images)
    if probe not in PROBES:
        raise ValueError(f"unknown probe {probe!r}; choose one of {', '.join(PROBES)}")
    if probes < 1:
        raise ValueError(f"probes must be >= 1, got {probes}")
    n, dim = images.shape[0], images[0].numel()
    exact = dim <= 16 if exact is None else bool(exact)
    offset = dequantization_offset_bits(levels) if dequantize else 0.0
    if dequantize:
        bin_width(levels)  # validates levels
    nll, hutch_var, nfe = [], [], 0
    start_time = time.perf_counter()
    bar = tqdm(total=n, desc="nll (PF-ODE)", disable=not progress, unit="img", dynamic_ncols=True)
    try:
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            x = images[start:stop]
            gen = _slice_generator(generator, start, stop)
            if dequantize:
                x = dequantize_images(x, gen, levels)
            res = log_likelihood(
                model,
                x,
                cond=_slice_cond(cond, start, stop),
                t_start=t_start,
                t_end=t_end,
                exact=exact,
                probe=probe,
                generator=gen,
                rtol=rtol,
                atol=atol,
                method=method,
                probes=probes,
            )
            nll.append(-res.log_prob.detach().cpu())
            if res.delta_log_prob_probes is not None and probes > 1:
                hutch_var.append(res.delta_log_prob_probes.detach().cpu().var(1) / probes)
            nfe += res.nfe
            bar.update(stop - start)
    finally:
        bar.close()
    nll_t = torch.cat(nll)
    scale = 1.0 / (dim * math.log(2.0))
    per_sample = nll_t * scale + offset
    std_error = float(per_sample.std()) / math.sqrt(n) if n > 1 else float("nan")
    h_std, h_se = None, None
    if hutch_var:
        var = torch.cat(hutch_var)
        h_std = var.sqrt() * scale
        h_se = float(var.sum().sqrt()) * scale / n
    return NLLResult(
        bits_per_dim=float(per_sample.mean()),
        std_error=std_error,
        n=n,
        per_sample=per_sample,
        nll=nll_t,
        hutchinson_std=h_std,
        hutchinson_std_error=h_se,
        exact=exact,
        probes=0 if exact else probes,
        probe=probe,
        dequantized=dequantize,
        offset_bits=offset,
        nfe=nfe,
        seconds=time.perf_counter() - start_time,
        settings={"rtol": rtol, "atol": atol, "levels": levels, "method": method},
    )
