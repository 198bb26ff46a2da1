"""Sampler benchmark on the exact Gaussian-mixture oracle (issues 2 and 3).

Problems: a fixed 2-D mixture of eight anisotropic Gaussians and ``anisotropic_mixture(64)``, each
under the DDPM linear and cosine tables (T = 1000) and EDM's sigma space. For every problem the
same initial noise ``x_T`` (float64, seed 0) starts every sampler, and the reference is a float64
dopri5 solution (rtol = atol = 1e-10) of the same probability-flow ODE, written on the EDM
variables ``dx~/d log sigma~ = x~ - D(x~, sigma~)`` from ``sigma~(t_max)`` to ``sigma~(t_min)``,
followed by the same final denoising step ``x0 = D(x(t_min), t_min)`` that every sampler takes.

Metrics:
- ``err``: mean over samples of ``|x - x_ref|_2`` (deterministic samplers), at NFE targets;
- ``SW``: sliced Wasserstein-2 to as many true samples (256 projections), every sampler;
- ``NLL``: mean ``-log p(x)`` of the samples under the true mixture, every sampler.

Each hwaksan sampler is run on each grid (``U`` uniform in t, ``K`` Karras rho = 7, ``L`` uniform
in log-SNR, ``P`` planned by :func:`hwaksan.samplers.plan.plan_steps` where available) with the step
count that gives the target NFE (Heun / DPM-2: ``2n - 1 <= NFE``); the tables give the best grid.
``--peers`` adds diffusers and k-diffusion (bench/peers.py) on the same oracle, noise and reference.

    python bench/samplers.py                 # full run, markdown tables on stdout
    python bench/samplers.py --quick         # smoke run (small batch, one problem per dimension)
    python bench/samplers.py --peers --json results.json --plot docs/img/sampler-error-vs-nfe
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torchdiffeq import odeint

from hwaksan.distributions import GaussianMixture
from hwaksan.evaluation.lowdim import sliced_wasserstein
from hwaksan.oracles import anisotropic_mixture
from hwaksan.processes import Process, make_process
from hwaksan.samplers import SAMPLERS, CountingDenoiser, make_grid

PROCESSES = ("ddpm-linear", "ddpm-cosine", "edm")
NFES = (5, 10, 20, 50)
GRID_KINDS = {"U": "uniform", "K": "karras", "L": "log_snr"}
#: options for samplers whose defaults do not fit a small NFE budget
SAMPLER_OPTIONS: dict[str, dict] = {"annealed_langevin": {"n_steps_each": 1}}
#: samplers with a controller-chosen NFE: reported in their own table
ADAPTIVE = ("adaptive",)
#: samplers that also get a planned grid (P), and the largest NFE planned (the search costs ~100 runs)
PLAN_SAMPLERS = ("unipc", "dpmpp_3m", "deis")
PLAN_MAX_NFE = 20
PLAN_EVALS = 120
#: the fitted solver (grid F: grid and coefficients fitted by hwaksan.samplers.fit.fit_solver)
FIT_SAMPLER = "fitted"
FIT_MAX_NFE = 20
FIT_SAMPLES = 512  # calibration noise (seed 1000, never the benchmark's seed 0); a quarter held out
FIT_ITERATIONS = 150
FIT = {"iterations": FIT_ITERATIONS}  # --fit-iterations changes it
FIT_PLAN_EVALS = 80


# --------------------------------------------------------------------------------------------------
# problems
# --------------------------------------------------------------------------------------------------
def mixture_2d() -> GaussianMixture:
    """Eight anisotropic Gaussians on a circle of radius 2 (radial sd 0.3, tangential sd 0.08)."""
    means, covs = [], []
    for k in range(8):
        a = 2 * math.pi * k / 8
        u = torch.tensor([math.cos(a), math.sin(a)], dtype=torch.float64)
        v = torch.tensor([-math.sin(a), math.cos(a)], dtype=torch.float64)
        means.append(2.0 * u)
        covs.append(0.3**2 * torch.outer(u, u) + 0.08**2 * torch.outer(v, v))
    return GaussianMixture(torch.stack(means), torch.stack(covs), torch.linspace(1.0, 2.0, 8))


MIXTURES: dict[str, Callable[[], GaussianMixture]] = {
    "2d": mixture_2d,
    "64d": lambda: anisotropic_mixture(64),
}


class MixtureOracle:
    """The exact denoiser ``E[x0 | x_t]`` of a mixture under ``process``, evaluating ``alpha, sigma``
    once per call when the batch shares one time (every grid sampler's case)."""

    def __init__(self, mixture: GaussianMixture, process: Process) -> None:
        self.mixture, self.process = mixture, process

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.float64).reshape(-1)
        if t.numel() == 1 or bool((t == t[0]).all()):
            a, s = self.process.alpha(t[0]), self.process.sigma(t[0])
        else:
            a, s = self.process.alpha(t), self.process.sigma(t)
        x0 = self.mixture.posterior_mean(x.reshape(x.shape[0], -1).double(), a, s)
        return x0.reshape(x.shape).to(x.dtype)

    def at_sigma_tilde(self, x_tilde: torch.Tensor, sigma_tilde: float | torch.Tensor) -> torch.Tensor:
        """``D`` as a function of the EDM variables (process-free): ``E[x0 | x0 + sigma~ eps = x~]``."""
        b = x_tilde.shape[0]
        x0 = self.mixture.posterior_mean(x_tilde.reshape(b, -1).double(), 1.0, sigma_tilde)
        return x0.reshape(x_tilde.shape).to(x_tilde.dtype)


@dataclass
class Problem:
    name: str
    dim: str
    process_name: str
    mixture: GaussianMixture
    process: Process
    oracle: MixtureOracle
    x_T: torch.Tensor
    ref: torch.Tensor
    true: torch.Tensor
    true2: torch.Tensor
    extras: dict = field(default_factory=dict)

    @property
    def sigma_range(self) -> tuple[float, float]:
        p = self.process
        return float(p.sigma_tilde(p.t_min)), float(p.sigma_tilde(p.t_max))


def reference_solution(
    oracle: MixtureOracle, process: Process, x_T: torch.Tensor, rtol: float = 1e-10, atol: float = 1e-10
) -> torch.Tensor:
    """Float64 dopri5 on ``dx~/ds = x~ - D(x~, e^s)``, ``s = log sigma~``, from ``t_max`` to ``t_min``,
    then ``D(x(t_min), t_min)``."""
    s_max, s_min = float(process.sigma_tilde(process.t_max)), float(process.sigma_tilde(process.t_min))
    a_max = float(process.alpha(process.t_max))

    def f(s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return y - oracle.at_sigma_tilde(y, float(torch.exp(s)))

    grid = torch.tensor([math.log(s_max), math.log(s_min)], dtype=torch.float64)
    y = odeint(f, x_T.double() / a_max, grid, rtol=rtol, atol=atol, method="dopri5")[-1]
    return oracle.at_sigma_tilde(y, s_min)


def build_problem(dim: str, process_name: str, n: int, seed: int = 0) -> Problem:
    mixture = MIXTURES[dim]()
    process = make_process(process_name)
    oracle = MixtureOracle(mixture, process)
    d = mixture.dim
    x_T = process.prior_sample((n, d), torch.Generator().manual_seed(seed), dtype=torch.float64)
    ref = reference_solution(oracle, process, x_T)
    true = mixture.sample(n, torch.Generator().manual_seed(seed + 1))
    true2 = mixture.sample(n, torch.Generator().manual_seed(seed + 2))
    return Problem(
        f"{dim}/{process_name}", dim, process_name, mixture, process, oracle, x_T, ref, true, true2
    )


# --------------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------------
def ode_error(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Mean per-sample L2 distance; NaN/inf samples make it inf."""
    e = (x.double() - ref).norm(dim=1)
    return float(e.mean()) if bool(torch.isfinite(e).all()) else float("inf")


def distribution_metrics(x: torch.Tensor, prob: Problem) -> tuple[float, float]:
    """(sliced Wasserstein to true samples, mean NLL under the true mixture)."""
    x = x.double()
    if not bool(torch.isfinite(x).all()):
        return float("inf"), float("inf")
    sw = sliced_wasserstein(x, prob.true, n_projections=256, generator=torch.Generator().manual_seed(7))
    nll = -float(prob.mixture.log_prob(x).mean())
    return sw, nll


@dataclass
class Result:
    problem: str
    sampler: str
    family: str  # "hwaksan" or the peer library
    grid: str
    target_nfe: int
    nfe: int
    err: float | None
    sw: float
    nll: float
    seconds: float
    stochastic: bool
    note: str = ""


# --------------------------------------------------------------------------------------------------
# hwaksan samplers
# --------------------------------------------------------------------------------------------------
def full_range(prob: Problem, kind: str) -> dict:
    """Karras grids start at sigma~ = 80 by default; the benchmark's noise and reference start at
    t_max, so every grid here spans the full range."""
    s_max = float(prob.process.sigma_tilde(prob.process.t_max))
    return {"sigma_max": s_max} if kind == "K" and math.isfinite(s_max) else {}


def calibration(prob: Problem, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` of the calibration noise (seed 1000: other noise than the benchmark's seed 0)
    and their float64 PF-ODE end points."""
    have = prob.extras.get("calibration")
    if have is None or len(have[0]) < n:
        x_cal = prob.process.prior_sample(
            (max(n, 64), prob.mixture.dim), torch.Generator().manual_seed(1000), dtype=torch.float64
        )
        have = prob.extras["calibration"] = (x_cal, reference_solution(prob.oracle, prob.process, x_cal))
    return have[0][:n], have[1][:n]


def fitted_plan(prob: Problem, n: int, cache_file: str = "") -> dict:
    """Grid and coefficients of the fitted solver for ``n`` steps (``FIT_SAMPLES`` calibration samples),
    read from / written to ``cache_file`` (JSON) when given."""
    plans = prob.extras.setdefault("fitted", {})
    key = f"{prob.name}/{n}"
    if key not in plans and cache_file and os.path.exists(cache_file):
        with open(cache_file) as f:
            stored = json.load(f).get(key)
        if stored is not None:
            plans[key] = stored
    if key not in plans:
        from hwaksan.samplers.fit import fit_solver

        t0 = time.perf_counter()
        plan = fit_solver(
            prob.oracle,
            n,
            calibration=calibration(prob, FIT_SAMPLES),
            iterations=FIT["iterations"],
            plan_evals=FIT_PLAN_EVALS,
        )
        plans[key] = {
            "ts": plan.ts.tolist(),
            "options": plan.options,
            "error": plan.error,
            "initial_error": plan.initial_error,
            "start": plan.start,
            "fit_error": plan.fit_error,
            "seconds": time.perf_counter() - t0,
            "calibration": f"{FIT_SAMPLES} samples (seed 1000), {FIT['iterations']} Adam iterations",
        }
        print(
            f"# {key}: fitted in {plans[key]['seconds']:.0f}s, held-out error {plan.error:.3e} "
            f"(start {plan.initial_error:.3e}: {plan.start})",
            file=sys.stderr,
        )
        if cache_file:
            stored = {}
            if os.path.exists(cache_file):
                with open(cache_file) as f:
                    stored = json.load(f)
            stored[key] = plans[key]
            with open(cache_file, "w") as f:
                json.dump(stored, f, indent=1)
    return plans[key]


def grid_for(prob: Problem, kind: str, n: int, sampler: str) -> torch.Tensor | None:
    cache = prob.extras.setdefault("grids", {})
    key = (kind, n, sampler if kind == "P" else "")
    if key not in cache:
        if kind == "P":
            from hwaksan.samplers import plan

            cache[key] = plan.plan_steps(
                prob.oracle, n, sampler=sampler, calibration=calibration(prob, 64), max_evals=PLAN_EVALS
            ).ts
        else:
            try:
                cache[key] = make_grid(prob.process, n, GRID_KINDS[kind], **full_range(prob, kind))
            except ValueError:
                cache[key] = None
    return cache[key]


def steps_for_nfe(prob: Problem, name: str, target: int, kind: str) -> tuple[int, torch.Tensor] | None:
    """Largest step count ``n`` whose NFE on grid ``kind`` is at most ``target`` (prefer equality)."""
    spec = SAMPLERS[name]
    opts = {**spec.defaults, **SAMPLER_OPTIONS.get(name, {})}
    best = None
    for n in range(1, target + 1):
        ts = grid_for(prob, "K" if kind == "P" else kind, n, name)
        if ts is None:
            continue
        nfe = spec.nfe(ts, prob.process, opts)
        if nfe <= target:
            best = n
        if nfe >= target:
            break
    if best is None:
        return None
    ts = grid_for(prob, kind, best, name)
    return (best, ts) if ts is not None else None


def run_hwaksan(
    prob: Problem,
    name: str,
    target: int,
    kind: str,
    batch_seed: int = 11,
    keep: Callable | None = None,
    fit_cache: str = "",
) -> Result | None:
    spec = SAMPLERS[name]
    if kind == "P" and (name not in PLAN_SAMPLERS or target > PLAN_MAX_NFE):
        return None
    opts = {**spec.defaults, **SAMPLER_OPTIONS.get(name, {})}
    if kind == "F":
        if name != FIT_SAMPLER or target > FIT_MAX_NFE or target < 2:
            return None
        plan = fitted_plan(prob, target, fit_cache)
        ts = torch.tensor(plan["ts"], dtype=torch.float64)
        opts = {**opts, **plan["options"]}
    else:
        found = steps_for_nfe(prob, name, target, kind)
        if found is None:
            return None
        _, ts = found
    counter = CountingDenoiser(prob.oracle)
    gens = torch.Generator().manual_seed(batch_seed)
    t0 = time.perf_counter()
    note = ""
    try:
        with torch.no_grad():
            x = spec.fn(counter, prob.x_T.clone(), ts, generator=gens, **opts)
    except Exception as err:  # a failure is a result, not a crash
        return Result(
            prob.name,
            name,
            "hwaksan",
            kind,
            target,
            counter.nfe,
            None,
            math.inf,
            math.inf,
            0.0,
            spec.stochastic,
            f"failed: {type(err).__name__}: {err}",
        )
    secs = time.perf_counter() - t0
    sw, nll = distribution_metrics(x, prob)
    err = None if spec.stochastic else ode_error(x, prob.ref)
    result = Result(
        prob.name, name, "hwaksan", kind, target, counter.nfe, err, sw, nll, secs, spec.stochastic, note
    )
    if keep is not None:
        keep(result, x)
    return result


def run_adaptive(prob: Problem, name: str, rtol: float) -> Result:
    spec = SAMPLERS[name]
    counter = CountingDenoiser(prob.oracle)
    ts = make_grid(prob.process, 2, "karras", **full_range(prob, "K"))
    t0 = time.perf_counter()
    with torch.no_grad():
        x = spec.fn(counter, prob.x_T.clone(), ts, rtol=rtol, atol=rtol)
    secs = time.perf_counter() - t0
    sw, nll = distribution_metrics(x, prob)
    return Result(
        prob.name,
        name,
        "hwaksan",
        f"rtol={rtol:g}",
        0,
        counter.nfe,
        ode_error(x, prob.ref),
        sw,
        nll,
        secs,
        False,
    )


# --------------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------------
def _fmt(v: float | None) -> str:
    if v is None:
        return "—"
    if not math.isfinite(v):
        return "fail"
    return f"{v:.2e}"


def best_by(results: list[Result], key: str) -> dict[tuple[str, str, str, int], Result]:
    """Best grid per (problem, family, sampler, target NFE) by ``key`` ("err" or "sw")."""
    out: dict[tuple[str, str, str, int], Result] = {}
    for r in results:
        v = getattr(r, key)
        if v is None or r.target_nfe == 0:
            continue
        k = (r.problem, r.family, r.sampler, r.target_nfe)
        if k not in out or v < getattr(out[k], key):
            out[k] = r
    return out


def table(results: list[Result], problem: str, key: str, nfes: tuple[int, ...]) -> str:
    best = best_by([r for r in results if r.problem == problem], key)
    rows = sorted({(k[1] != "hwaksan", k[1], k[2]) for k in best})
    head = "| sampler | " + " | ".join(f"NFE {n}" for n in nfes) + " |"
    lines = [head, "|" + "---|" * (len(nfes) + 1)]
    for _, fam, name in rows:
        cells = []
        for n in nfes:
            r = best.get((problem, fam, name, n))
            if r is None:
                cells.append("—")
                continue
            mark = "" if r.nfe == n else f" ({r.nfe})"
            cell = f"{_fmt(getattr(r, key))} {r.grid}{mark}"
            if key == "sw":
                cell = f"{_fmt(r.sw)} / {r.nll:.3f} {r.grid}{mark}"
            cells.append(cell)
        label = name if fam == "hwaksan" else f"*{fam}: {name}*"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


BAR_NFES = (5, 10, 20)


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


# --------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: batch 64, two problems, NFE 5 and 10")
    ap.add_argument("--n", type=int, default=1000, help="batch size (samples per problem)")
    ap.add_argument("--dims", default="2d,64d", help="comma list of problems: 2d, 64d")
    ap.add_argument("--processes", default=",".join(PROCESSES))
    ap.add_argument("--nfes", default=",".join(map(str, NFES)), help="comma list of NFE targets")
    ap.add_argument("--samplers", default="", help="comma list (default: every registered sampler)")
    ap.add_argument(
        "--grids",
        default="U,K,L,P,F",
        help="grid kinds among U, K, L, P (planned), F (grid and coefficients fitted, sampler 'fitted')",
    )
    ap.add_argument(
        "--fit-iterations", type=int, default=FIT_ITERATIONS, help="Adam iterations of each F fit"
    )
    ap.add_argument(
        "--fit-cache",
        default="",
        help="JSON file of fitted solvers (F): read when present, written after each fit",
    )
    ap.add_argument(
        "--peers", action="store_true", help="also run diffusers and k-diffusion (bench/peers.py)"
    )
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--json", default="", help="write every result to this JSON file")
    ap.add_argument("--plot", default="", help="write error-vs-NFE plots to PREFIX-<problem>.png")
    ap.add_argument("--report", default="", help="print the bar table of --json files (comma list) and exit")
    ap.add_argument("--bar-nfes", default=",".join(map(str, BAR_NFES)), help="NFEs of the bar (5,10,20)")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(args.threads, os.cpu_count() or 1)))
    import bar

    FIT["iterations"] = args.fit_iterations
    if args.report:
        rows = []
        for path in args.report.split(","):
            with open(path) as f:
                stored = json.load(f)
            if not isinstance(stored, dict) or "bar" not in stored:
                print(
                    f"{path} has no paired bar statistics (written before they existed): rerun",
                    file=sys.stderr,
                )
                return 1
            rows.extend(stored["bar"])
            if args.plot:  # redraw the plots from the stored results
                stored_results = [Result(**r) for r in stored["results"]]
                plot(stored_results, list(dict.fromkeys(r.problem for r in stored_results)), args.plot)
        print(bar.bar_markdown(rows))
        return 0

    dims = args.dims.split(",")
    procs = args.processes.split(",")
    nfes = tuple(int(v) for v in args.nfes.split(","))
    n = args.n
    if args.quick:
        n, procs, nfes = 64, ["ddpm-linear", "edm"][: len(procs)], (5, 10)
        grids_arg = args.grids if args.grids != "U,K,L,P,F" else "U,K,L"
        args.grids = grids_arg
    names = [s for s in (args.samplers.split(",") if args.samplers else SAMPLERS) if s in SAMPLERS]
    grids = [g for g in args.grids.split(",") if g in (*GRID_KINDS, "P", "F")]
    if "P" in grids:
        try:
            from hwaksan.samplers import plan  # noqa: F401
        except ImportError:
            grids.remove("P")

    results: list[Result] = []
    keeper = bar.BarKeeper(tuple(int(v) for v in args.bar_nfes.split(",")))
    bar_rows: list[dict] = []
    t_start = time.perf_counter()
    problems = []
    for dim in dims:
        for pn in procs:
            t0 = time.perf_counter()
            prob = build_problem(dim, pn, n)
            problems.append(prob)
            print(f"# {prob.name}: reference in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
            for name in names:
                if name in ADAPTIVE:
                    for rtol in (1e-2, 1e-3, 1e-4):
                        results.append(run_adaptive(prob, name, rtol))
                    continue
                for target in nfes:
                    for kind in grids:
                        r = run_hwaksan(prob, name, target, kind, keep=keeper.offer, fit_cache=args.fit_cache)
                        if r is not None:
                            results.append(r)
            if args.peers:
                import peers

                results.extend(
                    peers.run_all(prob, nfes, Result, ode_error, distribution_metrics, keep=keeper.offer)
                )
                bar_rows.extend(keeper.rows(prob.name, bar.PairedReference(prob.mixture, n)))
            keeper.best = {k: v for k, v in keeper.best.items() if k[0] != prob.name}  # free the samples
            print(f"# {prob.name}: done at {time.perf_counter() - t_start:.0f}s", file=sys.stderr)

    out = [
        "Command: `python bench/samplers.py " + " ".join(argv if argv is not None else sys.argv[1:]) + "`",
        f"Machine: {machine()}; batch {n}; wall time {time.perf_counter() - t_start:.0f} s.",
        "",
    ]
    for prob in problems:
        smin, smax = prob.sigma_range
        out.append(f"### {prob.name} (sigma~ in [{smin:.3g}, {smax:.3g}])\n")
        out.append("Mean L2 error vs the float64 PF-ODE reference (best grid; (k) = actual NFE):\n")
        out.append(table(results, prob.name, "err", nfes))
        floor_sw = sliced_wasserstein(prob.true2, prob.true, 256, torch.Generator().manual_seed(7))
        floor_nll = -float(prob.mixture.log_prob(prob.true2).mean())
        out.append(
            f"\nSliced W2 / NLL (best grid by SW; floor between two true sample sets: "
            f"SW {floor_sw:.2e}, NLL {floor_nll:.3f}; reference ODE samples: "
            f"SW {distribution_metrics(prob.ref, prob)[0]:.2e}):\n"
        )
        out.append(table(results, prob.name, "sw", nfes))
        adapt = [r for r in results if r.problem == prob.name and r.sampler in ADAPTIVE]
        if adapt:
            out.append("\nAdaptive solvers (NFE chosen by the controller):\n")
            out.append("| sampler | tolerance | NFE | error | SW |\n|---|---|---|---|---|")
            for r in adapt:
                out.append(f"| {r.sampler} | {r.grid} | {r.nfe} | {_fmt(r.err)} | {_fmt(r.sw)} |")
        fails = [r for r in results if r.problem == prob.name and r.note.startswith("failed")]
        if fails:
            out.append("\nFailures:\n")
            out.extend(f"- {r.family} {r.sampler} ({r.grid}, NFE {r.target_nfe}): {r.note}" for r in fails)
        out.append("")
    if bar_rows:
        out.append("### The bar\n")
        out.append(bar.bar_markdown(bar_rows))
        out.append("")
    print("\n".join(out))

    if args.json:
        record = {
            "results": [r.__dict__ for r in results],
            "bar": bar_rows,
            "fitted": {k: v for p in problems for k, v in p.extras.get("fitted", {}).items()},
        }
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1, default=str)
    if args.plot:
        plot(results, [p.name for p in problems], args.plot)
    return 0


def plot(results: list[Result], problems: list[str], prefix: str) -> None:
    """Error vs NFE per problem (best grid per sampler; hwaksan solid, peers dashed)."""
    from hwaksan.plotting import plot_metric_vs_nfe

    for problem in problems:
        best = best_by([r for r in results if r.problem == problem], "err")
        curves: dict[str, list[tuple[int, float]]] = {}
        dashed = []
        for (_, fam, name, _), r in best.items():
            label = name if fam == "hwaksan" else f"{fam}:{name}"
            if fam != "hwaksan":
                dashed.append(label)
            if r.err is not None and math.isfinite(r.err):
                curves.setdefault(label, []).append((r.nfe, r.err))
        curves = dict(sorted(curves.items(), key=lambda kv: (kv[0] in dashed, kv[0])))
        path = f"{prefix}-{problem.replace('/', '-')}.png"
        plot_metric_vs_nfe(
            curves,
            path,
            "mean L2 error vs PF-ODE reference",
            dashed,
            title=problem,
            legend_outside=True,
            highlight=(FIT_SAMPLER,),
        )
        print(f"# wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    raise SystemExit(main())
