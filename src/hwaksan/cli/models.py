"""``hwaksan models``: the network presets with parameter counts and FLOPs per sample."""

from __future__ import annotations

import argparse
import json

from ..models.presets import preset_table

__all__ = ["register", "cmd_models"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``hwaksan models``."""
    p = sub.add_parser(
        "models",
        help="list the network presets with parameter counts and FLOPs per sample",
        description="Every preset of hwaksan.models.presets: architecture, input shape, parameters and "
        "forward GFLOPs per sample (counted by torch's FlopCounterMode).",
    )
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    """Run ``hwaksan models``; returns the exit status."""
    rows = preset_table()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'preset':14s} {'arch':8s} {'input':>12s} {'params':>10s} {'GFLOP/sample':>13s}")
    for r in rows:
        shape = "x".join(str(v) for v in r["input_shape"])
        print(f"{r['name']:14s} {r['arch']:8s} {shape:>12s} {r['params'] / 1e6:9.2f}M {r['gflops']:13.3f}")
    print("FLOPs: one forward pass of one sample (multiply-add = 2; matmul, convolution, attention).")
    print("A training step costs about 3x the forward. Use a preset with [model] preset = NAME.")
    return 0
