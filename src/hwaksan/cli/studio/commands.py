"""A studio request as the ``hwaksan`` command that reproduces it.

:func:`prepare_run` checks a request body's fields, writes its uploads as PNG files into the run's
folder, builds the argv of ``hwaksan sample|inpaint|edit`` and parses it with the commands' own
parsers (their ``register``), so every range, NaN refusal and ``--options`` check of the command
line applies, and the namespace the computation gets is the one the command would get. The
browser names models by id only; the only paths in the argv are the served checkpoint's and the
run folder's uploads, and free text goes in as ``--option=TEXT`` so it can never read as an option.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...samplers import GRIDS, SAMPLERS
from ...samplers.schedules import make_grid
from ...tasks import edit_grid, repaint_schedule
from .. import edit as edit_command
from .. import inpaint as inpaint_command
from .. import sample as sample_command
from ..args import check_namespace
from ..guidance import sample_conditioning
from ..images import class_labels, guidance_weight, load_image, load_mask, result_layout
from .errors import RequestError, one_line
from .limits import Limits
from .models import DEFAULTS, ServedModel
from .pictures import read_png_upload

__all__ = ["FIELDS", "OPERATIONS", "PreparedRun", "parse_body", "prepare_run", "command_parser"]

OPERATIONS = ("sample", "inpaint", "edit")

_NUMBER = (int, float)
FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "model": ((str,), "a model id"),
    "operation": ((str,), "one of " + ", ".join(OPERATIONS)),
    "sampler": ((str,), "a sampler name"),
    "steps": ((int,), "a whole number"),
    "grid": ((str,), "a grid name"),
    "seed": ((int,), "a whole number"),
    "n": ((int,), "a whole number"),
    "guidance": (_NUMBER, "a number or null"),
    "label": ((int,), "a whole number or null"),
    "uncond": ((bool,), "true or false"),
    "prompt": ((str,), "text"),
    "negative_prompt": ((str,), "text"),
    "options": ((dict,), "a JSON object"),
    "image": ((str,), "a PNG data URL"),
    "mask": ((str,), "a PNG data URL"),
    "strength": (_NUMBER, "a number"),
    "jump": ((int,), "a whole number"),
    "resample": ((int,), "a whole number"),
}
"""The fields of ``POST /api/runs``: accepted types (null is accepted for every field but
``model``) and how a refusal names them."""

_ONLY = {"image": ("inpaint", "edit"), "mask": ("inpaint",), "strength": ("edit",)}
_ONLY.update(jump=("inpaint",), resample=("inpaint",))


class _Parser(argparse.ArgumentParser):
    """A parser that raises its usage errors instead of printing them and exiting."""

    def error(self, message: str):  # type: ignore[override]
        raise RequestError(422, f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None):  # type: ignore[override]
        raise RequestError(422, f"{self.prog}: {message or 'refused'}")


def command_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The parser of ``hwaksan`` with the sub-commands ``sample``, ``inpaint`` and ``edit`` (their
    own ``register``), and the sub-commands' parsers by name (for their defaults)."""
    parser = _Parser(prog="hwaksan", add_help=False)
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (sample_command, inpaint_command, edit_command):
        module.register(sub)
    return parser, dict(sub.choices)


@dataclass
class PreparedRun:
    """A checked request, ready for a worker.

    Attributes:
        operation: ``sample``, ``inpaint`` or ``edit``.
        argv: the command's arguments after ``hwaksan``.
        args: the namespace the command's parser makes of ``argv``.
        command: the shell line that reproduces the run (``hwaksan ...``).
        total: the steps the run will report (RePaint: moves of the walk).
        nfe: the network evaluations it will take, where the sampler's registry knows, else None.
        nrow: images per row of the previews.
    """

    operation: str
    argv: list[str]
    args: argparse.Namespace
    command: str
    total: int
    nfe: int | None
    nrow: int


def parse_body(raw: bytes, limits: Limits) -> dict[str, Any]:
    """The JSON object of a request body.

    Raises:
        RequestError: 413 over ``limits.max_body_bytes``; 400 not a JSON object.
    """
    if len(raw) > limits.max_body_bytes:
        raise RequestError(413, f"the request is over {limits.max_body_bytes} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise RequestError(400, f"the body is not valid JSON ({err})") from None
    if not isinstance(body, dict):
        raise RequestError(400, "the body must be a JSON object")
    return body


def _check_fields(body: dict[str, Any]) -> None:
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise RequestError(422, f"unknown field(s) {', '.join(unknown)}; the fields are {', '.join(FIELDS)}")
    for key, value in body.items():
        types, what = FIELDS[key]
        if value is None and key != "model":
            continue
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            raise RequestError(422, f"field {key} must be {what}, not {json.dumps(value)[:40]}")


def _given(body: dict[str, Any], key: str, default: Any) -> Any:
    return body[key] if body.get(key) is not None else default


def _number(value: float | int) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def _text(option: str, value: str, limits: Limits) -> list[str]:
    if len(value) > limits.max_prompt_chars:
        raise RequestError(422, f"{option} is over {limits.max_prompt_chars} characters")
    return [f"{option}={value}"] if value.startswith("-") else [option, value]


def _save_upload(body: dict[str, Any], field: str, folder: Path, limits: Limits) -> str:
    if body.get(field) is None:
        raise RequestError(422, f"{body['operation']} needs {field} (a PNG data URL)")
    image = read_png_upload(body[field], field, limits)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{field}.png"
    image.save(path, format="PNG")
    return str(path.resolve())


def _conditioning_argv(served: ServedModel, body: dict[str, Any], limits: Limits) -> list[str]:
    """``--class``, ``--uncond``, ``--guidance``, ``--prompt``, ``--negative-prompt`` as the
    operation takes them; set fields an operation or model does not take are refused."""
    op, model = body["operation"], served.model
    label, guidance = body.get("label"), body.get("guidance")
    uncond = bool(body.get("uncond"))
    prompt, negative = body.get("prompt") or "", body.get("negative_prompt") or ""
    guided = guidance not in (None, 1, 1.0)
    if model.is_lowdim and (label is not None or uncond or guided or prompt or negative):
        raise RequestError(422, "a 2-D model takes no class, guidance or prompt")
    if op != "sample" and (uncond or prompt or negative):
        raise RequestError(422, f"{op} takes no uncond, prompt or negative_prompt (sample does)")
    if op == "inpaint" and guided:
        raise RequestError(422, "inpaint takes no guidance")
    argv: list[str] = []
    if label is not None:
        argv += ["--class", str(label)]
    if uncond:
        argv += ["--uncond"]
    if guidance is not None:
        argv += ["--guidance", _number(guidance)]
    if prompt:
        argv += _text("--prompt", prompt, limits)
    if negative:
        argv += _text("--negative-prompt", negative, limits)
    return argv


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    args = parser.parse_args(argv)
    try:
        check_namespace(args)
    except argparse.ArgumentTypeError as err:
        raise RequestError(422, f"hwaksan {args.command}: {err}") from None
    return args


def prepare_run(served: ServedModel, body: dict[str, Any], folder: Path, limits: Limits) -> PreparedRun:
    """Check a request for ``served``, save its uploads into ``folder`` and parse its command.

    Raises:
        RequestError: 422 (413 for an upload over the limit) with one line naming the field.
    """
    _check_fields(body)
    body = {**body, "operation": body.get("operation") or "sample"}
    op, model = body["operation"], served.model
    if op not in served.operations:
        raise RequestError(
            422, f"operation {op}: this {served.kind} model runs {', '.join(served.operations)}"
        )
    ignored = [k for k, ops in _ONLY.items() if op not in ops]
    body = {k: v for k, v in body.items() if k not in ignored}
    parser, commands = command_parser()
    default = commands[op].get_default
    sampler = body.get("sampler") or (DEFAULTS["sampler"] if op == "sample" else default("sampler"))
    grid = body.get("grid") or default("grid")
    steps = _given(body, "steps", DEFAULTS["steps"] if op == "sample" else default("steps"))
    seed = _given(body, "seed", default("seed"))
    n = _given(body, "n", served.default_n() if op == "sample" else default("n"))
    if sampler not in SAMPLERS:
        raise RequestError(422, f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if grid not in GRIDS:
        raise RequestError(422, f"unknown grid {grid!r}; choose one of {', '.join(GRIDS)}")
    if steps > limits.max_steps:
        raise RequestError(422, f"steps {steps} is over this studio's limit of {limits.max_steps}")
    cap, what = (limits.max_points, "points") if model.is_lowdim else (limits.max_batch, "images")
    if n > cap:
        raise RequestError(422, f"n {n} is over this studio's limit of {cap} {what}")
    checkpoint = served.path if not served.path.startswith("-") else f"./{served.path}"
    argv = [op] + ([checkpoint] if op == "sample" else [])
    if op in ("inpaint", "edit"):
        argv.append(_save_upload(body, "image", folder, limits))
        if op == "inpaint":
            argv.append(_save_upload(body, "mask", folder, limits))
        argv += ["--checkpoint", checkpoint]
    argv += ["--sampler", sampler, "--steps", str(steps), "--grid", grid, "--seed", str(seed), "--n", str(n)]
    argv += _conditioning_argv(served, body, limits)
    if op == "edit" and body.get("strength") is not None:
        argv += ["--strength", _number(body["strength"])]
    for key in ("jump", "resample"):
        if body.get(key) is not None:
            argv += [f"--{key}", str(body[key])]
    if body.get("options"):
        argv += ["--options", json.dumps(body["options"])]
    argv += ["--out", "result.png"]
    args = _parse(parser, argv)
    total, nfe = _check_with_model(served, args, limits)
    nrow = _preview_nrow(served, args)
    return PreparedRun(op, argv, args, "hwaksan " + shlex.join(argv), total, nfe, nrow)


def _check_with_model(
    served: ServedModel, args: argparse.Namespace, limits: Limits
) -> tuple[int, int | None]:
    """What the parser cannot know: the uploads and classes against the model. Returns the steps
    the run reports and its NFE (None where unknown)."""
    model, op = served.model, args.command
    spec = SAMPLERS[args.sampler]
    try:
        if op == "sample":
            if model.is_image and model.text is None:
                sample_conditioning(model, args)
            if model.source != "gaussian":
                return args.steps, None
            ts = make_grid(model.process, args.steps, args.grid)
        else:
            c, h, w = model.output_shape
            x = load_image(args.image, c, (h, w), args.resize)
            labels = class_labels(model, args.label, 1)
            if op == "inpaint":
                load_mask(args.mask, x)
                moves = len(repaint_schedule(args.steps, args.jump, args.resample)) - 1
                if moves > limits.max_moves:
                    raise RequestError(
                        422,
                        f"RePaint with steps {args.steps}, jump {args.jump}, resample {args.resample} takes "
                        f"{moves} moves, over this studio's limit of {limits.max_moves}: resample less",
                    )
                return moves, None
            guidance_weight(args.guidance, labels)
            ts = edit_grid(model.process, args.strength, args.steps, args.grid)
    except ValueError as err:
        raise RequestError(422, f"hwaksan {op}: {one_line(err)}") from None
    total = len(ts) - 1
    if spec.nfe is None or total == 0:
        return total, None if total else 0
    try:
        return total, int(spec.nfe(ts, model.process, {**spec.defaults, **args.options}))
    except Exception:  # a formula that does not cover these options: unknown, not an error
        return total, None


def _preview_nrow(served: ServedModel, args: argparse.Namespace) -> int:
    model = served.model
    if model.is_lowdim:
        return 1
    if args.command != "sample":
        return result_layout(torch.empty(args.n, *model.output_shape, device="meta"))[0]
    labelled = model.num_classes and not args.uncond and args.label is None and model.text is None
    return min(model.num_classes if labelled else math.ceil(math.sqrt(args.n)), args.n)
