"""Regression tests of the command line's safety: outputs never replace an input or a user's file
without ``--overwrite``, numeric options and grid files are validated, and every failure is one
line (never a traceback). One test per fault found by probing the CLI as a careless and a hostile
user would."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import hwaksan.cli.images as cli_images
import hwaksan.cli.sample as cli_sample
from hwaksan.cli import main

LEGACY = Path(__file__).resolve().parents[1] / "data" / "legacy"
EDIT = ["--steps", "2", "--n", "1"]
FAST = [*EDIT, "--device", "cpu"]


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """``hwaksan ARGV`` in-process: (exit status, stdout, stderr); argparse's exits included."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 0
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def one_line_error(err: str) -> str:
    """The error line of a failed command; fails unless it is one line and no traceback."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip() and "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """Copies of the tiny legacy checkpoints, an 8x8 grey image and a mask."""
    for name in ("pixel", "toy2d"):
        shutil.copytree(LEGACY / name, tmp_path / name)
    grey = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 4).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "digit.png")
    mask = np.full((8, 8), 255, dtype=np.uint8)
    mask[2:6, 2:6] = 0
    Image.fromarray(mask).save(tmp_path / "mask.png")
    return tmp_path


# ------------------------------------------------------------------------------------------------
# 1. silent overwrites


def test_edit_refuses_to_overwrite_its_input_unless_overwrite(work: Path, capsys) -> None:
    image = work / "digit.png"
    before = image.read_bytes()
    argv = ["edit", image, "--checkpoint", work / "pixel", "--strength", "0.3", *EDIT, "--out", image]
    rc, _, err = run(argv, capsys)
    assert rc == 1 and "input" in one_line_error(err) and "--overwrite" in err
    assert image.read_bytes() == before
    rc, _, err = run([*argv, "--overwrite"], capsys)
    assert rc == 0, err
    assert image.read_bytes() != before


def test_inpaint_refuses_to_overwrite_the_mask_unless_overwrite(work: Path, capsys) -> None:
    mask = work / "mask.png"
    before = mask.read_bytes()
    argv = ["inpaint", work / "digit.png", mask, "--checkpoint", work / "pixel", "--jump", "1",
            "--resample", "1", *EDIT, "--out", mask]  # fmt: skip
    rc, _, err = run(argv, capsys)
    assert rc == 1 and "input" in one_line_error(err)
    assert mask.read_bytes() == before
    rc, _, err = run([*argv, "--overwrite"], capsys)
    assert rc == 0, err
    assert mask.read_bytes() != before


def test_sample_2d_refuses_to_overwrite_a_users_csv_unless_overwrite(work: Path, capsys) -> None:
    csv = work / "mydata.csv"
    csv.write_text("x,y\n1,2\n")
    argv = ["sample", work / "toy2d", "--steps", "2", "--n", "5", "--out", work / "mydata.png"]
    rc, _, err = run(argv, capsys)
    assert rc == 1 and "mydata.csv" in one_line_error(err) and "not written by hwaksan" in err
    assert csv.read_text() == "x,y\n1,2\n"
    assert not (work / "mydata.png").exists()  # refused before any work
    rc, _, err = run([*argv, "--overwrite"], capsys)
    assert rc == 0, err
    assert csv.read_text().startswith("x,y\n") and len(csv.read_text().splitlines()) == 6


def test_a_rerun_replaces_what_hwaksan_wrote(work: Path, capsys) -> None:
    argv = ["sample", work / "toy2d", "--steps", "2", "--n", "5", "--out", work / "pts.png"]
    assert run(argv, capsys)[0] == 0
    assert run([*argv, "--seed", "3"], capsys)[0] == 0  # its own outputs: no --overwrite needed
    (work / "pts.csv").write_text("edited by hand\n")
    rc, _, err = run(argv, capsys)
    assert rc == 1 and "pts.csv" in one_line_error(err)


# ------------------------------------------------------------------------------------------------
# 2. silent garbage


@pytest.mark.parametrize("value", ["nan", "1e30", "inf", "-1"])
def test_guidance_that_is_not_a_finite_weight_is_refused(work: Path, capsys, value: str) -> None:
    out = work / "g.png"
    rc, _, err = run(
        ["sample", work / "pixel", *FAST, "--class", "1", "--guidance", value, "--out", out], capsys
    )
    assert rc == 2 and "--guidance" in one_line_error(err)
    assert not out.exists()


@pytest.mark.parametrize(
    "ts", [[1.0, float("nan"), 0.0], [0.5, 0.8, 0.0], [2.0, 0.5, 0.0], [1.0, 0.5, -0.1], [1.0], "x"]
)
def test_a_bad_grid_file_is_refused(work: Path, capsys, ts) -> None:
    grid = work / "grid.json"
    grid.write_text(json.dumps({"ts": ts}))  # NaN is written as the token NaN, which Python reads
    rc, _, err = run(["sample", work / "toy2d", "--n", "4", "--grid", grid, "--out", work / "t.png"], capsys)
    assert rc == 2 and "ts" in one_line_error(err)
    assert not (work / "t.png").exists()


def test_a_plan_file_with_nan_times_is_refused(work: Path, capsys) -> None:
    plan = work / "plan.json"
    plan.write_text(json.dumps({"sampler": "euler", "ts": [1.0, float("nan"), 0.0], "options": {}}))
    rc, _, err = run(["sample", work / "toy2d", "--plan", plan, "--out", work / "t.png"], capsys)
    assert rc == 2 and "NaN" in one_line_error(err)


def test_sample_2d_n_zero_is_refused(work: Path, capsys) -> None:
    rc, _, err = run(["sample", work / "toy2d", "--n", "0", "--out", work / "t.png"], capsys)
    assert rc == 2 and "--n" in one_line_error(err)
    assert not (work / "t.csv").exists()


def test_an_unknown_sampler_option_is_refused_naming_the_accepted_ones(work: Path, capsys) -> None:
    argv = ["sample", work / "pixel", *FAST, "--out", work / "g.png", "--options", '{"bogus": 1}']
    rc, _, err = run(argv, capsys)
    line = one_line_error(err)
    assert rc == 2 and "'bogus'" in line and "s_churn" in line  # heun's options
    rc, _, err = run([*argv[:-1], '{"eta": NaN}', "--sampler", "ddim"], capsys)
    assert rc == 2 and "'eta'" in one_line_error(err)


# ------------------------------------------------------------------------------------------------
# 3. one line, never a traceback


def test_a_corrupt_safetensors_file_is_one_line(work: Path, capsys) -> None:
    ckpt = work / "pixel" / "checkpoints" / "step_0000002.safetensors"
    ckpt.write_bytes(b"\x00" * 7 + b"not a safetensors file")
    rc, _, err = run(["sample", work / "pixel", *FAST, "--out", work / "g.png"], capsys)
    assert rc in (1, 2)
    one_line_error(err)


def test_out_that_is_an_existing_folder_is_one_line(work: Path, capsys) -> None:
    folder = work / "already.png"
    folder.mkdir()
    rc, _, err = run(["sample", work / "pixel", *FAST, "--out", folder], capsys)
    assert rc == 1 and "is a folder" in one_line_error(err)
    rc, _, err = run(["plan-steps", "--oracle", "2d", "--steps", "2", "--n", "4", "--max-evals", "2",
                      "--out", work / "toy2d"], capsys)  # fmt: skip
    assert rc == 2 and "JSON" in one_line_error(err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_one_line(work: Path, capsys) -> None:
    folder = work / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        rc, _, err = run(["sample", work / "pixel", *FAST, "--out", folder / "g.png"], capsys)
    finally:
        folder.chmod(0o700)
    assert rc == 1 and "ro" in one_line_error(err)


@pytest.mark.parametrize("code", [errno.EACCES, errno.ENOSPC, errno.EROFS])
def test_a_failing_write_is_one_line(work: Path, capsys, monkeypatch, code: int) -> None:
    """A write refused by the system (a read-only folder, a full disk) after the checks passed."""

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code), str(work / "g.png"))

    monkeypatch.setattr(cli_sample, "save_image_grid", refuse)
    monkeypatch.setattr(cli_images, "save_image_grid", refuse)
    rc, _, err = run(["sample", work / "pixel", *FAST, "--out", work / "g.png"], capsys)
    assert rc == 1 and os.strerror(code) in one_line_error(err)
    edit = ["edit", work / "digit.png", "--checkpoint", work / "pixel", *EDIT, "--out", work / "e.png"]
    rc, _, err = run(edit, capsys)
    assert rc == 1 and os.strerror(code) in one_line_error(err)


def test_a_text_file_given_as_an_image_is_one_line(work: Path, capsys) -> None:
    text = work / "notes.png"
    text.write_text("this is not an image\n")
    for argv in (
        ["edit", text, "--checkpoint", work / "pixel", *EDIT, "--out", work / "e.png"],
        ["inpaint", work / "digit.png", text, "--checkpoint", work / "pixel", *EDIT, "--out", work / "i.png"],
    ):
        rc, _, err = run(argv, capsys)
        assert rc in (1, 2) and "not a readable image" in one_line_error(err)
