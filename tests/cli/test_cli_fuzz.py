"""Hypothesis-generated command lines for every ``hwaksan`` command, run in-process.

Each invocation mixes valid, tiny values (1-3 steps, 1-3 samples, the legacy test checkpoints)
with hostile ones (NaN, infinity, negative, huge and wrong-type numbers, missing and unreadable
paths, a text file as an image, a corrupt checkpoint, unknown sampler options, outputs that are
inputs or folders) and asserts what a user may always rely on:

- the exit status is 0, 1 or 2 (argparse's ``SystemExit`` included) and no exception escapes;
- stderr holds no traceback, and a failure ends in one ``error:`` line;
- no file outside the output folder changed (every input file is compared byte for byte).

Examples are derandomized, so a CI run is reproducible. The train and demo commands are fuzzed
with invalid values only (their training runs are tested with the trainer).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from hwaksan.cli import main

LEGACY = Path(__file__).resolve().parents[1] / "data" / "legacy"
INVOCATIONS: list[str] = []
"""The command of every invocation run so far (for the count)."""


# ------------------------------------------------------------------------------------------------
# the workspace: inputs (never to change) and the output folder


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> dict[str, Path]:
    """The inputs: copies of the legacy checkpoints, images, masks, grid and plan files, a corrupt
    checkpoint; and ``out``, the one folder commands may write into."""
    root = tmp_path_factory.mktemp("fuzz")
    inputs = root / "in"
    inputs.mkdir()
    for name in ("pixel", "toy2d", "latent"):
        shutil.copytree(LEGACY / name, inputs / name)
    grey = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 4).astype(np.uint8)
    Image.fromarray(grey).save(inputs / "img.png")
    Image.fromarray(np.stack([grey, grey[::-1], grey.T], -1)).save(inputs / "colour.png")
    Image.fromarray(np.zeros((16, 16), dtype=np.uint8)).save(inputs / "big.png")
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(inputs / "small.png")
    mask = np.full((8, 8), 255, dtype=np.uint8)
    mask[2:6, 2:6] = 0
    Image.fromarray(mask).save(inputs / "mask.png")
    (inputs / "notimg.png").write_text("not an image\n")
    (inputs / "truncated.png").write_bytes((inputs / "img.png").read_bytes()[:40])
    corrupt = inputs / "corrupt"
    corrupt.mkdir()
    (corrupt / "model.safetensors").write_bytes(b"\x00\x01garbage" * 10)
    shutil.copy(LEGACY / "toy2d" / "model.json", corrupt / "model.json")
    malformed = inputs / "malformed"
    malformed.mkdir()
    shutil.copy(LEGACY / "toy2d" / "model.safetensors", malformed / "model.safetensors")
    meta = json.loads((LEGACY / "toy2d" / "model.json").read_text())
    meta["network"] = {"class": 3, "config": [1, 2]}
    (malformed / "model.json").write_text(json.dumps(meta))
    grids = {
        "grid_ok.json": {"ts": [1.0, 0.5, 0.0]},
        "grid_nan.json": {"ts": [1.0, float("nan"), 0.0]},
        "grid_up.json": {"ts": [0.2, 0.8, 0.0]},
        "grid_out.json": {"ts": [3.0, 0.5, -1.0]},
        "grid_str.json": {"ts": ["a", "b"]},
        "grid_nested.json": {"ts": [[1.0], [0.0]]},
        "grid_list.json": [1.0, 0.0],
        "plan_ok.json": {"sampler": "euler", "ts": [1.0, 0.4, 0.0], "options": {}},
        "plan_badopt.json": {"sampler": "euler", "ts": [1.0, 0.0], "options": {"bogus": 1}},
        "plan_badsampler.json": {"sampler": "nope", "ts": [1.0, 0.0]},
        "plan_fitted_bad.json": {
            "sampler": "fitted",
            "ts": [1.0, 0.0],
            "options": {"coefficients": {"x": 1}},
        },
        "plan_fitted_str.json": {
            "sampler": "fitted",
            "ts": [1.0, 0.0],
            "options": {
                "coefficients": {"predictor": [["a", "b"]], "corrector": [[1, 2, 3]], "final": [0, 0]}
            },
        },
    }
    for name, record in grids.items():
        (inputs / name).write_text(json.dumps(record))
    (inputs / "notjson.json").write_text("{not json")
    out = root / "out"
    out.mkdir()
    return {"in": inputs, "out": out}


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and the hash of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def invoke(argv: list[str], ws: dict[str, Path]) -> tuple[int, str]:
    """Run ``hwaksan ARGV`` in the output folder; check the exit status, stderr and the inputs."""
    before = snapshot(ws["in"])
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(ws["out"])
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(argv)
            except SystemExit as exc:
                rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    finally:
        os.chdir(cwd)
        torch.set_num_threads(1)  # a command may set threads
    INVOCATIONS.append(f"{argv[0]}:{rc}")
    stderr = err.getvalue()
    if os.environ.get("FUZZ_DEBUG"):
        print(rc, (stderr.strip().splitlines() or [""])[-1][:150], file=sys.__stdout__)
    assert rc in (0, 1, 2), (argv, rc, stderr)
    assert "Traceback" not in stderr, (argv, stderr)
    if rc != 0:
        last = [line for line in stderr.splitlines() if line.strip()][-1]
        assert "error:" in last, (argv, stderr)
    assert snapshot(ws["in"]) == before, f"an input changed: {argv}"
    return rc, stderr


# ------------------------------------------------------------------------------------------------
# values

REFUSED = ["nan", "inf", "-inf", "-1", "-0.5", "1e30", "10000000000000000000000", "abc", "", "0x10"]
"""Values every numeric option refuses."""
BAD_NUMBERS = [
    "nan",
    "inf",
    "-inf",
    "-1",
    "-0.5",
    "1e30",
    "10000000000000000000000",
    "abc",
    "",
    "0x10",
    "1e-400",
]


HOSTILE_ONE_IN = 12
"""A generated value is hostile about once in this many draws (deep runs need valid ones)."""


def mostly(valid: st.SearchStrategy, hostile: st.SearchStrategy) -> st.SearchStrategy:
    """``valid`` mostly, ``hostile`` about once in :data:`HOSTILE_ONE_IN` draws."""
    return st.integers(1, HOSTILE_ONE_IN).flatmap(lambda i: hostile if i == HOSTILE_ONE_IN - 1 else valid)


def ints(lo: int, hi: int) -> st.SearchStrategy[str]:
    """A small valid whole number, or a hostile value."""
    return mostly(st.integers(lo, hi).map(str), st.sampled_from(BAD_NUMBERS + ["0", "1.5"]))


def floats(lo: float, hi: float) -> st.SearchStrategy[str]:
    """A valid number in [lo, hi], or a hostile value."""
    return mostly(st.floats(lo, hi, allow_nan=False).map(lambda v: f"{v:.3g}"), st.sampled_from(BAD_NUMBERS))


def pick(valid: list[str], hostile: list[str]) -> st.SearchStrategy[str]:
    """One of ``valid`` (mostly) or of ``hostile``."""
    return mostly(st.sampled_from(valid), st.sampled_from(hostile))


SAMPLERS = ["euler", "heun", "ddim", "ddpm", "dpmpp_2m", "dpmpp_2m_sde", "unipc", "deis", "lms",
            "dpm_2", "euler_maruyama", "pc", "fitted", "bogus"]  # fmt: skip
OPTIONS = [
    "{}", '{"bogus": 1}', '{"eta": NaN}', '{"eta": "x"}', '{"eta": 0.5}', '{"s_churn": -1}',
    '{"s_churn": 1e400}', '{"order": 99999}', '{"order": 2}', '{"order": 0}', '{"variant": 3}',
    '{"variance": "nope"}', '{"n_corrector": 1}', '[1, 2]', "not json", '{"cond": 1}', '{"dtype": 1}',
    '{"lower_order_final": "yes"}', '{"coefficients": 5}',
]  # fmt: skip
GRIDS = ["karras", "uniform", "log_snr", "nope", "grid_ok.json", "grid_nan.json", "grid_up.json",
         "grid_out.json", "grid_str.json", "grid_nested.json", "grid_list.json", "notjson.json",
         "missing.json", "plan_ok.json"]  # fmt: skip
MODELS = ["pixel", "toy2d", "latent", "corrupt", "malformed", "missing", "notimg.png", "IN/."]
IMAGE_MODELS = ["pixel", "latent", "toy2d", "corrupt", "malformed", "missing"]
IMAGES = [
    "img.png",
    "colour.png",
    "big.png",
    "small.png",
    "notimg.png",
    "truncated.png",
    "missing.png",
    "pixel",
]


def option(flag: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    """``[]`` (two times in three) or ``[flag, value]``."""
    return st.one_of(st.just([]), st.just([]), values.map(lambda v: [flag, v]))


def flag(name: str) -> st.SearchStrategy[list[str]]:
    return st.sampled_from([[], [name]])


IN_TARGETS = {
    ".png": ["img.png", "mask.png", "grid_ok.json", "toy2d/model.json", "pixel"],
    ".json": ["grid_ok.json", "toy2d/model.json", "img.png"],
    "": ["img.png", "toy2d/model.json"],  # output folders: an input file is refused as a folder
    ".safetensors": ["img.png"],
}
"""Inputs given as ``--out``: each must be refused (it exists, or is a file where a folder is due)."""


def outputs(suffix: str = ".png") -> st.SearchStrategy[tuple[str, bool]]:
    """``(--out value, it is an input)``: a file in the output folder (often reused), a nested
    one, a wrong suffix, the output folder itself, or an input (then without --overwrite)."""
    return mostly(
        st.sampled_from([f"o{suffix}", f"p{suffix}", f"sub/deep/q{suffix}"]).map(lambda v: (v, False)),
        st.one_of(
            st.sampled_from(["o.txt", ".", "o"]).map(lambda v: (v, False)),
            st.sampled_from(IN_TARGETS[suffix]).map(lambda v: (f"IN/{v}", True)),
        ),
    )


def resolve(argv: list[str], ws: dict[str, Path]) -> list[str]:
    """Input names become paths under the input folder (output names stay relative)."""
    names = set(MODELS + IMAGES + GRIDS) | {"mask.png", "plan_badopt.json", "plan_badsampler.json",
                                            "plan_fitted_bad.json", "plan_fitted_str.json"}  # fmt: skip
    resolved = []
    for a in argv:
        if a.startswith("IN/"):
            resolved.append(str(ws["in"] / a[3:]))
        elif a in names and a not in ("karras", "uniform", "log_snr", "nope", "bogus"):
            resolved.append(str(ws["in"] / a))
        else:
            resolved.append(a)
    return resolved


@st.composite
def with_out(draw, parts: list[list[str]], suffix: str = ".png", flag_name: str = "--out") -> list[str]:
    """``parts`` flattened, then ``--out`` and maybe ``--overwrite`` (never with an input as output)."""
    out, is_input = draw(outputs(suffix))
    overwrite = [] if is_input else draw(flag("--overwrite"))
    return [a for part in parts for a in part] + [flag_name, out] + overwrite


def fuzz(examples: int) -> settings:
    """Reproducible settings: ``examples`` derandomized examples, no deadline, no database."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


def sampler_parts() -> list[st.SearchStrategy[list[str]]]:
    """``--sampler``, ``--steps``, ``--grid``, ``--options`` and ``--seed``, each maybe."""
    return [
        option("--sampler", pick(SAMPLERS[:-1], ["bogus"])),
        option("--steps", ints(1, 3)),
        option("--grid", pick(GRIDS[:3] + ["grid_ok.json"], GRIDS)),
        option("--options", pick(["{}", '{"eta": 0.5}', '{"order": 2}'], OPTIONS)),
        option("--seed", ints(0, 5)),
    ]


# ------------------------------------------------------------------------------------------------
# the commands


@fuzz(150)
@given(data=st.data())
def test_fuzz_sample(ws, data) -> None:
    parts = [
        ["sample", data.draw(pick(["pixel", "toy2d", "latent"], MODELS))],
        *[data.draw(s) for s in sampler_parts()],
        ["--n", data.draw(ints(1, 3))],
        data.draw(
            option(
                "--plan",
                st.sampled_from(
                    [
                        "plan_ok.json",
                        "plan_badopt.json",
                        "plan_badsampler.json",
                        "plan_fitted_bad.json",
                        "plan_fitted_str.json",
                        "grid_nan.json",
                        "missing.json",
                    ]
                ),
            )
        ),  # fmt: skip
        data.draw(option("--class", ints(0, 12))),
        data.draw(flag("--uncond")),
        data.draw(option("--ema", ints(0, 3))),
        data.draw(flag("--no-ema")),
        data.draw(option("--nrow", ints(1, 4))),
        data.draw(option("--scale", ints(1, 3))),
        data.draw(option("--guidance", floats(0.0, 4.0))),
        data.draw(option("--negative-class", ints(0, 11))),
        data.draw(option("--guidance-rescale", floats(0.0, 1.0))),
        data.draw(
            st.one_of(
                st.just([]), st.tuples(floats(0, 5), floats(0, 5)).map(lambda t: ["--guidance-interval", *t])
            )
        ),
        data.draw(option("--classifier", st.sampled_from(["missing", "corrupt", "pixel"]))),
        data.draw(option("--classifier-scale", floats(0.0, 5.0))),
        data.draw(option("--prompt", st.sampled_from(["a red apple", ""]))),
        ["--device", "cpu"],
    ]
    argv = data.draw(with_out(parts))
    invoke(resolve(argv, ws), ws)


def editing_parts(data, command: str, sampler: bool = True) -> list[list[str]]:
    parts = [
        [command, data.draw(pick(["img.png"], IMAGES))],
        ["--checkpoint", data.draw(pick(["pixel", "latent"], IMAGE_MODELS))],
        ["--n", data.draw(ints(1, 2))],
        data.draw(option("--class", ints(0, 12))),
    ]
    if sampler:
        parts += [data.draw(s) for s in sampler_parts()[:1]]
        parts += [["--steps", data.draw(ints(1, 3))]]
        parts += [data.draw(option("--grid", pick(["karras", "uniform"], ["grid_ok.json", "nope"])))]
        parts += [data.draw(option("--options", pick(["{}", '{"eta": 0.5}'], OPTIONS)))]
        parts += [data.draw(option("--seed", ints(0, 5)))]
    return parts


@fuzz(70)
@given(data=st.data())
def test_fuzz_edit(ws, data) -> None:
    parts = editing_parts(data, "edit") + [
        data.draw(option("--strength", floats(0.0, 1.0))),
        data.draw(option("--guidance", floats(0.0, 4.0))),
        data.draw(flag("--resize")),
    ]
    invoke(resolve(data.draw(with_out(parts)), ws), ws)


@fuzz(70)
@given(data=st.data())
def test_fuzz_inpaint(ws, data) -> None:
    parts = editing_parts(data, "inpaint") + [
        [
            data.draw(
                st.sampled_from(["mask.png", "img.png", "colour.png", "notimg.png", "big.png", "missing.png"])
            )
        ],
        ["--jump", data.draw(ints(1, 2))],
        ["--resample", data.draw(ints(1, 2))],
        data.draw(flag("--resize")),
    ]
    invoke(resolve(data.draw(with_out(parts)), ws), ws)


@fuzz(50)
@given(data=st.data())
def test_fuzz_invert(ws, data) -> None:
    parts = editing_parts(data, "invert", sampler=False)[:2] + [
        ["--steps", data.draw(ints(1, 3))],
        data.draw(option("--grid", st.sampled_from(["karras", "uniform", "nope"]))),
        data.draw(option("--class", ints(0, 12))),
        data.draw(option("--to-class", ints(0, 12))),
        data.draw(option("--guidance", floats(0.0, 4.0))),
        data.draw(option("--fixed-point", ints(0, 2))),
        data.draw(flag("--resize")),
    ]
    invoke(resolve(data.draw(with_out(parts)), ws), ws)


@fuzz(40)
@given(data=st.data())
def test_fuzz_upscale_and_cascade(ws, data) -> None:
    if data.draw(st.booleans()):
        parts = editing_parts(data, "upscale") + [data.draw(option("--aug-level", floats(0.0, 1.0)))]
    else:
        parts = [
            ["cascade", data.draw(st.sampled_from(IMAGE_MODELS))],
            data.draw(st.lists(st.sampled_from(IMAGE_MODELS), min_size=1, max_size=2)),
            [
                "--n",
                data.draw(ints(1, 2)),
                "--steps",
                data.draw(ints(1, 2)),
                "--sr-steps",
                data.draw(ints(1, 2)),
            ],
            data.draw(option("--aug-level", floats(0.0, 1.0))),
            data.draw(option("--class", ints(0, 12))),
            data.draw(option("--seed", ints(0, 3))),
        ]
    invoke(resolve(data.draw(with_out(parts)), ws), ws)


@fuzz(35)
@given(data=st.data())
def test_fuzz_plan_steps(ws, data) -> None:
    source = data.draw(
        st.sampled_from(
            [["--oracle", "2d"], ["toy2d"], ["corrupt"], ["missing"], ["--oracle", "2d", "toy2d"], []]
        )
    )
    # a checkpoint's calibration needs a slow reference solve: checkpoints get a refused --max-evals
    loads = source in (["toy2d"], ["--oracle", "2d", "toy2d"])
    evals = st.sampled_from(REFUSED) if loads else ints(1, 3)
    parts = [
        ["plan-steps", *source],
        data.draw(option("--sampler", st.sampled_from(["euler", "unipc", "heun", "ddpm", "adaptive"]))),
        ["--steps", data.draw(ints(1, 3))],
        ["--n", data.draw(ints(1, 6))],
        ["--max-evals", data.draw(evals)],
        data.draw(flag("--fit")),
        ["--iterations", data.draw(ints(1, 2))],
        data.draw(option("--seed", ints(0, 3))),
    ]
    if data.draw(st.booleans()):
        argv = data.draw(with_out(parts, ".json"))
    else:
        argv = [a for part in parts for a in part]
    invoke(resolve(argv, ws), ws)


@fuzz(35)
@given(data=st.data())
def test_fuzz_straightness_and_reflow(ws, data) -> None:
    model = data.draw(st.sampled_from(["toy2d", "toy2d", "corrupt", "missing", "latent", "notimg.png"]))
    if data.draw(st.booleans()):
        parts = [
            ["straightness", model, "--n", data.draw(ints(1, 8)), "--steps", data.draw(ints(1, 3))],
            ["--device", "cpu"],
        ]
        argv = (
            data.draw(with_out(parts, ".json")) if data.draw(st.booleans()) else [a for p in parts for a in p]
        )
    else:
        parts = [
            ["reflow", model, "--pairs", data.draw(ints(1, 8)), "--rounds", data.draw(ints(0, 1))],
            ["--train-steps", data.draw(ints(1, 2)), "--eval-n", data.draw(ints(1, 8))],
            ["--eval-steps", data.draw(ints(1, 2)), "--steps", data.draw(ints(1, 2))],
            data.draw(option("--distill-steps", ints(0, 1))),
            data.draw(option("--lr", floats(1e-4, 1e-2))),
            data.draw(option("--batch-size", ints(1, 8))),
            data.draw(option("--shard-size", ints(1, 8))),
            data.draw(option("--sampler", st.sampled_from(["euler", "heun", "bogus"]))),
            data.draw(option("--options", st.sampled_from(OPTIONS))),
            data.draw(flag("--skip-teacher-eval")),
            ["--no-progress", "--device", "cpu"],
        ]
        argv = data.draw(with_out(parts, ""))
    invoke(resolve(argv, ws), ws)


@fuzz(15)
@given(data=st.data())
def test_fuzz_evaluate(ws, data) -> None:
    parts = [
        ["evaluate", data.draw(st.sampled_from(["toy2d", "corrupt", "missing"]))],
        ["--metrics", data.draw(st.sampled_from(["sw,mmd", "sw", "bogus", ""]))],
        ["--n", data.draw(ints(2, 6)), "--steps", data.draw(ints(1, 2))],
        data.draw(option("--seeds", ints(1, 2))),
        data.draw(option("--k", ints(1, 2))),
        data.draw(option("--sweep-steps", st.sampled_from(["1,2", "0", "nan", "a,b"]))),
        data.draw(option("--shard-size", ints(1, 4))),
        data.draw(option("--batch-size", ints(1, 4))),
        data.draw(option("--options", st.sampled_from(OPTIONS))),
        data.draw(flag("--resume")),
        ["--no-progress", "--device", "cpu"],
    ]
    invoke(resolve(data.draw(with_out(parts, "")), ws), ws)


@fuzz(30)
@given(data=st.data())
def test_fuzz_trainers_with_invalid_values(ws, data) -> None:
    """train-classifier and train-vae with at least one invalid number (refused before training)."""
    if data.draw(st.booleans()):
        bad = data.draw(st.sampled_from(["--steps", "--batch-size", "--lr", "--channels", "--sigma-data",
                                         "--max-seconds", "--threads", "--seed"]))  # fmt: skip
        argv = [
            "train-classifier",
            "--data",
            "digits",
            "--steps",
            "1",
            bad,
            data.draw(st.sampled_from(REFUSED)),
        ]
    else:
        names = ["--steps", "--batch-size", "--lr", "--kl-weight", "--ema-decay", "--image-size",
                 "--channel-mult", "--warmup", "--log-every"]  # fmt: skip
        bad = data.draw(st.sampled_from(names))
        argv = ["train-vae", "--data", "digits", "--steps", "1", bad, data.draw(st.sampled_from(REFUSED))]
    argv += data.draw(with_out([], ""))
    rc, _ = invoke(resolve(argv, ws), ws)
    assert rc != 0


@fuzz(25)
@given(data=st.data())
def test_fuzz_small_commands(ws, data) -> None:
    """encode-text, samplers, and train / demo with an invalid number (refused before training)."""
    kind = data.draw(st.sampled_from(["encode-text", "samplers", "train", "demo"]))
    if kind == "encode-text":
        argv = ["encode-text", "red apple", "--max-length", data.draw(ints(2, 8))]
        argv += data.draw(with_out([], ".safetensors"))
    elif kind == "samplers":
        argv = ["samplers"]
    else:
        bad = data.draw(
            st.sampled_from(["--n", "--train-steps", "--batch-size", "--lr", "--width", "--depth"])
        )
        if kind == "train" and bad == "--n":
            bad = "--seed"
        steps = ["--train-steps", "1"] + (["--n", "2"] if kind == "demo" else [])
        argv = [
            kind,
            "--data",
            "moons",
            *steps,
            bad,
            data.draw(st.sampled_from(["nan", "-1", "1e30", "abc"])),
        ]
        argv += ["--out", "trained"]
    invoke(resolve(argv, ws), ws)


def _budget(test) -> int:
    """The number of examples a fuzz test's settings ask for (0 for another test)."""
    settings_ = getattr(test, "_hypothesis_internal_use_settings", None)
    return settings_.max_examples if settings_ is not None else 0


@pytest.fixture(autouse=True)
def _ran_its_budget(request):
    """Each fuzz test runs at least one invocation per example of its budget (hypothesis may
    stop early when it runs out of distinct examples: that would shrink the fuzzing silently)."""
    before = len(INVOCATIONS)
    yield
    budget = _budget(request.node.function)
    ran = len(INVOCATIONS) - before
    print(f"{request.node.name}: {ran} invocations", dict(Counter(INVOCATIONS[before:])))
    assert ran >= budget, f"{request.node.name} ran {ran} invocations, its budget is {budget}"


def test_fuzz_budget() -> None:
    """The fuzz tests of this module add up to at least 500 invocations."""
    budgets = {name: _budget(f) for name, f in globals().items() if name.startswith("test_fuzz_")}
    assert sum(budgets.values()) >= 500, budgets
