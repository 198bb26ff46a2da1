"""The ``hwaksan`` command line: one module per sub-command, the shared options in :mod:`.args`.

Every command prints where its outputs went; ``hwaksan COMMAND --help`` explains every option.
Each command module has ``register(sub)``, which adds its parser(s) to the sub-parser collection
and sets ``func`` (``func(args) -> exit status``). Nothing outside this package imports it.
"""

from __future__ import annotations

import argparse
import sys

from . import (
    complete,
    demo,
    edit,
    encode_text,
    evaluate,
    flows,
    inpaint,
    invert,
    models,
    plan_steps,
    sample,
    samplers,
    studio_command,
    superres,
    train,
    train_classifier,
    train_vae,
    vocode,
)
from .args import check_namespace
from .common import UserError

__all__ = ["main", "build_parser", "COMMANDS"]

COMMANDS = (
    demo,
    train,
    sample,
    plan_steps,
    models,
    samplers,
    evaluate,
    train_classifier,
    flows,
    edit,
    invert,
    inpaint,
    complete,
    superres,
    train_vae,
    encode_text,
    studio_command,
    vocode,
)
"""The command modules, in the order ``hwaksan --help`` lists their sub-commands."""


def build_parser() -> argparse.ArgumentParser:
    """The ``hwaksan`` parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="hwaksan", description="Diffusion and flow generative models: train, sample, evaluate."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``hwaksan ARGV``; returns the exit status (0 done, 1 a user error explained in one line,
    2 a usage error or an error raised by the library, also one line; argparse's own usage errors
    exit with 2 through ``SystemExit``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_namespace(args)
    except argparse.ArgumentTypeError as err:
        print(f"hwaksan {args.command}: error: {err}", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except UserError as err:
        print(f"hwaksan {args.command}: error: {err}", file=sys.stderr)
        return 1
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        print(f"hwaksan {args.command}: error: {err}", file=sys.stderr)
        return 2
