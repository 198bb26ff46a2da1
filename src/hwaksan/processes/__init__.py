"""Forward processes: every one is a Gaussian path ``x_t = alpha(t) x0 + sigma(t) eps``."""

from __future__ import annotations

from typing import Any

from .base import Process
from .coupling import (
    COUPLINGS,
    independent_coupling,
    make_coupling,
    ot_assignment,
    ot_coupling,
    pairing_coupling,
    sinkhorn_coupling,
)
from .diffusion import (
    EDM,
    VESDE,
    VPSDE,
    DiscreteVP,
    SubVPSDE,
    alphas_cumprod_from_betas,
    betas_from_alphas_cumprod,
    betas_from_noise_map,
    cosine_alphas_cumprod,
    linear_betas,
    rescale_zero_terminal_snr,
    sigmoid_alphas_cumprod,
)
from .flow import LinearInterpolant

__all__ = [
    "Process",
    "DiscreteVP",
    "VPSDE",
    "SubVPSDE",
    "VESDE",
    "EDM",
    "LinearInterpolant",
    "linear_betas",
    "cosine_alphas_cumprod",
    "sigmoid_alphas_cumprod",
    "betas_from_noise_map",
    "alphas_cumprod_from_betas",
    "betas_from_alphas_cumprod",
    "rescale_zero_terminal_snr",
    "independent_coupling",
    "ot_coupling",
    "ot_assignment",
    "sinkhorn_coupling",
    "pairing_coupling",
    "make_coupling",
    "COUPLINGS",
    "PROCESSES",
    "make_process",
    "process_from_config",
]

#: Names accepted by :func:`make_process` and the CLI's ``--process``.
PROCESSES = (
    "ddpm-linear",
    "ddpm-cosine",
    "ddpm-sigmoid",
    "vp",
    "subvp",
    "ve",
    "edm",
    "flow",
)


def make_process(name: str, **kwargs: Any) -> Process:
    """Build a process by name (see :data:`PROCESSES`); keyword arguments go to its constructor."""
    builders = {
        "ddpm-linear": DiscreteVP.linear,
        "ddpm-cosine": DiscreteVP.cosine,
        "ddpm-sigmoid": DiscreteVP.sigmoid,
        "vp": VPSDE,
        "subvp": SubVPSDE,
        "ve": VESDE,
        "edm": EDM,
        "flow": LinearInterpolant,
    }
    if name not in builders:
        raise ValueError(f"unknown process {name!r}; choose one of {', '.join(PROCESSES)}")
    try:
        return builders[name](**kwargs)
    except TypeError as err:
        raise ValueError(f"bad arguments for process {name!r}: {err}") from None


def process_from_config(config: dict[str, Any]) -> Process:
    """Rebuild a process from :meth:`Process.config`."""
    cfg = dict(config)
    name = cfg.pop("name", None)
    if name == "ddpm":
        schedule = cfg.pop("schedule")
        ztsnr = cfg.pop("zero_terminal_snr", False)
        if schedule == "betas":
            return DiscreteVP.from_betas(cfg["betas"], zero_terminal_snr=ztsnr)
        if schedule not in ("linear", "cosine", "sigmoid"):
            raise ValueError(f"cannot rebuild a DDPM table with schedule {schedule!r}")
        return make_process(f"ddpm-{schedule}", zero_terminal_snr=ztsnr, **cfg)
    if name is None:
        raise ValueError("process config needs a 'name'")
    return make_process(name, **cfg)
