"""``hwaksan plan-steps --fit``: fit a solver's grid and coefficients for a checkpoint or the oracle.

Not a sub-command of its own: :mod:`hwaksan.cli`'s ``plan-steps`` calls :func:`add_fit_arguments`
for its options and :func:`fit_plan_command` when ``--fit`` is given. The fitted solver is the
sampler ``fitted`` (:mod:`hwaksan.samplers.fitted`); the plan file it writes drives
``hwaksan sample CHECKPOINT --plan FILE``.
"""

from __future__ import annotations

import argparse
import time

import torch

__all__ = ["add_fit_arguments", "fit_plan_command"]


def add_fit_arguments(p: argparse.ArgumentParser) -> None:
    """``--fit`` and ``--iterations`` of ``hwaksan plan-steps``."""
    p.add_argument(
        "--fit",
        action="store_true",
        help="also fit the solver's coefficients (sampler 'fitted': a predictor-corrector exponential "
        "integrator whose per-step weights and grid are fitted by gradient through the sampler on the "
        "calibration batch, a quarter of it held out; --sampler is then ignored)",
    )
    p.add_argument("--iterations", type=int, default=150, help="Adam iterations of --fit (default 150)")


def fit_plan_command(args, denoiser, shape, source: str, gen: torch.Generator, start: float) -> int:
    """Fit, print the grid and the held-out error, write the plan file with ``--out``."""
    from ..samplers.fit import fit_solver
    from ..samplers.plan import calibration_set
    from ..samplers.planfile import save_plan

    n = args.n or 512
    if n < 4:
        print("hwaksan plan-steps: error: --fit needs --n 4 or more (a quarter is held out)")
        return 1
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
    print(f"  {'i':>3s} {'t':>12s} {'sigma~':>12s}")
    for i, t in enumerate(plan.ts.tolist()):
        sig = float(denoiser.process.sigma_tilde(t)) if t > 0 else 0.0
        print(f"  {i:3d} {t:12.6f} {sig:12.5g}")
    n_val = max(1, round(0.25 * n))
    print(
        f"  estimated error (mean L2 to the PF-ODE end point on {n_val} held-out calibration samples): "
        f"{plan.error:.4g}; before fitting: {plan.initial_error:.4g} "
        f"({plan.iterations} iterations, {time.perf_counter() - start:.1f} s)"
    )
    if args.out:
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
        print(f"outputs:\n  plan {out} (use it with: hwaksan sample CHECKPOINT --plan {out})")
    return 0
