"""The DDPM variational bound ``L_vlb`` in bits/dim (Ho et al. 2020, eq. 5).

For a chain ``0 = t_0 < t_1 < ... < t_T`` of the model's process,

    L_vlb = L_T + sum_{i=2..T} L_{i-1} + L_0,
    L_T     = KL(q(x_{t_T} | x0) || N(0, sigma_p^2 I))                    (no parameters),
    L_{i-1} = KL(q(x_{t_{i-1}} | x_{t_i}, x0) || p(x_{t_{i-1}} | x_{t_i})),  x_{t_i} ~ q(. | x0),
    L_0     = -log p(x0 | x_{t_1}),  a discretised Gaussian (bins of width 2/255, edges to +-inf),

with the model's reverse step ``p = N(mu~(x_t, x0^), Sigma)``: the posterior mean at the denoised
estimate and a fixed (``beta`` or ``posterior``) or learned variance
(:func:`hwaksan.parameterizations.reverse_log_variance`). Each KL term is estimated with one draw of
``x_{t_i}`` per image; ``L_vlb`` bounds ``-log P(x0)`` of the discrete data, so bits/dim is
``L_vlb / (D ln 2)`` without any dequantisation offset. The terms are computed by
:func:`hwaksan.losses.vlb_term`, the same code that trains ``L_hybrid``.

**Discretisation.** A :class:`~hwaksan.processes.DiscreteVP` uses its own ``T`` knots (or, with a
smaller ``T``, the evenly spaced knots ``round(i T_process / T)``: a respaced chain, as
improved-diffusion evaluates it). A continuous process (VP, sub-VP, EDM, the flow interpolant) is
discretised uniformly in time, ``t_i = i / T`` with ``T = 1000`` by default; its decoder step is
``t_1 -> 0``. Processes with ``sigma(0) > 0`` (VE) have no data end to decode onto and are refused.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from .._typing import Cond, Denoiser
from ..losses import prior_kl, vlb_term
from ..parameterizations import VARIANCES
from ..processes import DiscreteVP, Process
from ..utils import GeneratorLike, rand
from .likelihood import _slice_cond, _slice_generator, bin_width, check_images

__all__ = ["VLBResult", "vlb_bits_per_dim", "vlb_grid"]

#: Steps of the uniform discretisation of a continuous process.
DEFAULT_T = 1000


def vlb_grid(process: Process, T: int | None = None) -> torch.Tensor:
    """The chain's times ``(T + 1,)`` float64, increasing from ``t_0 = 0`` to ``t_T``.

    DDPM tables: their knots ``k / T_process`` (``T`` evenly spaced ones when ``T`` is smaller);
    continuous processes: ``i / T`` (``T = 1000`` by default).
    """
    if isinstance(process, DiscreteVP):
        T = process.T if T is None else int(T)
        if not 1 <= T <= process.T:
            raise ValueError(f"T must be in 1..{process.T} (the table's steps), got {T}")
        knots = torch.round(torch.arange(T + 1, dtype=torch.float64) * process.T / T)
        return knots / process.T
    if float(process.sigma(0.0)) > 0:
        raise ValueError(
            f"the variational bound decodes x0 from the chain's last latent, which needs sigma(0) = 0; "
            f"{type(process).__name__} has sigma(0) = {float(process.sigma(0.0)):.3g}: use the "
            "probability-flow likelihood (hwaksan.evaluation.likelihood.image_nll) instead"
        )
    T = DEFAULT_T if T is None else int(T)
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    return torch.arange(T + 1, dtype=torch.float64) / T * process.t_max


@dataclass(frozen=True)
class VLBResult:
    """The variational bound of a set of images.

    Attributes:
        bits_per_dim: mean over images of ``per_sample``.
        std_error: standard error of that mean over images (includes the Monte-Carlo noise of the
            ``x_t`` draws and, with ``n_t``, of the step subset).
        n: number of images.
        per_sample: ``(N,)`` ``L_vlb`` of each image in bits/dim.
        prior_bpd, decoder_bpd, kl_bpd: means of the prior term ``L_T``, the decoder ``L_0`` and
            the sum of the KL terms, in bits/dim (they add up to ``bits_per_dim``).
        terms_bpd: ``(T,)`` mean of each term over the images (index 0: the decoder ``L_0``,
            index ``i - 1``: the KL term of step ``i``), when every step was evaluated, else None.
        T: steps of the chain.
        n_t: KL terms drawn per image (None: all of them).
        variance: the reverse-step variance used.
        nfe: network calls per image.
        seconds: wall time.
    """

    bits_per_dim: float
    std_error: float
    n: int
    per_sample: torch.Tensor
    prior_bpd: float
    decoder_bpd: float
    kl_bpd: float
    terms_bpd: torch.Tensor | None
    T: int
    n_t: int | None
    variance: str
    nfe: int
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (per-image values as lists)."""
        return {
            "metric": "vlb",
            "bits_per_dim": self.bits_per_dim,
            "std_error": self.std_error,
            "n": self.n,
            "per_sample": self.per_sample.tolist(),
            "prior_bpd": self.prior_bpd,
            "decoder_bpd": self.decoder_bpd,
            "kl_bpd": self.kl_bpd,
            "terms_bpd": None if self.terms_bpd is None else self.terms_bpd.tolist(),
            "T": self.T,
            "n_t": self.n_t,
            "variance": self.variance,
            "nfe": self.nfe,
            "seconds": self.seconds,
            **self.settings,
        }


@torch.no_grad()
def vlb_bits_per_dim(
    model: Denoiser,
    images: torch.Tensor,
    *,
    T: int | None = None,
    generator: GeneratorLike = None,
    n_t: int | None = None,
    proposal: torch.Tensor | None = None,
    variance: str | None = None,
    cond: Cond = None,
    levels: int = 256,
    batch_size: int = 256,
    progress: bool = True,
) -> VLBResult:
    """``L_vlb`` of ``images`` in bits/dim (Ho et al. 2020 eq. 5; module doc for the chain).

    Args:
        model: a denoiser (a :class:`~hwaksan.parameterizations.ModelDenoiser`, or any denoiser
            with ``x0_and_variance`` for a learned variance).
        images: ``(N, *shape)`` in [-1, 1] (8-bit ``k`` scaled by ``k / 127.5 - 1``).
        T: steps of the chain (default: the table's ``T``, or 1000 for a continuous process).
        generator: randomness of the ``x_t`` draws and the step subset: None, one generator, or
            one per image (then each image's value is independent of ``batch_size``).
        n_t: evaluate only ``n_t`` of the ``T - 1`` KL terms per image, drawn with replacement from
            ``proposal`` (uniform by default) and weighted by ``1 / p`` (an unbiased estimate of
            their sum; the prior and decoder terms are always exact). ``n_t`` network calls per
            image instead of ``T``.
        proposal: ``(T - 1,)`` probabilities of the KL terms of steps ``2..T`` for ``n_t``.
        variance: ``beta``, ``posterior`` or ``learned`` (default: ``learned`` when the model has
            a learned variance, else ``beta``).
        cond: a condition for every image (e.g. labels ``(N,)``) or None.
        levels: quantisation levels of the data (the decoder's bin width is ``2 / (levels - 1)``).
        batch_size: images per network call.
        progress: show a progress bar.
    """
    check_images(images)
    process = model.process
    if variance is None:
        variance = "learned" if getattr(model, "learn_sigma", False) else "beta"
    if variance not in VARIANCES:
        raise ValueError(f"unknown variance {variance!r}; choose one of {', '.join(VARIANCES)}")
    ts = vlb_grid(process, T).to(images.device)
    T = len(ts) - 1
    width = bin_width(levels)
    if n_t is not None:
        if T < 2:
            raise ValueError("n_t needs a chain with KL terms (T >= 2)")
        if n_t < 1:
            raise ValueError(f"n_t must be >= 1, got {n_t}")
        p = torch.full((T - 1,), 1.0 / (T - 1), dtype=torch.float64) if proposal is None else proposal
        p = torch.as_tensor(p, dtype=torch.float64).to(images.device)
        if p.shape != (T - 1,) or bool((p < 0).any()) or float(p.sum()) <= 0:
            raise ValueError(f"proposal must be {T - 1} non-negative probabilities (steps 2..T)")
        p = p / p.sum()
        cdf = p.cumsum(0)
    n, dim = images.shape[0], images[0].numel()
    calls = T if n_t is None else 1 + n_t
    to_bits = 1.0 / (dim * math.log(2.0))
    per_sample, prior_all, decoder_all, kl_all = [], [], [], []
    terms = torch.zeros(T, dtype=torch.float64)
    start_time = time.perf_counter()
    bar = tqdm(total=n * calls, desc="vlb", disable=not progress, unit="call", dynamic_ncols=True)
    try:
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            x0, b = images[start:stop], stop - start
            gen = _slice_generator(generator, start, stop)
            c = _slice_cond(cond, start, stop)

            def term(i: torch.Tensor, x0=x0, c=c, gen=gen) -> torch.Tensor:
                """The term of step ``i (b,)`` (1: decoder) in nats ``(b,)``."""
                return vlb_term(
                    model, x0, ts[i], ts[i - 1], cond=c, generator=gen, variance=variance, bin_width=width
                ).double()

            prior = prior_kl(process, x0, float(ts[-1]))
            decoder = term(torch.ones(b, dtype=torch.long, device=x0.device))
            bar.update(b)
            if n_t is None:
                kl = torch.zeros(b, dtype=torch.float64, device=x0.device)
                terms[0] += float(decoder.sum())
                for i in range(2, T + 1):
                    value = term(torch.full((b,), i, dtype=torch.long, device=x0.device))
                    kl = kl + value
                    terms[i - 1] += float(value.sum())
                    bar.update(b)
            else:
                kl = torch.zeros(b, dtype=torch.float64, device=x0.device)
                for _ in range(n_t):
                    u = rand((b,), gen, dtype=torch.float64, device=x0.device)
                    j = torch.searchsorted(cdf, u, right=True).clamp(max=T - 2)
                    kl = kl + term(j + 2) / p[j]
                    bar.update(b)
                kl = kl / n_t
            prior_all.append(prior.cpu())
            decoder_all.append(decoder.cpu())
            kl_all.append(kl.cpu())
            per_sample.append(((prior + decoder + kl) * to_bits).cpu())
    finally:
        bar.close()
    values = torch.cat(per_sample)
    return VLBResult(
        bits_per_dim=float(values.mean()),
        std_error=float(values.std()) / math.sqrt(n) if n > 1 else float("nan"),
        n=n,
        per_sample=values,
        prior_bpd=float(torch.cat(prior_all).mean()) * to_bits,
        decoder_bpd=float(torch.cat(decoder_all).mean()) * to_bits,
        kl_bpd=float(torch.cat(kl_all).mean()) * to_bits,
        terms_bpd=terms * to_bits / n if n_t is None else None,
        T=T,
        n_t=n_t,
        variance=variance,
        nfe=calls,
        seconds=time.perf_counter() - start_time,
        settings={"levels": levels, "process": process.config()},
    )
