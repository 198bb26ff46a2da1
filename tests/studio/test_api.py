"""The studio's HTTP API on the small legacy checkpoints: every endpoint with valid and malformed
input, and the core promise, that the command a run shows reproduces its result bit for bit."""

from __future__ import annotations

import base64
import io
import json
import shlex
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from hwaksan.cli import main
from hwaksan.cli.studio import Limits, Studio, create_app
from hwaksan.cli.studio_command import LOOPBACK_NAMES, load_served

LEGACY = Path(__file__).resolve().parents[1] / "data" / "legacy"
TOY, PIXEL, LATENT = "0", "1", "2"  # ids in the order given

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Studio:
    served = load_served([str(LEGACY / name) for name in ("toy2d", "pixel", "latent")], "cpu")
    return Studio(served, tmp_path_factory.mktemp("work"), Limits())


@pytest.fixture(scope="module")
def client(studio, tmp_path_factory) -> TestClient:
    static = tmp_path_factory.mktemp("static")
    (static / "index.html").write_text("<!doctype html><title>studio</title>")
    (static / "app.js").write_text("// page")
    return TestClient(create_app(studio, static))


def png_url(array: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def decode_url(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def events(client: TestClient, run: str) -> list[tuple[str, dict]]:
    """The run's server-sent events, read to the final one."""
    response = client.get(f"/api/runs/{run}/events")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    out = []
    for block in response.text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((fields["event"], json.loads(fields["data"])))
    return out


def start(client: TestClient, **body) -> dict:
    response = client.post("/api/runs", json=body)
    assert response.status_code == 202, response.text
    return response.json()


def finish(client: TestClient, **body) -> tuple[dict, list[tuple[str, dict]]]:
    created = start(client, **body)
    evs = events(client, created["run"])
    assert evs[-1][0] == "done", evs[-1]
    return created, evs


DIGIT = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 4 + 3).astype(np.uint8)
KEEP_LEFT = np.where(np.arange(8)[None, :] < 4, 255, 0).repeat(8, 0).astype(np.uint8)


# ------------------------------------------------------------------------------------------------
# models and static files


def test_models_lists_every_served_model(client):
    body = client.get("/api/models").json()
    toy, pixel, latent = body["models"]
    assert (toy["id"], toy["name"], toy["kind"], toy["shape"], toy["operations"]) == (
        "0",
        "toy2d",
        "points",
        [2],
        ["sample"],
    )
    assert toy["defaults"] == {"sampler": "heun", "steps": 18, "grid": "karras", "n": 500}
    assert (pixel["kind"], pixel["shape"], pixel["num_classes"], pixel["latent"]) == (
        "image",
        [1, 8, 8],
        10,
        False,
    )
    assert pixel["operations"] == ["sample", "inpaint", "edit"] and pixel["defaults"]["n"] == 16
    assert latent["latent"] is True and latent["num_classes"] is None and latent["text"] is False
    assert pixel["path"] == str(LEGACY / "pixel") and pixel["description"].startswith("UNet")
    assert {"heun", "ddpm"} <= {s["name"] for s in body["samplers"]}
    assert all(isinstance(s["stochastic"], bool) and s["description"] for s in body["samplers"])
    assert "karras" in body["grids"]
    assert body["limits"]["max_steps"] == 200 and body["limits"]["max_upload_bytes"] == 2_000_000


def test_static_files_by_name_only(client):
    assert client.get("/").text.startswith("<!doctype html>")
    assert client.get("/static/app.js").text == "// page"
    for bad in ("/static/..%2F..%2Fetc%2Fpasswd", "/static/.hidden", "/static/nothing.js", "/static/"):
        response = client.get(bad)
        assert response.status_code == 404 and "error" in response.json(), bad


# ------------------------------------------------------------------------------------------------
# sampling


def test_sample_streams_start_one_step_per_step_and_done(client):
    created, evs = finish(client, model=PIXEL, steps=3, n=3, seed=4)
    assert created["position"] == 0 and created["nfe"] == 5  # heun: 2 per step, the last to 0 one
    names = [name for name, _ in evs]
    assert names == ["start", "step", "step", "step", "done"]
    assert evs[0][1] == {"total": 3}
    for k, (_, data) in enumerate(evs[1:-1], start=1):
        assert (data["step"], data["total"]) == (k, 3)
        # one row of the 3 classes: 8 px images, 2 px gaps, one pixel per pixel
        assert decode_url(data["preview"]).shape == (2 + 10, 2 + 10 * 3)
    done = evs[-1][1]
    assert done["command"] == created["command"] and done["nfe"] == 5 and done["seconds"] > 0
    assert decode_url(done["image"]).shape[0] > 8 and decode_url(done["strip"]).ndim == 2
    png = client.get(f"/api/runs/{created['run']}/result.png")
    assert png.headers["content-disposition"].startswith("attachment")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png.content))), decode_url(done["image"]))


def test_same_seed_same_image_other_seed_another(client):
    image = [finish(client, model=PIXEL, steps=2, n=2, seed=s)[1][-1][1]["image"] for s in (7, 7, 8)]
    assert image[0] == image[1] and image[0] != image[2]


@pytest.mark.parametrize(
    "body",
    [
        {"model": PIXEL, "steps": 3, "n": 4, "seed": 11, "label": 3, "guidance": 2.5, "sampler": "euler"},
        {"model": LATENT, "steps": 2, "n": 2, "seed": 2, "sampler": "ddpm", "grid": "uniform"},
        {"model": PIXEL, "operation": "edit", "image": png_url(DIGIT), "strength": 0.6, "steps": 3, "n": 2},
        {
            "model": PIXEL,
            "operation": "inpaint",
            "image": png_url(DIGIT),
            "mask": png_url(KEEP_LEFT),
            "steps": 4,
            "n": 2,
            "jump": 1,
            "resample": 2,
        },
    ],
    ids=["sample-guided", "sample-latent", "edit", "inpaint"],
)
def test_the_command_reproduces_the_result_bit_for_bit(client, body, tmp_path, monkeypatch):
    created, evs = finish(client, **body)
    command = shlex.split(created["command"])
    assert command[:2] == ["hwaksan", body.get("operation", "sample")] and command[-2:] == [
        "--out",
        "result.png",
    ]
    monkeypatch.chdir(tmp_path)
    assert main(command[1:]) == 0
    cli = np.asarray(Image.open(tmp_path / "result.png"))
    assert np.array_equal(cli, decode_url(evs[-1][1]["image"]))


def test_inpaint_keeps_the_known_pixels(client):
    _, evs = finish(
        client,
        model=PIXEL,
        operation="inpaint",
        image=png_url(DIGIT),
        mask=png_url(KEEP_LEFT),
        steps=3,
        n=2,
        jump=1,
        resample=2,
        seed=3,
    )
    assert all("preview" in data for name, data in evs if name == "step")
    scale = 96 // 8
    grid = decode_url(evs[-1][1]["image"])[::scale, ::scale]  # back to one pixel per pixel
    for i in range(2):
        cell = grid[2:10, 2 + 10 * i : 10 + 10 * i]
        assert np.array_equal(cell[:, :4], DIGIT[:, :4])  # kept exactly, after the PNG's quantisation
        assert not np.array_equal(cell[:, 4:], DIGIT[:, 4:])


def test_edit_reports_its_steps_and_nfe(client):
    created, evs = finish(
        client,
        model=PIXEL,
        operation="edit",
        image=png_url(DIGIT),
        strength=0.5,
        steps=3,
        n=2,
        label=2,
        guidance=2,
    )
    steps = [data for name, data in evs if name == "step"]
    assert evs[0] == ("start", {"total": len(steps)}) and steps
    assert evs[-1][1]["nfe"] == created["nfe"]
    assert "--strength 0.5" in created["command"] and "--class 2 --guidance 2" in created["command"]


def test_points_and_trajectories_of_a_2d_model(client):
    created, evs = finish(client, model=TOY, steps=3, n=60, seed=1)
    steps = [data for name, data in evs if name == "step"]
    assert len(steps) == 3 and all(len(s["points"]) == 60 for s in steps)
    done = evs[-1][1]
    assert np.array(done["points"]).shape == (60, 2)
    assert np.array(done["trajectories"]).shape == (3, 50, 2)
    assert np.allclose(done["trajectories"][-1], done["points"][:50])
    csv = client.get(f"/api/runs/{created['run']}/points.csv")
    assert csv.status_code == 200 and csv.text.startswith("x,y\n")
    assert np.allclose(
        np.loadtxt(io.StringIO(csv.text), delimiter=",", skiprows=1), done["points"], atol=1e-5
    )


# ------------------------------------------------------------------------------------------------
# cancel and queue


def _wait_for(studio: Studio, run: str, name: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(n == name for n, _ in studio.runs.get(run).events):
        assert time.monotonic() < deadline, f"no {name} event"
        time.sleep(0.005)


def test_cancel_stops_a_long_run(client, studio):
    run = start(client, model=PIXEL, steps=200, n=2)["run"]
    _wait_for(studio, run, "step")
    assert client.post(f"/api/runs/{run}/cancel").json() == {"cancelled": True}
    evs = events(client, run)
    assert evs[-1] == ("cancelled", {})
    assert sum(name == "step" for name, _ in evs) < 200
    assert client.get(f"/api/runs/{run}/result.png").status_code == 404
    assert client.post(f"/api/runs/{run}/cancel").json() == {"cancelled": False}  # over already


def test_a_second_run_waits_behind_the_first(client, studio):
    first = start(client, model=PIXEL, steps=200, n=2)["run"]
    second = start(client, model=PIXEL, steps=2, n=2)
    assert second["position"] == 1
    other_model = start(client, model=TOY, steps=2, n=8)  # another model's worker: no wait
    assert other_model["position"] == 0
    client.post(f"/api/runs/{first}/cancel")
    evs = events(client, second["run"])
    assert evs[0] == ("queued", {"position": 1})
    assert [name for name, _ in evs[1:]] == ["start", "step", "step", "done"]
    assert events(client, other_model["run"])[-1][0] == "done"


def test_a_run_cancelled_while_waiting_never_starts(client, studio):
    first = start(client, model=PIXEL, steps=200, n=2)["run"]
    second = start(client, model=PIXEL, steps=2, n=2)["run"]
    assert client.post(f"/api/runs/{second}/cancel").json() == {"cancelled": True}
    client.post(f"/api/runs/{first}/cancel")
    assert [name for name, _ in events(client, second)] == ["queued", "cancelled"]


# ------------------------------------------------------------------------------------------------
# refusals: 4xx, one line of JSON, no traceback


def _refused(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert "\n" not in message and "Traceback" not in response.text
    for word in words:
        assert word in message, message


NOT_PNG = "data:image/png;base64," + base64.b64encode(b"GIF89a" + b"\0" * 40).decode()


@pytest.mark.parametrize(
    "body, status, words",
    [
        (b"{", 400, ["JSON"]),
        (b"[1, 2]", 400, ["object"]),
        (b'{"model": "9"}', 422, ["no model"]),
        (b'{"model": 1}', 422, ["no model"]),
        (b'{"model": "1", "steps": 201}', 422, ["steps", "200"]),
        (b'{"model": "1", "steps": 0}', 422, ["--steps"]),
        (b'{"model": "1", "n": 65}', 422, ["64"]),
        (b'{"model": "0", "n": 5001}', 422, ["5000"]),
        (b'{"model": "1", "guidance": NaN}', 422, ["--guidance", "nan"]),
        (b'{"model": "1", "steps": "3"}', 422, ["steps"]),
        (b'{"model": "1", "uncond": 1}', 422, ["uncond"]),
        (b'{"model": "1", "colour": "red"}', 422, ["colour"]),
        (b'{"model": "1", "sampler": "nope"}', 422, ["sampler"]),
        (b'{"model": "1", "grid": "../plan.json"}', 422, ["grid"]),
        (b'{"model": "1", "options": {"bogus": 1}}', 422, ["bogus"]),
        (b'{"model": "1", "label": 10}', 422, ["0..9"]),
        (b'{"model": "1", "prompt": "--classifier=x"}', 422, ["text-conditional"]),
        (b'{"model": "0", "operation": "edit"}', 422, ["edit"]),
        (b'{"model": "1", "operation": "inpaint"}', 422, ["image"]),
        (json.dumps({"model": "1", "operation": "edit", "image": NOT_PNG}).encode(), 422, ["PNG"]),
        (
            json.dumps({"model": "1", "operation": "edit", "image": "http://x/y.png"}).encode(),
            422,
            ["data URL"],
        ),
        (
            json.dumps(
                {"model": "1", "operation": "edit", "image": png_url(np.zeros((9, 8), np.uint8))}
            ).encode(),
            422,
            ["8x9"],
        ),
        (
            json.dumps(
                {"model": "1", "operation": "edit", "image": png_url(np.zeros((300, 8), np.uint8))}
            ).encode(),
            422,
            ["256"],
        ),
        (
            json.dumps(
                {"model": "1", "operation": "inpaint", "image": png_url(DIGIT), "mask": png_url(DIGIT[:4])}
            ).encode(),
            422,
            ["mask"],
        ),
    ],
)
def test_malformed_requests_are_refused_in_one_line(client, body, status, words):
    _refused(client.post("/api/runs", content=body, headers=JSON), status, *words)


def test_an_oversized_upload_is_413(client):
    big = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 2_000_001).decode()
    _refused(
        client.post("/api/runs", json={"model": "1", "operation": "edit", "image": big}), 413, "upload limit"
    )
    huge = b'{"model": "1", "prompt": "' + b"a" * 7_000_000 + b'"}'
    _refused(client.post("/api/runs", content=huge, headers=JSON), 413, "bytes")


def test_a_run_must_be_sent_as_json(client):
    """A page of another site can post a form or plain text to this port without a CORS
    preflight; the server takes a run only as JSON, which such a page cannot send unasked."""
    body = json.dumps({"model": "1", "steps": 2, "n": 1})
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        _refused(client.post("/api/runs", content=body, headers={"content-type": kind}), 415, "JSON")


def test_unknown_routes_and_runs_are_404_json(client):
    _refused(client.get("/api/nothing"), 404, "no route")
    _refused(client.get("/api/runs/nope/events"), 404, "no run")
    _refused(client.post("/api/runs/nope/cancel"), 404, "no run")
    _refused(client.get("/api/runs/nope/result.png"), 404, "no run")
    _refused(client.delete("/api/models"), 405)
    run = start(client, model=PIXEL, steps=2, n=2)["run"]
    _refused(client.get(f"/api/runs/{run}/points.csv"), 404, "points")


def test_a_loopback_studio_answers_only_to_loopback_names(studio, tmp_path):
    """DNS rebinding: a page of another site whose name resolves to 127.0.0.1 sends its own name
    in the Host header, and is refused before any route runs."""
    app = create_app(studio, allowed_hosts=LOOPBACK_NAMES)
    assert TestClient(app, base_url="http://127.0.0.1:7860").get("/api/models").status_code == 200
    assert TestClient(app, base_url="http://localhost:7860").get("/api/models").status_code == 200
    refused = TestClient(app, base_url="http://evil.example:7860").post("/api/runs", json={"model": "1"})
    assert refused.status_code == 400 and "Traceback" not in refused.text
