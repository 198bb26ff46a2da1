"""The image trainer: any process x prediction x weighting x network, from one CPU to torchrun.

``Trainer(config, out_dir).run()`` trains the network of a :class:`~hwaksan.training.config.Config`
and writes under ``out_dir``::

    config.json                      the config (also inside every checkpoint's JSON)
    metrics.jsonl                    one record every ``train.log_every`` steps
    loss.png                         the loss curve
    samples/step_NNNNNNN.png         sample grids from the first EMA, fixed per-sample seeds
    samples/latest.png
    checkpoints/step_NNNNNNN.{safetensors,json}   the last ``train.keep_last`` checkpoints

**Determinism.** Everything random in step ``k`` is a function of ``(train.seed, k)`` only: the data
order is a fresh permutation per epoch seeded from ``(seed, epoch)``; sample ``j`` of the global batch
draws its noise and time from its own generator seeded from ``(seed, k, j)``; label dropout from
``(seed, k)``; and torch's global generator (dropout inside the network) is reseeded from
``(seed, k, rank)`` before the step. So a run resumed from a checkpoint at step ``K`` replays steps
``K, K+1, ...`` exactly as an uninterrupted run does (bit-identical parameters on the same machine
and thread count), and ``N`` torchrun ranks that each take ``1/N`` of the same global batch see the
same samples and noise as one process (see :mod:`hwaksan.training.distributed`).

**Checkpoints** hold the network, every EMA, AdamW's state (its tensors flattened into the
safetensors file, its hyper-parameters in the JSON), the LR scheduler, the global RNG state, the
per-step loss history and the step. They are written atomically by
:func:`hwaksan.io.checkpoint.save_tensors` and are also model checkpoints for
:func:`hwaksan.io.checkpoint.load_model` (first EMA under ``ema.``), so ``hwaksan sample``
reads them directly.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.images import ImageDataset, load_dataset
from ..io.checkpoint import CheckpointError, latest_checkpoint, list_checkpoints, load_tensors, save_tensors
from ..losses import denoising_loss
from ..models.presets import ARCHITECTURES, PRESETS, build_model
from ..parameterizations import ModelDenoiser
from ..processes import make_coupling, make_process
from ..samplers import sample
from ..utils import mix_seed
from .config import NON_BINDING_KEYS, Config, ConfigError, config_diff
from .distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    init_distributed,
    shard,
    wrap_ddp,
)
from .ema import EMA
from .hybrid import load_sampler, make_importance_sampler, record_vlb_terms, sampler_tensors, vlb_objective
from .optim import NonFiniteLossError, lr_factor

__all__ = [
    "Trainer",
    "TrainResult",
    "ConfigMismatchError",
    "native_bf16",
]


class ConfigMismatchError(CheckpointError):
    """A checkpoint was written with a config that differs from the one resuming it."""


# random streams (the second part of every mix_seed)
_DATA_ORDER, _NOISE, _LABEL_DROP, _GLOBAL = 1, 2, 3, 4


@dataclass
class TrainResult:
    """What :meth:`Trainer.run` did: the last step, the per-step losses and the files it wrote."""

    step: int
    losses: list[float]
    out_dir: Path
    checkpoint: Path | None = None
    grid: Path | None = None
    seconds: float = 0.0
    stopped_early: bool = False
    files: dict[str, Path] = field(default_factory=dict)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA device with bf16 support, or a CPU with
    AVX-512 BF16 or AMX (read from ``/proc/cpuinfo``; False where it cannot be read). Elsewhere bf16
    is emulated, and a bf16 matmul can be 100x slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def _pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "train.device = 'cuda' but no CUDA device is visible; allowed values here: auto, cpu"
        )
    return torch.device(name)


def _jsonable(obj: Any) -> Any:
    """``obj`` with tuples as lists, dropping what JSON cannot hold (checked by a dump)."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            v = _jsonable(v)
            try:
                json.dumps(v)
            except TypeError:
                continue
            out[str(k)] = v
        return out
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj


class Trainer:
    """Train a diffusion / flow model on an image set as a :class:`Config` describes.

    Args:
        config: the experiment.
        out_dir: where checkpoints, samples, metrics and plots go (created).
        progress: show a tqdm progress bar (rank 0 only).
        pictures: write sample grids and the loss curve (off: checkpoints and metrics only, which
            is what tests want; matplotlib is then never imported).
        data: use this data set instead of ``load_dataset(config.data...)`` (tests, notebooks).

    Example:
        >>> from hwaksan.training.config import load_config
        >>> cfg = load_config("configs/digits.toml", ["train.steps=200"])  # doctest: +SKIP
        >>> Trainer(cfg, "runs/digits").run()  # doctest: +SKIP
    """

    def __init__(
        self,
        config: Config,
        out_dir: str | Path,
        *,
        progress: bool = True,
        pictures: bool = True,
        data: ImageDataset | None = None,
    ) -> None:
        self.config = config
        self.out_dir = Path(out_dir)
        self.progress = progress
        self.pictures = pictures
        tc = config.train
        if tc.threads:
            torch.set_num_threads(tc.threads)
        device = _pick_device(tc.device)
        self.dist: DistInfo = init_distributed(device)
        if device.type == "cuda" and self.dist.enabled:
            device = torch.device("cuda", self.dist.local_rank)
        self.device = device
        self.batch_slice = shard(tc.batch_size, self.dist)
        self.bf16 = native_bf16(device) if tc.bf16 == "auto" else bool(tc.bf16)

        dc = config.data
        if data is None:
            data = load_dataset(dc.name, dc.split, dc.image_size or None)
        self.latent = self.text = None
        if config.latent.vae:  # latent diffusion: train on the cached latents (training/latent.py)
            from .latent import LatentSetup

            self.latent = LatentSetup(config, data, progress=progress)
            data = self.latent.data
        self.data = data
        if len(data) == 0:
            raise ConfigError(f"data.split = {dc.split!r} of {dc.name!r} is empty")
        if dc.conditional and data.labels is None:
            raise ConfigError(
                f"data.conditional = true but {data.name!r} has no labels; allowed values here: false"
            )
        self.image_shape = tuple(data.images.shape[1:])
        if config.text.encoder:  # text conditioning with cached caption embeddings (training/text.py)
            from .text import TextConditioning

            self.text = TextConditioning(config, data, device)

        torch.manual_seed(tc.seed)
        self.net = self._build_net().to(device)
        self.is_mlp = type(self.net) is ARCHITECTURES["mlp"]
        self.data_shape = (math.prod(self.image_shape),) if self.is_mlp else self.image_shape
        self.channels_last = tc.channels_last and not self.is_mlp
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.num_classes = self.net.config.get("num_classes") or 0
        self.null_label = self.num_classes

        fc = config.diffusion
        try:
            process = make_process(fc.process, **fc.process_args)
        except ValueError as err:
            raise ConfigError(f"diffusion.process_args: {err}") from None
        try:
            self.model = ModelDenoiser(self.net, process, fc.prediction, fc.sigma_data)
        except ValueError as err:
            raise ConfigError(f"diffusion.prediction = {fc.prediction!r}: {err}") from None
        self.process = process

        images = data.images.reshape(len(data), *self.data_shape).to(device)
        self.images = images
        self.labels = data.labels.to(device) if (dc.conditional and data.labels is not None) else None
        # reflow: a data set of fixed (x0, x1) pairs carries the partners as ``noise``
        noise = getattr(data, "noise", None)
        self.noise = None if noise is None else noise.reshape(len(data), *self.data_shape).to(device)

        oc = config.optim
        # fused: one kernel for all parameters (on CPU the default is a Python loop over them)
        self.optimizer = torch.optim.AdamW(
            self.net.parameters(),
            lr=oc.lr,
            betas=oc.betas,
            weight_decay=oc.weight_decay,
            eps=oc.eps,
            fused=True,
        )
        total, warmup, cosine, min_ratio = tc.steps, oc.warmup, oc.cosine, oc.min_lr_ratio

        def factor(step: int) -> float:  # a plain function: LambdaLR leaves it out of state_dict
            return lr_factor(step, total, warmup, cosine, min_ratio)

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.ema = EMA(self.net, config.ema.decays)

        train_net: nn.Module = wrap_ddp(self.net, self.dist, device, find_unused=self._has_aux())
        if tc.compile:
            train_net = torch.compile(train_net)
        self.train_model = ModelDenoiser(
            train_net, process, fc.prediction, fc.sigma_data, learn_sigma=self.model.learn_sigma
        )
        self.t_sampler = make_importance_sampler(fc, process)  # diffusion.importance_sampling

        self.losses: list[float] = []
        self.step = 0
        self._perm_cache: dict[int, torch.Tensor] = {}
        self._sample_net: nn.Module | None = None
        self._last_ckpt: Path | None = None

    # ----------------------------------------------------------------------------------------
    # construction helpers

    def _build_net(self) -> nn.Module:
        mc = self.config.model
        if mc.preset in PRESETS:
            spec = copy.deepcopy(PRESETS[mc.preset])
        else:
            spec = {"arch": mc.preset}
        spec.update(copy.deepcopy(mc.args))
        arch = spec.get("arch")
        c, h, w = self.image_shape
        if arch == "mlp":
            spec.setdefault("dim", c * h * w)
            if spec["dim"] != c * h * w:
                raise ConfigError(f"model.args.dim = {spec['dim']} but the images have C*H*W = {c * h * w}")
        else:
            spec.setdefault("in_channels", c)
            if spec["in_channels"] != c:
                raise ConfigError(
                    f"model.args.in_channels = {spec['in_channels']} but {self.data.name!r} has "
                    f"{c} channel(s); "
                    f"allowed value: {c}"
                )
        if arch in ("dit", "moe-dit"):
            spec.setdefault("input_size", h)
        if self.config.data.conditional:
            k = self.data.num_classes or int(self.data.labels.max()) + 1
            if not spec.get("num_classes"):
                spec["num_classes"] = k
            elif spec["num_classes"] < k:
                raise ConfigError(
                    f"model.args.num_classes = {spec['num_classes']} but the data has {k} classes; "
                    f"allowed values: >= {k}"
                )
        if self.text is not None:  # cross-attention (and pooled) width of the text encoder
            from .text import text_network_spec

            spec = text_network_spec(self.config, spec, self.text.dim)
        if self.config.data.lowres:  # a super-resolution model (training/superres.py)
            from .superres import superres_network_spec

            spec = superres_network_spec(self.config, spec, self.image_shape)
        try:
            return build_model(spec)
        except (ValueError, TypeError) as err:
            raise ConfigError(f"model ({mc.preset!r} with args {dict(mc.args)}): {err}") from None

    def _has_aux(self) -> bool:
        return bool(getattr(self.net, "config", {}).get("num_experts"))

    # ----------------------------------------------------------------------------------------
    # the pure functions of (seed, step)

    def _permutation(self, epoch: int) -> torch.Tensor:
        perm = self._perm_cache.get(epoch)
        if perm is None:
            gen = torch.Generator().manual_seed(mix_seed(self.config.train.seed, _DATA_ORDER, epoch))
            perm = torch.randperm(len(self.data), generator=gen)
            self._perm_cache = {epoch: perm, **{e: p for e, p in self._perm_cache.items() if e == epoch - 1}}
        return perm

    def batch_indices(self, step: int) -> torch.Tensor:
        """Data indices ``(B,)`` of the global batch of ``step``: positions ``[step B, (step+1) B)``
        in the concatenation of one random permutation per epoch (each image once per epoch)."""
        n, b = len(self.data), self.config.train.batch_size
        pos, end, parts = step * b, (step + 1) * b, []
        while pos < end:
            epoch, offset = divmod(pos, n)
            take = min(end - pos, n - offset)
            parts.append(self._permutation(epoch)[offset : offset + take])
            pos += take
        return torch.cat(parts)

    def noise_generators(self, step: int, positions: range) -> list[torch.Generator]:
        """One generator per global-batch position (noise and time of that sample)."""
        seed = self.config.train.seed
        return [
            torch.Generator(device=self.device).manual_seed(mix_seed(seed, _NOISE, step, j))
            for j in positions
        ]

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None, list[torch.Generator]]:
        """This rank's ``(x0, labels, generators)`` for ``step`` (for a super-resolution model,
        ``data.lowres``, ``labels`` is the condition dict of :func:`~.superres.superres_cond`)."""
        sl = self.batch_slice
        idx = self.batch_indices(step)[sl].to(self.device)
        x0 = self.images[idx]
        if self.channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        labels = None
        if self.labels is not None:
            labels = self.labels[idx]
            p = self.config.data.p_uncond
            if p > 0:
                gen = torch.Generator().manual_seed(mix_seed(self.config.train.seed, _LABEL_DROP, step))
                drop = torch.rand(self.config.train.batch_size, generator=gen)[sl].to(self.device) < p
                labels = torch.where(drop, torch.full_like(labels, self.null_label), labels)
        if self.config.data.lowres:  # super-resolution: cond = {labels, image, aug_level}
            from .superres import superres_cond

            labels = superres_cond(self, step, x0, labels)
        if self.text is not None:  # text: cond = {context, context_mask, pooled}, captions dropped
            labels = self.text.batch_cond(step, idx, sl)
        return x0, labels, self.noise_generators(step, range(sl.start, sl.stop))

    def paired_noise(self, step: int) -> torch.Tensor | None:
        """The fixed partners ``x1`` of this rank's batch of ``step`` when the data set holds pairs
        (``data.noise``, reflow), else None (fresh noise, paired by ``diffusion.coupling``)."""
        if self.noise is None:
            return None
        eps = self.noise[self.batch_indices(step)[self.batch_slice].to(self.device)]
        return eps.contiguous(memory_format=torch.channels_last) if self.channels_last else eps

    # ----------------------------------------------------------------------------------------
    # one step

    def _autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def train_step(self, step: int) -> dict[str, Any]:
        """Run optimiser step ``step`` (0-based); returns its metrics.

        Raises:
            NonFiniteLossError: the loss is NaN or infinite (nothing is updated or written).
        """
        tc, fc = self.config.train, self.config.diffusion
        x0, labels, gens = self.batch(step)
        eps = self.paired_noise(step)
        coupling = make_coupling(fc.coupling, labels=labels) if eps is None else None
        torch.manual_seed(mix_seed(tc.seed, _GLOBAL, step, self.dist.rank))
        self.train_model.train()
        hybrid = None
        with self._autocast():
            if fc.loss != "simple":  # L_hybrid / L_vlb (training/hybrid.py)
                hybrid = vlb_objective(self, x0, labels, gens)
                loss = hybrid.loss
            else:
                loss = denoising_loss(
                    self.train_model,
                    x0,
                    cond=labels,
                    t_dist=fc.t_dist,
                    weighting=fc.weighting,
                    min_snr_gamma=fc.min_snr_gamma,
                    generator=gens,
                    coupling=coupling,
                    eps=eps,
                )
        total = loss
        aux = getattr(self.net, "aux_loss", None) if self._has_aux() else None
        weight = self.config.model.aux_loss_weight
        if aux is not None and weight > 0:
            total = loss + weight * aux.float()
        # The global-batch loss (all ranks agree on it, so all raise together on a NaN).
        reduced = all_reduce_mean(torch.stack([loss.detach().float(), total.detach().float()]), self.dist)
        value, total_value = float(reduced[0]), float(reduced[1])
        if not (math.isfinite(value) and math.isfinite(total_value)):
            raise NonFiniteLossError(
                self._nan_message(step, value if not math.isfinite(value) else total_value)
            )
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        params = [p for p in self.net.parameters() if p.grad is not None]
        clip = self.config.optim.grad_clip
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.ema.update(self.net, step if self.config.ema.warmup else None)
        if hybrid is not None:
            record_vlb_terms(self, hybrid)
        out: dict[str, Any] = {"loss": value, "lr": lr, "grad_norm": float(grad_norm)}
        if aux is not None:
            out["aux_loss"] = float(aux.detach())
            usage = getattr(self.net, "expert_usage", None)
            if usage is not None:
                out["expert_usage"] = usage.detach().float().mean(0).cpu()
        return out

    def _nan_message(self, step: int, value: float) -> str:
        oc = self.config.optim
        last = self._last_ckpt or latest_checkpoint(self.out_dir)
        hints = [f"lower the learning rate (now optim.lr = {oc.lr:g}; try --set optim.lr={oc.lr / 4:g})"]
        if oc.grad_clip <= 0:
            hints.append("clip gradients (--set optim.grad_clip=1.0)")
        if self.bf16:
            hints.append("train in float32 (--set train.bf16=false)")
        hints.append("check the data for NaNs")
        where = f"; the last good checkpoint is {last}" if last else "; no checkpoint was written"
        return (
            f"the training loss became {value} at step {step + 1}: training diverged. "
            f"Fix: {'; or '.join(hints)}. Nothing was written for this step{where}."
        )

    # ----------------------------------------------------------------------------------------
    # checkpoints

    def _checkpoint_path(self, step: int) -> Path:
        return self.out_dir / "checkpoints" / f"step_{step:07d}"

    def save_checkpoint(self, step: int) -> Path:
        """Write the full training state at ``step`` (rank 0), then delete all but the newest
        ``train.keep_last``. Refuses to write non-finite weights."""
        for name, p in self.net.named_parameters():
            if not torch.isfinite(p).all():
                raise NonFiniteLossError(
                    f"parameter {name} is not finite at step {step}: not writing a checkpoint"
                )
        tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in self.net.state_dict().items()}
        for i, shadow in enumerate(self.ema.shadows):
            prefix = "ema." if i == 0 else f"ema{i}."
            tensors.update({prefix + k: v for k, v in shadow.items()})
        opt_state = self.optimizer.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for pid, entry in opt_state["state"].items():
            for name, value in entry.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optim.{pid}.{name}"] = value
                else:
                    scalars.setdefault(str(pid), {})[name] = value
        tensors["rng.torch"] = torch.get_rng_state()
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        tensors["history.loss"] = torch.tensor(self.losses, dtype=torch.float64)
        tensors.update(sampler_tensors(self.t_sampler))
        if self.latent is not None:  # the autoencoder travels with the model (hwaksan sample decodes)
            tensors.update(self.latent.checkpoint_tensors())
        meta = {
            "kind": "hwaksan-train",
            "step": step,
            "config": self.config.to_dict(),
            "network": {"class": type(self.net).__name__, "config": self.net.config},
            "denoiser": self.model.config(),
            "data": {"name": self.data.name, "image_shape": list(self.image_shape)},
            "data_shape": list(self.data_shape),
            "image_shape": list(self.image_shape),
            "num_classes": self.num_classes,
            "ema_decays": list(self.ema.decays),
            "world_size": self.dist.world_size,
            "optimizer": {
                "param_groups": _jsonable(opt_state["param_groups"]),
                "scalars": _jsonable(scalars),
                "param_ids": sorted(int(k) for k in opt_state["state"]),
            },
            "scheduler": _jsonable(self.scheduler.state_dict()),
        }
        if self.latent is not None:
            meta["latent"] = self.latent.meta()
        if self.text is not None:
            meta["text"] = self.text.meta()
        path = self._checkpoint_path(step)
        save_tensors(path, tensors, meta)
        for _, old in list_checkpoints(self.out_dir)[: -self.config.train.keep_last]:
            for suffix in (".json", ".safetensors"):  # JSON first: a reader never sees half a pair
                old.with_name(old.name + suffix).unlink(missing_ok=True)
        self._last_ckpt = path
        return path

    def load_checkpoint(self, path: str | Path) -> int:
        """Restore the training state from ``path``; returns its step.

        Raises:
            ConfigMismatchError: the checkpoint was written with a different config (other than
                the keys in :data:`~hwaksan.training.config.NON_BINDING_KEYS`).
        """
        tensors, meta = load_tensors(path)
        if meta.get("kind") != "hwaksan-train":
            raise CheckpointError(f"{path} is not a training checkpoint (no optimizer state): cannot resume")
        saved = meta["config"]
        with contextlib.suppress(ConfigError):  # keys added since the checkpoint take their defaults
            saved = Config.from_dict(saved).to_dict()
        diff = config_diff(saved, self.config.to_dict(), ignore=NON_BINDING_KEYS)
        if diff:
            now = self.config.to_dict()
            lines = [
                f"  {k}: checkpoint {saved[k.split('.')[0]].get(k.split('.')[1])!r}, "
                f"now {now[k.split('.')[0]].get(k.split('.')[1])!r}"
                for k in diff
            ]
            raise ConfigMismatchError(
                f"cannot resume from {path}: the config differs in\n"
                + "\n".join(lines)
                + f"\nUse the checkpoint's config (saved in {Path(path).with_suffix('')}.json and "
                f"{self.out_dir / 'config.json'}) or start a new run in another --out folder."
            )
        model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        self.net.load_state_dict(model_state, strict=True)
        for i, shadow in enumerate(self.ema.shadows):
            prefix = "ema." if i == 0 else f"ema{i}."
            for k in shadow:
                shadow[k].copy_(tensors[prefix + k])
        om = meta["optimizer"]
        state: dict[int, dict[str, Any]] = {
            pid: dict(om["scalars"].get(str(pid), {})) for pid in om["param_ids"]
        }
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, pid, name = key.split(".", 2)
                state[int(pid)][name] = value
        groups = copy.deepcopy(om["param_groups"])
        for g in groups:
            if "betas" in g:
                g["betas"] = tuple(g["betas"])
        self.optimizer.load_state_dict({"state": state, "param_groups": groups})
        self.scheduler.load_state_dict(meta["scheduler"])
        torch.set_rng_state(tensors["rng.torch"])
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        self.losses = tensors["history.loss"].tolist()
        load_sampler(self.t_sampler, tensors)
        self.step = int(meta["step"])
        self._last_ckpt = Path(path)
        return self.step

    # ----------------------------------------------------------------------------------------
    # pictures and logs

    @torch.no_grad()
    def sample_images(self, n: int | None = None, ema_index: int = 0) -> torch.Tensor:
        """``n`` images ``(n, C, H, W)`` from EMA ``ema_index`` with the config's sampler; image
        ``i`` uses seed ``sample.seed + i`` (and label ``i % num_classes``)."""
        sc = self.config.sample
        n = sc.n if n is None else n
        if self._sample_net is None:
            # Rebuilt from the config (as load_model does), not deep-copied: an MoE net holds its
            # last aux_loss, a non-leaf tensor that cannot be copied. fork_rng: the throwaway
            # initialisation must not touch the global generator.
            with torch.random.fork_rng(devices=[]):
                self._sample_net = type(self.net)(**self.net.config).to(self.device)
        net = self._sample_net
        net.load_state_dict(self.ema.state(ema_index))
        net.eval()
        model = ModelDenoiser(net, self.process, self.model.prediction, self.model.sigma_data)
        cond = None
        if self.labels is not None and self.num_classes:
            cond = torch.arange(n, device=self.device) % self.num_classes
        if self.config.data.lowres:  # super-resolution of the first n training images
            from .superres import superres_sample_cond

            cond = superres_sample_cond(self, n, cond)
        if self.text is not None:  # captions of the training set
            cond = self.text.grid_cond(n)
        gens = [torch.Generator(device=self.device).manual_seed(sc.seed + i) for i in range(n)]
        out = sample(
            model,
            (n, *self.data_shape),
            sampler=sc.sampler,
            steps=sc.steps,
            grid=sc.grid,
            cond=cond,
            generator=gens,
            device=self.device,
        )
        x = out.x.reshape(n, *self.image_shape)
        return self.latent.decode(x) if self.latent is not None else x

    def save_grid(self, step: int) -> Path:
        """Write ``samples/step_NNNNNNN.png``, ``samples/latest.png`` and ``loss.png``."""
        from ..plotting import plot_loss, save_image_grid

        images = self.sample_images()
        folder = self.out_dir / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        nrow = self.num_classes if (self.labels is not None and self.num_classes) else None
        scale = max(1, 96 // max(images.shape[2:]))
        path = save_image_grid(images, folder / f"step_{step:07d}.png", nrow=nrow, scale=scale)
        save_image_grid(images, folder / "latest.png", nrow=nrow, scale=scale)
        plot_loss(self.losses, self.out_dir / "loss.png", smooth=max(1, min(50, len(self.losses) // 10)))
        return path

    def _truncate_metrics(self, step: int) -> None:
        path = self.out_dir / "metrics.jsonl"
        if not path.exists():
            return
        kept = [
            ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step
        ]
        path.write_text("".join(ln + "\n" for ln in kept))

    # ----------------------------------------------------------------------------------------
    # the loop

    def _stop_now(self, start_time: float) -> bool:
        limit = self.config.train.max_seconds
        if limit <= 0:
            return False
        flag = torch.tensor([float(time.perf_counter() - start_time >= limit)])
        return bool(all_reduce_mean(flag, self.dist)[0] > 0)  # rank 0's clock is not special: any rank

    def run(self, resume: bool = False, stop_after: int | None = None) -> TrainResult:
        """Train to ``train.steps`` (or until ``train.max_seconds``).

        Args:
            resume: continue from the newest checkpoint in ``out_dir/checkpoints``.
            stop_after: stop (with a checkpoint) after this many steps of this call, as if killed
                right after a checkpoint; for tests and for training in slices.

        Raises:
            NonFiniteLossError: the loss became NaN or infinite (message names the fix).
            ConfigMismatchError: ``resume`` with a config the checkpoint was not written with.
        """
        tc = self.config.train
        main = self.dist.is_main
        existing = latest_checkpoint(self.out_dir)
        if resume:
            if existing is None:
                raise CheckpointError(
                    f"--resume: no checkpoint in {self.out_dir / 'checkpoints'} to resume from"
                )
            self.load_checkpoint(existing)
        elif existing is not None:
            raise CheckpointError(
                f"{self.out_dir} already holds checkpoints ({existing.name}): pass --resume to continue "
                "that run, or choose another --out"
            )
        start = self.step
        if main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
            self._truncate_metrics(start)
            params = sum(p.numel() for p in self.net.parameters())
            what = "resuming at step " + str(start) if start else "training"
            print(
                f"hwaksan: {what} {type(self.net).__name__} ({params / 1e6:.2f} M params) on "
                f"{self.data.name} "
                f"{tuple(self.image_shape)} x {len(self.data)}, {self.config.diffusion.process}/"
                f"{self.config.diffusion.prediction}, {tc.steps} steps of {tc.batch_size}"
                + (f" over {self.dist.world_size} processes" if self.dist.enabled else "")
                + f"; writing to {self.out_dir}",
                file=sys.stderr,
            )
        result = TrainResult(step=start, losses=self.losses, out_dir=self.out_dir)
        bar = tqdm(
            total=tc.steps,
            initial=start,
            disable=not (self.progress and main),
            desc="train",
            dynamic_ncols=True,
            file=sys.stderr,
        )
        metrics_file = (self.out_dir / "metrics.jsonl").open("a") if main else None
        t_start = t_window = time.perf_counter()
        window: list[float] = []
        step = start
        grid = None
        try:
            while step < tc.steps:
                m = self.train_step(step)
                step += 1
                self.step = step
                self.losses.append(m["loss"])
                window.append(m["loss"])
                bar.update(1)
                stop = (stop_after is not None and step - start >= stop_after) or self._stop_now(t_start)
                last = step == tc.steps or stop
                if step % tc.log_every == 0 or last:
                    now = time.perf_counter()
                    rate = len(window) / max(now - t_window, 1e-9)
                    record = {
                        "step": step,
                        "loss": sum(window) / len(window),
                        "lr": m["lr"],
                        "grad_norm": m["grad_norm"],
                        "it_per_s": rate,
                        "images_per_s": rate * tc.batch_size,
                        "elapsed_s": now - t_start,
                    }
                    if "aux_loss" in m:
                        record["aux_loss"] = m["aux_loss"]
                    if "expert_usage" in m:
                        record["expert_usage"] = [round(float(u), 4) for u in m["expert_usage"]]
                    if metrics_file is not None:
                        metrics_file.write(json.dumps(record) + "\n")
                        metrics_file.flush()
                    post = {"loss": f"{record['loss']:.4f}", "lr": f"{m['lr']:.2e}"}
                    if "expert_usage" in record:
                        post["experts"] = "/".join(f"{u:.2f}" for u in record["expert_usage"])
                    bar.set_postfix(post, refresh=False)
                    window, t_window = [], time.perf_counter()
                if main and ((tc.checkpoint_every and step % tc.checkpoint_every == 0) or last):
                    result.checkpoint = self.save_checkpoint(step)
                if main and self.pictures and ((tc.sample_every and step % tc.sample_every == 0) or last):
                    grid = self.save_grid(step)
                barrier(self.dist)
                if stop:
                    result.stopped_early = step < tc.steps
                    break
        finally:
            bar.close()
            if metrics_file is not None:
                metrics_file.close()
        result.step = step
        result.seconds = time.perf_counter() - t_start
        result.grid = grid
        if main:
            result.files = {
                "checkpoint": result.checkpoint or self._last_ckpt,
                "samples": self.out_dir / "samples" / "latest.png" if self.pictures else None,
                "metrics": self.out_dir / "metrics.jsonl",
                "loss_curve": self.out_dir / "loss.png" if self.pictures else None,
                "config": self.out_dir / "config.json",
            }
            status = "stopped" if result.stopped_early else "done"
            print(
                f"hwaksan: {status} at step {step} in {result.seconds:.1f} s "
                f"(final loss {self.losses[-1] if self.losses else float('nan'):.4f}); outputs:\n"
                + "\n".join(f"  {k:11s} {v}" for k, v in result.files.items() if v is not None)
                + (
                    f"\n  resume with --resume (config {self.out_dir / 'config.json'})"
                    if result.stopped_early
                    else ""
                ),
                file=sys.stderr,
            )
        return result
