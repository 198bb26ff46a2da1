"""Training the KL autoencoder of latent diffusion, and reading it back.

``train_vae(VAEConfig(...), out_dir)`` trains :class:`hwaksan.models.vae.AutoencoderKL` on an image
set and writes under ``out_dir``::

    vae.safetensors, vae.json     the autoencoder (EMA weights when ema_decay > 0; the raw weights too,
                                  for ``init``), its config, the latent scale / shift, the
                                  reconstruction PSNR, the training config
    recon.png                     validation images, each followed by its reconstruction
    loss.png, metrics.jsonl       the loss curve and one record every ``log_every`` steps

The objective per image (Rombach et al. 2022, sec. 3.1 and App. G, without the adversarial term) is

    L = [ sum_pixels rec(x, x_hat) + kl_weight * KL(q(z | x) || N(0, I)) ] / D
        + perceptual_weight * || phi(x) - phi(x_hat) ||^2 / dim(phi)

with ``rec`` the absolute (``l1``) or squared (``l2``) error, ``D = C H W``, ``x_hat`` decoded from a
posterior sample and ``phi`` an optional frozen feature map (e.g. EfficientNet-Lite0 features,
passed in as ``features=``). Dividing both sums by ``D`` keeps LDM's ratio, so ``kl_weight``
means what LDM's does (1e-6 in its KL-f4 model).

After training, the **latent normalisation** is measured on the posterior means of the whole
training split: ``shift = mean(z)``, ``scale = 1 / std(z)`` (one scalar each, LDM sec. 4.3.2; the
shift as in SD3), stored in the checkpoint and in the network's buffers, so ``(z - shift) * scale``
has zero mean and unit variance. PSNR is ``10 log10(4 / MSE)`` per image for images in [-1, 1]
(= the usual PSNR of [0, 1] images), averaged over the validation split.

Determinism: the data order of epoch ``e`` is a permutation seeded from ``(seed, e)``, the flips and
posterior noise of step ``k`` come from a generator seeded from ``(seed, k)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..data.images import ImageDataset, load_dataset
from ..io.checkpoint import load_tensors, save_tensors
from ..io.vae import load_vae, resolve_vae
from ..models.vae import AutoencoderKL
from ..plotting import plot_loss, save_image_grid
from ..utils import mix_seed
from .ema import EMA
from .optim import EpochOrder, check_finite, make_optimizer, make_scheduler

__all__ = [
    "VAEConfig",
    "VAEResult",
    "train_vae",
    "psnr",
    "latent_normalisation",
    "encode_dataset",
    "vae_loss",
]

LOSSES = ("l1", "l2")


@dataclass(frozen=True)
class VAEConfig:
    """What ``hwaksan train-vae`` trains (every field is a command-line option).

    Attributes:
        data: data set name (``emoji``, ``fashion``, ``mnist``, ``digits``, ``folder:PATH``).
        split: training split; the PSNR is measured on ``val`` when the set has one.
        image_size: resize to ``(s, s)`` (0: native size); sides must be multiples of the
            down-sampling factor.
        latent_channels: latent channels c.
        model_channels: width of the first level.
        channel_mult: width multipliers per level (``(1, 2, 2)``: 4x down-sampling).
        num_res_blocks: residual blocks per level.
        mid_attention: self-attention in the middle blocks.
        loss: ``l1`` or ``l2`` reconstruction.
        kl_weight: weight of the KL term (LDM's convention, see the module docstring).
        perceptual_weight: weight of the feature-space term (needs ``features=``).
        lr: AdamW peak learning rate (linear warm-up, cosine decay to 5%).
        warmup: warm-up steps.
        steps: optimiser steps.
        batch_size: images per step.
        ema_decay: EMA of the weights saved as the model (0: the raw weights), with the usual
            warm-up ``min(ema_decay, (1 + k) / (10 + k))`` at step ``k``.
        hflip: random horizontal flips of the training images.
        seed: all randomness.
        max_seconds: stop after this much training time (0: no limit). SIGINT / SIGTERM also stop the
            loop after the current step, and the run is then saved as if it had ended.
        bf16: bfloat16 autocast for the forward pass.
        threads: torch intra-op threads (0: torch's default).
        log_every: steps between metric records.
        init: start from the weights of this ``train-vae`` output (continue a run in slices; the
            network arguments must match); ``""``: a fresh initialisation.
    """

    data: str = "emoji"
    split: str = "train"
    image_size: int = 32
    latent_channels: int = 4
    model_channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    mid_attention: bool = True
    loss: str = "l1"
    kl_weight: float = 1e-6
    perceptual_weight: float = 0.0
    lr: float = 1e-3
    warmup: int = 100
    steps: int = 3000
    batch_size: int = 32
    ema_decay: float = 0.999
    hflip: bool = True
    seed: int = 0
    max_seconds: float = 0.0
    bf16: bool = False
    threads: int = 0
    log_every: int = 50
    init: str = ""

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss = {self.loss!r}: allowed values are {', '.join(LOSSES)}")
        checks = [
            ("kl_weight", self.kl_weight >= 0, ">= 0"),
            ("perceptual_weight", self.perceptual_weight >= 0, ">= 0"),
            ("lr", self.lr > 0, "> 0"),
            ("steps", self.steps >= 1, ">= 1"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("ema_decay", 0 <= self.ema_decay < 1, "0 <= ema_decay < 1"),
            ("image_size", self.image_size >= 0, ">= 0"),
            ("max_seconds", self.max_seconds >= 0, ">= 0"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"{name} = {getattr(self, name)!r} is out of range; allowed: {allowed}")

    def network_config(self, in_channels: int) -> dict[str, Any]:
        """Constructor arguments of the :class:`AutoencoderKL`."""
        return {
            "in_channels": in_channels,
            "latent_channels": self.latent_channels,
            "model_channels": self.model_channels,
            "channel_mult": list(self.channel_mult),
            "num_res_blocks": self.num_res_blocks,
            "mid_attention": self.mid_attention,
        }


@dataclass
class VAEResult:
    """What :func:`train_vae` did."""

    checkpoint: Path
    steps: int
    seconds: float
    psnr: float
    scale: float
    shift: float
    files: dict[str, Path]


# --------------------------------------------------------------------------------------------
# pieces


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio per image ``(B,)`` in dB for images in [-1, 1] (peak-to-peak 2).

    ``10 log10(2^2 / MSE)``, the same number as the PSNR of the images mapped to [0, 1].
    """
    mse = (x.float() - y.float()).pow(2).reshape(x.shape[0], -1).mean(1)
    return 10.0 * torch.log10(4.0 / mse.clamp_min(1e-12))


def vae_loss(
    vae: AutoencoderKL,
    x: torch.Tensor,
    *,
    loss: str = "l1",
    kl_weight: float = 1e-6,
    perceptual_weight: float = 0.0,
    features: Callable[[torch.Tensor], torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """The training objective on a batch ``x (B, C, H, W)`` (see the module docstring).

    Returns a dict of scalars: ``loss`` (to minimise), ``rec`` (mean per-pixel error), ``kl``
    (mean KL per sample, nats) and ``perceptual`` (when used).
    """
    x_hat, q = vae(x, generator=generator)
    d = x[0].numel()
    err = (x_hat.float() - x.float()).abs() if loss == "l1" else (x_hat.float() - x.float()).pow(2)
    rec = err.reshape(x.shape[0], -1).sum(1)
    kl = q.kl().float()
    total = ((rec + kl_weight * kl) / d).mean()
    out = {"rec": (rec / d).mean().detach(), "kl": kl.mean().detach()}
    if perceptual_weight > 0:
        if features is None:
            raise ValueError("perceptual_weight > 0 needs a feature map: pass features=")
        fx, fy = features(x.float().clamp(-1, 1)), features(x_hat.float().clamp(-1, 1))
        perc = (fx.detach() - fy).pow(2).mean()
        total = total + perceptual_weight * perc
        out["perceptual"] = perc.detach()
    out["loss"] = total
    return out


@torch.no_grad()
def encode_dataset(
    vae: AutoencoderKL, images: torch.Tensor, batch_size: int = 256, normalised: bool = True, progress=False
) -> torch.Tensor:
    """Posterior means of ``images (N, C, H, W)`` -> ``(N, c, H/f, W/f)``; normalised with the
    VAE's scale / shift (:meth:`AutoencoderKL.encode_latents`) unless ``normalised=False``."""
    vae.eval()
    out = []
    for chunk in tqdm(images.split(batch_size), disable=not progress, desc="encode", file=sys.stderr):
        out.append(vae.encode_latents(chunk) if normalised else vae.encode(chunk)[0])
    return torch.cat(out) if out else images.new_zeros(0, vae.latent_channels, 1, 1)


def latent_normalisation(z: torch.Tensor) -> tuple[float, float]:
    """``(scale, shift)`` with ``(z - shift) * scale`` of zero mean and unit variance over all
    elements of ``z`` (float64 arithmetic)."""
    z = z.double()
    shift = float(z.mean())
    std = float(z.std(unbiased=False))
    if not std > 0:
        raise ValueError("the latents have zero variance: the autoencoder collapsed (train it longer)")
    return 1.0 / std, shift


def _data(cfg: VAEConfig, split: str) -> ImageDataset:
    return load_dataset(cfg.data, split, cfg.image_size or None)


# --------------------------------------------------------------------------------------------
# the loop


def train_vae(
    cfg: VAEConfig,
    out_dir: str | Path,
    *,
    data: ImageDataset | None = None,
    val: ImageDataset | None = None,
    features: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress: bool = True,
    pictures: bool = True,
) -> VAEResult:
    """Train the autoencoder as ``cfg`` says; write the checkpoint and pictures under ``out_dir``.

    Args:
        cfg: the run.
        out_dir: output folder (created).
        data: training images instead of ``load_dataset(cfg.data, cfg.split, ...)``.
        val: validation images for the PSNR (default: the ``val`` split, else the training data).
        features: frozen feature map for the perceptual term.
        progress: show a progress bar.
        pictures: write ``recon.png`` and ``loss.png``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if data is None:
        data = _data(cfg, cfg.split)
    if val is None:
        try:
            val = _data(cfg, "val") if cfg.split != "val" else data
        except ValueError:
            val = data
    if len(val) == 0:
        val = data
    images = data.images
    torch.manual_seed(cfg.seed)
    vae = AutoencoderKL(**cfg.network_config(images.shape[1]))
    vae._check(images[:1])
    if cfg.init:
        start, _ = load_vae(cfg.init)
        if start.config != vae.config:
            raise ValueError(
                f"init = {cfg.init!r} has network {start.config}, not {vae.config}: match the options"
            )
        tensors, _ = load_tensors(resolve_vae(cfg.init))
        raw_init = {k[4:]: v for k, v in tensors.items() if k.startswith("raw.")}
        vae.load_state_dict({**start.state_dict(), **raw_init})  # continue from the raw weights when saved
    ema = EMA(vae, (cfg.ema_decay,)) if cfg.ema_decay > 0 else None
    opt = make_optimizer(vae.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0, fused=False)
    sched = make_scheduler(opt, cfg.steps, cfg.warmup, True, 0.05)
    n, b = len(images), cfg.batch_size
    order = EpochOrder(n, b, cfg.seed, stream=1)

    params = sum(p.numel() for p in vae.parameters())
    print(
        f"hwaksan train-vae: AutoencoderKL ({params / 1e6:.2f} M params) on {data.name} "
        f"{tuple(images.shape[1:])} x {n} -> latents {vae.latent_channels}x{images.shape[2] // vae.factor}x"
        f"{images.shape[3] // vae.factor}; {cfg.steps} steps of {b}; writing to {out}",
        file=sys.stderr,
    )
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if cfg.bf16 else contextlib.nullcontext()
    metrics = (out / "metrics.jsonl").open("w")
    losses: list[float] = []
    window: list[dict[str, float]] = []
    t0 = t_win = time.perf_counter()
    step = 0
    bar = tqdm(total=cfg.steps, disable=not progress, desc="train-vae", dynamic_ncols=True, file=sys.stderr)
    interrupted = _StopFlag()
    try:
        while step < cfg.steps:
            gen = torch.Generator().manual_seed(mix_seed(cfg.seed, 2, step))
            x = images[order.indices(step)]
            if cfg.hflip:
                flip = torch.rand(x.shape[0], generator=gen) < 0.5
                x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            vae.train()
            with autocast:
                parts = vae_loss(
                    vae, x, loss=cfg.loss, kl_weight=cfg.kl_weight,
                    perceptual_weight=cfg.perceptual_weight, features=features, generator=gen,
                )  # fmt: skip
            value = float(parts["loss"].detach())
            check_finite(
                value,
                f"the VAE loss became {value} at step {step + 1}: lower --lr (now {cfg.lr:g}) "
                "or train without --bf16",
            )
            opt.zero_grad(set_to_none=True)
            parts["loss"].backward()
            torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
            opt.step()
            sched.step()
            if ema is not None:  # with warm-up, so that a short run is not its initialisation
                _ema_update(ema, vae, min(cfg.ema_decay, (1.0 + step) / (10.0 + step)))
            step += 1
            losses.append(value)
            window.append({k: float(v.detach()) for k, v in parts.items()})
            bar.update(1)
            stop = (cfg.max_seconds > 0 and time.perf_counter() - t0 >= cfg.max_seconds) or interrupted.set
            if step % cfg.log_every == 0 or step == cfg.steps or stop:
                now = time.perf_counter()
                rec = {k: sum(w[k] for w in window) / len(window) for k in window[0]}
                rec.update(step=step, lr=sched.get_last_lr()[0], images_per_s=len(window) * b / (now - t_win))
                rec["elapsed_s"] = now - t0
                metrics.write(json.dumps(rec) + "\n")
                metrics.flush()
                bar.set_postfix({"rec": f"{rec['rec']:.4f}", "kl": f"{rec['kl']:.1f}"}, refresh=False)
                window, t_win = [], time.perf_counter()
            if stop:
                break
    finally:
        interrupted.restore()
        bar.close()
    if interrupted.set:
        print(f"hwaksan train-vae: stopped by a signal at step {step}; saving", file=sys.stderr)
        metrics.close()
    seconds = time.perf_counter() - t0
    raw = {k: v.clone() for k, v in vae.state_dict().items()}
    if ema is not None:
        ema.copy_to(vae)
    vae.eval()

    with torch.no_grad():
        z = encode_dataset(vae, images, normalised=False)
        scale, shift = latent_normalisation(z)
        vae.set_latent_normalisation(scale, shift)
        vx = val.images
        rec_val = torch.cat([vae.decode(vae.encode(c)[0]).clamp(-1, 1) for c in vx.split(256)])
        val_psnr = float(psnr(vx, rec_val).mean())
        k = min(len(images), 256)
        rec_train = vae.decode(vae.encode(images[:k])[0]).clamp(-1, 1)
        train_psnr = float(psnr(images[:k], rec_train).mean())

    meta = {
        "kind": "hwaksan-vae",
        "network": {"class": "AutoencoderKL", "config": vae.config},
        "latent": {
            "scale": scale,
            "shift": shift,
            "channels": vae.latent_channels,
            "factor": vae.factor,
            "shape": [vae.latent_channels, images.shape[2] // vae.factor, images.shape[3] // vae.factor],
        },
        "image_shape": list(images.shape[1:]),
        "data": {"name": data.name, "split": cfg.split, "n": n, "val_n": len(val)},
        "metrics": {
            "psnr_val": val_psnr,
            "psnr_train_first256": train_psnr,
            "steps": step,
            "seconds": seconds,
        },
        "train": _plain(dataclasses.asdict(cfg)),
    }
    tensors = {f"model.{k}": v for k, v in vae.state_dict().items()}
    tensors.update({f"raw.{k}": v for k, v in raw.items() if k not in ("latent_scale", "latent_shift")})
    tensors["history.loss"] = torch.tensor(losses, dtype=torch.float64)
    ckpt = out / "vae"
    save_tensors(ckpt, tensors, meta)
    files = {"checkpoint": ckpt.with_name("vae.safetensors"), "metrics": out / "metrics.jsonl"}
    if pictures:
        m = min(32, len(vx))
        rows = torch.stack([vx[:m], rec_val[:m]], 1).reshape(2 * m, *vx.shape[1:])
        scale_px = max(1, 64 // max(vx.shape[2:]))
        files["recon"] = save_image_grid(rows, out / "recon.png", nrow=8, scale=scale_px)
        files["loss_curve"] = plot_loss(losses, out / "loss.png", smooth=max(1, min(50, len(losses) // 10)))
    print(
        f"hwaksan train-vae: done at step {step} in {seconds:.1f} s; PSNR {val_psnr:.2f} dB on "
        f"{len(val)} held-out images; latent scale {scale:.4f}, shift {shift:+.4f}; outputs:\n"
        + "\n".join(f"  {k:11s} {v}" for k, v in files.items()),
        file=sys.stderr,
    )
    return VAEResult(ckpt, step, seconds, val_psnr, scale, shift, files)


class _StopFlag:
    """SIGINT / SIGTERM during training stop the loop after the current step (the run is then
    measured and saved as if it had ended); the previous handlers come back afterwards."""

    def __init__(self) -> None:
        self.set = False
        self._old = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)

    def _handler(self, signum, frame) -> None:
        self.set = True

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


@torch.no_grad()
def _ema_update(ema: EMA, module: torch.nn.Module, decay: float) -> None:
    for k, v in module.state_dict().items():
        shadow = ema.shadows[0][k]
        if v.dtype.is_floating_point:
            shadow.lerp_(v.detach(), 1.0 - decay)
        else:
            shadow.copy_(v)


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    return v
