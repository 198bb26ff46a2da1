"""Kill -9 soak test of training: a run killed at random moments and resumed each time ends bit-identical.

For each trainer (``lowdim``: ``hwaksan train --data moons``; ``image``: ``hwaksan train --config
configs/digits.toml`` with a tiny U-Net), all through the CLI in subprocesses:

1. a reference run, uninterrupted (keeping every checkpoint, to learn their sizes);
2. the soak: the same command is started, killed with SIGKILL after a random delay, and started
   again with ``--resume`` (without it while the folder holds no checkpoint), ``--kills N`` times
   (a new round in a fresh folder starts when a run finishes before the kills are used up). The
   delay of a round's first start counts from its first checkpoint; the others from the start, so
   kills land in start-up and in training steps; every other kill instead fires as soon as a
   checkpoint's temporary file appears (within the random delay), to land inside a write. After every kill the
   folder must hold a loadable model (``load_trained(DIR)``) at least as new as the one before;
   a kill that left a temporary file of an atomic write behind is counted as "mid-write";
3. every finished round's final state (all tensors of the newest checkpoint, and the 2-D
   ``model.safetensors``) is compared with the reference's, exactly;
4. disk full: a run whose file-size limit (``RLIMIT_FSIZE`` via ``resource.setrlimit`` in the child;
   Python ignores ``SIGXFSZ``, so a write past the limit fails with ``EFBIG``) lets the first
   checkpoints through and stops a later one mid-write (checkpoints grow with their loss history).
   The run must fail, leave the last complete checkpoint loadable, and a resume without the limit
   must end bit-identical. No root, no tmpfs, no fault hook in the library.

Prints one table row per trainer::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/soak.py [--kills 20] [--trainers lowdim image]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hwaksan.io.artifact import load_trained
from hwaksan.io.checkpoint import CheckpointError, latest_checkpoint, list_checkpoints, load_tensors

ROOT = Path(__file__).resolve().parents[1]
HWAKSAN = [sys.executable, "-m", "hwaksan.cli", "train", "--no-progress"]
CHECKPOINT_EVERY = 10


def lowdim_command(out: Path, steps: int) -> list[str]:
    """2-D training, small: an MLP of width 64 on moons."""
    return [
        *HWAKSAN,
        "--data",
        "moons",
        "--width",
        "64",
        "--depth",
        "2",
        "--batch-size",
        "128",
        "--train-steps",
        str(steps),
        "--set",
        f"train.checkpoint_every={CHECKPOINT_EVERY}",
        "--out",
        str(out),
    ]


def image_command(out: Path, steps: int) -> list[str]:
    """The image trainer on the digits config, shrunk: 8 channels, batch 16, tiny sample grid."""
    sets = [
        "model.args.model_channels=8",
        f"train.steps={steps}",
        "train.batch_size=16",
        f"train.checkpoint_every={CHECKPOINT_EVERY}",
        f"train.log_every={CHECKPOINT_EVERY}",
        "train.sample_every=0",
        "train.max_seconds=0",
        "sample.n=4",
        "sample.steps=2",
    ]
    return [
        *HWAKSAN,
        "--config",
        str(ROOT / "configs" / "digits.toml"),
        *[a for s in sets for a in ("--set", s)],
        "--out",
        str(out),
    ]


TRAINERS = {"lowdim": (lowdim_command, 400), "image": (image_command, 200)}


@dataclass
class Report:
    """One trainer's results."""

    kills: int = 0
    survived: int = 0
    mid_write: int = 0
    rounds: int = 0
    identical: list[bool] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    disk_full: str = "not run"


def final_tensors(out: Path) -> dict[str, torch.Tensor]:
    """All tensors of the newest checkpoint (and of a 2-D run's ``model.safetensors``)."""
    tensors, _ = load_tensors(latest_checkpoint(out))
    if (out / "model.json").exists():
        tensors.update({f"final.{k}": v for k, v in load_tensors(out / "model")[0].items()})
    return tensors


def differences(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    """Names of the tensors that are not exactly equal (or present in one only)."""
    return sorted(k for k in a.keys() | b.keys() if k not in a or k not in b or not torch.equal(a[k], b[k]))


def run(cmd: list[str], out: Path, log: Path, limit: int | None = None) -> subprocess.CompletedProcess:
    """Run ``cmd`` to its end (``--resume`` when ``out`` holds a checkpoint), with an optional
    file-size limit in bytes."""

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    full = [*cmd, "--resume"] if latest_checkpoint(out) is not None else cmd
    with open(log, "ab") as fh:
        return subprocess.run(
            full, stdout=fh, stderr=subprocess.PIPE, preexec_fn=limit_file_size if limit else None
        )


def last_line(text: bytes) -> str:
    lines = [ln for ln in text.decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def temporaries(out: Path) -> set[Path]:
    """The temporary files of atomic writes in the run folder (a killed write leaves its own)."""
    return set(out.rglob(".*.tmp"))


def writing(out: Path) -> bool:
    """Whether an atomic checkpoint write is under way (its temporary file exists)."""
    try:
        return any(e.name.endswith(".tmp") for e in os.scandir(out / "checkpoints"))
    except OSError:
        return False


def loaded_step(out: Path) -> int | None:
    """The step of the model ``load_trained(out)`` finds (-1: the final 2-D model); None: none."""
    try:
        model = load_trained(out)
    except CheckpointError:
        return None
    return model.step if model.step is not None else -1


def soak(name: str, kills: int, work: Path, rng: random.Random, reference: dict, timing: tuple) -> Report:
    """Kill and resume ``name``'s training ``kills`` times; compare every finished round."""
    make, steps = TRAINERS[name]
    first_ckpt, total = timing
    report = Report()
    while report.kills < kills:
        report.rounds += 1
        out = work / f"{name}-soak-{report.rounds}"
        cmd, log = make(out, steps), work / f"{name}-soak-{report.rounds}.log"
        newest: int | None = None
        while report.kills < kills:
            full = [*cmd, "--resume"] if latest_checkpoint(out) is not None else cmd
            before = temporaries(out)
            with open(log, "ab") as fh:
                proc = subprocess.Popen(full, stdout=fh, stderr=fh)
            t0 = time.perf_counter()
            if newest is None:  # the round's first start: wait for its first checkpoint
                while proc.poll() is None and latest_checkpoint(out) is None:
                    time.sleep(0.01)
                t0 = time.perf_counter()
            span = 2.5 * max(total - first_ckpt, 0.5) / kills
            delay = rng.uniform(0.0, (first_ckpt if newest is not None else 0.0) + span)
            at_write = report.kills % 2 == 1  # every other kill: as soon as a checkpoint write starts
            while proc.poll() is None and time.perf_counter() - t0 < delay:
                if at_write and writing(out):
                    break
                time.sleep(0.001 if at_write else 0.005)
            if proc.poll() is not None:  # finished before the kill
                if proc.returncode != 0:
                    report.failures.append(
                        f"round {report.rounds}: exit {proc.returncode}: {last_line(log.read_bytes())}"
                    )
                break
            proc.kill()
            proc.wait()
            report.kills += 1
            report.mid_write += bool(temporaries(out) - before)
            step = loaded_step(out)
            ok = step is not None and (newest is None or step == -1 or step >= newest)
            if ok:
                report.survived += 1
                newest = step
            else:
                report.failures.append(f"kill {report.kills}: no loadable model after the kill (step {step})")
        proc.wait()
        if proc.returncode != 0 or report.kills >= kills:  # finish the round uninterrupted
            done = run(cmd, out, log)
            if done.returncode != 0:
                report.failures.append(f"round {report.rounds}: resume failed: {last_line(done.stderr)}")
                report.identical.append(False)
                continue
        diff = differences(reference, final_tensors(out))
        report.identical.append(not diff)
        if diff:
            report.failures.append(f"round {report.rounds}: final state differs in {diff[:5]}")
    return report


def disk_full(name: str, work: Path, reference: dict, sizes: list[tuple[int, int]]) -> str:
    """A run whose file-size limit stops a checkpoint in the middle of the run."""
    make, steps = TRAINERS[name]
    middle = len(sizes) // 2
    (ok_step, ok_size), (_, bad_size) = sizes[middle - 1], sizes[middle]
    if bad_size <= ok_size:
        return "skipped (checkpoint sizes do not grow)"
    limit = (ok_size + bad_size) // 2 if bad_size - ok_size > 1 else ok_size
    out, log = work / f"{name}-diskfull", work / f"{name}-diskfull.log"
    cmd = make(out, steps)
    failed = run(cmd, out, log, limit=limit)
    step = loaded_step(out)
    text = f"limit {limit} B: exit {failed.returncode} ({last_line(failed.stderr)[:90]}); "
    if failed.returncode == 0:
        return text + "did not fail"
    text += f"loadable step {step} (expected {ok_step}); temp files left: {bool(temporaries(out))}; "
    done = run(cmd, out, log)
    if done.returncode != 0:
        return text + f"resume failed: {last_line(done.stderr)}"
    same = not differences(reference, final_tensors(out))
    return text + f"resumed identical: {'yes' if same else 'NO'}"


def checkpoint_sizes(out: Path) -> list[tuple[int, int]]:
    """``(step, size of its .safetensors)`` of every checkpoint kept in ``out``."""
    return [(s, p.with_name(p.name + ".safetensors").stat().st_size) for s, p in list_checkpoints(out)]


def reference_run(name: str, work: Path) -> tuple[dict, tuple[float, float], list[tuple[int, int]]]:
    """The uninterrupted run: its final tensors, (time to the first checkpoint, total), sizes."""
    make, steps = TRAINERS[name]
    out = work / f"{name}-reference"
    cmd = [*make(out, steps), "--set", "train.keep_last=1000"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = None
    while proc.poll() is None:
        if first is None and latest_checkpoint(out) is not None:
            first = time.perf_counter() - t0
        time.sleep(0.01)
    total = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{name} reference run failed: {last_line(proc.stderr.read())}")
    return final_tensors(out), (first or total, total), checkpoint_sizes(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="kills per trainer (default 20)")
    parser.add_argument("--trainers", nargs="+", default=list(TRAINERS), choices=list(TRAINERS))
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--no-disk-full", action="store_true", help="skip the file-size-limit run")
    parser.add_argument("--keep", action="store_true", help="keep the run folders (printed)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hwaksan-soak-"))
    rng = random.Random(args.seed)
    rows = []
    try:
        for name in args.trainers:
            t0 = time.perf_counter()
            reference, timing, sizes = reference_run(name, work)
            report = soak(name, args.kills, work, rng, reference, timing)
            if not args.no_disk_full:
                report.disk_full = disk_full(name, work, reference, sizes)
            rows.append((name, report, timing, time.perf_counter() - t0))
            for line in report.failures:
                print(f"  {name}: {line}", file=sys.stderr)
    finally:
        if args.keep:
            print(f"run folders: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"\nkill -9 soak, {args.kills} kills per trainer (seed {args.seed}, OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')})\n"
    )
    print(
        "| trainer | steps | reference s | kills survived / tried | mid-write kills | rounds | "
        "identical final state | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, r, (_, total), wall in rows:
        same = "yes" if r.identical and all(r.identical) else "NO"
        print(
            f"| {name} | {TRAINERS[name][1]} | {total:.1f} | {r.survived} / {r.kills} | {r.mid_write} | "
            f"{r.rounds} | {same} ({sum(r.identical)}/{len(r.identical)} rounds) | {wall:.0f} |"
        )
    print()
    for name, r, _, _ in rows:
        print(f"disk full, {name}: {r.disk_full}")
    bad = any(r.failures or r.survived < r.kills or not all(r.identical) for _, r, _, _ in rows)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
