"""The argument groups the ``hwaksan`` sub-commands share, each written once.

- sampling: ``--sampler``, ``--steps``, ``--grid`` (a grid name, or a grid / plan file of
  ``hwaksan plan-steps --out``), ``--options`` (sampler options as JSON), ``--plan`` (:class:`PlanAction`);
- ``--seed``, ``--n``; ``--class`` / ``--uncond``; ``--ema`` / ``--no-ema``; ``--device``;
- guidance (classifier-free and classifier guidance) and text prompts, for ``hwaksan sample``.

Parsers of values (:func:`grid_argument`, :func:`sampler_options`, :func:`csv_of`) raise
``argparse.ArgumentTypeError``, so argparse reports a bad value in one line.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..samplers import GRIDS, SAMPLERS
from ..samplers.planfile import load_plan

__all__ = [
    "sampler_options",
    "grid_argument",
    "csv_of",
    "PlanAction",
    "add_sampler_arguments",
    "add_seed_argument",
    "add_n_argument",
    "add_class_arguments",
    "add_ema_arguments",
    "ema_index",
    "add_device_argument",
    "pick_device",
    "add_guidance_arguments",
    "add_prompt_arguments",
]

GRID_METAVAR = "{" + ",".join(GRIDS) + "} or FILE.json"


# ------------------------------------------------------------------------------------------------
# value parsers


def sampler_options(value: str) -> dict[str, Any]:
    """``--options``: a JSON object of keyword arguments for the sampler."""
    try:
        options = json.loads(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON: {err}") from None
    if not isinstance(options, dict):
        raise argparse.ArgumentTypeError("give a JSON object, e.g. '{\"eta\": 1.0}'")
    return options


def grid_argument(value: str) -> str | torch.Tensor:
    """``--grid``: a grid name, or a JSON file with a list ``"ts"`` of decreasing times (from
    ``hwaksan plan-steps --out``), returned as a float64 tensor."""
    if value in GRIDS:
        return value
    path = Path(value)
    if path.suffix != ".json":
        raise argparse.ArgumentTypeError(f"{value!r}: choose one of {', '.join(GRIDS)} or give a FILE.json")
    try:
        ts = json.loads(path.read_text())["ts"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise argparse.ArgumentTypeError(f"{value}: not a grid file with a list 'ts' ({err})") from None
    return torch.tensor(ts, dtype=torch.float64)


def csv_of(kind: Callable[[str], Any]) -> Callable[[str], tuple]:
    """A parser of comma-separated lists of ``kind`` (``"a,b"`` -> ``("a", "b")``)."""

    def parse(value: str) -> tuple:
        try:
            return tuple(kind(v.strip()) for v in value.split(",") if v.strip())
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"{value!r}: a comma-separated list ({err})") from None

    return parse


class PlanAction(argparse.Action):
    """``--plan FILE``: set ``sampler``, ``grid``, ``steps`` and ``options`` from a plan file of
    ``hwaksan plan-steps --out`` (:func:`hwaksan.samplers.planfile.load_plan`); options given after
    ``--plan`` on the command line override it."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        try:
            plan = load_plan(values)
        except ValueError as err:
            parser.error(str(err))
        namespace.plan = values
        namespace.sampler = plan["sampler"]
        namespace.grid = plan["ts"]
        namespace.steps = len(plan["ts"]) - 1
        namespace.options = {**(getattr(namespace, "options", None) or {}), **plan["options"]}


# ------------------------------------------------------------------------------------------------
# groups


def add_sampler_arguments(
    p: argparse.ArgumentParser,
    *,
    sampler: str = "heun",
    steps: int = 18,
    grid: str | None = "karras",
    grid_files: bool = True,
    sampler_choices: Sequence[str] | None = tuple(SAMPLERS),
    plan: bool = False,
    sampler_help: str | None = None,
    steps_help: str | None = None,
    grid_help: str | None = None,
    options_help: str | None = None,
) -> None:
    """``--sampler``, ``--steps``, ``--grid``, ``--options`` (and ``--plan`` with ``plan``).

    Args:
        p: the sub-command's parser.
        sampler, steps, grid: the defaults.
        grid_files: ``--grid`` also takes a grid file of ``hwaksan plan-steps --out`` (a float64
            tensor); otherwise grid names only.
        sampler_choices: the accepted samplers (None: any name, checked by the sampler).
        plan: add ``--plan FILE.json``.
        sampler_help, steps_help, grid_help, options_help: help texts (defaults name the defaults).
    """
    p.add_argument(
        "--sampler",
        default=sampler,
        choices=list(sampler_choices) if sampler_choices is not None else None,
        help=sampler_help or f"sampler (default: {sampler}); see hwaksan samplers",
    )
    p.add_argument("--steps", type=int, default=steps, help=steps_help or f"sampler steps (default: {steps})")
    if grid_files:
        p.add_argument(
            "--grid",
            default=grid,
            type=grid_argument,
            metavar=GRID_METAVAR,
            help=grid_help
            or f"time discretisation (default: {grid}), or a grid file from hwaksan plan-steps --out",
        )
    else:
        p.add_argument(
            "--grid", default=grid, choices=list(GRIDS), help=grid_help or f"time grid (default: {grid})"
        )
    p.add_argument(
        "--options",
        type=sampler_options,
        default={},
        metavar="JSON",
        help=options_help or "sampler options as a JSON object, e.g. '{\"eta\": 1.0}' (see hwaksan samplers)",
    )
    if plan:
        p.add_argument(
            "--plan",
            action=PlanAction,
            default=None,
            metavar="FILE.json",
            help="a plan file of hwaksan plan-steps --out: sets --sampler, --grid, --steps and --options "
            "(fitted solver coefficients included); options given after it override it",
        )


def add_seed_argument(
    p: argparse.ArgumentParser, help: str = "result i uses seed SEED + i (default: 0)", default: int = 0
) -> None:
    """``--seed``."""
    p.add_argument("--seed", type=int, default=default, help=help)


def add_n_argument(p: argparse.ArgumentParser, default: int | None, help: str) -> None:
    """``--n``: how many results."""
    p.add_argument("--n", type=int, default=default, help=help)


def add_class_arguments(
    p: argparse.ArgumentParser,
    help: str,
    *,
    aliases: Sequence[str] = ("--class",),
    uncond: bool = False,
) -> None:
    """``--class K`` (``dest="label"``; more spellings in ``aliases``) and, with ``uncond``, ``--uncond``."""
    p.add_argument(*aliases, dest="label", metavar="K", type=int, default=None, help=help)
    if uncond:
        p.add_argument(
            "--uncond",
            action="store_true",
            help="sample a class-conditional model without labels (null class)",
        )


def add_ema_arguments(p: argparse.ArgumentParser, what: str = "sample") -> None:
    """``--ema INDEX`` and ``--no-ema``."""
    p.add_argument(
        "--ema",
        type=int,
        default=0,
        metavar="INDEX",
        help=f"which EMA of the checkpoint to {what} (index into its ema.decays; default: 0, the first)",
    )
    p.add_argument("--no-ema", action="store_true", help=f"{what} the raw (not averaged) weights")


def ema_index(args: argparse.Namespace) -> int | None:
    """The EMA ``--ema`` / ``--no-ema`` name: an index, or None for the raw weights."""
    return None if getattr(args, "no_ema", False) else int(getattr(args, "ema", 0))


def add_device_argument(p: argparse.ArgumentParser, what: str = "run") -> None:
    """``--device auto|cpu|cuda``."""
    p.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help=f"where to {what} (default: auto)"
    )


def pick_device(name: str) -> torch.device:
    """``auto``: CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def add_guidance_arguments(p: argparse.ArgumentParser) -> None:
    """Classifier-free guidance and classifier guidance options (``hwaksan sample``)."""
    g = p.add_argument_group(
        "guidance",
        "classifier-free guidance D_u + w (D_c - D_u) (w = 1 off) and classifier guidance "
        "eps - s sigma grad log p(y | x_t) (s = 0 off); see docs/guidance.md",
    )
    g.add_argument(
        "--guidance",
        type=float,
        default=1.0,
        metavar="W",
        help="classifier-free guidance weight w (default 1: the conditional model; 0: unconditional)",
    )
    g.add_argument(
        "--negative-class",
        type=int,
        default=None,
        metavar="K",
        help="guide away from class K: it replaces the null class in the reference branch",
    )
    g.add_argument(
        "--guidance-rescale",
        type=float,
        default=0.0,
        metavar="PHI",
        help="guidance rescale phi (Lin et al. 2024, eq. 15-16) on the x0 prediction (default 0: off; "
        "the paper uses 0.7)",
    )
    g.add_argument(
        "--guidance-interval",
        type=float,
        nargs=2,
        default=None,
        metavar=("LO", "HI"),
        help="apply guidance only at noise levels LO <= sigma~ <= HI (sigma~ = sigma/alpha); elsewhere "
        "the conditional model",
    )
    g.add_argument(
        "--classifier",
        default=None,
        metavar="CKPT",
        help="classifier checkpoint of hwaksan train-classifier for classifier guidance towards --class "
        "(or class i %% K); add --uncond to guide the model's unconditional mode",
    )
    g.add_argument(
        "--classifier-scale",
        type=float,
        default=1.0,
        metavar="S",
        help="classifier guidance scale s (default 1; 0: off)",
    )


def add_prompt_arguments(p: argparse.ArgumentParser) -> None:
    """``--prompt`` and ``--negative-prompt`` of a text-conditional model (``hwaksan sample``)."""
    g = p.add_argument_group(
        "text prompts",
        'for a text-conditional checkpoint (hwaksan train with [text] encoder = "minilm"); --guidance W '
        "applies classifier-free guidance against the null caption or the negative prompt",
    )
    g.add_argument(
        "--prompt",
        action="append",
        default=None,
        metavar="TEXT",
        help="caption to generate (repeatable: image i gets prompt i %% P, one column per prompt)",
    )
    g.add_argument(
        "--negative-prompt",
        default=None,
        metavar="TEXT",
        help="caption to guide away from: it replaces the null caption in the reference branch of "
        "classifier-free guidance (needs --guidance W != 1)",
    )
