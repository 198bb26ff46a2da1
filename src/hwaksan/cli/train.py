"""``hwaksan train``: 2-D toy data (``--data NAME``) or images (``--config FILE``).

::

    hwaksan train --data moons --train-steps 3000 --out runs/moons [--set train.seed=1 ...] [--resume]
    hwaksan train --config configs/digits.toml [--set train.steps=500 ...] [--out DIR] [--resume]
    torchrun --nproc_per_node 2 -m hwaksan.cli train --config configs/digits.toml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data.images import DatasetUnavailable
from ..data.toy import TOY_DATASETS
from ..io.checkpoint import CheckpointError
from ..io.outputs import OutputError
from ..io.runlock import RunLockedError
from ..processes import COUPLINGS, PROCESSES
from ..training.config import ConfigError, load_config
from ..training.distributed import cleanup
from ..training.lowdim import SET_KEYS, LowdimConfig, LowdimResult, train_lowdim
from ..training.optim import NonFiniteLossError
from ..training.trainer import Trainer
from .common import UserError

__all__ = [
    "register",
    "add_lowdim_arguments",
    "lowdim_config",
    "train_from_args",
    "interrupted",
    "final_loss",
    "run_train",
]


def add_lowdim_arguments(p: argparse.ArgumentParser, steps: int) -> None:
    """The options of 2-D training (``hwaksan train`` without ``--config``, ``hwaksan demo``)."""
    p.add_argument("--data", default="8gaussians", choices=TOY_DATASETS, help="2-D data set")
    p.add_argument(
        "--process",
        default="ddpm-linear",
        choices=PROCESSES,
        help="forward process (default ddpm-linear, Ho et al. 2020; see docs/conventions.md)",
    )
    p.add_argument(
        "--prediction",
        default="v",
        choices=("eps", "x0", "v", "velocity", "edm"),
        help="what the network predicts",
    )
    p.add_argument(
        "--weighting",
        default="simple",
        help="loss weighting: simple (the prediction's own MSE), eps, x0, v, velocity, min_snr, edm",
    )
    p.add_argument("--train-steps", type=int, default=steps, help="optimisation steps")
    p.add_argument("--batch-size", type=int, default=512, help="training batch size")
    p.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate")
    p.add_argument("--width", type=int, default=256, help="MLP hidden width")
    p.add_argument("--depth", type=int, default=3, help="number of MLP residual blocks")
    p.add_argument("--seed", type=int, default=0, help="random seed (training and sampling)")


def _add_flow_arguments(p: argparse.ArgumentParser) -> None:
    """``--coupling`` and ``--source`` of 2-D training."""
    p.add_argument(
        "--coupling",
        default="independent",
        choices=COUPLINGS,
        help="pairing of noise and data in each batch (default independent): ot = exact minibatch optimal "
        "transport (OT-CFM, Tong et al. 2024), sinkhorn = entropic minibatch OT",
    )
    p.add_argument(
        "--source",
        default="gaussian",
        choices=("gaussian", *TOY_DATASETS),
        help="distribution at t = 1 (default gaussian = N(0, I)); a 2-D set gives a flow between two data "
        "sets, e.g. --source 8gaussians --data moons (needs --process flow --prediction velocity; sample "
        "it with deterministic samplers only)",
    )


def _add_config_arguments(p: argparse.ArgumentParser) -> None:
    """``--config``, ``--set``, ``--out``, ``--resume``, ``--no-progress``."""
    p.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="experiment config in TOML (e.g. configs/digits.toml) or a run's config.json; "
        "missing keys take their defaults; without it, train an MLP on 2-D toy data",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, e.g. --set train.steps=500 --set optim.lr=1e-3 "
        "--set model.args.model_channels=32 (repeatable; values are TOML: 3, 1e-4, true, [0.9, 0.99]); "
        f"2-D training takes {', '.join(SET_KEYS)}",
    )
    p.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="output folder for checkpoints, samples, metrics and plots (default: runs/CONFIG_NAME, "
        "or runs/toy for 2-D data)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest checkpoint in --out; bit-identical to an uninterrupted run "
        "(the config must match the checkpoint's, except logging and sampling keys)",
    )
    add_run_arguments(p)


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """``--overwrite`` and ``--no-progress`` (``hwaksan train``, ``hwaksan demo``)."""
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace outputs in --out that hwaksan did not write; 2-D training (and demo) also starts "
        "over in an --out that already holds a run, replacing its model and checkpoints",
    )
    p.add_argument("--no-progress", action="store_true", help="do not show the progress bar")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``hwaksan train``."""
    p = sub.add_parser(
        "train",
        help="train a model: 2-D toy data (--data ...) or images (--config configs/NAME.toml)",
        description="Without --config: train an MLP denoiser on 2-D toy data (options below). With "
        "--config: the image trainer (U-Net / DiT / MoE-DiT), configured by the TOML file and --set; "
        "under torchrun it trains data-parallel with no change.",
    )
    _add_config_arguments(p)
    add_lowdim_arguments(p, steps=3000)
    _add_flow_arguments(p)
    p.set_defaults(func=cmd_train)


def lowdim_config(args: argparse.Namespace) -> LowdimConfig:
    """The 2-D run of the options of :func:`add_lowdim_arguments` and ``--set``.

    Raises:
        UserError: a value out of range, or a ``--set`` key 2-D training does not take (one line).
    """
    try:
        config = LowdimConfig(
            data=args.data,
            source=getattr(args, "source", None) or "gaussian",
            process=args.process,
            prediction=args.prediction,
            weighting=args.weighting,
            coupling=getattr(args, "coupling", None) or "independent",
            width=args.width,
            depth=args.depth,
            lr=args.lr,
            steps=args.train_steps,
            batch_size=args.batch_size,
            seed=args.seed,
        )
        return config.with_overrides(getattr(args, "overrides", None) or [])
    except ValueError as err:  # ConfigError too
        raise UserError(str(err)) from None


def train_from_args(
    args: argparse.Namespace,
    out: Path,
    progress: bool = True,
    *,
    resume: bool | None = False,
    overwrite: bool = False,
) -> LowdimResult:
    """:func:`~hwaksan.training.lowdim.train_lowdim` with the options of :func:`add_lowdim_arguments`
    (and ``--set``).

    Raises:
        UserError: bad settings, an --out that may not be written or is in use, nothing to resume,
            a checkpoint that cannot be written (each one line).
        TrainingInterrupted: Ctrl-C (report it with :func:`interrupted`).
        NonFiniteLossError: the training diverged.
    """
    config = lowdim_config(args)
    try:
        return train_lowdim(out, config, resume=resume, overwrite=overwrite, progress=progress)
    except (OutputError, RunLockedError, CheckpointError) as err:
        raise UserError(str(err)) from None


def interrupted(command: str, err: KeyboardInterrupt, how: str) -> int:
    """Report Ctrl-C during 2-D training in one line (``how``: the command that resumes); 130.
    A :class:`TrainingInterrupted` names the checkpoint it kept."""
    checkpoint = getattr(err, "checkpoint", None)
    where = f"the checkpoint {checkpoint} is kept" if checkpoint else "the newest checkpoint is kept"
    print(f"hwaksan {command}: interrupted; {where}; continue with: {how}", file=sys.stderr)
    return 130


def final_loss(losses: list[float], last: int = 100) -> tuple[float, int]:
    """The mean of the last ``min(last, len(losses))`` losses and how many it averaged."""
    tail = losses[-last:]
    return (sum(tail) / len(tail) if tail else float("nan")), len(tail)


def cmd_train(args: argparse.Namespace) -> int:
    """Run ``hwaksan train``; returns the exit status."""
    if args.config is not None:
        return run_train(args)
    out = Path(args.out or "runs/toy")
    try:
        result = train_from_args(
            args, out, progress=not args.no_progress, resume=args.resume, overwrite=args.overwrite
        )
    except KeyboardInterrupt as err:
        return interrupted("train", err, f"the same command with --resume (--out {out})")
    except NonFiniteLossError as err:
        raise UserError(str(err)) from None
    loss, n = final_loss(result.losses)
    what = (
        f"resumed '{args.data}' at step {result.resumed_from}"
        if result.resumed_from
        else f"trained '{args.data}'"
    )
    print(f"{what}; {result.seconds:.1f} s; final loss {loss:.4f} (mean of the last {n} steps)")
    print(f"outputs:\n  checkpoint {result.checkpoint}\n  loss curve {out / 'loss.png'}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    """``hwaksan train --config``: the image trainer; returns the exit status."""
    trainer = None
    try:
        config = load_config(args.config, args.overrides)
        out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
        trainer = Trainer(config, out, progress=not args.no_progress, overwrite=args.overwrite)
        trainer.run(resume=args.resume)
    except (
        ConfigError,
        CheckpointError,
        NonFiniteLossError,
        DatasetUnavailable,
        OutputError,
        RunLockedError,
    ) as err:
        print(f"hwaksan train: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        where = args.out or f"runs/{Path(args.config).stem}"
        print(
            f"hwaksan train: interrupted; continue from the last checkpoint with --resume --out {where}",
            file=sys.stderr,
        )
        return 130
    finally:
        if trainer is not None:
            cleanup(trainer.dist)
    return 0
