"""Latency of ``hwaksan studio`` over real HTTP, on digits-sized models: the legacy test checkpoint
(a tiny U-Net) and the architecture of configs/digits.toml, trained for a few steps here (its
weights do not matter for timing).

(a) time from ``POST /api/runs`` to the first ``step`` event of the run's event stream (bar: < 1 s);
(b) the total time of a streamed studio run (POST to the ``done`` event, previews and final PNG
    included) against the same computation of ``hwaksan sample`` in the same process
    (:func:`hwaksan.cli.sample.sample_images` and the PNG grid it writes) (bar: < 10 % more).

The server is uvicorn in a thread on a free loopback port; each setting runs ``REPEATS`` times,
studio and direct runs interleaved, and the table gives medians.

    python bench/studio_latency.py [--repeats 7] [--skip-digits]
"""

from __future__ import annotations

import argparse
import json
import shlex
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import torch
import uvicorn

from hwaksan.cli import main as hwaksan
from hwaksan.cli.sample import grid_scale, sample_images
from hwaksan.cli.studio import Studio, create_app
from hwaksan.cli.studio.commands import command_parser
from hwaksan.cli.studio.pictures import grid_png
from hwaksan.cli.studio_command import load_served

ROOT = Path(__file__).resolve().parents[1]
LEGACY = ROOT / "tests" / "data" / "legacy" / "pixel"
DIGITS_SETTINGS = [
    "train.steps=2",
    "train.batch_size=8",
    "train.sample_every=0",
    "train.max_seconds=0",
    "train.checkpoint_every=2",
    "optim.warmup=1",
    "train.log_every=1",
    "train.threads=2",
]
SETTINGS = [  # (n, steps): the studio's default batch, and a full one
    (16, 18),
    (64, 18),
    (64, 50),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(studio: Studio) -> tuple[uvicorn.Server, str]:
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(studio), host="127.0.0.1", port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return server, f"http://127.0.0.1:{port}"


def train_digits(out: Path) -> Path:
    """The configs/digits.toml U-Net after a few training steps, in ``out``."""
    sets = [arg for kv in DIGITS_SETTINGS for arg in ("--set", kv)]
    argv = [
        "train",
        "--config",
        str(ROOT / "configs" / "digits.toml"),
        *sets,
        "--out",
        str(out),
        "--no-progress",
    ]
    if hwaksan(argv) != 0:
        raise SystemExit("training the digits model failed")
    return out


def studio_run(client: httpx.Client, n: int, steps: int, seed: int) -> tuple[float, float, str]:
    """One streamed run; returns (seconds to the first step event, seconds to done, command)."""
    t0 = time.perf_counter()
    created = client.post("/api/runs", json={"model": "0", "n": n, "steps": steps, "seed": seed}).json()
    first = None
    with client.stream("GET", f"/api/runs/{created['run']}/events") as response:
        event = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
                if event == "step" and first is None:
                    first = time.perf_counter() - t0
            elif line.startswith("data: ") and event == "done":
                json.loads(line[6:])
                return first, time.perf_counter() - t0, created["command"]
    raise RuntimeError(f"run {created['run']} ended without done")


def direct_run(studio: Studio, command: str) -> float:
    """The same computation as ``hwaksan sample`` (model loaded): sample, then the PNG grid."""
    parser, _ = command_parser()
    args = parser.parse_args(shlex.split(command)[1:])
    model = studio.models["0"].model
    t0 = time.perf_counter()
    result, nrow = sample_images(model, args)
    grid_png(result.x, nrow, grid_scale(result.x, args.scale))
    return time.perf_counter() - t0


def bench(checkpoint: Path, repeats: int) -> tuple[str, list[tuple]]:
    """The table rows of one model: (n, steps, first step, streamed, direct, overhead)."""
    studio = Studio(load_served([str(checkpoint)], "cpu"), Path(tempfile.mkdtemp(prefix="studio-bench-")))
    server, url = _serve(studio)
    rows = []
    with httpx.Client(base_url=url, timeout=120) as client:
        studio_run(client, 4, 2, 0)  # warm-up: first calls of the network and the encoder
        for n, steps in SETTINGS:
            firsts, streamed, direct = [], [], []
            for r in range(repeats):
                first, total, command = studio_run(client, n, steps, seed=r)
                firsts.append(first)
                streamed.append(total)
                direct.append(direct_run(studio, command))
            med_s, med_d = statistics.median(streamed), statistics.median(direct)
            rows.append((n, steps, statistics.median(firsts), med_s, med_d, med_s / med_d - 1))
    server.should_exit = True
    return studio.models["0"].model.describe(), rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--skip-digits", action="store_true", help="only the legacy checkpoint (no training)")
    opts = p.parse_args()
    models = {"legacy pixel": LEGACY}
    if not opts.skip_digits:
        models["digits.toml"] = train_digits(Path(tempfile.mkdtemp(prefix="studio-bench-digits-")) / "run")
    results = {name: bench(path, opts.repeats) for name, path in models.items()}
    print(
        f"\nstudio latency, heun, karras, CPU ({torch.get_num_threads()} threads), median of {opts.repeats}\n"
    )
    for name, (describe, _) in results.items():
        print(f"- {name}: {describe}")
    print("\n| model | n | steps | POST -> first step (s) | studio run, streamed (s) | hwaksan sample "
          "computation (s) | overhead |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    rows = [(name, *row) for name, (_, model_rows) in results.items() for row in model_rows]
    for name, n, steps, first, s, d, over in rows:
        print(f"| {name} | {n} | {steps} | {first:.3f} | {s:.3f} | {d:.3f} | {100 * over:+.1f} % |")
    worst_first, worst_over = max(r[3] for r in rows), max(r[6] for r in rows)
    print(
        f"\nbar (a) first step < 1 s: {'met' if worst_first < 1 else 'NOT met'} (worst {worst_first:.3f} s)"
    )
    print(
        f"bar (b) overhead < 10 %: {'met' if worst_over < 0.10 else 'NOT met'} "
        f"(worst {100 * worst_over:+.1f} %)"
    )


if __name__ == "__main__":
    main()
