"""Audio quality of the speech-digits models (docs/benchmarks-audio.md).

    nice -n 5 .venv/bin/python bench/audio_quality.py --vocoder runs/speech-digits \\
        --mel-model runs/speech-digits-mel --out runs/audio-bench

1. Vocoder: validation clips (voices never trained on), cut to ``--seconds``; the log-spectral
   distance (LSD) and mel-cepstral distortion (MCD) to the reference of each clip vocoded from its
   own log-mel by: Griffin-Lim (librosa, 32 iterations) on the same mel; the WaveGrad model with
   the library's samplers on Karras and log-SNR grids at 6, 12 and 50 steps; with WaveGrad's
   searched 6-step beta schedule (the sec. 4 grid search over :func:`wavegrad_candidates`, scored by
   LSD on ``--search-clips`` other validation clips, run with the ancestral sampler as in the paper
   and with DDIM); DDIM on grids planned by :func:`hwaksan.tasks.vocode.plan_vocoder_grid` on those
   clips (``--plan-steps``); and at 1000 steps (DDPM ancestral on the uniform grid; ``--clips-1000`` clips).
   Every WaveGrad row runs with each of ``--consistency`` (mel-consistency steps per denoised
   estimate, :func:`hwaksan.data.audio_features.mel_projection`; 0: the network alone), and a
   control without the network: :func:`~hwaksan.data.audio_features.mel_consistent` from noise
   (Griffin-Lim with the mel's own magnitude step), to show what the network adds.
2. Class-conditional: the spoken-digit classifier (train voices; accuracy on the validation voices
   reported) reads ``--per-class`` CFG samples per digit of the mel model, as spectrograms and
   vocoded to sound (6-step DDIM on the log-SNR grid, with the largest ``--consistency``).
3. A picture (docs/img/audio.png with ``--picture``): reference, Griffin-Lim, 6-step WaveGrad (DDIM,
   log-SNR grid, the largest ``--consistency``), and CFG samples vocoded (audio-cfg.png).

Prints a markdown table and writes ``results.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from hwaksan.data.audio import load_speech_digits
from hwaksan.data.audio_features import (
    MelSettings,
    log_mel,
    mel_consistent,
    mel_magnitudes,
    mel_projection,
    normalise_log_mel,
)
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
from hwaksan.tasks.vocode import beta_grid, plan_vocoder_grid, vocode, wavegrad_candidates
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
    ap.add_argument("--plan-steps", default="6,12", help="steps of the planned DDIM grids ('' for none)")
    ap.add_argument("--consistency", default="0,8", help="mel-consistency steps to compare, e.g. 0,4,8")
    ap.add_argument("--control-iterations", default="8,24,60", help="mel-consistency from noise, no network")
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

    ks = [int(v) for v in args.consistency.split(",")]
    k_best = max(ks)

    def wg(sampler: str, steps: int, grid, k: int = 0):
        def fn(m):
            r = vocode(voc, m, sampler=sampler, steps=steps, grid=grid, seed=0, project=held(m, k))
            return r.x.cpu(), r.nfe

        return fn

    def held(m: torch.Tensor, k: int):
        return mel_projection(m, s, k) if k else None

    def tag(k: int) -> str:
        return f", consistency {k}" if k else ""

    # real vs real floors: a clip against itself, and against the same digit by another val voice
    results["floor_same_clip"] = scores(ref, ref, s)
    other, _ = clips(pick_clips(val, args.clips, offset=1))
    results["real_other_voice"] = scores(other, ref, s)
    print(
        f"real vs itself: {results['floor_same_clip']}; same digit, other clip: {results['real_other_voice']}"
    )

    gl = run("Griffin-Lim (librosa, 32 iterations)", lambda m: (griffin_lim(m, s), 0))
    for it in [int(v) for v in args.control_iterations.split(",")]:

        def from_noise(m, it=it):
            z = 0.1 * torch.randn(m.shape[0], m.shape[-1] * s.hop, generator=torch.Generator().manual_seed(0))
            return mel_consistent(z, mel_magnitudes(m), s, it)[:, None], 0

        run(f"mel-consistency from noise, {it} iterations, no network", from_noise)

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
    for k in ks:
        wg6 = run(
            f"WaveGrad searched schedule, ddpm (ancestral){tag(k)}", wg("ddpm", 6, grid_best, k), betas=best
        )
        run(f"WaveGrad searched schedule, ddim{tag(k)}", wg("ddim", 6, grid_best, k), betas=best)
    for steps in [int(v) for v in args.table_steps.split(",")]:
        for sampler in ("ddim", "dpmpp_2m", "heun"):
            for grid in ("karras", "log_snr"):
                for k in ks:
                    x = run(f"{sampler} {grid} {steps} steps{tag(k)}", wg(sampler, steps, grid, k))
                    if (sampler, grid, steps, k) == ("ddim", "log_snr", 6, k_best):
                        wg6_ode = x
    # planned grids (hwaksan.samplers.plan) for DDIM, planned on the search clips' mels
    for steps in [int(v) for v in args.plan_steps.split(",") if v]:
        t0 = time.perf_counter()
        plan = plan_vocoder_grid(voc, smel, steps, sampler="ddim")
        print(
            f"planned ddim {steps}-step grid: calibration error {plan.error:.3g} "
            f"({plan.initial} grid: {plan.initial_error:.3g}), {time.perf_counter() - t0:.0f} s"
        )
        plan_file = out / f"plan_ddim_{steps}.json"  # a --grid file of hwaksan vocode / sample
        plan_file.write_text(json.dumps({"ts": plan.ts.tolist(), "sampler": "ddim", "steps": steps}))
        for k in ks:
            run(
                f"ddim planned {steps} steps{tag(k)}",
                wg("ddim", steps, plan.ts, k),
                sigmas=plan.sigmas.tolist(),
            )
    n1000 = min(args.clips_1000, len(ref))
    n_long = args.steps_1000
    for k in ks:
        run(
            f"ddpm uniform {n_long} steps{tag(k)}",
            wg("ddpm", n_long, "uniform", k),
            ref=ref[:n1000],
            mel=mel[:n1000],
        )
    for name, sub in (
        ("Griffin-Lim, same clips as 1000 steps", gl[:n1000]),
        (f"ddim log_snr 6{tag(k_best)}, same clips", wg6_ode[:n1000]),
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
            for k in ks:
                wav = vocode(voc, m, sampler="ddim", steps=6, grid="log_snr", seed=0, project=held(m, k))
                wav = wav.x.cpu()
                acc = digit_accuracy(clf, wav, labels)
                cfg[str(args.guidance)][f"vocoded_accuracy_consistency_{k}"] = acc
                print(f"  vocoded (ddim log_snr 6 steps{tag(k)}): classifier reads {acc:.3f}")
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
