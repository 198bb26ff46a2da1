"""Train a config for a fixed budget of process CPU time (pixel vs latent at equal time).

On a machine shared with other jobs, wall time says little about the work a run got: this driver
builds the same :class:`hwaksan.training.trainer.Trainer` as ``hwaksan train`` and calls its
``train_step`` until the process has used ``--cpu-seconds`` of CPU (with ``train.threads = 1`` that
is the wall time the run would take alone on one core), then writes a checkpoint that ``hwaksan
sample`` and ``bench/latent_vs_pixel.py`` read. The clock starts after the trainer is built (data
loading, the one-off latent encoding and caption embedding are reported separately as
``setup_cpu_s``). ``metrics.jsonl`` records step, loss, CPU and wall seconds; ``budget.json`` the
totals.

    python bench/latent_train_budget.py --config configs/emoji-ldm.toml --out runs/latent/emoji-ldm \
        --cpu-seconds 1200
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from hwaksan.training.config import load_config
from hwaksan.training.trainer import Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="TOML config (as for hwaksan train)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE overrides")
    ap.add_argument("--out", required=True, help="run folder")
    ap.add_argument("--cpu-seconds", type=float, required=True, help="training budget in process CPU seconds")
    ap.add_argument("--checkpoint-every", type=int, default=250, help="steps between checkpoints")
    args = ap.parse_args()

    cpu_setup, wall_setup = time.process_time(), time.perf_counter()
    cfg = load_config(args.config, args.overrides)
    out = Path(args.out)
    trainer = Trainer(cfg, out, progress=False, pictures=False)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    setup = {"setup_cpu_s": time.process_time() - cpu_setup, "setup_wall_s": time.perf_counter() - wall_setup}
    params = sum(p.numel() for p in trainer.net.parameters())
    print(
        f"{args.config}: {params / 1e6:.2f} M params, data {tuple(trainer.images.shape)}, {setup}",
        file=sys.stderr,
    )
    cpu0, wall0 = time.process_time(), time.perf_counter()
    step, window = 0, []
    with (out / "metrics.jsonl").open("w") as log:
        while step < cfg.train.steps and time.process_time() - cpu0 < args.cpu_seconds:
            m = trainer.train_step(step)
            step += 1
            trainer.step = step
            trainer.losses.append(m["loss"])
            window.append(m["loss"])
            if step % cfg.train.log_every == 0:
                cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
                rec = {"step": step, "loss": sum(window) / len(window), "cpu_s": cpu, "elapsed_s": wall,
                       "images_per_cpu_s": step * cfg.train.batch_size / cpu}  # fmt: skip
                log.write(json.dumps(rec) + "\n")
                log.flush()
                window = []
                print(json.dumps(rec), file=sys.stderr)
            if step % args.checkpoint_every == 0:
                trainer.save_checkpoint(step)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    path = trainer.save_checkpoint(step)
    summary = {
        "config": args.config,
        "overrides": args.overrides,
        "steps": step,
        "batch_size": cfg.train.batch_size,
        "images_seen": step * cfg.train.batch_size,
        "cpu_s": cpu,
        "wall_s": wall,
        "images_per_cpu_s": step * cfg.train.batch_size / max(cpu, 1e-9),
        "params": params,
        "final_loss_mean_100": sum(trainer.losses[-100:]) / max(1, len(trainer.losses[-100:])),
        "checkpoint": str(path),
        **setup,
    }
    (out / "budget.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
