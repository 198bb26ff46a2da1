"""Write an evaluation report: ``report.json``, pictures, and a one-page ``report.html``.

The HTML page embeds its pictures (sample grid, nearest-neighbour pairs, metric vs NFE), so the
single file can be sent around; the PNGs are also written beside it.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

import torch

from ..data.toy import get_toy_dataset
from ..plotting import plot_metric_vs_nfe, plot_samples_2d, save_image_grid

__all__ = ["write_report", "metric_rows"]

_LOWDIM_LABELS = {
    "sw": "sliced Wasserstein distance",
    "mmd": "MMD^2 (RBF, bandwidths 0.1, 0.3, 1)",
    "loglik": "mean log-likelihood under the true density",
}


def _fmt(entry: Any, digits: int = 4) -> str:
    if isinstance(entry, dict) and "value" in entry:
        value, std = entry["value"], entry.get("std")
        s = f"{value:.{digits}g}"
        return s + (f" &plusmn; {std:.2g}" if std is not None else "")
    if isinstance(entry, float):
        return f"{entry:.{digits}g}"
    return html.escape(str(entry))


def _value(entry: Any) -> float:
    return entry["value"] if isinstance(entry, dict) else float(entry)


def metric_rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(metric, value [+- std over seeds], counts and notes)`` rows of the report's metric table."""
    rows = []
    metrics = report["metrics"]
    seeds = report.get("seeds", 1)
    spread = f", mean &plusmn; std over {seeds} seeds" if seeds > 1 else ""
    for key, entry in metrics.items():
        if key == "accuracy":
            counts = f"n = {entry['n']} samples{spread}"
            if "accuracy" in entry:
                clf = entry.get("classifier_accuracy")
                note = (
                    f"; the classifier's own {entry.get('classifier_split')} accuracy: {clf:.4f}"
                    if clf
                    else ""
                )
                rows.append(("class accuracy", _fmt(entry["accuracy"]), counts + note))
            rows.append(("class entropy H[p(y|x)] (nats)", _fmt(entry["entropy_conditional"]), counts))
            rows.append(
                (
                    "entropy of predicted classes (nats)",
                    _fmt(entry["entropy_marginal"]),
                    f"max log K = {entry['entropy_max']:.4f}; {counts}",
                )
            )
        elif key == "nn":
            rows.append(
                (
                    "nearest-train distance, median (pixels, L2)",
                    _fmt(entry["median"]),
                    f"{entry['n']} samples vs {entry['train_n']} {entry['train_split']} images; held-out "
                    f"{entry['heldout_split']} images: {entry['heldout_median']:.4g} "
                    f"(n = {entry['heldout_n']})",
                )
            )
            rows.append(
                (
                    "nearest-train distance, min / 1%",
                    f"{entry['min']:.4g} / {entry['p01']:.4g}",
                    f"held-out: {entry['heldout_min']:.4g} / {entry['heldout_p01']:.4g}",
                )
            )
            rows.append(
                ("median ratio generated / held-out", _fmt(entry["median_ratio"]), "&lt; 1: closer than real")
            )
        elif key in _LOWDIM_LABELS:
            floor = entry.get("floor")
            note = f"{entry['n_fake']} samples vs {entry['n_real']} fresh data points{spread}"
            if floor:
                note += f"; two true sample sets: {_fmt(floor)}"
            rows.append((_LOWDIM_LABELS[key], _fmt(entry["metric"]), note))
        elif isinstance(entry, dict) and "generated" in entry:  # a sequence modality's group
            counts = f"{entry['n_fake']} generated vs {entry['n_real']} real{spread}"
            for measure, value in entry["generated"].items():
                real = entry["real"].get(measure)
                note = f"real: {real:.4g}; {counts}" if real is not None else counts
                rows.append((f"{key}: {measure}", _fmt(value), note))
        elif key in ("nll", "vlb"):
            label = "PF-ODE NLL (bits/dim)" if key == "nll" else "L_vlb (bits/dim)"
            rows.append(
                (
                    label,
                    f"{entry['bits_per_dim']:.4f} &plusmn; {entry['std_error']:.2g} (s.e.)",
                    f"n = {entry['n']} {entry['split']} images",
                )  # fmt: skip
            )
        else:  # a feature space
            counts = f"{entry['n_fake']} generated vs {entry['n_real']} real, {entry['dim']}-d{spread}"
            if "fd" in entry:
                rows.append((key, _fmt(entry["fd"]), counts))
            space = key.removeprefix("FD-")
            for pr in ("precision", "recall"):
                if pr in entry:
                    rows.append((f"{pr} ({space}, k-NN)", _fmt(entry[pr]), counts))
    return rows


def _png_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _sweep_plots(report: dict[str, Any], out: Path) -> list[Path]:
    sweep = report.get("sweep") or []
    if not sweep:
        return []
    keys = sorted({k for row in sweep for k in row if k.startswith("fd:") or k in ("sw", "mmd")})
    main = report["sampler"]
    paths = []
    for key in keys:
        name = key.split(":", 1)[1] if ":" in key else key
        curves: dict[str, list[tuple[int, float]]] = {}
        for row in sweep:
            if key in row and math.isfinite(row[key]):
                curves.setdefault(row["sampler"], []).append((row["nfe"], row[key]))
        entry = report["metrics"].get(name, {}).get("fd" if ":" in key else "metric")
        visited = not main.get("options") and any(
            r["sampler"] == main["sampler"] and r["steps"] == main["steps"] for r in sweep
        )
        if entry is not None and not visited:  # the sweep's own curve already shows the main setting
            curves.setdefault(f"{main['sampler']} (main)", []).append((main["nfe"], _value(entry)))
        path = out / f"nfe_{name}.png"
        n = sweep[0]["n"]
        label = _LOWDIM_LABELS.get(name, name)
        plot_metric_vs_nfe(curves, path, ylabel=label, title=f"{label} vs NFE ({n} samples each)")
        paths.append(path)
    return paths


def write_report(report: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """Write ``report.json``, ``samples.png``, ``nfe_<metric>.png`` and ``report.html`` into ``out``;
    returns their paths. ``report["_images"]`` (a few samples) feeds the grid and is not stored."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = dict(report)
    images: torch.Tensor | None = report.pop("_images", None)
    points: torch.Tensor | None = report.pop("_points", None)
    paths: dict[str, Path] = {}
    if points is not None and len(points):
        data = get_toy_dataset(report["checkpoint"]["dataset"]).sample(len(points), 10_000)
        title = f"{report['sampler']['sampler']}, {report['sampler']['nfe']} NFE"
        paths["samples"] = plot_samples_2d({"data": data, title: points}, out / "samples.png", cols=2)
        report["files"]["samples"] = "samples.png"
    if images is not None and len(images):
        k = report["checkpoint"].get("num_classes") or 0
        nrow = (
            k
            if k and not report["sampler"].get("uncond") and report["sampler"].get("label") is None
            else None
        )
        scale = max(1, 48 // max(images.shape[-2:]))
        paths["samples"] = save_image_grid(images, out / "samples.png", nrow=nrow or 10, scale=scale)
        report["files"]["samples"] = "samples.png"
    for p in _sweep_plots(report, out):
        paths[p.stem] = p
        report["files"][p.stem] = p.name
    paths["json"] = out / "report.json"
    paths["json"].write_text(json.dumps(report, indent=2, sort_keys=False, default=float) + "\n")
    paths["html"] = out / "report.html"
    paths["html"].write_text(_html(report, out))
    return paths


def _html(report: dict[str, Any], out: Path) -> str:
    ck, sp = report["checkpoint"], report["sampler"]
    classes = f", {ck['num_classes']} classes" if ck.get("num_classes") else ""
    shape = f"images {ck['image_shape']}" if ck.get("image_shape") else "2-D points"
    if ck.get("data_shape"):
        shape = f"{report['model_kind']} samples {ck['data_shape']}"
    if ck.get("latent_shape"):
        shape += f" decoded from latents {ck['latent_shape']}"
    reference = (
        f"{report['reference']['split']} split" if ck.get("image_shape") else "fresh samples of the data"
    )
    if ck.get("data_shape"):
        reference = report["reference"]["split"]
    step = f"step {ck['step']}," if ck.get("step") is not None else ""
    footnote = (
        '<p style="font-size:0.8em">FD-EffNet uses EfficientNet-Lite0 ImageNet features at 128x128 and '
        "FD-&lt;dataset&gt; a classifier hwaksan trains on the data set: neither is FID, and numbers "
        "compare only with other hwaksan reports at the same sample counts.</p>"
        if ck.get("image_shape")
        else ""
    )
    guidance = f", classifier-free guidance w = {sp['guidance']:g}" if sp.get("guidance", 1.0) != 1.0 else ""
    rows = "\n".join(
        f"<tr><td>{a}</td><td class=num>{b}</td><td>{c}</td></tr>" for a, b, c in metric_rows(report)
    )
    warn = "".join(f"<li>{html.escape(w)}</li>" for w in report.get("warnings", []))
    grid = f"<figure>{_png_tag(out / 'samples.png', 'samples')}<figcaption>the first samples"
    if report.get("model_kind") == "2d":
        grid = f"<figure>{_png_tag(out / 'samples.png', 'samples')}<figcaption>true data and samples"
    grid += (
        " (row = one image per class)</figcaption></figure>"
        if ck.get("num_classes")
        else "</figcaption></figure>"
    )
    if not (out / "samples.png").exists():
        grid = ""
    nn = ""
    if (out / "nearest_neighbours.png").exists():
        nn = (
            f"<figure>{_png_tag(out / 'nearest_neighbours.png', 'nearest neighbours')}"
            "<figcaption>the (up to 16) generated images closest to the training set, in blocks of two rows: "
            "generated images on top, each one's nearest training image (pixel L2) below it"
            "</figcaption></figure>"
        )
    sweep = ""
    for p in sorted(out.glob("nfe_*.png")):
        if p.name in report["files"].values():
            sweep += f"<figure>{_png_tag(p, p.stem)}</figure>"
    if report.get("sweep"):
        head = sorted({k for r in report["sweep"] for k in r if ":" in k or k in ("accuracy", "sw", "mmd")})
        trs = "".join(
            "<tr>"
            + "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in ("sampler", "steps", "nfe"))
            + "".join(f"<td class=num>{r[h]:.4g}</td>" if h in r else "<td></td>" for h in head)
            + "</tr>"
            for r in report["sweep"]
        )
        ths = "".join(f"<th>{html.escape(h)}</th>" for h in ("sampler", "steps", "NFE", *head))
        sweep += f"<table><tr>{ths}</tr>{trs}</table>"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>hwaksan evaluation: {html.escape(str(ck["path"]))}</title>
<style>
body {{ font-family: sans-serif; max-width: 1100px; margin: 1em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; }}
td.num {{ text-align: right; font-family: monospace; }}
figure {{ display: inline-block; margin: 0.5em; vertical-align: top; }}
figcaption {{ font-size: 0.8em; color: #555; max-width: 520px; }}
.warn {{ color: #a40; }}
</style></head><body>
<h2>hwaksan evaluation</h2>
<p><b>checkpoint</b> {html.escape(str(ck["path"]))} ({step}
data set {html.escape(ck["dataset"])}, {shape}{classes})<br>
<b>sampler</b> {html.escape(sp["sampler"])}, {sp["steps"]} steps, grid {html.escape(str(sp["grid"]))},
{sp["nfe"]} NFE per image{guidance}, seeds {sp["seed"]}..{sp["seed"] + report["n"] * report["seeds"] - 1}<br>
<b>samples</b> n = {report["n"]} per run x {report["seeds"]} run(s);
reference: {html.escape(reference)}; created {report["created"]}</p>
<table><tr><th>metric</th><th>value</th><th>sample counts and notes</th></tr>
{rows}
</table>
{f'<ul class="warn">{warn}</ul>' if warn else ""}
{footnote}
{grid}{nn}
{sweep}
</body></html>
"""
