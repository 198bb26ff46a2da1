"""Audio quality of the speech-digits models (docs/benchmarks-audio.md).

    nice -n 5 .venv/bin/python bench/audio_quality.py --vocoder runs/speech-digits \\
        --mel-model runs/speech-digits-mel --out runs/audio-bench

1. Vocoder: validation clips (voices never trained on), cut to ``--seconds``; the log-spectral
   distance (LSD) and mel-cepstral distortion (MCD) to the reference of each clip vocoded from its
   own log-mel by: Griffin-Lim (librosa, 32 iterations) on the same mel; the WaveGrad model with
   the library's samplers on Karras and log-SNR grids at 6, 12 and 50 steps; with WaveGrad's
   searched 6-step beta schedule (the sec. 4 grid search over :func:`wavegrad_candidates`, scored by
   LSD on ``--search-clips`` other validation clips, run with the ancestral sampler as in the paper
   and with DDIM); and at 1000 steps (DDPM ancestral on the uniform grid; ``--clips-1000`` clips).
2. Class-conditional: the spoken-digit classifier (train voices; accuracy on the validation voices
   reported) reads ``--per-class`` CFG samples per digit of the mel model, as spectrograms and
   vocoded to sound (6-step DPM-Solver++(2M)).
3. A picture (docs/img/audio.png with ``--picture``): reference, Griffin-Lim, 6-step WaveGrad, and
   CFG samples vocoded.

Prints a markdown table and writes ``results.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from hwaksan.data.audio import load_speech_digits
from hwaksan.data.audio_features import MelSettings, log_mel, normalise_log_mel
from hwaksan.evaluation.audio import (
    digit_accuracy,
    griffin_lim,
    log_spectral_distance,
    mel_cepstral_distortion,
    train_digit_classifier,
)
from hwaksan.guidance import ClassifierFreeGuidance
from hwaksan.io.artifact import load_trained
from hwaksan.io.media import save_media, save_preview
from hwaksan.tasks.vocode import beta_grid, vocode, wavegrad_candidates
from hwaksan.utils import generators_from_seeds


def pick_clips(val, n: int, offset: int = 0) -> list[int]:
    """``n`` validation clips spread over digits, voices, rates and pitches (deterministic)."""
    picks = []
    for i in range(n):
        digit = i % 10
        where = torch.nonzero(val.labels == digit).flatten()
        picks.append(int(where[(7 * (i // 10) + 11 * offset + 3 * digit) % len(where)]))
    return picks


def scores(x: torch.Tensor, ref: torch.Tensor, s: MelSettings) -> dict[str, float]:
    return {
        "lsd": float(log_spectral_distance(x, ref, s).mean()),
        "mcd": float(mel_cepstral_distortion(x, ref, s).mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vocoder", default="runs/speech-digits")
    ap.add_argument("--mel-model", default="runs/speech-digits-mel")
    ap.add_argument("--out", default="runs/audio-bench")
    ap.add_argument("--clips", type=int, default=10)
    ap.add_argument("--search-clips", type=int, default=3)
    ap.add_argument("--clips-1000", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=0.512)
    ap.add_argument("--per-class", type=int, default=5)
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--picture", default=None)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: best on a busy shared CPU)")
    ap.add_argument("--classifier-steps", type=int, default=400)
    ap.add_argument("--steps-1000", type=int, default=1000, help="the many-step baseline's steps")
    ap.add_argument("--table-steps", default="6,12,50")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"args": vars(args)}

    voc = load_trained(args.vocoder)
    s = MelSettings.from_dict(voc.modality_params)
    val = load_speech_digits("val", clip_length=int(voc.modality_params.get("clip_length", 16384)))
    t = int(args.seconds * s.sample_rate) // s.hop * s.hop

    def clips(idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        ref = val.images[idx][..., :t]
        return ref, normalise_log_mel(log_mel(ref, s))

    ref, mel = clips(pick_clips(val, args.clips))
    rows = []

    def run(name: str, fn, ref=ref, mel=mel, **extra) -> torch.Tensor:
        t0 = time.perf_counter()
        with torch.no_grad():
            x, nfe = fn(mel)
        row = {
            "method": name,
            "nfe": nfe,
            "clips": len(ref),
            **scores(x, ref, s),
            "seconds": time.perf_counter() - t0,
        }
        row.update(extra)
        rows.append(row)
        print(
            f"{name:44s} NFE {nfe:5d}  LSD {row['lsd']:6.2f} dB  MCD {row['mcd']:6.2f} dB  "
            f"{row['seconds']:7.1f} s",
            flush=True,
        )
        return x

    def wg(sampler: str, steps: int, grid):
        def fn(m):
            r = vocode(voc, m, sampler=sampler, steps=steps, grid=grid, seed=0)
            return r.x.cpu(), r.nfe

        return fn

    # real vs real floors: a clip against itself, and against the same digit by another val voice
    results["floor_same_clip"] = scores(ref, ref, s)
    other, _ = clips(pick_clips(val, args.clips, offset=1))
    results["real_other_voice"] = scores(other, ref, s)
    print(
        f"real vs itself: {results['floor_same_clip']}; same digit, other clip: {results['real_other_voice']}"
    )

    gl = run("Griffin-Lim (librosa, 32 iterations)", lambda m: (griffin_lim(m, s), 0))

    # WaveGrad sec. 4: grid search of 6-step beta schedules on other validation clips
    sref, smel = clips(pick_clips(val, args.search_clips, offset=2))
    search = []
    t0 = time.perf_counter()
    for betas in wavegrad_candidates(6):
        grid = beta_grid(voc.process, betas)
        with torch.no_grad():
            x = vocode(voc, smel, sampler="ddpm", grid=grid, seed=100).x.cpu()
        search.append((float(log_spectral_distance(x, sref, s).mean()), betas))
    search.sort(key=lambda r: r[0])
    best = search[0][1]
    results["search"] = {"seconds": time.perf_counter() - t0, "scored": [[lsd, b] for lsd, b in search]}
    print(
        f"searched 6-step schedule ({len(search)} candidates, {results['search']['seconds']:.0f} s): "
        f"{[f'{b:.1e}' for b in best]} LSD {search[0][0]:.2f}"
    )
    grid_best = beta_grid(voc.process, best)
    wg6 = run("WaveGrad searched schedule, ddpm (ancestral)", wg("ddpm", 6, grid_best), betas=best)
    run("WaveGrad searched schedule, ddim", wg("ddim", 6, grid_best), betas=best)
    for steps in [int(v) for v in args.table_steps.split(",")]:
        for sampler in ("ddim", "dpmpp_2m", "heun"):
            for grid in ("karras", "log_snr"):
                x = run(f"{sampler} {grid} {steps} steps", wg(sampler, steps, grid))
                if (sampler, grid, steps) == ("dpmpp_2m", "karras", 6):
                    wg6_ode = x
    n1000 = min(args.clips_1000, len(ref))
    k = args.steps_1000
    run(f"ddpm uniform {k} steps", wg("ddpm", k, "uniform"), ref=ref[:n1000], mel=mel[:n1000])
    for name, sub in (
        ("Griffin-Lim, same clips as 1000 steps", gl[:n1000]),
        ("dpmpp_2m karras 6, same clips", wg6_ode[:n1000]),
    ):
        rows.append({"method": name, "clips": n1000, **scores(sub, ref[:n1000], s)})
        print(f"{name:44s} LSD {rows[-1]['lsd']:6.2f}  MCD {rows[-1]['mcd']:6.2f}")
    results["vocoder"] = rows

    # class-conditional: CFG samples of the mel model, classified as mels and vocoded
    clf = train_digit_classifier(s, steps=args.classifier_steps)
    results["classifier_val_accuracy"] = clf.val_accuracy
    vmel_all = normalise_log_mel(log_mel(val.images, s))[:, None]
    results["classifier_on_real_val_mels"] = digit_accuracy(clf, vmel_all, val.labels)
    print(f"digit classifier: val-voice accuracy {clf.val_accuracy:.3f}")
    if Path(args.mel_model).exists():
        melm = load_trained(args.mel_model)
        n = 10 * args.per_class
        labels = torch.arange(n) % 10
        cfg = {}
        for w in (1.0, args.guidance):
            den = melm.denoiser if w == 1.0 else ClassifierFreeGuidance(melm.denoiser, w, null_class=10)
            t0 = time.perf_counter()
            with torch.no_grad():
                m = melm.sample(
                    n,
                    denoiser=den,
                    sampler="heun",
                    steps=12,
                    grid="karras",
                    cond=labels,
                    generator=generators_from_seeds(range(n)),
                    device="cpu",
                ).x
            acc = digit_accuracy(clf, m, labels)
            cfg[str(w)] = {"mel_accuracy": acc, "seconds": time.perf_counter() - t0}
            print(f"mel model CFG w={w}: classifier reads {acc:.3f} of {n} spectrograms")
        m = m[:, 0]
        with torch.no_grad():
            wav = vocode(voc, m, sampler="dpmpp_2m", steps=6, grid="karras", seed=0).x.cpu()
        cfg[str(args.guidance)]["vocoded_accuracy"] = digit_accuracy(clf, wav, labels)
        print(
            "  vocoded (dpmpp_2m 6 steps): classifier reads "
            f"{cfg[str(args.guidance)]['vocoded_accuracy']:.3f}"
        )
        results["class_conditional"] = cfg
        save_media(wav[:10], out / "cfg", "audio", voc.modality_params)
    else:
        wav = None
        print(f"no mel model at {args.mel_model}: class-conditional part skipped")
    save_media(torch.cat([ref[:3], gl[:3], wg6[:3]]), out / "vocoded", "audio", voc.modality_params)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    if args.picture:
        panel = [ref[:3], gl[:3], wg6_ode[:3]]
        save_preview(torch.cat(panel), args.picture, "audio", voc.modality_params, 3)
        if wav is not None:
            save_preview(
                wav[:10], Path(args.picture).with_name("audio-cfg.png"), "audio", voc.modality_params, 5
            )
    print("\n| method | NFE | clips | LSD (dB) | MCD (dB) | seconds |\n|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['method']} | {r.get('nfe', '')} | {r['clips']} | {r['lsd']:.2f} | {r['mcd']:.2f} "
            f"| {r.get('seconds', 0):.0f} |"
        )


if __name__ == "__main__":
    main()
