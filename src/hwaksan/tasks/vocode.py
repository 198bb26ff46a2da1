"""Vocoding: waveforms from log-mel spectrograms with a mel-conditioned diffusion model (WaveGrad).

:func:`vocode` draws ``x (B, 1, F * hop)`` from ``N(0, sigma(ts[0])^2)`` and runs any sampler of
the library with ``cond = {"signal": m}``, ``m (B, n_mels, F)`` the normalised log-mel
(:mod:`hwaksan.data.audio_features`): the network is fully convolutional, so whole clips of any
length (a multiple of the hop) vocode although it trained on windows.

:func:`beta_grid` turns a discrete WaveGrad noise schedule ``beta_1 .. beta_N`` (Chen et al. 2021,
sec. 3.3 and 4) into a time grid of the model's own process: ``alphabar_n = prod_{i<=n} (1 -
beta_i)`` has the log-SNR ``lambda_n = log(alphabar_n / (1 - alphabar_n))``, and the grid is
``t_n = process.t_of_lambda(lambda_n)`` from ``n = N`` down to 1, then ``t = 0`` (for a path with
``alpha = 1`` such as EDM this is ``sigma_n = sqrt((1 - alphabar_n) / alphabar_n)``, the same
marginal up to the scale ``sqrt(alphabar_n)``). So WaveGrad's searched few-step schedules run with
every sampler, and the ancestral (``ddpm``) sampler on that grid is WaveGrad's sampler (alg. 2).
:func:`wavegrad_candidates` lists the schedules of the sec. 4 grid search.

:class:`ProjectedDenoiser` (``vocode(..., project=P)``) holds each denoised estimate to its
condition, in the spirit of GLA-Grad (Liu et al. 2024), which puts Griffin-Lim steps into
WaveGrad's reverse process: every ``x0_hat`` is replaced by ``P(x0_hat)``. With ``P =
hwaksan.data.audio_features.mel_projection(mel, settings, k)`` that is ``k`` steps of
:func:`~hwaksan.data.audio_features.mel_consistent`, a Griffin-Lim iteration whose magnitude step is
the multiplicative update of ``KL(exp(M) || mel_basis @ |STFT|)`` (Lee & Seung 2001) started from
the network's own magnitude. The network supplies the phase and the fine structure inside each mel
band, which a mel does not hold; the update makes the band energies follow the mel, which a small
network does only roughly on voices it never heard. Any sampler works on the wrapped denoiser.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .._typing import Cond, Denoiser
from ..io.artifact import TrainedModel
from ..processes.diffusion import alphas_cumprod_from_betas
from ..samplers import SampleResult, sample
from ..samplers.plan import Plan, calibration_set, grid_from_log_sigmas, plan_steps
from ..utils import generators_from_seeds

__all__ = ["ProjectedDenoiser", "beta_grid", "plan_vocoder_grid", "vocode", "wavegrad_candidates"]


def beta_grid(process: Any, betas: Sequence[float]) -> torch.Tensor:
    """The time grid ``(N + 1,)`` float64 of a WaveGrad beta schedule (module docstring), high noise
    first, ending at ``t = 0``; noise levels outside the process's range ``[t_min, t_max]`` are
    clamped to it."""
    b = torch.as_tensor(list(betas), dtype=torch.float64)
    if not (len(b) and torch.all((b > 0) & (b < 1))):
        raise ValueError(f"betas must lie in (0, 1), got {list(betas)}")
    alphabar = alphas_cumprod_from_betas(b)
    log_sigma = 0.5 * torch.log((1 - alphabar) / alphabar)  # sigma~ = exp(-lambda / 2)
    bounds = process.sigma_tilde(
        torch.tensor([max(process.t_min, 1e-12), process.t_max], dtype=torch.float64)
    )
    log_sigma = log_sigma.clamp(float(bounds[0].log()), float(bounds[1].log()))
    return grid_from_log_sigmas(process, log_sigma.flip(0))


def wavegrad_candidates(n: int = 6) -> list[list[float]]:
    """The noise schedules of WaveGrad's grid search (Chen et al. 2021, sec. 4): ``n`` betas, each a
    power of ten times a mantissa, non-decreasing, from ``1e-6`` to ``0.9`` — here the geometric
    sequences ``beta_i = beta_1 (beta_n / beta_1)^((i - 1) / (n - 1))`` with ``beta_1`` in
    ``{1e-6, 1e-5, 1e-4, 1e-3}`` and ``beta_n`` in ``{0.1, 0.3, 0.5, 0.7, 0.9}`` (20 schedules; the
    published 6-step schedule ``[7e-6, 1.4e-4, 2.1e-3, 2.8e-2, 3.5e-1, 7e-1]`` is near one of them)."""
    out = []
    for b1, bn in itertools.product((1e-6, 1e-5, 1e-4, 1e-3), (0.1, 0.3, 0.5, 0.7, 0.9)):
        r = (bn / b1) ** (1.0 / (n - 1))
        out.append([b1 * r**i for i in range(n)])
    return out


class ProjectedDenoiser:
    """A denoiser whose every estimate passes through ``project`` (module docstring):
    ``D'(x, t) = project(D(x, t))``.

    Args:
        denoiser: a denoiser of ``(B, *shape)`` data.
        project: maps estimates ``(B, *shape)`` to estimates of the same shape (e.g.
            :func:`hwaksan.data.audio_features.mel_projection`).
    """

    def __init__(self, denoiser: Denoiser, project: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.denoiser = denoiser
        self.process = denoiser.process
        self.project = project

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: Cond = None) -> torch.Tensor:
        x0 = self.denoiser(x, t, cond)
        return self.project(x0).to(x0.dtype)


def _hop(model: TrainedModel) -> int:
    """The vocoder's samples per mel frame; a model that upsamples no mel is refused."""
    hop = getattr(model.denoiser.net, "hop", None)
    if hop is None:
        raise ValueError(f"this is a {model.describe()} model, not a vocoder (no mel upsampling)")
    return int(hop)


def vocode(
    model: TrainedModel,
    mel: torch.Tensor,
    *,
    sampler: str = "ddim",
    steps: int = 6,
    grid: str | torch.Tensor = "log_snr",
    seed: int = 0,
    cond: dict[str, Any] | None = None,
    project: Callable[[torch.Tensor], torch.Tensor] | None = None,
    **options: Any,
) -> SampleResult:
    """Waveforms ``(B, 1, F * hop)`` of normalised log-mels ``mel (B, n_mels, F)``.

    Args:
        model: a mel-conditioned waveform model (a :class:`~hwaksan.models.wavegrad.WaveGrad`).
        mel: the condition, normalised (:func:`hwaksan.data.audio_features.normalise_log_mel`).
        sampler, steps, grid: any sampler and grid of :mod:`hwaksan.samplers` (``grid`` may be a
            tensor, e.g. :func:`beta_grid`); the defaults are the best 6-step setting measured
            (``docs/benchmarks-audio.md``).
        seed: clip ``i`` uses seed ``seed + i`` (the same clip at any batch size).
        cond: further condition fields (``labels``).
        project: holds each denoised estimate ``(B, 1, T)`` to the mel (:class:`ProjectedDenoiser`),
            e.g. ``mel_projection(mel, MelSettings.from_dict(model.modality_params), 8)`` of
            :mod:`hwaksan.data.audio_features`; None: the network alone.
        **options: sampler options.
    """
    hop = _hop(model)
    b, _, frames = mel.shape
    mel = mel.to(model.device, torch.float32)
    gens = generators_from_seeds(range(seed, seed + b), model.device)
    denoiser = model.denoiser if project is None else ProjectedDenoiser(model.denoiser, project)
    return sample(
        denoiser,
        (b, model.data_shape[0], frames * hop),
        sampler=sampler,
        steps=steps,
        grid=grid,
        cond={**(cond or {}), "signal": mel},
        generator=gens,
        device=model.device,
        **options,
    )


class _BoundMel:
    """``denoiser`` with the condition ``{"signal": mel}`` fixed: a condition-free denoiser for
    :func:`~hwaksan.samplers.plan.plan_steps` (float64 in and out, the network in float32)."""

    def __init__(self, denoiser: Denoiser, mel: torch.Tensor) -> None:
        self.denoiser, self.process, self.mel = denoiser, denoiser.process, mel

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: Cond = None) -> torch.Tensor:
        return self.denoiser(x.float(), t, {"signal": self.mel}).to(x.dtype)


def plan_vocoder_grid(
    model: TrainedModel,
    mel: torch.Tensor,
    n_steps: int,
    *,
    sampler: str = "ddim",
    seed: int = 0,
    max_evals: int = 100,
) -> Plan:
    """A planned ``n_steps`` grid (:func:`hwaksan.samplers.plan.plan_steps`) for the vocoder on the
    mels ``mel (B, n_mels, F)``: one calibration waveform per mel, the PF-ODE of the model
    conditioned on it as the reference. Plan on other clips than those it is measured on."""
    hop = _hop(model)
    b, _, frames = mel.shape
    bound = _BoundMel(model.denoiser, mel.to(model.device, torch.float32))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        calib = calibration_set(bound, b, gen, shape=(model.data_shape[0], frames * hop))
        return plan_steps(bound, n_steps, sampler=sampler, calibration=calib, max_evals=max_evals)
