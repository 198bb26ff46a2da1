"""Peers for the sampler benchmark: diffusers schedulers and k-diffusion samplers on our oracle.

Both receive the *same* exact Gaussian-mixture denoiser, the same initial noise ``x_T`` and are
scored against the same float64 reference as hwaksan's samplers (bench/samplers.py).

- diffusers (DDPM tables): the scheduler is built on our table (``trained_betas``, T = 1000) and
  called as its pipelines do (``scale_model_input``, model, ``step``). The "network" predicts eps at
  diffusers' timestep ``k``: integer ``k`` is our ``t = (k + 1) / T``; a fractional ``k`` (Karras or
  exponential sigmas) is mapped through the scheduler's own convention (log-sigma linear in ``k``) to
  its noise level ``sigma~`` and then to our ``t``. Latents in sigma-space schedulers start at
  ``x_T sqrt(1 + sigma_0^2)`` (the VE form of the same ``x_T``).
- diffusers (EDM): EDMEuler and EDMDPMSolverMultistep; the network output ``F`` is whatever makes
  the scheduler's own ``c_skip x + c_out F`` equal our denoiser at its sigma.
- k-diffusion: a VE denoiser ``D(x, sigma) = E[x0 | x0 + sigma eps = x]`` (``x = x_vp / alpha``),
  with Karras (rho = 7) and exponential sigma grids over our ``[sigma~_min, sigma~_max]``.

k-diffusion's package ``__init__`` imports training code (torchvision, kornia, ...). Only
``k_diffusion.sampling`` is needed, so when the full package does not import, it is loaded with a
two-line stand-in for ``k_diffusion.utils`` (``append_dims``). Every peer failure is recorded as
a result with a note, never hidden.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import math
import sys
import time
import types
import warnings
from collections.abc import Callable

import numpy as np
import torch

NFE_RULES = {"n": lambda n: n, "2n-1": lambda n: 2 * n - 1}


def failure(
    Result,
    prob,
    sampler: str,
    family: str,
    grid: str,
    note: str,
    target: int = 0,
    nfe: int = 0,
    stochastic: bool = False,
):
    """The row of a peer that failed: no error, infinite distances, the reason in ``note``."""
    return Result(
        prob.name, sampler, family, grid, target, nfe, None, math.inf, math.inf, 0.0, stochastic, note
    )


# --------------------------------------------------------------------------------------------------
# k-diffusion
# --------------------------------------------------------------------------------------------------
def load_kdiffusion_sampling():
    """``k_diffusion.sampling``, importing only what it needs."""
    try:
        return importlib.import_module("k_diffusion.sampling")
    except Exception:  # the package __init__ wants torchvision & co
        for name in [m for m in sys.modules if m == "k_diffusion" or m.startswith("k_diffusion.")]:
            del sys.modules[name]
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("k-diffusion is not installed (pip install k-diffusion --no-deps torchsde)")
    pkg = types.ModuleType("k_diffusion")
    pkg.__path__ = list(spec.submodule_search_locations)
    utils = types.ModuleType("k_diffusion.utils")

    def append_dims(x, target_dims):
        return x[(...,) + (None,) * (target_dims - x.ndim)]

    utils.append_dims = append_dims
    pkg.utils = utils
    sys.modules["k_diffusion"] = pkg
    sys.modules["k_diffusion.utils"] = utils
    return importlib.import_module("k_diffusion.sampling")


#: name -> (function name, NFE rule, extra kwargs, deterministic)
KDIFF_SAMPLERS = {
    "euler": ("sample_euler", "n", {}, True),
    "heun": ("sample_heun", "2n-1", {}, True),
    "dpm_2": ("sample_dpm_2", "2n-1", {}, True),
    "lms": ("sample_lms", "n", {}, True),
    "dpmpp_2m": ("sample_dpmpp_2m", "n", {}, True),
    "dpmpp_2s": ("sample_dpmpp_2s_ancestral", "2n-1", {"eta": 0.0}, True),
    "dpmpp_sde(eta=0)": ("sample_dpmpp_sde", "2n-1", {"eta": 0.0}, True),
    "dpmpp_2m_sde(eta=0,heun)": ("sample_dpmpp_2m_sde", "n", {"eta": 0.0, "solver_type": "heun"}, True),
    "dpmpp_3m_sde(eta=0)": ("sample_dpmpp_3m_sde", "n", {"eta": 0.0}, True),
    "dpm_fast": ("sample_dpm_fast", "n", {}, True),
    "euler_ancestral": ("sample_euler_ancestral", "n", {}, False),
    "dpmpp_2m_sde": ("sample_dpmpp_2m_sde", "n", {}, False),
    "dpmpp_3m_sde": ("sample_dpmpp_3m_sde", "n", {}, False),
}


def run_kdiffusion(prob, nfes, Result, ode_error, distribution_metrics, keep=None) -> list:
    out = []
    try:
        K = load_kdiffusion_sampling()
    except Exception as err:
        return [failure(Result, prob, "*", "k-diffusion", "-", f"failed: import: {err}")]
    smin, smax = prob.sigma_range
    a_max = float(prob.process.alpha(prob.process.t_max))
    x_ve = prob.x_T.double() / a_max
    calls = [0]

    def model(x, sigma, **kw):
        calls[0] += 1
        return prob.oracle.at_sigma_tilde(x, float(sigma.reshape(-1)[0]))

    grids = {
        "karras": lambda n: K.get_sigmas_karras(n, smin, smax, rho=7.0, device="cpu").double(),
        "exponential": lambda n: K.get_sigmas_exponential(n, smin, smax, device="cpu").double(),
    }
    for name, (fn_name, rule, kw, deterministic) in KDIFF_SAMPLERS.items():
        fn = getattr(K, fn_name, None)
        if fn is None:
            continue
        for target in nfes:
            n = max((m for m in range(1, target + 1) if NFE_RULES[rule](m) <= target), default=None)
            if n is None:
                continue
            for gname, make in grids.items():
                if name == "dpm_fast" and gname != "karras":
                    continue  # dpm_fast builds its own (log-SNR uniform) steps
                calls[0] = 0
                torch.manual_seed(11)
                t0 = time.perf_counter()
                note = ""
                try:
                    with torch.no_grad(), warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        if name == "dpm_fast":
                            x = fn(model, x_ve.clone(), smin, smax, n, disable=True, **kw)
                            gname = "own"
                        else:
                            x = fn(model, x_ve.clone(), make(n), disable=True, **kw)
                except Exception as err:
                    out.append(
                        failure(
                            Result,
                            prob,
                            name,
                            "k-diffusion",
                            gname,
                            f"failed: {type(err).__name__}: {err}",
                            target=target,
                            nfe=calls[0],
                            stochastic=not deterministic,
                        )
                    )
                    continue
                secs = time.perf_counter() - t0
                sw, nll = distribution_metrics(x, prob)
                err = ode_error(x, prob.ref) if deterministic else None
                out.append(
                    Result(
                        prob.name,
                        name,
                        "k-diffusion",
                        gname,
                        target,
                        calls[0],
                        err,
                        sw,
                        nll,
                        secs,
                        not deterministic,
                        note,
                    )
                )
                if keep is not None:
                    keep(out[-1], x)
    return out


# --------------------------------------------------------------------------------------------------
# diffusers
# --------------------------------------------------------------------------------------------------
def _diffusers_configs(edm: bool) -> list[tuple[str, str, dict]]:
    """(label, scheduler class name, kwargs): each scheduler with its spacing / sigma options."""
    if edm:
        cfgs = []
        for sched in ("karras", "exponential"):
            cfgs.append(("EDMEuler", "EDMEulerScheduler", {"sigma_schedule": sched}))
            for order in (2, 3):
                cfgs.append(
                    (
                        f"EDMDPMSolverMultistep(o{order})",
                        "EDMDPMSolverMultistepScheduler",
                        {"sigma_schedule": sched, "solver_order": order},
                    )
                )
        return cfgs
    spacing = [{"timestep_spacing": s} for s in ("linspace", "trailing")]
    sigma_opts = [*spacing, {"use_karras_sigmas": True}, {"use_exponential_sigmas": True}]
    cfgs = []
    for s in ("leading", "trailing", "linspace"):
        cfgs.append(("DDIM", "DDIMScheduler", {"timestep_spacing": s, "clip_sample": False}))
        for prk in (False, True):
            cfgs.append(
                (
                    f"PNDM({'PLMS' if prk else 'PRK+PLMS'})",
                    "PNDMScheduler",
                    {"timestep_spacing": s, "skip_prk_steps": prk, "set_alpha_to_one": True},
                )
            )
    for label, cls in (
        ("Euler", "EulerDiscreteScheduler"),
        ("Heun", "HeunDiscreteScheduler"),
        ("LMS", "LMSDiscreteScheduler"),
    ):
        cfgs.extend((label, cls, o) for o in sigma_opts)
    for order in (2, 3):
        for o in (*sigma_opts, {"use_lu_lambdas": True}):
            cfgs.append(
                (f"DPMSolverMultistep(o{order})", "DPMSolverMultistepScheduler", {"solver_order": order, **o})
            )
        for o in ({}, {"use_karras_sigmas": True}, {"use_exponential_sigmas": True}):
            cfgs.append(
                (
                    f"DPMSolverSinglestep(o{order})",
                    "DPMSolverSinglestepScheduler",
                    {"solver_order": order, **o},
                )
            )
        for bh in ("bh1", "bh2"):
            for o in sigma_opts:
                cfgs.append(
                    (
                        f"UniPC(o{order},{bh})",
                        "UniPCMultistepScheduler",
                        {"solver_order": order, "solver_type": bh, **o},
                    )
                )
        for o in sigma_opts:
            cfgs.append((f"DEIS(o{order})", "DEISMultistepScheduler", {"solver_order": order, **o}))
    return cfgs


def _option_label(kw: dict) -> str:
    keys = {
        "timestep_spacing": "",
        "use_karras_sigmas": "karras",
        "use_exponential_sigmas": "exp",
        "use_lu_lambdas": "lu",
        "sigma_schedule": "",
        "skip_prk_steps": None,
        "solver_order": None,
        "solver_type": None,
        "clip_sample": None,
        "set_alpha_to_one": None,
    }
    parts = []
    for k, v in kw.items():
        tag = keys.get(k, k)
        if tag is None:
            continue
        parts.append(str(v) if tag == "" else tag)
    return ",".join(parts) or "default"


class _TimestepToT:
    """diffusers timestep ``k`` (maybe fractional) -> our time ``t`` at the same noise level."""

    def __init__(self, process) -> None:
        self.process = process
        ab = process.alphas_cumprod.numpy()
        self.log_sigmas = np.log(np.sqrt((1 - ab) / ab))
        self.T = len(ab)
        self.cache: dict[float, float] = {}

    def __call__(self, k: float) -> float:
        k = float(k)
        if k not in self.cache:
            if abs(k - round(k)) < 1e-9:
                self.cache[k] = (round(k) + 1) / self.T
            else:
                ls = float(np.interp(k, np.arange(self.T), self.log_sigmas))
                self.cache[k] = float(self.process.t_from_sigma_tilde(math.exp(ls)))
        return self.cache[k]


def _nfe_of(sched, n: int) -> int:
    sched.set_timesteps(n)
    return len(sched.timesteps)


def run_diffusers(prob, nfes, Result, ode_error, distribution_metrics, keep=None) -> list:
    out = []
    try:
        import diffusers

        diffusers.utils.logging.set_verbosity_error()
    except Exception as err:
        return [failure(Result, prob, "*", "diffusers", "-", f"failed: import: {err}")]
    edm = prob.process_name == "edm"
    to_t = None if edm else _TimestepToT(prob.process)
    oracle = prob.oracle
    for label, cls_name, kw in _diffusers_configs(edm):
        cls = getattr(diffusers, cls_name, None)
        opt = _option_label(kw)
        if cls is None:
            out.append(
                failure(
                    Result,
                    prob,
                    label,
                    "diffusers",
                    opt,
                    f"failed: {cls_name} not in diffusers {diffusers.__version__}",
                )
            )
            continue
        try:
            if edm:
                p = prob.process
                make = functools.partial(
                    cls,
                    sigma_min=p.sigma_min,
                    sigma_max=p.sigma_max,
                    sigma_data=p.sigma_data,
                    prediction_type="epsilon",
                    **kw,
                )
            else:
                betas = prob.process.betas.numpy()
                make = functools.partial(
                    cls, num_train_timesteps=len(betas), trained_betas=betas, prediction_type="epsilon", **kw
                )
            sched = make()
        except Exception as err:
            out.append(
                failure(
                    Result, prob, label, "diffusers", opt, f"failed: construct: {type(err).__name__}: {err}"
                )
            )
            continue
        for target in nfes:
            n, last_err = None, None
            for m in range(1, target + 1):
                try:
                    nfe = _nfe_of(sched, m)
                except Exception as err:  # some step counts are refused (PNDM's PRK warm-up)
                    last_err = err
                    continue
                if nfe > target:
                    break
                n = m
            if n is None:
                if last_err is not None:
                    out.append(
                        failure(
                            Result,
                            prob,
                            label,
                            "diffusers",
                            opt,
                            f"failed: set_timesteps: {type(last_err).__name__}: {last_err}",
                            target=target,
                        )
                    )
                continue
            sched = make()
            calls = 0
            t0 = time.perf_counter()
            try:
                with torch.no_grad(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    sched.set_timesteps(n)
                    x = prob.x_T.clone().double()
                    if not edm and float(getattr(sched, "init_noise_sigma", 1.0)) != 1.0:
                        x = x * math.sqrt(1.0 + float(sched.sigmas[0]) ** 2)
                    for k in sched.timesteps:
                        inp = sched.scale_model_input(x, k)
                        calls += 1
                        if edm:
                            sigma = sched.sigmas[sched.step_index]
                            d = oracle.at_sigma_tilde(x, float(sigma))
                            zero = torch.zeros_like(x)
                            c_skip_x = sched.precondition_outputs(x, zero, sigma)
                            c_out = sched.precondition_outputs(zero, torch.ones_like(x), sigma)
                            model_out = (d - c_skip_x) / c_out
                        else:
                            t = to_t(k)
                            a, s = float(prob.process.alpha(t)), float(prob.process.sigma(t))
                            d = oracle.at_sigma_tilde(inp / a, s / a)
                            model_out = (inp - a * d) / s
                        x = sched.step(model_out, k, x).prev_sample
            except Exception as err:
                out.append(
                    failure(
                        Result,
                        prob,
                        label,
                        "diffusers",
                        opt,
                        f"failed: {type(err).__name__}: {err}",
                        target=target,
                        nfe=calls,
                    )
                )
                continue
            secs = time.perf_counter() - t0
            sw, nll = distribution_metrics(x, prob)
            out.append(
                Result(
                    prob.name,
                    label,
                    "diffusers",
                    opt,
                    target,
                    calls,
                    ode_error(x, prob.ref),
                    sw,
                    nll,
                    secs,
                    False,
                )
            )
            if keep is not None:
                keep(out[-1], x)
    return out


def run_all(
    prob,
    nfes,
    Result: Callable,
    ode_error: Callable,
    distribution_metrics: Callable,
    keep: Callable | None = None,
) -> list:
    """Every peer on one problem; returns bench/samplers.py ``Result`` rows. ``keep(result, x)`` is
    called with the samples of every successful run (the bar's paired comparison keeps the best)."""
    return run_diffusers(prob, nfes, Result, ode_error, distribution_metrics, keep) + run_kdiffusion(
        prob, nfes, Result, ode_error, distribution_metrics, keep
    )
