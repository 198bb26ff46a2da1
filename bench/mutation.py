"""Mutation testing of the numerical core: do the tests notice a wrong coefficient?

A curated list of small numeric mutations of the samplers (``samplers/``), the prediction
conversions (``parameterizations.py``), the losses (``losses.py``) and the processes
(``processes/``): coefficients, signs, noise scales, exponents, off-by-one step indices. Each one is
applied alone to a fresh copy of ``src/`` in a temporary directory (the working tree is never
touched) and the tests of its module run against that copy (``PYTHONPATH`` points there; byte-code
is not written, so no stale ``.pyc`` can hide a mutation). The tests run in two tiers: the fast,
specific files of the mutated source file (:data:`FIRST`), then, only if those pass, the rest of
its module's tests (:data:`TESTS`; the four ~25 s cosine-table order tests are left out). A
mutation is *killed* when a test fails (pytest stops at the first failure, ``-x``), *survived* when
every test passes. Before the mutations the module test sets run on the unmodified copy: they must
pass, or the run stops.

    python bench/mutation.py                 # every mutation, markdown table on stdout
    python bench/mutation.py --only M1,C1    # some of them
    python bench/mutation.py --list          # the list, no run
    python bench/mutation.py --json out.json # also the rows as JSON

Run it niced and on one thread (``make mutants``); each run is one single-process pytest. The
seven mutations of the sampler code that an earlier suite let through are marked ``named``. Exit
status 1 when a mutation of ``samplers/`` survives.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

ONE_STEP = "tests/samplers/test_one_step.py"
EXACT = "tests/samplers/test_stochastic_exact.py"
# the slow cosine-table order tests of tests/test_samplers.py (about 25 s each) stay out
DESELECT = [
    f"--deselect=tests/test_samplers.py::test_convergence_order[{n}-ddpm]"
    for n in ("ddim", "euler", "heun", "dpmpp_2m")
]

#: the tests of each module, most specific first (pytest stops at the first failure)
TESTS: dict[str, list[str]] = {
    "samplers": [ONE_STEP, EXACT, "tests/samplers/test_multistep.py", "tests/test_samplers.py"],
    "processes": ["tests/test_processes.py", ONE_STEP, EXACT],
    "parameterizations": [
        "tests/test_parameterizations.py",
        "tests/test_losses.py",
        "tests/test_vlb.py",
        "tests/test_vlb_learned_variance.py",
        EXACT,  # the DDPM sampler's learned variance goes through reverse_log_variance
    ],
    "losses": ["tests/test_losses.py", "tests/test_vlb.py", "tests/test_vlb_learned_variance.py"],
}

#: a first, fast tier per source file: a mutation it kills costs one short pytest run; one that
#: survives it runs the rest of its module's tests
FIRST: dict[str, list[str]] = {
    "samplers/stochastic.py": [EXACT],
    "samplers/langevin.py": [EXACT],
    "samplers/_common.py": [EXACT, ONE_STEP],
    "samplers/ode.py": [ONE_STEP, EXACT],
    "samplers/multistep.py": [ONE_STEP, EXACT],
    "processes/base.py": ["tests/test_processes.py"],
    "processes/diffusion.py": ["tests/test_processes.py"],
    "processes/flow.py": ["tests/test_processes.py"],
    "parameterizations.py": ["tests/test_parameterizations.py"],
    "losses.py": ["tests/test_losses.py"],
}


@dataclass(frozen=True)
class Mutation:
    """Replace ``old`` (which must occur exactly once in ``path``, relative to ``src/hwaksan``) by ``new``."""

    id: str
    path: str
    old: str
    new: str
    what: str
    tests: str
    named: bool = False


S, P, L, R = "samplers", "parameterizations", "losses", "processes"

MUTATIONS: list[Mutation] = [
    # --- the seven that an earlier suite let through -------------------------------------------
    Mutation(
        "M1",
        "samplers/multistep.py",
        "math.sqrt(-math.expm1(-2.0 * eta * h))",
        "math.sqrt(-math.expm1(-eta * h))",
        "DPM-Solver++ SDE noise std sqrt(1-e^{-2 eta h}) -> sqrt(1-e^{-eta h})",
        S,
        True,
    ),
    Mutation(
        "M2",
        "samplers/multistep.py",
        "math.exp(-eta * h) * x",
        "math.exp(-2.0 * eta * h) * x",
        "DPM-Solver++ SDE drift e^{-eta h} -> e^{-2 eta h} (invisible at eta = 0)",
        S,
        True,
    ),
    Mutation(
        "M3",
        "samplers/multistep.py",
        "he = (1.0 + eta) * h",
        "he = h",
        "DPM-Solver++ SDE data weights at h instead of (1 + eta) h (invisible at eta = 0)",
        S,
        True,
    ),
    Mutation(
        "M4",
        "samplers/multistep.py",
        "moments = [math.factorial(m) * h * phi(m + 1, -h) for m in range(len(rs))]",
        "moments = [h * phi(m + 1, -h) for m in range(len(rs))]",
        "data-form weights without m! (3M's third-order term halved, as in k-diffusion)",
        S,
        True,
    ),
    Mutation(
        "C1",
        "samplers/_common.py",
        "math.sqrt(g2 * -dt) * randn_like(x, generator)",
        "0.8 * math.sqrt(g2 * -dt) * randn_like(x, generator)",
        "Euler-Maruyama noise x 0.8",
        S,
        True,
    ),
    Mutation(
        "S1",
        "samplers/stochastic.py",
        "var = post_var",
        "var = 1.5 * post_var",
        "DDPM posterior variance x 1.5",
        S,
        True,
    ),
    Mutation(
        "O1",
        "samplers/ode.py",
        "0.5 * (d + d_next)",
        "(0.49 * d + 0.51 * d_next)",
        "Heun trapezoid weights 0.49 / 0.51 (first order)",
        S,
        True,
    ),
    # --- samplers: shared steps ----------------------------------------------------------------
    Mutation(
        "C2",
        "samplers/_common.py",
        "(f * x - g2 * score) * dt",
        "(f * x - 0.5 * g2 * score) * dt",
        "Euler-Maruyama score weight g^2 -> g^2/2 (the PF-ODE drift)",
        S,
    ),
    Mutation(
        "C3",
        "samplers/_common.py",
        "return f, 2 * s * ds - 2 * f * s**2",
        "return f, 2 * s * ds - f * s**2",
        "sde_coefficients: g^2 = d sigma^2/dt - f sigma^2",
        S,
    ),
    Mutation(
        "C4",
        "samplers/_common.py",
        "return (alpha * x0 - x) / sigma**2",
        "return (alpha * x0 - x) / sigma",
        "score from x0^: sigma^2 -> sigma",
        S,
    ),
    Mutation(
        "C5",
        "samplers/_common.py",
        "return (x - alpha * x0) / sigma",
        "return (x - x0) / sigma",
        "eps from x0^ without alpha",
        S,
    ),
    # --- samplers: stochastic.py ---------------------------------------------------------------
    Mutation(
        "S2",
        "samplers/stochastic.py",
        "x = c_xt * x + c_x0 * x0",
        "x = c_xt * x + (1 - c_xt) * x0",
        "DDPM posterior mean: x0 coefficient 1 - c_xt",
        S,
    ),
    Mutation(
        "S3",
        "samplers/stochastic.py",
        "var = float(process.transition(st.t, st.s)[1]) if st.sigma_s > 0 else 0.0",
        "var = float(process.transition(st.t, st.s)[1])",
        "DDPM beta variance: noise on the last step too",
        S,
    ),
    Mutation(
        "S4",
        "samplers/stochastic.py",
        "torch.exp(0.5 * log_var)",
        "torch.exp(log_var)",
        "DDPM learned variance: variance used as std",
        S,
    ),
    # --- samplers: ode.py ----------------------------------------------------------------------
    Mutation(
        "O2",
        "samplers/ode.py",
        "c = eta * math.sqrt(max(var, 0.0))",
        "c = eta * max(var, 0.0)",
        "DDIM eta: variance used as std",
        S,
    ),
    Mutation(
        "O3",
        "samplers/ode.py",
        "d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev",
        "d = (1 + 1 / r) * x0 - (1 / r) * x0_prev",
        "DPM-Solver++(2M): 1/(2r) -> 1/r",
        S,
    ),
    Mutation(
        "O4",
        "samplers/ode.py",
        "r = h_prev / h",
        "r = h / h_prev",
        "DPM-Solver++(2M): step ratio inverted",
        S,
    ),
    Mutation(
        "O5",
        "samplers/ode.py",
        "math.sqrt(sig_hat**2 - sig_t**2) * s_noise * z",
        "(sig_hat - sig_t) * s_noise * z",
        "Heun churn noise sqrt(s^^2 - s^2) -> s^ - s",
        S,
    ),
    Mutation(
        "O6",
        "samplers/ode.py",
        "gamma = min(s_churn / n, math.sqrt(2) - 1)",
        "gamma = min(s_churn / (n - 1), math.sqrt(2) - 1)",
        "Heun churn gamma = S_churn / (N - 1)",
        S,
    ),
    # --- samplers: multistep.py ----------------------------------------------------------------
    Mutation(
        "M5",
        "samplers/multistep.py",
        "moments = [math.factorial(m) * h * math.exp(-h) * phi(m + 1, h) for m in range(len(rs))]",
        "moments = [math.factorial(m) * h * math.exp(-h) * phi(m + 1, -h) for m in range(len(rs))]",
        "noise-form (DEIS) weights phi(h) -> phi(-h)",
        S,
    ),
    Mutation(
        "M6",
        "samplers/multistep.py",
        "return 0.5 * x",
        "return x",
        "lambda = log-SNR instead of half of it",
        S,
    ),
    Mutation(
        "M7",
        "samplers/multistep.py",
        'b_h = h if variant == "bh1" else -math.expm1(-h)',
        "b_h = h",
        "UniPC bh2 uses B(h) = h",
        S,
    ),
    Mutation(
        "M8",
        "samplers/multistep.py",
        "return [0.5]",
        "return [0.6]",
        "UniPC K = 1 coefficient 1/2 -> 0.6",
        S,
    ),
    Mutation(
        "M9",
        "samplers/multistep.py",
        "w = _solve_transpose(rs, [1.0 / (m + 1) for m in range(k)])",
        "w = _solve_transpose(rs, [1.0 / (m + 1) ** 2 for m in range(k)])",
        "LMS moments 1/(m+1) -> 1/(m+1)^2 (consistent, wrong order)",
        S,
    ),
    Mutation(
        "M10",
        "samplers/multistep.py",
        "sig_m = math.sqrt(sig_t * sig_s)",
        "sig_m = 0.5 * (sig_t + sig_s)",
        "DPM-2 arithmetic instead of geometric midpoint (still second order)",
        S,
    ),
    Mutation(
        "M11",
        "samplers/multistep.py",
        "scale = -sig_t",
        "scale = -sig_s",
        "DEIS scale sigma~_t -> sigma~_s",
        S,
    ),
    Mutation(
        "M12",
        "samplers/multistep.py",
        "k = min(k, n - i)",
        "k = min(k, n - i - 1)",
        "lower_order_final: off by one",
        S,
    ),
    Mutation(
        "M13",
        "samplers/multistep.py",
        "wm = 0.5 * (wa + wb) + math.sqrt(0.25 * (b - a)) * self._normal(node)",
        "wm = 0.5 * (wa + wb) + math.sqrt(0.5 * (b - a)) * self._normal(node)",
        "Brownian bridge midpoint variance (b-a)/4 -> (b-a)/2",
        S,
    ),
    Mutation(
        "M14",
        "samplers/multistep.py",
        "out = out + (st.alpha_s * b_h * am / rm) * dm",
        "out = out + (st.alpha_s * b_h * am * rm) * dm",
        "UniPC a_m D_m / r_m -> a_m D_m r_m",
        S,
    ),
    Mutation(
        "M15",
        "samplers/multistep.py",
        "hist[: pending[2]], x0, variant)",
        "hist[: pending[2] + 1], x0, variant)",
        "UniC corrector: one history point too many (off by one)",
        S,
    ),
    # --- samplers: langevin.py -----------------------------------------------------------------
    Mutation(
        "L1",
        "samplers/langevin.py",
        "x = x + step * g + (2 * step).sqrt() * z",
        "x = x + step * g + step.sqrt() * z",
        "Langevin corrector noise sqrt(2 e) -> sqrt(e)",
        S,
    ),
    Mutation(
        "L2",
        "samplers/langevin.py",
        "step = step.clamp(max=2 * a * snr**2 * sigma**2)",
        "step = step.clamp(max=2 * a * snr**2 * sigma)",
        "Langevin corrector cap sigma^2 -> sigma",
        S,
    ),
    Mutation(
        "L3",
        "samplers/langevin.py",
        "x = x + 0.5 * a_i * score + math.sqrt(a_i) * randn_like(x, generator)",
        "x = x + a_i * score + math.sqrt(a_i) * randn_like(x, generator)",
        "annealed Langevin drift a/2 -> a",
        S,
    ),
    Mutation(
        "L4",
        "samplers/langevin.py",
        "a_i = step_size * sigma**2 / sigma_l**2",
        "a_i = step_size * sigma / sigma_l",
        "annealed Langevin step size sigma^2 -> sigma",
        S,
    ),
    Mutation(
        "L5",
        "samplers/langevin.py",
        "a = float(process.transition(st.t, st.s)[0]) ** 2 if st.alpha_s > 0 else 1.0",
        "a = float(process.transition(st.t, st.s)[0]) if st.alpha_s > 0 else 1.0",
        "PC corrector a = alpha_{t|s} instead of its square",
        S,
    ),
    # --- parameterizations.py ------------------------------------------------------------------
    Mutation(
        "P1",
        "parameterizations.py",
        "x0 = (a * x - s * pred) / (a**2 + s**2)",
        "x0 = (a * x - s * pred) / (a**2 + s**2) ** 0.5",
        "v -> x0: divide by sqrt(alpha^2 + sigma^2) (exact for VP only)",
        P,
    ),
    Mutation(
        "P2",
        "parameterizations.py",
        "x0 = (ds * x - s * pred) / (a * ds - s * da)",
        "x0 = (ds * x - s * pred) / (a * ds + s * da)",
        "velocity -> x0: sign in the determinant",
        P,
    ),
    Mutation(
        "P3",
        "parameterizations.py",
        "return (x + s**2 * pred) / a, -s * pred",
        "return (x + s * pred) / a, -s * pred",
        "score -> x0: sigma^2 -> sigma",
        P,
    ),
    Mutation(
        "P4",
        "parameterizations.py",
        "c_skip = sd2 / (s2 + sd2)",
        "c_skip = sd2 / (s2 + sd2) ** 0.5",
        "EDM c_skip exponent",
        P,
    ),
    Mutation(
        "P5",
        "parameterizations.py",
        "return da * x0 + ds * (x - a * x0) / s",
        "return da * x0 + ds * (x - x0) / s",
        "PF-ODE velocity without alpha in eps",
        P,
    ),
    Mutation(
        "P6",
        "parameterizations.py",
        "        return (a / s) ** 2\n",
        "        return a / s\n",
        "prediction_scale(eps): snr -> sqrt(snr)",
        P,
    ),
    Mutation(
        "P7",
        "parameterizations.py",
        "frac = (v.double() + 1) / 2",
        "frac = (1 - v.double()) / 2",
        "learned variance: interpolation ends swapped",
        P,
    ),
    # --- losses.py -----------------------------------------------------------------------------
    Mutation(
        "X1",
        "losses.py",
        "return process.snr(t).clamp(max=min_snr_gamma)",
        "return process.snr(t).clamp(min=min_snr_gamma)",
        "min-SNR weight clamps from below",
        L,
    ),
    Mutation(
        "X2",
        "losses.py",
        "return (st**2 + sigma_data**2) / (st * sigma_data) ** 2",
        "return (st**2 + sigma_data**2) / (st * sigma_data)",
        "EDM weight: (s sd)^2 -> s sd",
        L,
    ),
    Mutation(
        "X3",
        "losses.py",
        "w = w / prediction_scale(model.prediction, model.process, d.t, model.sigma_data)",
        "w = w * prediction_scale(model.prediction, model.process, d.t, model.sigma_data)",
        "weight conversion multiplies by the prediction scale",
        L,
    ),
    Mutation(
        "X4",
        "losses.py",
        "(mean1 - mean2) ** 2 * torch.exp(-logvar2)",
        "(mean1 - mean2) ** 2 * torch.exp(-logvar1)",
        "normal_kl: mean term over the wrong variance",
        L,
    ),
    Mutation(
        "X5",
        "losses.py",
        "hi = (x - mean + bin_width / 2) * inv",
        "hi = (x - mean + bin_width) * inv",
        "discretised Gaussian: upper bin edge a full bin up",
        L,
    ),
    Mutation(
        "X6",
        "losses.py",
        "per_sample = simple + (vlb_weight * T) * bpd.to(simple.dtype)",
        "per_sample = simple + vlb_weight * bpd.to(simple.dtype)",
        "L_hybrid: L_vlb not scaled by T",
        L,
    ),
    Mutation(
        "X7",
        "losses.py",
        "bpd = nats / (x0[0].numel() * math.log(2.0))",
        "bpd = nats / x0[0].numel()",
        "bits/dim in nats",
        L,
    ),
    Mutation(
        "X8",
        "losses.py",
        "return k + 1, 1.0 / (self.T * p[k])",
        "return k + 1, 1.0 / p[k]",
        "importance weights 1/(T p) -> 1/p",
        L,
    ),
    Mutation(
        "X9",
        "losses.py",
        "return ((u * process.T).floor().clamp(max=process.T - 1) + 1) / process.T",
        "return ((u * process.T).floor().clamp(max=process.T - 1)) / process.T",
        "discrete t: steps 0..T-1 instead of 1..T (off by one)",
        L,
    ),
    Mutation(
        "X10",
        "losses.py",
        "logvar_p = math.log(a**2 + s**2)",
        "logvar_p = math.log(a + s**2)",
        "prior_kl: prior variance alpha + sigma^2",
        L,
    ),
    # --- processes -----------------------------------------------------------------------------
    Mutation(
        "R1",
        "processes/base.py",
        "var_ts = self.sigma(t) ** 2 * -torch.expm1(self.log_snr(t) - self.log_snr(s))",
        "var_ts = self.sigma(t) ** 2 * -torch.expm1(0.5 * (self.log_snr(t) - self.log_snr(s)))",
        "transition variance with half the log-SNR difference",
        R,
    ),
    Mutation(
        "R2",
        "processes/base.py",
        "c_xt = a_t * s_s**2 / (a_s * s_t**2)",
        "c_xt = a_t * s_s / (a_s * s_t)",
        "posterior mean coefficient of x_t: sigma ratio not squared",
        R,
    ),
    Mutation(
        "R3",
        "processes/base.py",
        "var = s_s**2 * frac",
        "var = s_s * frac",
        "posterior variance sigma_s^2 -> sigma_s",
        R,
    ),
    Mutation(
        "R4",
        "processes/diffusion.py",
        "return self.beta_min * t + 0.5 * t**2 * (self.beta_max - self.beta_min)",
        "return self.beta_min * t + t**2 * (self.beta_max - self.beta_min)",
        "VP SDE integral of beta: t^2/2 -> t^2",
        R,
    ),
    Mutation(
        "R5",
        "processes/diffusion.py",
        "return 0.5 * self.beta(t) * torch.exp(-self.int_beta(t)) / self.sigma(t)",
        "return self.beta(t) * torch.exp(-self.int_beta(t)) / self.sigma(t)",
        "VP SDE d sigma/dt without 1/2",
        R,
    ),
    Mutation(
        "R6",
        "processes/diffusion.py",
        "return 2 * b / (self.beta_min + (self.beta_min**2 + 2 * d * b).sqrt())",
        "return b / (self.beta_min + (self.beta_min**2 + 2 * d * b).sqrt())",
        "VP SDE t from log-SNR: factor 2 dropped",
        R,
    ),
    Mutation(
        "R7",
        "processes/diffusion.py",
        "return torch.exp(-0.5 * _t(lam)) / self.sigma_max",
        "return torch.exp(-_t(lam)) / self.sigma_max",
        "EDM t from log-SNR: exponent",
        R,
    ),
    Mutation(
        "R8",
        "processes/diffusion.py",
        "return -dvar / (2 * (1.0 - var).sqrt())",
        "return -dvar / (1.0 - var).sqrt()",
        "DDPM table d alpha/dt without 1/2",
        R,
    ),
    Mutation(
        "R9",
        "processes/diffusion.py",
        "f = torch.cos(((k / T) + s) / (1 + s) * math.pi / 2) ** 2",
        "f = torch.cos(((k / T) + s) / (1 + 2 * s) * math.pi / 2) ** 2",
        "cosine schedule: offset (1 + s) -> (1 + 2 s)",
        R,
    ),
    Mutation(
        "R10",
        "processes/diffusion.py",
        "prev = torch.cat([ab.new_ones(1), ab[:-1]])",
        "prev = torch.cat([ab[:1], ab[:-1]])",
        "betas from alphabar: first beta off by one (0)",
        R,
    ),
    Mutation(
        "R11",
        "processes/flow.py",
        "r = torch.exp(0.5 * lam)",
        "r = torch.exp(lam)",
        "flow t from log-SNR: exponent",
        R,
    ),
]


def check_mutations(mutations: list[Mutation]) -> None:
    """Every ``old`` must occur exactly once (a stale entry is an error, not a silent skip)."""
    ids = [m.id for m in mutations]
    if len(set(ids)) != len(ids):
        raise SystemExit("duplicate mutation ids")
    for m in mutations:
        text = (SRC / "hwaksan" / m.path).read_text()
        count = text.count(m.old)
        if count != 1:
            raise SystemExit(f"{m.id}: {m.old!r} occurs {count} times in {m.path} (expected once)")
        if m.tests not in TESTS:
            raise SystemExit(f"{m.id}: unknown test set {m.tests!r}")


def fresh_copy(parent: Path) -> Path:
    """A copy of ``src/`` under ``parent`` (without byte-code); returns the copy's ``src``."""
    dest = parent / "src"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(SRC, dest, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return dest


def run_tests(src: Path, tests: list[str], timeout: float) -> tuple[str, float, str]:
    """``(outcome, seconds, first failure)`` of pytest on ``tests`` against the copy ``src``."""
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(src),
        PYTHONDONTWRITEBYTECODE="1",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:xdist",
        "-x",
        "-q",
        *tests,
        *DESELECT,
    ]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - t0, ""
    secs = time.perf_counter() - t0
    found = re.search(r"^(FAILED|ERROR) (\S+)", proc.stdout, flags=re.MULTILINE)
    first = found.group(2) if found else ""
    if proc.returncode == 0:
        return "survived", secs, ""
    if proc.returncode == 1:
        return "killed", secs, first
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
    return f"error (pytest exit {proc.returncode})", secs, first or " | ".join(tail)


def check_import(src: Path) -> None:
    """The copy, not the working tree, is what the tests import."""
    env = dict(os.environ, PYTHONPATH=str(src), PYTHONDONTWRITEBYTECODE="1")
    out = subprocess.run(
        [sys.executable, "-c", "import hwaksan; print(hwaksan.__file__)"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(out).resolve().is_relative_to(src.resolve()):
        raise SystemExit(f"hwaksan imports from {out}, not from the copy {src}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated mutation ids")
    parser.add_argument("--list", action="store_true", help="print the mutations and exit")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per pytest run")
    parser.add_argument("--json", default="", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)

    mutations = MUTATIONS
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        unknown = set(wanted) - {m.id for m in MUTATIONS}
        if unknown:
            raise SystemExit(f"unknown mutation ids: {', '.join(sorted(unknown))}")
        mutations = [m for m in MUTATIONS if m.id in wanted]
    check_mutations(mutations)
    if args.list:
        for m in mutations:
            print(f"{m.id:4s} {m.tests:18s} {m.path:24s} {m.what}")
        return 0

    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hwaksan-mutants-") as tmp:
        tmp_path = Path(tmp)
        src = fresh_copy(tmp_path)
        check_import(src)
        if not args.no_baseline:
            for name in sorted({m.tests for m in mutations}):
                outcome, secs, first = run_tests(src, TESTS[name], args.timeout)
                print(f"baseline {name}: {outcome} in {secs:.0f} s", file=sys.stderr, flush=True)
                if outcome != "survived":
                    raise SystemExit(f"the unmutated tests of {name} do not pass ({outcome}: {first})")
        for m in mutations:
            src = fresh_copy(tmp_path)
            target = src / "hwaksan" / m.path
            target.write_text(target.read_text().replace(m.old, m.new))
            first_tier = FIRST.get(m.path, [])
            outcome, secs, first = (
                run_tests(src, first_tier, args.timeout) if first_tier else ("survived", 0.0, "")
            )
            rest = [f for f in TESTS[m.tests] if f not in first_tier]
            if outcome == "survived" and rest:
                outcome, more, first = run_tests(src, rest, args.timeout)
                secs += more
            rows.append({**m.__dict__, "outcome": outcome, "seconds": round(secs, 1), "first_failure": first})
            print(f"{m.id}: {outcome} in {secs:.0f} s {first}", file=sys.stderr, flush=True)

    print("| id | module | mutation | result | killed by | s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        mark = " (named)" if r["named"] else ""
        secs = f"{r['seconds']:.0f}"
        cells = [r["id"] + mark, r["path"], r["what"], r["outcome"], r["first_failure"], secs]
        print("| " + " | ".join(cells) + " |")
    killed = sum(r["outcome"] in ("killed", "timeout") for r in rows)
    print(f"\nkilled {killed} of {len(rows)} ({100 * killed / max(len(rows), 1):.0f}%)", end="")
    for module in TESTS:
        part = [r for r in rows if r["tests"] == module]
        if part:
            k = sum(r["outcome"] in ("killed", "timeout") for r in part)
            print(f"; {module} {k}/{len(part)}", end="")
    print(f"; {time.perf_counter() - started:.0f} s in all")
    survived = [r["id"] for r in rows if r["outcome"] == "survived"]
    if survived:
        print(f"survived: {', '.join(survived)}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return int(any(r["outcome"] == "survived" and r["path"].startswith("samplers/") for r in rows))


if __name__ == "__main__":
    raise SystemExit(main())
