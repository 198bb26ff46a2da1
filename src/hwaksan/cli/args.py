"""The argument groups the ``hwaksan`` sub-commands share, each written once.

- sampling: ``--sampler``, ``--steps``, ``--grid`` (a grid name, or a grid / plan file of
  ``hwaksan plan-steps --out``), ``--options`` (sampler options as JSON), ``--plan`` (:class:`PlanAction`);
- ``--seed``, ``--n``; ``--class`` / ``--uncond``; ``--ema`` / ``--no-ema``; ``--device``;
- guidance (classifier-free and classifier guidance) and text prompts, for ``hwaksan sample``;
- ``--overwrite`` (:func:`add_overwrite_argument`), for every command that writes files.

Parsers of values (:func:`int_in`, :func:`float_in`, :func:`png_path`, :func:`grid_argument`,
:func:`sampler_options`, :func:`csv_of`) raise ``argparse.ArgumentTypeError``, so argparse reports a
bad value in one line (exit status 2); every numeric option is parsed by one of them, so NaN, infinity
and values out of range never reach a command. :func:`check_namespace` checks what needs several
options at once (the ``--options`` keys against the chosen sampler's).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..samplers import GRIDS, SAMPLERS
from ..samplers.multistep import sample_dpmpp_2m_sde, sample_dpmpp_3m_sde, sample_dpmpp_sde
from ..samplers.planfile import load_grid, load_plan

__all__ = [
    "MAX_COUNT",
    "MAX_STEPS",
    "MAX_SEED",
    "int_in",
    "float_in",
    "png_path",
    "json_path",
    "sampler_option_names",
    "check_sampler_options",
    "check_namespace",
    "add_overwrite_argument",
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

MAX_COUNT = 10_000_000
"""The largest count (``--n``, ``--pairs``, batch sizes) a command accepts."""
MAX_STEPS = 100_000
"""The largest number of sampler or training steps a sampling option accepts."""
MAX_SEED = 2**62
"""Seeds are in ``0 .. MAX_SEED`` (result ``i`` uses ``seed + i``, which must stay a valid seed)."""


# ------------------------------------------------------------------------------------------------
# value parsers


def int_in(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """A parser of whole numbers in ``lo .. hi`` (``hi`` None: no upper bound)."""

    def parse(value: str) -> int:
        try:
            number = int(value.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
        if number < lo or (hi is not None and number > hi):
            span = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            raise argparse.ArgumentTypeError(f"{number} is out of range: give a whole number {span}")
        return number

    parse.__name__ = "int"
    return parse


def float_in(
    lo: float | None = None, hi: float | None = None, *, above: bool = False, below: bool = False
) -> Callable[[str], float]:
    """A parser of finite numbers in ``[lo, hi]`` (``above`` / ``below``: the bound itself excluded;
    None: no bound). NaN and infinity are refused."""

    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
        low_ok = lo is None or (number > lo if above else number >= lo)
        high_ok = hi is None or (number < hi if below else number <= hi)
        if not math.isfinite(number) or not (low_ok and high_ok):
            raise argparse.ArgumentTypeError(f"{value!r} is out of range: give a finite number {_span()}")
        return number

    def _span() -> str:
        left = "" if lo is None else f"{'>' if above else '>='} {lo:g}"
        right = "" if hi is None else f"{'<' if below else '<='} {hi:g}"
        return " and ".join(part for part in (left, right) if part)

    parse.__name__ = "float"
    return parse


def _file_of(suffix: str, kind: str) -> Callable[[str], str]:
    """A parser of output file names ending in ``suffix``."""

    def parse(value: str) -> str:
        path = Path(value)
        if path.suffix.lower() != suffix or path.name.startswith(".") or path.name == suffix:
            raise argparse.ArgumentTypeError(f"{value!r}: give a {kind} file name, e.g. out{suffix}")
        return value

    parse.__name__ = kind
    return parse


png_path = _file_of(".png", "PNG")
"""An output PNG: a file name ending in ``.png``."""
json_path = _file_of(".json", "JSON")
"""An output JSON file: a file name ending in ``.json``."""


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
    """``--grid``: a grid name, or a JSON file with a list ``"ts"`` of strictly decreasing times in
    [0, 1] (from ``hwaksan plan-steps --out``; :func:`~hwaksan.samplers.planfile.load_grid`),
    returned as a float64 tensor."""
    if value in GRIDS:
        return value
    if Path(value).suffix != ".json":
        raise argparse.ArgumentTypeError(f"{value!r}: choose one of {', '.join(GRIDS)} or give a FILE.json")
    try:
        return load_grid(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def csv_of(kind: Callable[[str], Any]) -> Callable[[str], tuple]:
    """A parser of comma-separated lists of ``kind`` (``"a,b"`` -> ``("a", "b")``)."""

    def parse(value: str) -> tuple:
        try:
            return tuple(kind(v.strip()) for v in value.split(",") if v.strip())
        except (ValueError, argparse.ArgumentTypeError) as err:
            raise argparse.ArgumentTypeError(f"{value!r}: a comma-separated list ({err})") from None

    return parse


# a sampler that forwards ``**kw`` to another: the options of both, less those it sets itself
_FORWARDS: dict[Callable, tuple[Callable, frozenset[str]]] = {
    sample_dpmpp_2m_sde: (sample_dpmpp_sde, frozenset({"order"})),
    sample_dpmpp_3m_sde: (sample_dpmpp_sde, frozenset({"order"})),
}
_NOT_OPTIONS = frozenset({"cond", "generator", "callback"})


def _keyword_defaults(fn: Callable) -> dict[str, Any] | None:
    """The keyword-only parameters of ``fn`` and their defaults (None: it takes any keyword)."""
    params = inspect.signature(fn).parameters.values()
    names = {p.name: p.default for p in params if p.kind == p.KEYWORD_ONLY and p.name not in _NOT_OPTIONS}
    if any(p.kind == p.VAR_KEYWORD for p in params):
        if fn not in _FORWARDS:
            return None
        target, fixed = _FORWARDS[fn]
        inner = _keyword_defaults(target)
        if inner is None:
            return None
        names = {**{k: v for k, v in inner.items() if k not in fixed}, **names}
    return names


def sampler_option_names(sampler: str) -> dict[str, Any] | None:
    """The options sampler ``sampler`` accepts and their defaults (None: any; unknown sampler: {})."""
    spec = SAMPLERS.get(sampler)
    return _keyword_defaults(spec.fn) if spec is not None else {}


def _check_option_value(key: str, value: Any, default: Any) -> None:
    """One sampler option against its default's type: numbers finite (infinity only where the
    default is infinite) and not negative, flags true / false, names strings."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise argparse.ArgumentTypeError(f"option {key!r} is true or false, not {value!r}")
    elif isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise argparse.ArgumentTypeError(f"option {key!r} is a number, not {value!r}")
        if isinstance(default, int) and not isinstance(value, int):
            raise argparse.ArgumentTypeError(f"option {key!r} is a whole number, not {value!r}")
        if math.isnan(value) or (math.isinf(value) and not math.isinf(default)) or value < 0:
            raise argparse.ArgumentTypeError(f"option {key!r} must be a finite number >= 0, not {value!r}")
        if isinstance(default, int) and value > 1000:
            raise argparse.ArgumentTypeError(f"option {key!r} must be at most 1000, not {value!r}")
    elif isinstance(default, str) and not isinstance(value, str):
        raise argparse.ArgumentTypeError(f"option {key!r} is a name, not {value!r}")


def check_sampler_options(sampler: str, options: dict[str, Any]) -> None:
    """Check ``--options`` against what sampler ``sampler`` accepts (names and value types).

    Raises:
        argparse.ArgumentTypeError: an unknown option (the message names the accepted ones) or a
            value of the wrong type, NaN, infinite or negative.
    """
    accepted = sampler_option_names(sampler)
    if accepted is None:
        return
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        allowed = ", ".join(sorted(accepted)) if accepted else "none"
        raise argparse.ArgumentTypeError(
            f"sampler {sampler!r} has no option {', '.join(map(repr, unknown))}; its options: {allowed} "
            "(see hwaksan samplers)"
        )
    defaults = {**accepted, **SAMPLERS[sampler].defaults}
    for key, value in options.items():
        _check_option_value(key, value, defaults[key])


def check_namespace(args: argparse.Namespace) -> None:
    """The checks that need several options at once, run after parsing and before any work.

    Raises:
        argparse.ArgumentTypeError: a usage error (one line).
    """
    sampler, options = getattr(args, "sampler", None), getattr(args, "options", None)
    if isinstance(sampler, str) and isinstance(options, dict):
        check_sampler_options(sampler, options)
    interval = getattr(args, "guidance_interval", None)
    if interval and interval[0] > interval[1]:
        raise argparse.ArgumentTypeError("--guidance-interval LO HI needs LO <= HI")


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
    p.add_argument(
        "--steps",
        type=int_in(1, MAX_STEPS),
        default=steps,
        help=steps_help or f"sampler steps (default: {steps})",
    )
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
    p.add_argument("--seed", type=int_in(0, MAX_SEED), default=default, help=help)


def add_n_argument(p: argparse.ArgumentParser, default: int | None, help: str) -> None:
    """``--n``: how many results (1 .. :data:`MAX_COUNT`)."""
    p.add_argument("--n", type=int_in(1, MAX_COUNT), default=default, help=help)


def add_overwrite_argument(p: argparse.ArgumentParser) -> None:
    """``--overwrite``: replace existing files hwaksan did not write, inputs included (without it a
    command refuses them in one line; see :mod:`hwaksan.io.outputs`)."""
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing output files even if hwaksan did not write them or they are inputs "
        "(default: refuse; files a previous hwaksan run wrote and nobody changed are replaced)",
    )


def add_class_arguments(
    p: argparse.ArgumentParser,
    help: str,
    *,
    aliases: Sequence[str] = ("--class",),
    uncond: bool = False,
) -> None:
    """``--class K`` (``dest="label"``; more spellings in ``aliases``) and, with ``uncond``, ``--uncond``."""
    p.add_argument(*aliases, dest="label", metavar="K", type=int_in(0), default=None, help=help)
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
        type=int_in(0),
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


GUIDANCE_WEIGHT = float_in(0.0, 100.0)
"""The parser of a classifier-free guidance weight ``--guidance W``: finite, in [0, 100]."""


def add_cfg_weight_argument(
    p: argparse.ArgumentParser | argparse._ArgumentGroup, default: float, help: str
) -> None:
    """``--guidance W``: one classifier-free guidance weight ``uncond + W (cond - uncond)``."""
    p.add_argument("--guidance", type=GUIDANCE_WEIGHT, default=default, metavar="W", help=help)


def repaint_summary(args: argparse.Namespace) -> str:
    """``RePaint with SAMPLER on N GRID steps, jump J, R resampling(s)[, reconstruction guidance W]``."""
    text = (
        f"RePaint with {args.sampler} on {args.steps} {args.grid} steps, jump {args.jump}, "
        f"{args.resample} resampling(s)"
    )
    return text + (f", reconstruction guidance {args.reconstruction:g}" if args.reconstruction else "")


def add_repaint_arguments(p: argparse.ArgumentParser, resample: int) -> None:
    """``--jump``, ``--resample`` (default ``resample``) and ``--reconstruction`` of RePaint
    (:func:`hwaksan.tasks.inpaint`)."""
    p.add_argument("--jump", type=int_in(1, MAX_STEPS), default=10, help="RePaint jump length j (default 10)")
    p.add_argument(
        "--resample",
        type=int_in(1, 1000),
        default=resample,
        help=f"RePaint resamplings n (1 = plain replacement; default {resample})",
    )
    p.add_argument(
        "--reconstruction",
        type=float_in(0.0, 1000.0),
        default=0.0,
        metavar="W",
        help="reconstruction guidance weight w (Ho et al. 2022, eq. 7): pulls the filled region towards "
        "agreement with the kept one at the cost of a backward pass per step (default 0: none)",
    )


def add_guidance_arguments(p: argparse.ArgumentParser) -> None:
    """Classifier-free guidance and classifier guidance options (``hwaksan sample``)."""
    g = p.add_argument_group(
        "guidance",
        "classifier-free guidance D_u + w (D_c - D_u) (w = 1 off) and classifier guidance "
        "eps - s sigma grad log p(y | x_t) (s = 0 off); see docs/guidance.md",
    )
    g.add_argument(
        "--guidance",
        type=GUIDANCE_WEIGHT,
        default=1.0,
        metavar="W",
        help="classifier-free guidance weight w in [0, 100] (default 1: the conditional model; "
        "0: unconditional)",
    )
    g.add_argument(
        "--negative-class",
        type=int_in(0),
        default=None,
        metavar="K",
        help="guide away from class K: it replaces the null class in the reference branch",
    )
    g.add_argument(
        "--guidance-rescale",
        type=float_in(0.0, 1.0),
        default=0.0,
        metavar="PHI",
        help="guidance rescale phi (Lin et al. 2024, eq. 15-16) on the x0 prediction (default 0: off; "
        "the paper uses 0.7)",
    )
    g.add_argument(
        "--guidance-interval",
        type=float_in(0.0),
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
        type=float_in(0.0, 1000.0),
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
