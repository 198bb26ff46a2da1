"""Every documented command runs: the ``sh`` / ``bash`` / ``console`` and ``python`` blocks of
README.md and docs/*.md, in order, one markdown file per test, with tiny settings.

How a file runs: one fresh Python process (this module run as a script) in an empty temporary
folder where ``configs/`` and ``docs/examples/`` link to the repository's, with its own
``XDG_CACHE_HOME`` and a 3-step data-set classifier (FD-<dataset>, class accuracy). Blocks run in the
order of the file:

- a shell line ``hwaksan SUBCOMMAND ...`` runs ``hwaksan.cli.main`` in that process with the
  subcommand's arguments of :data:`TINY` appended (argparse keeps the last value of a repeated
  option, ``--set`` applies its overrides in order), and must exit with 0; a line ``make ...`` and a
  line ``python bench/...`` (benchmarks) are not run; any other line runs in ``bash`` and must exit
  with 0. ``console`` blocks run their ``$ `` lines only.
- the ``python`` blocks of a file share one namespace (one Python session, as a reader pasting them
  in order), after the substitutions of :data:`PYTHON_SUBSTITUTIONS` (step counts and sizes of
  blocks that train or sample for long; every entry must match, so none goes stale).

A command that fails, or a block that raises, fails the test with the file, the block's line and
the command. A block that needs MNIST / Fashion-MNIST / emoji or the MiniLM text encoder when they are
not installed skips the rest of its file with the ``make data`` hint (``DatasetUnavailable``,
``TextEncoderUnavailable``).

Not run, by design:

- fenced blocks without a language or in another one (``toml`` settings; the bare reproduction
  blocks of docs/architecture.md, benchmarks-evaluation.md, benchmarks-flows.md and
  benchmarks-likelihood.md: they time long benchmarks and read their outputs);
- docs/benchmarks.md, the ``for d in 2d 64d`` loop, and docs/benchmarks-editing.md's block: nothing
  but ``python bench/...`` runs (benchmarks), so these two files have no test;
- docs/benchmarks-latent.md, the block that starts with ``cp -r runs/latent/emoji-ldm``: it continues
  the run of ``bench/latent_train_budget.py`` (a benchmark, never run), so its input does not exist;
- the ``python bench/...`` lines of docs/benchmarks-guidance.md and docs/benchmarks-latent.md (their
  ``hwaksan`` lines run).

Known broken (xfail, strict): the files of :data:`KNOWN_BROKEN` (none today).

Made tiny inside the worker, besides the appended arguments: the FD-<dataset> classifier that
``evaluate`` and ``class_accuracy`` train on first use (3 steps, as in tests/evaluation), and the
validation set on which ``hwaksan train-classifier`` reports its accuracy (the first 64 images).

Time: about 2 minutes for all files on one core (README.md and docs/evaluation.md about 25 s each).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
LANGS = {"sh": "shell", "bash": "shell", "console": "console", "python": "python"}
SKIP_EXIT = 3  # the worker's exit status for "data not installed"

# (file, a line of the block): why the block is not run
SKIPPED_BLOCKS: dict[tuple[str, str], str] = {
    (
        "docs/benchmarks-latent.md",
        "cp -r runs/latent/emoji-ldm runs/latent/emoji-ldm-long",
    ): "continues the run of bench/latent_train_budget.py, a benchmark that is never run",
    ("docs/benchmarks.md", "for d in 2d 64d; do"): "a loop of python bench/samplers.py runs (benchmarks)",
    ("docs/benchmarks-editing.md", "python bench/editing.py inpaint"): "python bench/editing.py runs only",
}

KNOWN_BROKEN: dict[str, str] = {}

# file: [(text in a python block, its tiny replacement)]
PYTHON_SUBSTITUTIONS: dict[str, list[tuple[str, str]]] = {
    "README.md": [("steps=1500", "steps=20")],
    "docs/flows.md": [
        ("steps=1500", "steps=20"),
        ("steps=3000", "steps=20"),
        ("steps=50)", "steps=4)"),
        ("steps=100)", "steps=4)"),
    ],  # fmt: skip
    "docs/likelihood.md": [
        ('load_dataset("digits", "val").images', 'load_dataset("digits", "val").images[:4]'),
        ("steps=1000", "steps=4"),
    ],
    "docs/samplers.md": [
        ("calibration_set(model, 512,", "calibration_set(model, 32,"),
        ("calibration=calib)", "calibration=calib, iterations=2, plan_evals=5)"),
    ],
    "docs/guidance.md": [("steps=12", "steps=2"), ("100", "4")],
    "docs/editing.md": [
        ("images[:8]", "images[:2]"),
        ("steps=12", "steps=2"),
        ("steps=50", "steps=4"),
        ("jump=10,", "jump=1,"),
        ("resample=10,", "resample=2,"),
    ],  # fmt: skip
    "docs/latent.md": [("n = 16", "n = 2"), ("steps=18", "steps=2"), ("resample=5", "resample=2")],
    "docs/evaluation.md": [("500", "8"), ("steps=12", "steps=2")],
}

TINY_UNET = {
    "model_channels": "8",
    "channel_mult": "[1, 2]",
    "num_res_blocks": "1",
    "attention_levels": "[1]",
    "num_head_channels": "8",
    "num_groups": "4",
}
TRAIN_IMAGES = [
    "train.steps=2",
    "train.batch_size=8",
    "train.log_every=1",
    "train.sample_every=0",
    "train.checkpoint_every=2",
    "train.max_seconds=0",
    "train.threads=1",
    "optim.warmup=1",
    "sample.n=4",
    "sample.steps=2",
]
TINY_DIGITS = TRAIN_IMAGES + [f"model.args.{k}={v}" for k, v in TINY_UNET.items()]
PYTHON_SUBSTITUTIONS["docs/extending.md"] = [('["train.steps=200"]', repr(TINY_DIGITS))]

# the arguments appended to each documented ``hwaksan SUBCOMMAND`` (None: see tiny_arguments)
TINY: dict[str, str | None] = {
    "demo": "--train-steps 5 --n 64 --no-progress",
    "train": None,
    "sample": None,
    "evaluate": None,
    "plan-steps": "--n 16 --max-evals 5 --iterations 2",
    "reflow": None,
    "straightness": "--n 16 --steps 2",
    "edit": "--n 2 --steps 2",
    "invert": "--steps 2",
    "inpaint": "--n 2 --steps 4 --jump 1 --resample 2",
    "complete": "--n 2 --steps 2 --jump 1 --resample 1",
    "upscale": "--n 2 --steps 2",
    "cascade": "--n 2 --steps 2 --sr-steps 2",
    "train-classifier": "--steps 2 --batch-size 8 --channels 8 --threads 1 --no-progress",
    "train-vae": "--steps 2 --batch-size 4 --model-channels 8 --warmup 1 --threads 1 --no-progress",
    "samplers": "",
    "models": "",
    "encode-text": "",
    "vocode": "--steps 2",
    "studio": None,  # a server that runs until stopped: document it in plain ``` blocks (never run)
}
TINY_TRAIN_2D = "--train-steps 5 --batch-size 64 --width 32 --depth 1 --no-progress"
TINY_REFLOW = (
    "--pairs 64 --steps 2 --train-steps 5 --distill-steps 5 --eval-n 16 --eval-steps 2 --batch-size 16 "
    "--sim-batch 64 --no-progress"
)
TINY_CLASSIFIER = {
    "net_args": {"model_channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1, "attention": False,
                 "num_groups": 4},
    "steps": 3, "batch_size": 16, "lr": 1e-2, "weight_decay": 0.05, "seed": 0,
}  # fmt: skip


def _value(argv: list[str], option: str) -> str | None:
    """The last value of ``option`` in ``argv`` (``--opt V`` or ``--opt=V``)."""
    found = None
    for i, arg in enumerate(argv):
        if arg == option and i + 1 < len(argv):
            found = argv[i + 1]
        elif arg.startswith(option + "="):
            found = arg.split("=", 1)[1]
    return found


def _has_grid_file(argv: list[str]) -> bool:
    return "--plan" in argv or str(_value(argv, "--grid") or "").endswith(".json")


# tiny settings of the presets that are not U-Nets, by the preset's name prefix
TINY_PRESETS = {
    "wavegrad": TRAIN_IMAGES
    + [
        "model.args={channels=[16, 8, 8, 4], down_channels=[4, 4, 8, 8], mel_channels=16, emb_dim=16}",
        "data.args={window=1024, stride=1024}",
    ],
    "video-unet": TRAIN_IMAGES
    + [
        'data.args={frames=8, size=16, n=16, digits=1, source="digits"}',
        "model.args={model_channels=8, channel_mult=[1, 2], num_groups=4, num_head_channels=8, "
        "patch_size=1, emb_dim=32, temporal_attention_levels=[1]}",
    ],
    "motion": TRAIN_IMAGES
    + ["model.args={hidden_size=16, depth=1, num_heads=2}", "data.args={frames=32, n=32}"],
}


def _train_config_arguments(config: str) -> list[str]:
    with open(config, "rb") as fh:
        preset = tomllib.load(fh).get("model", {}).get("preset", "unet")
    if preset.startswith("unet"):
        sets = list(TINY_DIGITS)
    else:
        found = [v for k, v in TINY_PRESETS.items() if preset.startswith(k)]
        if not found:
            raise AssertionError(
                f"{config}: no tiny settings for the preset {preset!r} (add them to TINY_PRESETS)"
            )
        sets = found[0]
    return [arg for s in sets for arg in ("--set", s)] + ["--no-progress"]


def tiny_arguments(argv: list[str]) -> list[str]:
    """The arguments appended to the documented command ``hwaksan ARGV``."""
    command = argv[0]
    if command not in TINY:
        raise AssertionError(f"hwaksan {command}: no tiny settings in tests/test_docs.py (add them to TINY)")
    fixed = TINY[command]
    if fixed is not None:
        return fixed.split()
    if command == "train":
        config = _value(argv, "--config")
        if config is not None:
            return _train_config_arguments(config)
        return TINY_TRAIN_2D.split()
    if command == "sample":
        return ["--n", "4"] + ([] if _has_grid_file(argv) else ["--steps", "2"])
    if command == "evaluate":
        extra = ["--n", "16", "--batch-size", "8", "--shard-size", "8", "--no-progress"]
        extra += [] if _has_grid_file(argv) else ["--steps", "2"]
        if "--nfe-sweep" in argv:
            extra += ["--sweep-steps", "1,2", "--sweep-n", "8"]
        if re.search(r"\b(nll|vlb)\b", _value(argv, "--metrics") or ""):
            extra += ["--likelihood-n", "2"]
        return extra
    if command == "reflow":
        extra = TINY_REFLOW.split()
        # not train.steps / checkpoint_every: --train-steps and --distill-steps set them
        sets = [s for s in TRAIN_IMAGES if not s.startswith(("train.steps=", "train.checkpoint_every="))]
        return extra + [arg for s in sets for arg in ("--set", s)]
    raise AssertionError(command)


# --------------------------------------------------------------------------------------------
# reading the markdown


@dataclass
class Block:
    """One fenced block: its kind ("shell", "console" or "python"), first line number and text."""

    kind: str
    line: int
    text: str


def read_blocks(path: Path) -> list[Block]:
    """The runnable fenced blocks of a markdown file, in order."""
    blocks: list[Block] = []
    lang, start, body = None, 0, []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if lang is None:
            if stripped.startswith("```"):
                lang, start, body = stripped[3:].strip().lower() or "-", number, []
        elif stripped.startswith("```"):
            if lang in LANGS:
                blocks.append(Block(LANGS[lang], start, "\n".join(body)))
            lang = None
        else:
            body.append(line)
    return blocks


def shell_commands(block: Block) -> list[str]:
    """The command lines of a shell block: continuations joined, comments and blanks dropped."""
    lines = block.text.splitlines()
    if block.kind == "console":
        lines = [ln.strip()[2:] for ln in lines if ln.strip().startswith("$ ")]
    out, pending = [], ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full and not full.startswith("#"):
            out.append(full)
    return out


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _skipped(name: str, block: Block) -> str | None:
    for (file, line), why in SKIPPED_BLOCKS.items():
        if file == name and line in block.text:
            return why
    return None


def _plan(path: Path) -> list[dict]:
    name = _relative(path)
    subs = PYTHON_SUBSTITUTIONS.get(name, [])
    used = [False] * len(subs)
    plan = []
    for block in read_blocks(path):
        if _skipped(name, block):
            continue
        if block.kind == "python":
            text = block.text
            for i, (old, new) in enumerate(subs):
                if old in text:
                    used[i] = True
                    text = text.replace(old, new)
            plan.append({"kind": "python", "line": block.line, "code": text})
        else:
            plan.append({"kind": "shell", "line": block.line, "commands": shell_commands(block)})
    stale = [old for (old, _), u in zip(subs, used, strict=True) if not u]
    assert not stale, f"{name}: PYTHON_SUBSTITUTIONS entries that match no python block: {stale}"
    return plan


def _files() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [f for f in files if any(not _skipped(_relative(f), b) for b in read_blocks(f))]


def _param(path: Path):
    name = _relative(path)
    marks = []
    if name in KNOWN_BROKEN:
        marks.append(pytest.mark.xfail(reason=KNOWN_BROKEN[name], strict=True))
    return pytest.param(path, id=name, marks=marks)


# --------------------------------------------------------------------------------------------
# the test


def test_the_tables_cover_every_subcommand() -> None:
    from hwaksan.cli import build_parser

    parser = build_parser()
    assert set(TINY) == set(parser._subparsers._group_actions[0].choices)


def test_substitution_files_exist() -> None:
    for name in PYTHON_SUBSTITUTIONS:
        assert (ROOT / name).is_file(), name
    for name, _ in SKIPPED_BLOCKS:
        assert (ROOT / name).is_file(), name


@pytest.mark.parametrize("path", [_param(p) for p in _files()])
def test_documented_commands_run(path: Path, tmp_path: Path) -> None:
    name = _relative(path)
    work = tmp_path / "work"
    (work / "docs").mkdir(parents=True)
    (work / "configs").symlink_to(ROOT / "configs")
    (work / "docs" / "examples").symlink_to(ROOT / "docs" / "examples")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"file": name, "blocks": _plan(path)}))
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg",
               XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONUNBUFFERED="1")  # fmt: skip
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), str(plan)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = proc.stdout + proc.stderr
    if proc.returncode == SKIP_EXIT:
        pytest.skip(next(ln for ln in proc.stdout.splitlines() if "data not installed" in ln))
    assert proc.returncode == 0, f"{name}: a documented command failed\n{output[-6000:]}"


# --------------------------------------------------------------------------------------------
# the worker: ``python tests/test_docs.py PLAN.json`` in the temporary folder


class _DataMissing(Exception):
    pass


class _Tee(io.TextIOBase):
    def __init__(self, stream) -> None:
        self.stream, self.buffer_text = stream, io.StringIO()

    def write(self, s: str) -> int:
        self.buffer_text.write(s)
        return self.stream.write(s)

    def flush(self) -> None:
        self.stream.flush()


def _run_hwaksan(argv: list[str]) -> None:
    from hwaksan.cli import main

    full = argv + tiny_arguments(argv)
    print("+ hwaksan " + shlex.join(full), flush=True)
    tee, start = _Tee(sys.stderr), time.perf_counter()
    with contextlib.redirect_stderr(tee):
        try:
            status = main(full)
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
    print(f"  ({time.perf_counter() - start:.1f} s, exit status {status})", flush=True)
    if status != 0:
        message = tee.buffer_text.getvalue()
        if "make data" in message:
            raise _DataMissing(message.strip().splitlines()[-1])
        raise AssertionError(f"hwaksan {argv[0]} exited with {status}")


def _run_shell(command: str) -> None:
    argv = shlex.split(command, comments=True)
    if not argv:
        return
    if argv[0] == "hwaksan":
        _run_hwaksan(argv[1:])
    elif argv[0] == "make":
        print(f"- not run (make): {command}", flush=True)
    elif any(a.startswith("bench/") for a in argv[:3]) and "python" in argv[0]:
        print(f"- not run (benchmark): {command}", flush=True)
    elif "hwaksan" in argv:
        raise AssertionError(f"not a plain hwaksan command (the test cannot make it tiny): {command}")
    else:
        print(f"+ {command}", flush=True)
        subprocess.run(["bash", "-c", command], check=True)


def _small_validation_sets() -> None:
    """``hwaksan train-classifier`` measures its accuracy on the first 64 validation images (not
    the whole split, at six noise levels: half a minute)."""
    import dataclasses

    from hwaksan.cli import train_classifier

    load = train_classifier.load_dataset

    def load_small_val(name, split="train", *args, **kwargs):
        data = load(name, split, *args, **kwargs)
        if split != "val":
            return data
        cut = {key: getattr(data, key) for key in ("images", "labels", "captions", "ids")}
        return dataclasses.replace(data, **{k: v[:64] for k, v in cut.items() if v is not None})

    train_classifier.load_dataset = load_small_val


def _worker(plan_path: str) -> int:
    import torch

    from hwaksan.data.images import DatasetUnavailable
    from hwaksan.data.text import TextEncoderUnavailable
    from hwaksan.evaluation import classifier as classifier_module

    torch.set_num_threads(1)
    classifier_module.classifier_config = lambda dataset, size: TINY_CLASSIFIER
    _small_validation_sets()
    plan = json.loads(Path(plan_path).read_text())
    name, namespace = plan["file"], {"__name__": "__main__"}
    start = time.perf_counter()
    for block in plan["blocks"]:
        where = f"{name}:{block['line']}"
        print(f"== {where} ({block['kind']})", flush=True)
        try:
            if block["kind"] == "python":
                exec(compile(block["code"], where, "exec"), namespace)  # noqa: S102
            else:
                for command in block["commands"]:
                    try:
                        _run_shell(command)
                    except (AssertionError, subprocess.CalledProcessError) as err:
                        raise AssertionError(f"{where}: {command}\n  {err}") from None
        except (_DataMissing, DatasetUnavailable, TextEncoderUnavailable) as err:
            print(f"{where}: data not installed (make data): {err}", flush=True)
            return SKIP_EXIT
        except Exception:
            traceback.print_exc()
            print(f"FAILED in the block at {where}", flush=True)
            return 1
    print(f"{name}: all blocks ran in {time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1]))
