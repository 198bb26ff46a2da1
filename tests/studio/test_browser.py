"""The studio page in a real browser: Playwright driving Debian's headless Chromium against the studio
server (uvicorn in a background thread of this process) serving the small checkpoints of
tests/data/legacy/ (``pixel``: a class-conditional 8x8 digits U-Net; ``toy2d``: a 2-D MLP).

Skips, with the command to run, when Playwright or /usr/bin/chromium is missing (``make browser``).
About 20 s on 2 CPU cores. ``python tests/studio/test_browser.py --screenshot docs/img/studio.png``
takes the README's screenshot.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LEGACY = ROOT / "tests" / "data" / "legacy"
CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps trying the (closed) network and crawls.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 30_000
# HWAKSAN_STUDIO_IMAGE_MODEL=runs/digits runs the scenarios (and the screenshot) on that image model
# (a class-conditional 8x8 digits run of configs/digits.toml) instead of tests/data/legacy/pixel.
IMAGE_MODEL_VARIABLE = "HWAKSAN_STUDIO_IMAGE_MODEL"
IMAGE_NAME = Path(os.environ.get(IMAGE_MODEL_VARIABLE) or "pixel").resolve().name  # its name on the page

_missing = []
if importlib.util.find_spec("playwright") is None:
    _missing.append("the playwright package (.venv/bin/pip install -e '.[dev]')")
if not os.path.exists(CHROMIUM):
    _missing.append(f"{CHROMIUM} (`make browser`, or as root: apt-get install -y chromium)")

pytestmark = [
    pytest.mark.skipif(bool(_missing), reason="browser tests need " + " and ".join(_missing)),
    pytest.mark.xdist_group("browser"),
]


# ---------------------------------------------------------------------------------------------- server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _make_app(work: Path):
    from hwaksan.cli.studio import ServedModel, Studio, create_app, served_name
    from hwaksan.io.artifact import load_trained

    models = []
    for i, name in enumerate(["pixel", "toy2d"]):
        # relative from the repository root, as a user types it (and as the shown command names it)
        path = os.path.relpath(LEGACY / name) if Path.cwd() == ROOT else str(LEGACY / name)
        if name == "pixel" and os.environ.get(IMAGE_MODEL_VARIABLE):
            path = os.environ[IMAGE_MODEL_VARIABLE]  # a trained digits run instead of the tiny one
        model = load_trained(path)
        models.append(ServedModel(str(i), served_name(path, model), path, model))
    return create_app(Studio(models, work))


@contextlib.contextmanager
def serve() -> Iterator[str]:
    """The studio app on a free port of 127.0.0.1, in a daemon thread; yields its base URL."""
    import uvicorn

    with tempfile.TemporaryDirectory(prefix="hwaksan-studio-") as work:
        config = uvicorn.Config(
            _make_app(Path(work)), host="127.0.0.1", port=_free_port(), log_level="warning"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the studio server did not start")
            time.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{config.port}"
        finally:
            server.should_exit = True
            thread.join(timeout=10)


@contextlib.contextmanager
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve() as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser, base_url):
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    open_page(page, base_url)
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


# ---------------------------------------------------------------------------------------------- page helpers


def open_page(page, base_url: str) -> None:
    page.goto(base_url + "/")
    page.wait_for_function("() => document.querySelectorAll('#model option').length >= 2")


def pick_model(page, name: str) -> None:
    value = page.evaluate(
        "name => [...document.querySelectorAll('#model option')].find(o => o.textContent === name).value",
        name,
    )
    page.select_option("#model", value)


def settings(page, *, seed: int, steps: int, batch: int, label: str | None = None) -> None:
    page.fill("#seed", str(seed))
    page.fill("#steps", str(steps))
    page.fill("#batch", str(batch))
    if label is not None:
        page.select_option("#label", label)


def wait_finished(page) -> str:
    """Wait until the run ends (Generate enabled again); return the status line."""
    page.wait_for_function(
        "() => !window.studio.run && !document.getElementById('generate').disabled"
        " && !/submitting/.test(document.getElementById('status').textContent)"
    )
    return page.text_content("#status")


def generate(page, **kwargs) -> str:
    """Run a sample with these settings; return the result's data URL."""
    settings(page, **kwargs)
    page.click("#generate")
    status = wait_finished(page)
    assert status.startswith("done"), (status, page.text_content("#error"))
    src = page.get_attribute("#result", "src")
    assert src and src.startswith("data:image/png;base64,"), src
    return src


def png_bytes(pixels, mode: str = "L", extra: bytes = b"") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels, mode=mode).save(buffer, "PNG")
    return buffer.getvalue() + extra


def limits(page) -> dict:
    return page.evaluate("() => window.studio.info.limits")


# ---------------------------------------------------------------------------------------------- tests


def test_sample_a_digit_shows_preview_result_strip_and_command(page, base_url):
    pick_model(page, IMAGE_NAME)
    assert page.is_visible("#label") and not page.is_visible("#prompt")
    assert page.text_content("#model-description").strip()
    assert page.text_content("#nfe") == "—"
    assert page.is_disabled("#cancel")
    generate(page, seed=3, steps=4, batch=4, label="3")
    assert page.evaluate("() => window.studio.steps") >= 1
    preview = page.get_attribute("#preview", "src")
    assert preview and preview.startswith("data:image/png"), "the live preview never updated"
    assert (page.get_attribute("#strip", "src") or "").startswith("data:image/png")
    nfe = page.text_content("#nfe")
    assert nfe.isdigit() and int(nfe) >= 4, nfe
    command = page.input_value("#command")
    assert command.startswith("hwaksan ") and IMAGE_NAME in command and "3" in command, command
    assert page.is_disabled("#cancel")
    href = page.get_attribute("#download", "href")
    assert href and href.endswith("/result.png"), href
    response = page.request.get(base_url + href)
    assert response.ok and response.body()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not page.is_visible("#error")


def test_seed_changes_the_image_and_the_same_seed_repeats_it(page):
    pick_model(page, IMAGE_NAME)
    first = generate(page, seed=11, steps=3, batch=2, label="")
    other = generate(page, seed=12, steps=3, batch=2)
    again = generate(page, seed=11, steps=3, batch=2)
    assert other != first
    assert again == first
    seeds = set()
    for _ in range(3):
        page.click("#dice")
        seeds.add(page.input_value("#seed"))
    assert len(seeds) >= 2 and all(s.isdigit() for s in seeds), seeds


def test_inpaint_keeps_the_unpainted_pixels(page):
    pick_model(page, IMAGE_NAME)
    side = page.evaluate("() => window.studio.model.shape[2]")
    import numpy as np

    yy, xx = np.mgrid[0:side, 0:side]
    source = ((xx * 29 + yy * 13) % 256).astype(np.uint8)
    page.click("#tab-inpaint")
    assert page.is_visible("#mask-canvas") and not page.is_visible("#generate")
    page.set_input_files(
        "#inpaint-upload", files=[{"name": "digit.png", "mimeType": "image/png", "buffer": png_bytes(source)}]
    )
    page.wait_for_function("() => window.studio.inpaint.has")
    # paint a vertical stroke down the left part of the canvas (the canvas is scaled up)
    page.eval_on_selector("#brush", "b => { b.value = 2; b.dispatchEvent(new Event('input')); }")
    box = page.locator("#mask-canvas").bounding_box()
    x = box["x"] + box["width"] * 0.3
    page.mouse.move(x, box["y"] + 2)
    page.mouse.down()
    for k in range(1, 11):
        page.mouse.move(x, box["y"] + box["height"] * k / 10 - 2)
    page.mouse.up()
    mask = np.array(page.evaluate("() => Array.from(window.studio.inpaint.mask)"), dtype=bool).reshape(
        side, side
    )
    assert 0 < mask.sum() < mask.size // 2, mask.astype(int)

    settings(page, seed=5, steps=4, batch=1, label="")
    page.click("#inpaint-run")
    status = wait_finished(page)
    assert status.startswith("done"), (status, page.text_content("#error"))
    # read the result back through the page: "use current sample" crops the first image of the grid
    page.click("#inpaint-use-sample")
    page.wait_for_function("() => window.studio.inpaint.mask.every(v => v === 0)")
    out = np.array(
        page.evaluate(
            """() => { const c = window.studio.inpaint.image;
                 return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); }"""
        ),
        dtype=np.int32,
    ).reshape(side, side, 4)[..., 0]
    keep = ~mask
    diff = np.abs(out[keep] - source[keep].astype(np.int32))
    assert diff.max() <= 1, f"kept pixels changed by up to {diff.max()}:\n{out}\n{source}"
    assert (np.abs(out[mask] - source[mask].astype(np.int32)) > 1).any(), "the painted region was not filled"


def test_cancel_a_long_run(page):
    pick_model(page, IMAGE_NAME)
    lim = limits(page)
    settings(page, seed=0, steps=int(lim["max_steps"]), batch=int(lim["max_batch"]), label="")
    page.click("#generate")
    # cancel in the same animation frame that sees the first step
    page.wait_for_function(
        """() => { if (window.studio.steps >= 1) { document.getElementById('cancel').click(); return true; }
                   return false; }""",
        polling="raf",
    )
    page.wait_for_function("() => /cancel/.test(document.getElementById('status').textContent)")
    status = wait_finished(page)
    assert status == "cancelled", status
    assert page.get_attribute("#result", "src") is None
    assert page.is_disabled("#cancel") and page.is_enabled("#generate")
    assert page.get_attribute("#download", "href") is None
    assert not page.is_visible("#error")


def test_oversized_uploads_and_refused_settings_show_an_error(page):
    import numpy as np

    pick_model(page, IMAGE_NAME)
    lim = limits(page)
    page.click("#tab-edit")
    assert page.is_visible("#strength")
    page.fill("#strength", "0.3")
    page.dispatch_event("#strength", "input")
    assert page.text_content("#strength-value") == "0.30"

    heavy = png_bytes(np.zeros((8, 8), np.uint8), extra=b"\0" * (int(lim["max_upload_bytes"]) + 1))
    page.set_input_files(
        "#edit-upload", files=[{"name": "heavy.png", "mimeType": "image/png", "buffer": heavy}]
    )
    page.wait_for_selector("#error", state="visible")
    assert "heavy.png" in page.text_content("#error") and "bytes" in page.text_content("#error")

    side = int(lim["max_image_side"]) + 1
    wide = png_bytes(np.zeros((side, side), np.uint8))
    assert len(wide) <= lim["max_upload_bytes"]
    page.click("#tab-inpaint")
    page.set_input_files(
        "#inpaint-upload", files=[{"name": "wide.png", "mimeType": "image/png", "buffer": wide}]
    )
    page.wait_for_function("() => /wide\\.png/.test(document.getElementById('error').textContent)")
    assert page.is_visible("#error") and str(side) in page.text_content("#error")
    assert not page.evaluate("() => window.studio.inpaint.has")

    # the server's own refusal (more steps than it allows) reaches the error box too
    page.click("#tab-sample")
    settings(page, seed=0, steps=int(lim["max_steps"]) + 1, batch=1)
    page.click("#generate")
    page.wait_for_function("() => document.getElementById('status').textContent === 'refused'")
    assert page.is_visible("#error") and page.text_content("#error").strip()
    assert page.get_attribute("#result", "src") is None
    assert page.is_enabled("#generate")


def test_points_model_draws_a_scatter_and_trajectories(page):
    pick_model(page, "toy2d")
    assert page.is_visible("#scatter") and not page.is_visible("#label")
    assert page.is_disabled("#tab-inpaint") and page.is_disabled("#tab-edit")
    settings(page, seed=0, steps=5, batch=200)
    page.click("#generate")
    status = wait_finished(page)
    assert status.startswith("done"), (status, page.text_content("#error"))
    # the canvas has ink in it: points (blue) and trajectories (faint red)
    ink = page.evaluate(
        """() => { const c = document.getElementById('scatter');
             const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
             let blue = 0, red = 0;
             for (let i = 0; i < d.length; i += 4) {
               if (d[i + 3] > 0 && d[i + 2] > d[i] + 40) blue++;
               if (d[i + 3] > 0 && d[i] > d[i + 2] + 40) red++;
             }
             return [blue, red]; }"""
    )
    assert ink[0] > 50 and ink[1] > 50, ink
    assert page.is_visible("#download-csv")


# ---------------------------------------------------------------------------------------------- screenshot


def screenshot(path: str) -> None:
    """The README's picture: a sample run of the pixel model, 1200x800."""
    with serve() as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.set_default_timeout(TIMEOUT_MS)
        open_page(page, url)
        pick_model(page, IMAGE_NAME)
        generate(page, seed=7, steps=8, batch=16, label="3")
        page.screenshot(path=path)
        print(f"wrote {path}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--screenshot":
        screenshot(sys.argv[2])
    else:
        sys.exit("usage: python tests/studio/test_browser.py --screenshot docs/img/studio.png")
