"""``hwaksan studio``: a local web page to sample, inpaint and edit with trained models.

::

    hwaksan studio runs/digits runs/moons [--host 127.0.0.1] [--port 7860] [--work DIR]

Every run on the page is a ``hwaksan sample|inpaint|edit`` command, shown with its result; running
that command gives the same result bit for bit. Only the checkpoints named here are served (the
page names them by id), uploads and requests are bounded (:class:`hwaksan.cli.studio.Limits`).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from .args import add_device_argument, int_in, pick_device
from .common import UserError, load_model
from .studio import Limits, ServedModel, Studio, create_app, served_name

__all__ = ["register", "cmd_studio", "LOOPBACK"]

LOOPBACK = ("127.0.0.1", "localhost", "::1")
"""Hosts that only this machine reaches."""
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
"""The ``Host`` names a studio on the loopback address answers to."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``hwaksan studio``."""
    limits = Limits()
    p = sub.add_parser(
        "studio",
        help="a local web page to sample, inpaint and edit with trained models",
        description="Serve a local web page for the checkpoints given: sample (any model), inpaint and "
        "edit (image models) with any sampler, watching every step. Each run shows the hwaksan command "
        "that reproduces it exactly. Only these checkpoints are served; requests are bounded to "
        f"{limits.max_steps} steps, {limits.max_batch} images or {limits.max_points} points, and uploads "
        f"to {limits.max_upload_bytes} bytes and {limits.max_image_side}x{limits.max_image_side} pixels.",
    )
    p.add_argument(
        "checkpoints",
        nargs="+",
        metavar="RUN_OR_CHECKPOINT",
        help="checkpoints written by hwaksan train, or run folders (their newest checkpoint); the page "
        "names them 0, 1, ... in this order",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; any other address lets "
        "other machines run the models, and a warning says so)",
    )
    p.add_argument("--port", type=int_in(1, 65535), default=7860, help="port to listen on (default 7860)")
    p.add_argument(
        "--work",
        default=None,
        metavar="DIR",
        help="folder for the runs' uploaded images (default: a temporary folder, removed at exit)",
    )
    add_device_argument(p, "run the models")
    p.set_defaults(func=cmd_studio)


def load_served(paths: list[str], device: str = "auto") -> list[ServedModel]:
    """Load the checkpoints given on the command line as served models ``"0"``, ``"1"``, ...

    Raises:
        UserError: a path holds no readable model (one line).
    """
    served = []
    for i, path in enumerate(paths):
        model = load_model(path, "hwaksan studio", device=pick_device(device))
        if model.modality not in ("image", "points"):
            raise UserError(
                f"hwaksan studio shows image and 2-D models; {path} is a {model.modality} model: use "
                "hwaksan sample (it writes the model's media files)"
            )
        served.append(ServedModel(str(i), served_name(path, model), path, model))
    return served


def cmd_studio(args: argparse.Namespace) -> int:
    """Run ``hwaksan studio`` until interrupted; returns the exit status."""
    import uvicorn

    served = load_served(args.checkpoints, args.device)
    if args.host not in LOOPBACK:
        print(
            f"hwaksan studio: warning: listening on {args.host}: other machines can reach the studio and "
            "run these models; use --host 127.0.0.1 to keep it local",
            file=sys.stderr,
        )
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="hwaksan-studio-"))
    work.mkdir(parents=True, exist_ok=True)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"hwaksan studio: http://{host}:{args.port}/  (Ctrl-C stops it)")
    for m in served:
        print(f"  {m.id}  {m.name:20s} {m.model.describe()}  ({m.path})")
    try:
        local = args.host in LOOPBACK
        app = create_app(
            Studio(served, work), allowed_hosts=["127.0.0.1", "localhost", "[::1]"] if local else None
        )
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0
