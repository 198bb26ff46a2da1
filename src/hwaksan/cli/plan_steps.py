"""``hwaksan plan-steps``: the time grid (and with ``--fit`` the solver coefficients) that minimise a
sampler's error for a step budget, for a checkpoint (2-D, pixel or latent: planned in its data
space) or the benchmark's Gaussian-mixture oracle.

::

    hwaksan plan-steps runs/digits --sampler unipc --steps 8 --out plan.json
    hwaksan plan-steps --oracle 2d --fit --steps 6 --out fitted.json
    hwaksan sample runs/digits --plan plan.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from ..oracles import GaussianMixtureDenoiser, anisotropic_mixture
from ..processes import PROCESSES, make_process
from ..samplers import SAMPLERS
from ..samplers.fit import fit_solver
from ..samplers.plan import calibration_set, plan_steps
from ..samplers.planfile import save_plan
from .args import MAX_COUNT, MAX_SEED, add_overwrite_argument, int_in, json_path
from .common import UserError, check_outputs, load_model, one_line, record_outputs

__all__ = ["register", "cmd_plan_steps", "plannable"]


def plannable() -> list[str]:
    """The deterministic fixed-step samplers a grid can be planned for."""
    return [k for k, v in SAMPLERS.items() if not v.stochastic and v.nfe is not None]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``hwaksan plan-steps``."""
    p = sub.add_parser(
        "plan-steps",
        help="choose the time grid that minimises a sampler's error for a step budget",
        description="Optimise the interior noise levels of an N-step grid for one sampler: the error "
        "proxy is the sampler's end-point distance to a float64 PF-ODE solution from the same noise on a "
        "calibration batch. Prints the grid and its estimated error; --out writes it for hwaksan sample.",
    )
    p.add_argument("checkpoint", nargs="?", default=None, help="a checkpoint or run folder of hwaksan train")
    p.add_argument(
        "--oracle",
        choices=("2d", "64d"),
        default=None,
        help="plan for the exact denoiser of the benchmark's Gaussian mixture instead of a checkpoint",
    )
    p.add_argument("--process", default="edm", choices=PROCESSES, help="process of --oracle (default edm)")
    p.add_argument(
        "--sampler",
        default="unipc",
        choices=plannable(),
        help="deterministic sampler to plan for (default unipc)",
    )
    p.add_argument("--steps", type=int_in(1, 1000), default=8, help="grid steps, 1..1000 (default 8)")
    p.add_argument(
        "--n",
        type=int_in(1, MAX_COUNT),
        default=None,
        help="calibration samples (default 64; 512 with --fit)",
    )
    p.add_argument(
        "--max-evals",
        type=int_in(1, 1_000_000),
        default=200,
        help="sampler runs the search may spend (default 200)",
    )
    p.add_argument("--seed", type=int_in(0, MAX_SEED), default=0, help="seed of the calibration noise")
    p.add_argument(
        "--out",
        default=None,
        type=json_path,
        help="write the plan as JSON, for hwaksan sample --plan FILE (or --grid FILE)",
    )
    add_overwrite_argument(p)
    p.add_argument(
        "--fit",
        action="store_true",
        help="also fit the solver's coefficients (sampler 'fitted': a predictor-corrector exponential "
        "integrator whose per-step weights and grid are fitted by gradient through the sampler on the "
        "calibration batch, a quarter of it held out; --sampler is then ignored)",
    )
    p.add_argument(
        "--iterations", type=int_in(1, 1_000_000), default=150, help="Adam iterations of --fit (default 150)"
    )
    p.set_defaults(func=cmd_plan_steps)


def _denoiser(args: argparse.Namespace) -> tuple[Any, tuple[int, ...], str]:
    """``(data-space denoiser, data shape, what it is)`` of the checkpoint or the oracle."""
    if (args.checkpoint is None) == (args.oracle is None):
        raise UserError("give a CHECKPOINT or --oracle 2d|64d (one of them)")
    if args.oracle is not None:
        dim = int(args.oracle.removesuffix("d"))
        denoiser = GaussianMixtureDenoiser(anisotropic_mixture(dim), make_process(args.process))
        return denoiser, (dim,), f"oracle {args.oracle} / {args.process}"
    model = load_model(args.checkpoint, "hwaksan plan-steps")
    return model.denoiser, model.data_shape, args.checkpoint


def _print_grid(ts: torch.Tensor, process: Any) -> None:
    print(f"  {'i':>3s} {'t':>12s} {'sigma~':>12s}")
    for i, t in enumerate(ts.tolist()):
        sig = float(process.sigma_tilde(t)) if t > 0 else 0.0
        print(f"  {i:3d} {t:12.6f} {sig:12.5g}")


def cmd_plan_steps(args: argparse.Namespace) -> int:
    """Run ``hwaksan plan-steps``; returns the exit status."""
    if args.out:
        check_outputs([args.out], overwrite=args.overwrite, inputs=[args.checkpoint])
    denoiser, shape, source = _denoiser(args)
    spec = SAMPLERS[args.sampler]
    if spec.stochastic or spec.nfe is None:
        raise UserError(
            f"{args.sampler!r} is stochastic or adaptive; plan a deterministic fixed-step sampler: "
            f"{', '.join(plannable())}"
        )
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(args.seed)
    if args.fit:
        return _fit(args, denoiser, shape, source, gen, start)
    n = args.n or 64
    with torch.no_grad():
        calib = calibration_set(denoiser, n, gen, shape=shape)
        plan = plan_steps(
            denoiser, args.steps, sampler=args.sampler, calibration=calib, max_evals=args.max_evals
        )
    nfe = spec.nfe(plan.ts, denoiser.process, dict(spec.defaults))
    print(f"hwaksan plan-steps: {args.sampler}, {args.steps} steps ({nfe} NFE) for {source}")
    _print_grid(plan.ts, denoiser.process)
    print(
        f"  estimated error (mean L2 to the PF-ODE end point, {n} calibration samples): "
        f"{plan.error:.4g}; {plan.initial} grid: {plan.initial_error:.4g} "
        f"({plan.evaluations} sampler runs, {time.perf_counter() - start:.1f} s)"
    )
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "ts": plan.ts.tolist(),
            "sigmas": plan.sigmas.tolist(),
            "sampler": args.sampler,
            "steps": args.steps,
            "nfe": nfe,
            "error": plan.error,
            "initial": plan.initial,
            "initial_error": plan.initial_error,
            "source": source,
            "options": {},
        }
        with one_line("cannot write the plan"):
            out.write_text(json.dumps(record, indent=2))
        record_outputs(out)
        print(
            f"outputs:\n  grid {out} (use it with: hwaksan sample ... --sampler {args.sampler} --grid {out})"
        )
    return 0


def _fit(
    args: argparse.Namespace,
    denoiser: Any,
    shape: tuple[int, ...],
    source: str,
    gen: torch.Generator,
    start: float,
) -> int:
    """``--fit``: fit the grid and the coefficients of the sampler ``fitted``
    (:mod:`hwaksan.samplers.fit`), print them, write the plan file with ``--out``."""
    n = args.n or 512
    if n < 4:
        raise UserError("--fit needs --n 4 or more (a quarter is held out)")
    with torch.no_grad():
        calib = calibration_set(denoiser, n, gen, shape=shape)
    plan = fit_solver(
        denoiser,
        args.steps,
        calibration=calib,
        iterations=args.iterations,
        plan_evals=args.max_evals,
        progress=True,
    )
    print(f"hwaksan plan-steps --fit: fitted solver, {args.steps} steps ({args.steps} NFE) for {source}")
    print(f"  start: {plan.start}")
    _print_grid(plan.ts, denoiser.process)
    n_val = max(1, round(0.25 * n))
    print(
        f"  estimated error (mean L2 to the PF-ODE end point on {n_val} held-out calibration samples): "
        f"{plan.error:.4g}; before fitting: {plan.initial_error:.4g} "
        f"({plan.iterations} iterations, {time.perf_counter() - start:.1f} s)"
    )
    if args.out:
        with one_line("cannot write the plan"):
            out = save_plan(
                args.out,
                "fitted",
                plan.ts,
                plan.options,
                steps=args.steps,
                nfe=args.steps,
                error=plan.error,
                initial_error=plan.initial_error,
                start=plan.start,
                source=source,
                calibration_samples=n,
            )
        record_outputs(out)
        print(f"outputs:\n  plan {out} (use it with: hwaksan sample CHECKPOINT --plan {out})")
    return 0
