"""``hwaksan samplers``: the samplers and grids."""

from __future__ import annotations

import argparse

from ..samplers import GRIDS, SAMPLERS

__all__ = ["register", "cmd_samplers"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``hwaksan samplers``."""
    p = sub.add_parser("samplers", help="list the samplers and grids")
    p.set_defaults(func=cmd_samplers)


def cmd_samplers(args: argparse.Namespace) -> int:
    """Run ``hwaksan samplers``; returns the exit status."""
    print(f"{'name':20s} {'kind':13s} {'order':5s} description")
    for name, spec in SAMPLERS.items():
        kind = "stochastic" if spec.stochastic else "deterministic"
        print(f"{name:20s} {kind:13s} {spec.order or '-'!s:5s} {spec.description}")
    print(f"grids: {', '.join(GRIDS)}")
    return 0
