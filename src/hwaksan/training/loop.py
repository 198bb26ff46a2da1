"""The training loop of image models: any process x prediction x weighting x network, from one
CPU to torchrun, with the task given as extensions.

``TrainingLoop(config, out_dir, data=..., extensions=[...]).run()`` trains the network of a
:class:`~hwaksan.training.config.Config` and writes under ``out_dir``::

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

**Tasks are extensions.** The loop knows no task: every task is an
:class:`~hwaksan.training.extension.Extension` it is given (:class:`hwaksan.training.trainer.Trainer`
gives those a config asks for); they prepare the data, extend the network, add condition keys,
replace or add loss terms and add checkpoint content. Class labels (and their dropout for
classifier-free guidance) are the loop's own, since every image model may have them.

**Checkpoints** are model artifacts (:func:`hwaksan.io.artifact.model_metadata`, plus what the
extensions describe, e.g. a codec) with the training state beside them
(:func:`hwaksan.io.training_state.save_training_state`: AdamW, the LR scheduler, the global RNG,
the per-step losses, the step, the config), written atomically, so
:func:`hwaksan.io.artifact.load_trained` and ``hwaksan sample`` read them directly.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.dataset import ImageDataset
from ..io.artifact import model_metadata
from ..io.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    prune_checkpoints,
    remove_partial_writes,
)
from ..io.codec import IdentityCodec
from ..io.media import save_preview
from ..io.outputs import check_output, record_output, written_by_hwaksan
from ..io.runlock import RunLock
from ..io.training_state import TrainingState, load_training_state, save_training_state
from ..losses import denoising_loss
from ..models.presets import ARCHITECTURES, build_model, input_arguments
from ..parameterizations import ModelDenoiser
from ..plotting import plot_loss
from ..processes import make_coupling, make_process
from ..samplers import sample
from ..utils import mix_seed
from .config import NON_BINDING_KEYS, Config, ConfigError, base_network_spec, config_diff
from .distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    init_distributed,
    shard,
    wrap_ddp,
)
from .ema import EMA
from .extension import Extension, RunContext, StepContext, compose_cond, pack_cond
from .memory import MemoryBudgetError, check_step_memory, is_out_of_memory, step_memory
from .optim import EpochOrder, NonFiniteLossError, check_finite, make_optimizer, make_scheduler

__all__ = [
    "TrainingLoop",
    "TrainResult",
    "ConfigMismatchError",
    "native_bf16",
]


class ConfigMismatchError(CheckpointError):
    """A checkpoint was written with a config that differs from the one resuming it."""


E = TypeVar("E", bound=Extension)

# random streams (the second part of every mix_seed)
_DATA_ORDER, _NOISE, _LABEL_DROP, _GLOBAL = 1, 2, 3, 4


@dataclass
class TrainResult:
    """What :meth:`TrainingLoop.run` did: the last step, the per-step losses and the files it wrote."""

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


def set_threads(config: Config) -> None:
    """Use ``train.threads`` CPU threads (0: torch's default)."""
    if config.train.threads:
        torch.set_num_threads(config.train.threads)


class TrainingLoop:
    """Train a diffusion / flow model on an image set with the given extensions.

    Args:
        config: the experiment.
        out_dir: where checkpoints, samples, metrics and plots go (created).
        data: the training set.
        extensions: the task, in calling order (:mod:`hwaksan.training.extension`).
        progress: show a tqdm progress bar (rank 0 only).
        pictures: write sample grids and the loss curve (off: checkpoints and metrics only, which
            is what tests want; matplotlib is then never imported).
        overwrite: a fresh run may replace ``config.json``, ``metrics.jsonl`` and the pictures in
            ``out_dir`` although hwaksan did not write them (the CLI's ``--overwrite``).

    Attributes:
        extensions: the extensions in calling order.
        codec: data space <-> output space of the trained model (grids are decoded with it).
    """

    def __init__(
        self,
        config: Config,
        out_dir: str | Path,
        *,
        data: ImageDataset,
        extensions: Sequence[Extension] = (),
        progress: bool = True,
        pictures: bool = True,
        overwrite: bool = False,
    ) -> None:
        self.config = config
        self.out_dir = Path(out_dir)
        self.progress = progress
        self.pictures = pictures
        self.overwrite = overwrite
        tc = config.train
        set_threads(config)
        device = _pick_device(tc.device)
        self.dist: DistInfo = init_distributed(device)
        if device.type == "cuda" and self.dist.enabled:
            device = torch.device("cuda", self.dist.local_rank)
        self.device = device
        self.batch_slice = shard(tc.batch_size, self.dist)
        self.bf16 = native_bf16(device) if tc.bf16 == "auto" else bool(tc.bf16)

        dc = config.data
        self.extensions: list[Extension] = list(extensions)
        for ext in self.extensions:
            data = ext.prepare_data(data)
        self.data = data
        if len(data) == 0:
            raise ConfigError(f"data.split = {dc.split!r} of {dc.name!r} is empty")
        if dc.conditional and data.labels is None:
            raise ConfigError(
                f"data.conditional = true but {data.name!r} has no labels; allowed values here: false"
            )
        self.image_shape = tuple(data.images.shape[1:])

        torch.manual_seed(tc.seed)
        self.net = self._build_net().to(device)
        self.is_mlp = type(self.net) is ARCHITECTURES["mlp"]
        self.data_shape = (math.prod(self.image_shape),) if self.is_mlp else self.image_shape
        self.channels_last = tc.channels_last and len(self.data_shape) == 3
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

        self.images = data.images.reshape(len(data), *self.data_shape).to(device)
        self.labels = data.labels.to(device) if (dc.conditional and data.labels is not None) else None
        self.order = EpochOrder(len(data), tc.batch_size, tc.seed, stream=_DATA_ORDER)

        oc = config.optim
        self.optimizer = make_optimizer(
            self.net.parameters(), lr=oc.lr, betas=oc.betas, weight_decay=oc.weight_decay, eps=oc.eps
        )
        self.scheduler = make_scheduler(self.optimizer, tc.steps, oc.warmup, oc.cosine, oc.min_lr_ratio)
        self.ema = EMA(self.net, config.ema.decays)

        self.run_context = RunContext(
            config=config,
            process=process,
            network=self.net,
            data_shape=tuple(self.data_shape),
            image_shape=self.image_shape,
            device=device,
            dist=self.dist,
            batch_slice=self.batch_slice,
        )
        for ext in self.extensions:
            ext.start(self.run_context)
        described = self._extension_metadata()
        self.codec = described.pop("codec", None) or IdentityCodec(self.data_shape, self.image_shape)
        self._model_fields = described

        unused = any(ext.unused_parameters for ext in self.extensions)
        train_net: nn.Module = wrap_ddp(self.net, self.dist, device, find_unused=unused)
        if tc.compile:
            train_net = torch.compile(train_net)
        self.train_model = ModelDenoiser(
            train_net, process, fc.prediction, fc.sigma_data, learn_sigma=self.model.learn_sigma
        )

        self.losses: list[float] = []
        self.step = 0
        self._sample_net: nn.Module | None = None
        self._last_ckpt: Path | None = None

    # ----------------------------------------------------------------------------------------
    # construction helpers

    def _build_net(self) -> nn.Module:
        mc = self.config.model
        spec = base_network_spec(self.config)
        arch = spec.get("arch")
        # The input's size follows the data the loop trains on (a preset's value is a default for
        # its own data set: an extension that encodes the images feeds its codec's channels); a
        # value set in model.args must match it.
        try:
            follows = input_arguments(arch, self.image_shape)
        except ValueError as err:
            raise ConfigError(f"model.preset = {mc.preset!r}: {err}") from None
        shape = "x".join(map(str, self.image_shape))
        for key, value in follows.items():
            if key in mc.args and mc.args[key] != value:
                raise ConfigError(
                    f"model.args.{key} = {mc.args[key]} but the data the model trains on "
                    f"({self.data.name!r}, {shape}) needs {value}: drop model.args.{key} "
                    f"or set it to {value}"
                )
            spec[key] = value
        if self.config.data.conditional:
            k = self.data.num_classes or int(self.data.labels.max()) + 1
            if not spec.get("num_classes"):
                spec["num_classes"] = k
            elif spec["num_classes"] < k:
                raise ConfigError(
                    f"model.args.num_classes = {spec['num_classes']} but the data has {k} classes; "
                    f"allowed values: >= {k}"
                )
        for ext in self.extensions:
            spec = ext.network_spec(spec, self.image_shape)
        try:
            return build_model(spec)
        except (ValueError, TypeError) as err:
            raise ConfigError(f"model ({mc.preset!r} with args {dict(mc.args)}): {err}") from None

    def extension(self, kind: type[E]) -> E:
        """The extension of type ``kind`` this trainer uses.

        Raises:
            LookupError: none of that type.
        """
        for ext in self.extensions:
            if isinstance(ext, kind):
                return ext
        raise LookupError(
            f"this trainer has no {kind.__name__} (it uses {[e.name for e in self.extensions]})"
        )

    def _extension_metadata(self) -> dict[str, Any]:
        """The keyword arguments of :func:`model_metadata` the extensions set (one owner each)."""
        out: dict[str, Any] = {}
        owner: dict[str, str] = {}
        for ext in self.extensions:
            for key, value in ext.metadata().items():
                if key in out:
                    raise ValueError(f"the {owner[key]} and {ext.name} extensions both set the model's {key}")
                out[key], owner[key] = value, ext.name
        return out

    # ----------------------------------------------------------------------------------------
    # the pure functions of (seed, step)

    def batch_indices(self, step: int) -> torch.Tensor:
        """Data indices ``(B,)`` of the global batch of ``step``: positions ``[step B, (step+1) B)``
        in the concatenation of one random permutation per epoch (each image once per epoch)."""
        return self.order.indices(step)

    def noise_generators(self, step: int, positions: range) -> list[torch.Generator]:
        """One generator per global-batch position (noise and time of that sample)."""
        seed = self.config.train.seed
        return [
            torch.Generator(device=self.device).manual_seed(mix_seed(seed, _NOISE, step, j))
            for j in positions
        ]

    def step_context(self, step: int) -> StepContext:
        """This rank's batch of ``step`` as the extensions see it."""
        sl = self.batch_slice
        idx = self.batch_indices(step)[sl].to(self.device)
        x0 = self.images[idx]
        if self.channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        return StepContext(
            step=step,
            seed=self.config.train.seed,
            x0=x0,
            indices=idx,
            positions=sl,
            batch_size=self.config.train.batch_size,
            device=self.device,
            process=self.process,
            dist=self.dist,
        )

    def _labels(self, ctx: StepContext) -> torch.Tensor | None:
        """Class labels of the batch, each replaced by the null class with probability
        ``data.p_uncond`` (condition dropout for classifier-free guidance, Ho & Salimans 2022)."""
        if self.labels is None:
            return None
        labels = self.labels[ctx.indices]
        p = self.config.data.p_uncond
        if p > 0:
            gen = torch.Generator().manual_seed(mix_seed(ctx.seed, _LABEL_DROP, ctx.step))
            drop = torch.rand(ctx.batch_size, generator=gen)[ctx.positions].to(self.device) < p
            labels = torch.where(drop, torch.full_like(labels, self.null_label), labels)
        return labels

    def _cond(self, ctx: StepContext) -> dict[str, Any]:
        labels = self._labels(ctx)
        cond: dict[str, Any] = {} if labels is None else {"labels": labels}
        for ext in self.extensions:
            cond = compose_cond(cond, ext.batch_cond(dict(cond), ctx), ext.name)
        return cond

    def batch(self, step: int) -> tuple[torch.Tensor, Any, list[torch.Generator]]:
        """This rank's ``(x0, cond, generators)`` for ``step``: ``cond`` is None, the class labels
        ``(b,)``, or the dict the extensions composed (see :func:`~.extension.pack_cond`)."""
        ctx = self.step_context(step)
        sl = self.batch_slice
        return ctx.x0, pack_cond(self._cond(ctx)), self.noise_generators(step, range(sl.start, sl.stop))

    def _source(self, ctx: StepContext) -> torch.Tensor | None:
        found = [(ext, x1) for ext in self.extensions if (x1 := ext.batch_source(ctx)) is not None]
        if len(found) > 1:
            raise ValueError(
                f"the {found[0][0].name} and {found[1][0].name} extensions both fix the source side"
            )
        if not found:
            return None
        eps = found[0][1]
        return eps.contiguous(memory_format=torch.channels_last) if self.channels_last else eps

    def paired_noise(self, step: int) -> torch.Tensor | None:
        """The fixed source side ``x1`` of this rank's batch of ``step`` that an extension supplies
        (:meth:`~.extension.Extension.batch_source`), else None (fresh noise,
        paired by ``diffusion.coupling``)."""
        return self._source(self.step_context(step))

    # ----------------------------------------------------------------------------------------
    # one step

    def _autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _objective(self, x0: torch.Tensor, cond: Any, gens, ctx: StepContext) -> torch.Tensor:
        """An extension's loss when one replaces it, else the config's denoising loss."""
        fc = self.config.diffusion
        losses = [
            (ext, out)
            for ext in self.extensions
            if (out := ext.loss(self.train_model, x0, cond, gens, ctx)) is not None
        ]
        if len(losses) > 1:
            raise ValueError(
                f"the {losses[0][0].name} and {losses[1][0].name} extensions both replace the loss"
            )
        if losses:
            return losses[0][1]
        eps = self._source(ctx)
        labels = cond.get("labels") if isinstance(cond, dict) else cond
        coupling = make_coupling(fc.coupling, labels=labels) if eps is None else None
        return denoising_loss(
            self.train_model,
            x0,
            cond=cond,
            t_dist=fc.t_dist,
            weighting=fc.weighting,
            min_snr_gamma=fc.min_snr_gamma,
            generator=gens,
            coupling=coupling,
            eps=eps,
        )

    def train_step(self, step: int) -> dict[str, Any]:
        """Run optimiser step ``step`` (0-based); returns its metrics.

        Raises:
            NonFiniteLossError: the loss is NaN or infinite (nothing is updated or written).
        """
        tc = self.config.train
        ctx = self.step_context(step)
        cond = pack_cond(self._cond(ctx))
        sl = self.batch_slice
        gens = self.noise_generators(step, range(sl.start, sl.stop))
        torch.manual_seed(mix_seed(tc.seed, _GLOBAL, step, self.dist.rank))
        self.train_model.train()
        with self._autocast():
            loss = self._objective(ctx.x0, cond, gens, ctx)
        total = loss
        for ext in self.extensions:
            extra = ext.extra_loss(ctx)
            if extra is not None:
                total = total + extra
        # The global-batch loss (all ranks agree on it, so all raise together on a NaN).
        reduced = all_reduce_mean(torch.stack([loss.detach().float(), total.detach().float()]), self.dist)
        value, total_value = float(reduced[0]), float(reduced[1])
        for v in (value, total_value):
            check_finite(v, lambda v=v: self._nan_message(step, v))
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        params = [p for p in self.net.parameters() if p.grad is not None]
        clip = self.config.optim.grad_clip
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.ema.update(self.net, step if self.config.ema.warmup else None)
        for ext in self.extensions:
            ext.after_step(ctx)
        return {"loss": value, "lr": lr, "grad_norm": float(grad_norm)}

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

    def model_metadata(self) -> dict[str, Any]:
        """The checkpoint JSON that describes the model (:func:`hwaksan.io.artifact.model_metadata`)."""
        return model_metadata(
            self.model,
            dataset=self.data.name,
            data_shape=tuple(self.data_shape),
            output_shape=tuple(self.codec.output_shape),
            num_classes=self.num_classes,
            ema_decays=self.ema.decays,
            codec=self.codec,
            modality=self.data.modality,
            modality_params=self.data.modality_params,
            **self._model_fields,
        )

    def save_checkpoint(self, step: int) -> Path:
        """Write the full training state at ``step`` (rank 0), then delete all but the newest
        ``train.keep_last``. Refuses to write non-finite weights."""
        for name, p in self.net.named_parameters():
            if not torch.isfinite(p).all():
                raise NonFiniteLossError(
                    f"parameter {name} is not finite at step {step}: not writing a checkpoint"
                )
        extra: dict[str, torch.Tensor] = {}
        for ext in self.extensions:
            extra.update(ext.checkpoint_tensors())
        state = TrainingState(
            step=step,
            config=self.config.to_dict(),
            model=self.net.state_dict(),
            emas=list(self.ema.shadows),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            losses=list(self.losses),
            rng=torch.get_rng_state(),
            cuda_rng=torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            world_size=self.dist.world_size,
            extra=extra,
        )
        path = self._checkpoint_path(step)
        try:
            save_training_state(path, state, self.model_metadata())
        except OSError as err:
            raise self._write_failed(path, err) from None
        prune_checkpoints(self.out_dir, self.config.train.keep_last)
        self._last_ckpt = path
        return path

    def _write_failed(self, path: Path, err: OSError) -> CheckpointError:
        """The error of a checkpoint that could not be written (a full disk, a lost mount): the
        atomic writer left no temporary; a tensors file without its JSON is removed too, so only
        complete checkpoints remain."""
        tensors, meta = (path.with_name(path.name + s) for s in (".safetensors", ".json"))
        if not meta.exists():
            tensors.unlink(missing_ok=True)
        last = self._last_ckpt or latest_checkpoint(self.out_dir)
        full = err.errno == errno.ENOSPC
        why = "no space left on the device" if full else " ".join((err.strerror or str(err)).split())
        keep = f"the last good checkpoint is {last} (intact)" if last else "no checkpoint was written"
        fix = "free some space" if full else "fix that"
        return CheckpointError(
            f"cannot write the checkpoint {path.name} in {path.parent}: {why}; {keep}: {fix} and "
            "continue with --resume"
        )

    def load_checkpoint(self, path: str | Path) -> int:
        """Restore the training state from ``path``; returns its step.

        Raises:
            CheckpointError: ``path`` is not a training checkpoint.
            ConfigMismatchError: the checkpoint was written with a different config (other than
                the keys in :data:`~hwaksan.training.config.NON_BINDING_KEYS`).
        """
        state = load_training_state(path)
        saved = state.config
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
        try:
            self._apply_state(state, path)
        except CheckpointError:
            raise
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as err:
            why = " ".join(str(err).split())[:300] or type(err).__name__
            raise CheckpointError(f"{path}: the training state does not fit this run ({why})") from None
        return self.step

    def _apply_state(self, state: TrainingState, path: str | Path) -> None:
        """Load ``state`` into the network, EMAs, optimiser, scheduler, RNG and extensions."""
        self.net.load_state_dict(state.model, strict=True)
        if len(state.emas) != len(self.ema.shadows):
            raise CheckpointError(f"{path} holds {len(state.emas)} EMAs, the config {len(self.ema.shadows)}")
        for shadow, saved_shadow in zip(self.ema.shadows, state.emas, strict=True):
            for k in shadow:
                shadow[k].copy_(saved_shadow[k])
        self.optimizer.load_state_dict(state.optimizer)
        self.scheduler.load_state_dict(state.scheduler)
        torch.set_rng_state(state.rng)
        if state.cuda_rng is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state.cuda_rng, self.device)
        self.losses = list(state.losses)
        for ext in self.extensions:
            ext.load_checkpoint_tensors(state.extra)
        self.step = state.step
        self._last_ckpt = Path(path)

    # ----------------------------------------------------------------------------------------
    # pictures and logs

    @torch.no_grad()
    def sample_images(self, n: int | None = None, ema_index: int = 0) -> torch.Tensor:
        """``n`` samples ``(n, C, *axes)`` (images ``(n, C, H, W)``) from EMA ``ema_index`` with the
        config's sampler, decoded by :attr:`codec`; sample ``i`` uses seed ``sample.seed + i`` (and
        label ``i % num_classes``; the extensions add their grid conditions)."""
        sc = self.config.sample
        n = sc.n if n is None else n
        if self._sample_net is None:
            # Rebuilt from the config (as load_trained does), not deep-copied: a network may keep
            # non-leaf tensors of its last forward pass, which cannot be copied. fork_rng: the throwaway
            # initialisation must not touch the global generator.
            with torch.random.fork_rng(devices=[]):
                self._sample_net = type(self.net)(**self.net.config).to(self.device)
        net = self._sample_net
        net.load_state_dict(self.ema.state(ema_index))
        net.eval()
        model = ModelDenoiser(net, self.process, self.model.prediction, self.model.sigma_data)
        cond: dict[str, Any] = {}
        if self.labels is not None and self.num_classes:
            cond["labels"] = torch.arange(n, device=self.device) % self.num_classes
        for ext in self.extensions:
            cond = compose_cond(cond, ext.sample_cond(dict(cond), n, self.run_context), ext.name)
        gens = [torch.Generator(device=self.device).manual_seed(sc.seed + i) for i in range(n)]
        out = sample(
            model,
            (n, *self.data_shape),
            sampler=sc.sampler,
            steps=sc.steps,
            grid=sc.grid,
            cond=pack_cond(cond),
            generator=gens,
            device=self.device,
        )
        return self.codec.decode(out.x)

    def save_grid(self, step: int) -> Path:
        """Write ``samples/step_NNNNNNN.png``, ``samples/latest.png`` (the data's modality draws
        them: :mod:`hwaksan.io.media`) and ``loss.png``."""
        images = self.sample_images()
        folder = self.out_dir / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        nrow = self.num_classes if (self.labels is not None and self.num_classes) else None
        path = folder / f"step_{step:07d}.png"
        for target in (path, folder / "latest.png"):
            save_preview(images, target, self.data.modality, self.data.modality_params, nrow)
        plot_loss(self.losses, self.out_dir / "loss.png", smooth=max(1, min(50, len(self.losses) // 10)))
        record_output(path, folder / "latest.png", self.out_dir / "loss.png")
        return path

    def _truncate_metrics(self, step: int) -> None:
        """Keep the records of ``metrics.jsonl`` up to ``step`` (a resumed run writes the later ones
        again). A line that is not a JSON record (the torn last line of a killed run) is dropped,
        with one line on stderr when resuming."""
        path = self.out_dir / "metrics.jsonl"
        if not path.exists():
            return
        kept, torn = [], []
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict) or not isinstance(record.get("step", 0), int | float):
                torn.append(number)
            elif record.get("step", 0) <= step:
                kept.append(line)
        if torn and step > 0:
            which = "line" if len(torn) == 1 else "lines"
            print(
                f"hwaksan: dropped {len(torn)} unreadable {which} of {path} (line {torn[0]}"
                f"{' on' if len(torn) > 1 else ''}: a record cut short when a run was killed)",
                file=sys.stderr,
            )
        path.write_text("".join(ln + "\n" for ln in kept))
        record_output(path)

    # ----------------------------------------------------------------------------------------
    # the run folder

    def _outputs(self) -> list[Path]:
        """The files of the run folder that a fresh run replaces."""
        files = [self.out_dir / "config.json", self.out_dir / "metrics.jsonl"]
        if self.pictures:
            files += [self.out_dir / "loss.png", self.out_dir / "samples" / "latest.png"]
        return files

    def _prepare_folder(self, resume: bool) -> None:
        """Rank 0, holding the run lock: remove what killed writers left, refuse a fresh run into a
        folder of another run."""
        for folder in (self.out_dir, self.out_dir / "checkpoints", self.out_dir / "samples"):
            remove_partial_writes(folder)
        existing = latest_checkpoint(self.out_dir)
        if resume:
            if existing is None:
                raise CheckpointError(
                    f"--resume: no checkpoint in {self.out_dir / 'checkpoints'} to resume from"
                )
            return  # the run's own files: load_checkpoint checks that the config is the same
        if existing is not None:
            raise CheckpointError(
                f"{self.out_dir} already holds checkpoints ({existing.name}): pass --resume to continue "
                "that run, or choose another --out"
            )

    def _resume(self) -> None:
        """Load the newest checkpoint that loads. Each one that does not is named on stderr and
        moved aside (``step_N.json.corrupt``), so that pruning never counts it as a good one."""
        found = list_checkpoints(self.out_dir)
        if not found:
            raise CheckpointError(f"--resume: no checkpoint in {self.out_dir / 'checkpoints'} to resume from")
        skipped: list[Path] = []
        for _, path in reversed(found):
            try:
                self.load_checkpoint(path)
                break
            except ConfigMismatchError:
                raise
            except CheckpointError as err:
                if len(skipped) + 1 == len(found):
                    raise CheckpointError(
                        f"--resume: no checkpoint in {path.parent} loads (the oldest, {path.name}: {err})"
                    ) from None
                if self.dist.is_main:
                    print(
                        f"hwaksan: skipping the checkpoint {path.name}, it does not load ({err}); "
                        "trying the one before it",
                        file=sys.stderr,
                    )
                skipped.append(path)
        if self.dist.is_main:
            for path in skipped:
                for suffix in (".json", ".safetensors"):
                    f = path.with_name(path.name + suffix)
                    if f.exists():
                        f.replace(f.with_name(f.name + ".corrupt"))
            if skipped:
                print(f"hwaksan: resuming from {self._last_ckpt}", file=sys.stderr)

    def _probe_loss(self, b: int) -> torch.Tensor:
        """The denoising loss of the first ``b`` images of step 0, for :meth:`check_memory`."""
        idx = self.batch_indices(0)[:b].to(self.device)
        x0 = self.images[idx]
        ctx = StepContext(
            step=0, seed=self.config.train.seed, x0=x0, indices=idx, positions=slice(0, b),
            batch_size=b, device=self.device, process=self.process, dist=self.dist,
        )  # fmt: skip
        fc = self.config.diffusion
        gens = [torch.Generator(device=self.device).manual_seed(j) for j in range(b)]
        with self._autocast():
            return denoising_loss(
                self.model, x0, cond=pack_cond(self._cond(ctx)), t_dist=fc.t_dist, weighting=fc.weighting,
                min_snr_gamma=fc.min_snr_gamma, generator=gens,
            )  # fmt: skip

    def check_memory(self) -> None:
        """Refuse a ``train.batch_size`` whose step cannot fit in the memory available now (a
        forward pass of 1 and 2 samples measures it; the RNG and the weights are left as they were).

        Raises:
            MemoryBudgetError: one line naming a batch size that fits.
        """
        mode = self.net.training
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            self.net.eval()  # no dropout masks, no running statistics updated
            try:
                memory = step_memory(self._probe_loss, self.net.parameters())
            finally:
                self.net.train(mode)
        if self.config.diffusion.coupling != "independent":  # a B x B cost matrix per step
            batch = self.config.train.batch_size
            memory = type(memory)(memory.per_sample + 16 * batch, memory.fixed, memory.state)
        sl = self.batch_slice
        check_step_memory(memory, sl.stop - sl.start, self.device)

    def _out_of_memory(self, step: int, err: BaseException) -> MemoryBudgetError:
        batch = self.config.train.batch_size
        last = self._last_ckpt or latest_checkpoint(self.out_dir)
        where = f"; the last good checkpoint is {last}" if last else ""
        return MemoryBudgetError(
            f"out of memory in training step {step + 1} with train.batch_size = {batch} on "
            f"{self.device.type}: lower it, e.g. --set train.batch_size={max(1, batch // 2)}{where}"
        )

    # ----------------------------------------------------------------------------------------
    # the loop

    def _stop_now(self, start_time: float) -> bool:
        limit = self.config.train.max_seconds
        if limit <= 0:
            return False
        flag = torch.tensor([float(time.perf_counter() - start_time >= limit)])
        return bool(all_reduce_mean(flag, self.dist)[0] > 0)  # rank 0's clock is not special: any rank

    def run(self, resume: bool = False, stop_after: int | None = None) -> TrainResult:
        """Train to ``train.steps`` (or until ``train.max_seconds``), holding the run folder.

        Args:
            resume: continue from the newest checkpoint in ``out_dir/checkpoints`` that loads.
            stop_after: stop (with a checkpoint) after this many steps of this call, as if killed
                right after a checkpoint; for tests and for training in slices.

        Raises:
            RunLockedError: another run writes into ``out_dir`` (nothing is written).
            OutputError: a fresh run would replace a file hwaksan did not write (``overwrite``).
            CheckpointError: checkpoints in the way of a fresh run, none to resume from, or one
                that cannot be written (the message names the last good one).
            MemoryBudgetError: a step does not fit in memory (the message names a batch size).
            NonFiniteLossError: the loss became NaN or infinite (message names the fix).
            ConfigMismatchError: ``resume`` with a config the checkpoint was not written with.
        """
        lock = RunLock(self.out_dir, "hwaksan train") if self.dist.is_main else contextlib.nullcontext()
        with lock:
            return self._run(resume, stop_after)

    def _run(self, resume: bool, stop_after: int | None) -> TrainResult:
        tc = self.config.train
        main = self.dist.is_main
        if main:
            self._prepare_folder(resume)
        if resume:
            self._resume()
        elif latest_checkpoint(self.out_dir) is not None:  # the other ranks refuse as rank 0 did
            raise CheckpointError(f"{self.out_dir} already holds checkpoints: pass --resume")
        self.check_memory()
        if main and not resume:  # a resumed run's files are its own (its config was checked)
            # The log of an earlier run killed before its first record is hwaksan's although
            # unrecorded: it belongs to the config.json hwaksan wrote beside it.
            log_is_ours = written_by_hwaksan(self.out_dir / "config.json")
            for path in self._outputs():
                if not (log_is_ours and path.name == "metrics.jsonl"):
                    check_output(path, overwrite=self.overwrite)
        start = self.step
        if main:
            config_file = self.out_dir / "config.json"
            config_file.write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
            record_output(config_file)
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
        if metrics_file is not None:
            record_output(metrics_file.name)
        t_start = t_window = time.perf_counter()
        window: list[float] = []
        step = start
        grid = None
        try:
            while step < tc.steps:
                try:
                    m = self.train_step(step)
                except RuntimeError as err:
                    if not is_out_of_memory(err):
                        raise
                    raise self._out_of_memory(step, err) from None
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
                    for ext in self.extensions:
                        record.update(ext.metrics())
                    if metrics_file is not None:
                        metrics_file.write(json.dumps(record) + "\n")
                        metrics_file.flush()
                        record_output(metrics_file.name)
                    post = {"loss": f"{record['loss']:.4f}", "lr": f"{m['lr']:.2e}"}
                    for ext in self.extensions:
                        post.update(ext.postfix(record))
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
