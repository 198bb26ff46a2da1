"""Experiment configs: frozen dataclasses read from TOML, strict about keys and values.

A config file has up to nine tables, each mapping onto one dataclass below::

    [data]       name, split, image_size, conditional, p_uncond, lowres
    [model]      preset, args, aux_loss_weight
    [diffusion]  process, process_args, prediction, weighting, t_dist, sigma_data, min_snr_gamma,
                 coupling, aug_max, loss, vlb_weight, importance_sampling
    [optim]      lr, betas, weight_decay, eps, warmup, cosine, min_lr_ratio, grad_clip
    [ema]        decays
    [train]      steps, batch_size, seed, log_every, sample_every, checkpoint_every, keep_last,
                 max_seconds, bf16, compile, channels_last, device, threads
    [sample]     sampler, steps, grid, n, seed
    [text]       encoder, max_length, pooled, captions      (text conditioning, training/text.py)
    [latent]     vae                                        (latent diffusion, training/latent.py)

Missing keys take the defaults below. An unknown table or key, a value of the wrong type, or a
value outside its allowed set raises :class:`ConfigError` whose message names the key and what is
allowed. ``--set key.sub=value`` overrides (:func:`apply_overrides`) go through the same checks;
the value is parsed as a TOML value (``3``, ``1e-4``, ``true``, ``[0.9, 0.99]``) and read as a
plain string when it is not one (``--set diffusion.process=flow``).

``Config.to_dict()`` is JSON-serialisable and ``Config.from_dict(config.to_dict()) == config``.

Example:
    >>> cfg = load_config(None, ["train.steps=10", "diffusion.prediction=v"])
    >>> cfg.train.steps, cfg.diffusion.prediction
    (10, 'v')
    >>> Config.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import tomllib

from ..data.catalog import DATASET_NAMES
from ..data.images import SPLITS
from ..losses import LOSSES, T_DISTRIBUTIONS, WEIGHTINGS
from ..models.presets import ARCHITECTURES, PRESETS
from ..parameterizations import PREDICTIONS
from ..processes import COUPLINGS, PROCESSES
from ..samplers import GRIDS, SAMPLERS

__all__ = [
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "DiffusionConfig",
    "OptimConfig",
    "EMAConfig",
    "TrainConfig",
    "SampleConfig",
    "Config",
    "load_config",
    "apply_overrides",
    "parse_override",
    "config_diff",
    "NON_BINDING_KEYS",
    "base_network_spec",
]


class ConfigError(ValueError):
    """An unknown key or an invalid value in a config; the message names both and what is allowed."""


# Upper bounds of the integer settings: far above any real run, low enough that an absurd value
# (``train.steps=1e20``) is refused at once instead of failing somewhere inside the loop.
MAX_STEPS = 10**9
MAX_BATCH = 2**20
MAX_IMAGE_SIZE = 4096
MAX_KEEP = 10**4
MAX_THREADS = 4096
MAX_SAMPLE_STEPS = 10**5
MAX_GRID = 10**4


# --------------------------------------------------------------------------------------------
# the tables


@dataclass(frozen=True)
class DataConfig:
    """What to train on.

    Attributes:
        name: a set of :data:`hwaksan.data.catalog.DATASET_NAMES` (``digits``, ``mnist``,
            ``fashion``, ``emoji``, the audio / video / motion sets) or ``folder:PATH``.
        split: ``train``, ``val``, ``test`` or ``all``.
        image_size: resize to ``(s, s)``; 0 keeps the native size.
        conditional: feed the class labels to the network as ``cond``.
        p_uncond: probability of replacing a label by the null class (classifier-free guidance
            training, Ho & Salimans 2022); 0 disables it.
        lowres: train a super-resolution model: condition on the images downsampled to
            ``(lowres, lowres)`` and upsampled back (``cond["image"]``, extra input channels); 0 is
            off. See :mod:`hwaksan.training.superres` and ``diffusion.aug_max``.
        args: keyword arguments of the loader of a set that is not images (``{frames = 8}``;
            :data:`hwaksan.data.catalog.LOADERS`).
    """

    name: str = "digits"
    split: str = "train"
    image_size: int = 0
    conditional: bool = True
    p_uncond: float = 0.1
    lowres: int = 0
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelConfig:
    """The network.

    Attributes:
        preset: a preset of :data:`hwaksan.models.presets.PRESETS` (``unet-digits``, ...) or an
            architecture name (``unet``, ``dit``, ``moe-dit``, ``mlp``) whose arguments are all in
            ``args``.
        args: constructor arguments overriding the preset's (``{model_channels = 16}``).
        aux_loss_weight: weight of the network's auxiliary loss (the MoE load-balancing loss,
            Switch Transformer eq. 4; Fedus et al. use 0.01). Ignored by networks without one.
    """

    preset: str = "unet-digits"
    args: dict[str, Any] = field(default_factory=dict)
    aux_loss_weight: float = 0.01


@dataclass(frozen=True)
class DiffusionConfig:
    """The forward process and the objective.

    Attributes:
        process: a name of :data:`hwaksan.processes.PROCESSES`.
        process_args: keyword arguments of the process constructor (``{T = 1000}``).
        prediction: what the network predicts (:data:`hwaksan.parameterizations.PREDICTIONS`).
        weighting: loss weighting (:data:`hwaksan.losses.WEIGHTINGS`).
        t_dist: training time distribution (:data:`hwaksan.losses.T_DISTRIBUTIONS`).
        sigma_data: data standard deviation used by the input scaling and EDM preconditioning.
        min_snr_gamma: gamma of the ``min_snr`` weighting.
        aug_max: noise-conditioning augmentation of a super-resolution model (``data.lowres``; Ho et
            al. 2022): the low-resolution input is noised to a time ``s ~ U[0, aug_max]`` of the
            process, which the network sees as ``cond["aug_level"]``; 0 is off.
        coupling: how noise is paired with data in a batch (:data:`hwaksan.processes.COUPLINGS`):
            ``independent``, ``ot`` (exact minibatch OT, OT-CFM; label-aware for a conditional
            model) or ``sinkhorn`` (entropic minibatch OT). Only deterministic samplers are exact
            for a model trained with a coupling other than ``independent``.
        loss: the objective (:data:`hwaksan.losses.LOSSES`): ``simple`` (the weighted denoising
            loss), ``hybrid`` (``L_simple + vlb_weight L_vlb`` with the mean detached in ``L_vlb``;
            Nichol & Dhariwal 2021; needs ``model.args.learn_sigma = true``) or ``vlb`` (``L_vlb``
            alone). ``hybrid`` and ``vlb`` need a ``ddpm-*`` process and ``t_dist = "discrete"``.
        vlb_weight: ``lambda`` of ``hybrid`` (0.001 in the paper).
        importance_sampling: draw the DDPM step of ``hybrid`` / ``vlb`` with ``p_t ~ sqrt(E[L_t^2])``
            over the last 10 values of each step's ``L_vlb`` term (uniform until every step has 10),
            each sample weighted by ``1 / (T p_t)``; the history is saved in checkpoints.
    """

    process: str = "edm"
    process_args: dict[str, Any] = field(default_factory=dict)
    prediction: str = "edm"
    weighting: str = "edm"
    t_dist: str = "edm"
    sigma_data: float = 0.5
    min_snr_gamma: float = 5.0
    aug_max: float = 0.0
    coupling: str = "independent"
    loss: str = "simple"
    vlb_weight: float = 0.001
    importance_sampling: bool = False


@dataclass(frozen=True)
class OptimConfig:
    """AdamW (Loshchilov & Hutter 2019) with linear warm-up then cosine decay.

    Attributes:
        lr: peak learning rate.
        betas: Adam's ``(beta1, beta2)``.
        weight_decay: decoupled weight decay.
        eps: Adam's epsilon.
        warmup: linear warm-up steps (from ``lr / warmup`` to ``lr``).
        cosine: decay from ``lr`` to ``min_lr_ratio * lr`` over the remaining steps by a half
            cosine; ``false`` keeps ``lr`` after the warm-up.
        min_lr_ratio: final learning rate over the peak one.
        grad_clip: clip the global gradient norm to this value; 0 disables clipping.
    """

    lr: float = 2e-3
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    eps: float = 1e-8
    warmup: int = 100
    cosine: bool = True
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0


@dataclass(frozen=True)
class EMAConfig:
    """Exponential moving averages of the weights, several at once.

    Attributes:
        decays: one EMA per decay; the first is the one sampled from and loaded by default.
        warmup: use ``min(d, (1 + step) / (10 + step))`` so that early averages are not dominated
            by the random initialisation (the usual diffusion-training habit).
    """

    decays: tuple[float, ...] = (0.999, 0.9999)
    warmup: bool = True


@dataclass(frozen=True)
class TrainConfig:
    """The loop.

    Attributes:
        steps: optimiser steps (the cosine schedule spans them).
        batch_size: the global batch (split across ranks under torchrun).
        seed: all randomness (initialisation, data order, noise) derives from it and the step.
        log_every: steps between metric records (JSONL) and progress-bar updates.
        sample_every: steps between sample grids from the EMA model (0: only at the end).
        checkpoint_every: steps between checkpoints (0: only at the end).
        keep_last: number of step checkpoints kept (older ones are deleted).
        max_seconds: stop (with a checkpoint and a grid) after this much wall time; 0: no limit.
            A stopped run resumes with ``--resume``.
        bf16: bfloat16 autocast for the forward pass (CPU and CUDA): ``true``, ``false`` or
            ``"auto"`` (on where the device computes bf16 natively: CUDA with bf16 support, or a CPU
            with AVX-512 BF16 or AMX, where it trains about 2x faster; off elsewhere, since emulated
            bf16 is far slower than float32).
        compile: ``torch.compile`` the network for training.
        channels_last: channels-last memory format for convolutional networks. With bf16 on a CPU
            the U-Net's GroupNorm + SiLU then run as one fused kernel
            (:mod:`hwaksan.models.group_norm_act`): the fastest setting there (1.7x NCHW).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        threads: torch intra-op threads; 0 keeps torch's default.
    """

    steps: int = 3000
    batch_size: int = 128
    seed: int = 0
    log_every: int = 50
    sample_every: int = 1000
    checkpoint_every: int = 1000
    keep_last: int = 3
    max_seconds: float = 0.0
    bf16: bool | str = False
    compile: bool = False
    channels_last: bool = False
    device: str = "auto"
    threads: int = 0


@dataclass(frozen=True)
class SampleConfig:
    """The sample grids written during training.

    Attributes:
        sampler: a name of :data:`hwaksan.samplers.SAMPLERS`.
        steps: sampler steps.
        grid: time grid (:data:`hwaksan.samplers.GRIDS`).
        n: images per grid (image ``i`` has seed ``seed + i``, and label ``i % num_classes``
            for a class-conditional model).
        seed: first per-sample seed.
    """

    sampler: str = "heun"
    steps: int = 18
    grid: str = "karras"
    n: int = 64
    seed: int = 0


@dataclass(frozen=True)
class TextConfig:
    """Text conditioning (:mod:`hwaksan.training.text`): captions through a frozen sentence encoder.

    Attributes:
        encoder: ``""`` (off) or ``"minilm"`` (all-MiniLM-L6-v2 from its PyPI wheel). Token
            embeddings go to cross-attention (``model.args.context_dim`` is set to 384), and captions
            are dropped with probability ``data.p_uncond`` for classifier-free guidance. Needs
            ``data.conditional = false`` (the caption, not the class label, is the condition).
        max_length: tokens per caption, with ``[CLS]`` and ``[SEP]``.
        pooled: add the pooled sentence vector to the noise-level embedding (``pooled_dim``).
        captions: ``auto`` (the data set's captions, else class templates), ``captions`` or
            ``templates`` (:func:`hwaksan.data.images.class_captions`, one drawn per image and step).
    """

    encoder: str = ""
    max_length: int = 32
    pooled: bool = True
    captions: str = "auto"


@dataclass(frozen=True)
class LatentConfig:
    """Latent diffusion (:mod:`hwaksan.training.latent`; Rombach et al. 2022).

    Attributes:
        vae: ``""`` (pixel space) or a ``hwaksan train-vae`` output folder / checkpoint. The
            training images are encoded once (posterior means, normalised by the autoencoder's latent
            scale and shift; cached beside the autoencoder), diffusion trains on them, and
            checkpoints carry the autoencoder so that ``hwaksan sample`` decodes.
    """

    vae: str = ""


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "diffusion": DiffusionConfig,
    "optim": OptimConfig,
    "ema": EMAConfig,
    "train": TrainConfig,
    "sample": SampleConfig,
    "text": TextConfig,
    "latent": LatentConfig,
}

#: Tables left out of :meth:`Config.to_dict` while they hold only defaults, so configs saved before
#: they existed (in checkpoints) still compare equal when resuming.
_OPTIONAL_SECTIONS = ("text", "latent")

#: Keys that may differ between a checkpoint's config and the config resuming from it: they change
#: what is written and when, never the trained parameters.
NON_BINDING_KEYS = frozenset(
    {
        "train.log_every",
        "train.sample_every",
        "train.checkpoint_every",
        "train.keep_last",
        "train.max_seconds",
        "train.threads",
        "sample.sampler",
        "sample.steps",
        "sample.grid",
        "sample.n",
        "sample.seed",
    }
)


@dataclass(frozen=True)
class Config:
    """A whole experiment: one attribute per TOML table."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    text: TextConfig = field(default_factory=TextConfig)
    latent: LatentConfig = field(default_factory=LatentConfig)

    def __post_init__(self) -> None:
        _check_config(self)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable nested dict (tuples become lists)."""
        return {
            name: _plain(dataclasses.asdict(getattr(self, name)))
            for name, klass in _SECTIONS.items()
            if not (name in _OPTIONAL_SECTIONS and getattr(self, name) == klass())
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Config:
        """Build a config from nested dicts (TOML tables or :meth:`to_dict` output), strictly."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a config must be a table of tables, got {type(data).__name__}")
        unknown = [k for k in data if k not in _SECTIONS]
        if unknown:
            raise ConfigError(f"unknown config table {unknown[0]!r}; allowed tables: {', '.join(_SECTIONS)}")
        parts = {}
        for name, klass in _SECTIONS.items():
            table = data.get(name, {})
            if not isinstance(table, Mapping):
                raise ConfigError(f"{name} must be a table of keys, got {table!r}")
            parts[name] = _build_section(name, klass, table)
        return cls(**parts)

    def replace(self, **sections: Any) -> Config:
        """A copy with whole sections replaced (``cfg.replace(train=...)``)."""
        return dataclasses.replace(self, **sections)


# --------------------------------------------------------------------------------------------
# parsing and checking


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """Check ``value`` against a field's type annotation; int -> float and list -> tuple only."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} = {value!r}: expected true or false")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)  # 3e3 is 3000; the range checks bound it
        raise ConfigError(f"{key} = {value!r}: expected an integer (a whole number, e.g. 3000)")
    if annotation is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = float(value)
            if not math.isfinite(value):
                raise ConfigError(f"{key} = {value!r}: expected a finite number")
            return value
        raise ConfigError(f"{key} = {value!r}: expected a number")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} = {value!r}: expected a string")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key} = {value!r}: expected a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key} = {value!r}: expected a list of {len(args)} values")
        return tuple(_coerce(f"{key}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} = {value!r}: expected a table, e.g. {{a = 1}}")
        return copy.deepcopy(dict(value))
    if origin in (typing.Union, types.UnionType):  # the first member type that accepts the value
        if value is None and type(None) in args:
            return None
        wanted = []
        for a in (a for a in args if a is not type(None)):
            try:
                return _coerce(key, value, a)
            except ConfigError as err:
                wanted.append(str(err).split(": expected ", 1)[-1])
        raise ConfigError(f"{key} = {value!r}: expected " + ", or ".join(wanted))
    raise TypeError(f"unsupported annotation {annotation!r} for {key}")  # pragma: no cover


def _build_section(name: str, klass: type, table: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(klass)
    names = [f.name for f in dataclasses.fields(klass)]
    unknown = [k for k in table if k not in names]
    if unknown:
        raise ConfigError(f"unknown key {name}.{unknown[0]}; allowed keys in [{name}]: {', '.join(names)}")
    values = {k: _coerce(f"{name}.{k}", v, hints[k]) for k, v in table.items()}
    return klass(**values)


def _choice(key: str, value: str, allowed: Iterable[str]) -> None:
    allowed = list(allowed)
    if value not in allowed:
        raise ConfigError(f"{key} = {value!r} is not allowed; allowed values: {', '.join(allowed)}")


def _check_range(key: str, value: float, lo: float | None, hi: float | None, what: str) -> None:
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{key} = {value!r} is out of range; allowed values: {what}")


def base_network_spec(config: Config) -> dict[str, Any]:
    """The network's constructor arguments before any trainer extension: a copy of the preset
    (or ``{"arch": preset}``) updated by ``model.args``."""
    mc = config.model
    spec = copy.deepcopy(PRESETS[mc.preset]) if mc.preset in PRESETS else {"arch": mc.preset}
    spec.update(copy.deepcopy(mc.args))
    return spec


def _check_vlb_loss(f: DiffusionConfig, m: ModelConfig) -> None:
    """``diffusion.loss``, ``vlb_weight`` and ``importance_sampling`` (Nichol & Dhariwal 2021)."""
    _choice("diffusion.loss", f.loss, LOSSES)
    _check_range("diffusion.vlb_weight", f.vlb_weight, 0.0, None, ">= 0")
    if f.loss == "simple":
        if f.importance_sampling:
            raise ConfigError(
                "diffusion.importance_sampling = true samples the steps of L_vlb; allowed values with "
                "diffusion.loss = 'simple': false (or set diffusion.loss = 'hybrid' or 'vlb')"
            )
        return
    if not f.process.startswith("ddpm"):
        raise ConfigError(
            f"diffusion.loss = {f.loss!r} sums over the steps of a DDPM table; allowed values of "
            f"diffusion.process with it: {', '.join(p for p in PROCESSES if p.startswith('ddpm'))}"
        )
    if f.t_dist != "discrete":
        raise ConfigError(
            f"diffusion.loss = {f.loss!r} draws DDPM steps k = 1..T itself; allowed value of "
            "diffusion.t_dist with it: discrete"
        )
    if f.coupling != "independent":
        raise ConfigError(
            f"diffusion.loss = {f.loss!r} draws its own independent noise; allowed value of "
            "diffusion.coupling with it: independent"
        )
    learn_sigma = m.args.get("learn_sigma", PRESETS.get(m.preset, {}).get("learn_sigma", False))
    if f.loss == "hybrid" and not learn_sigma:
        raise ConfigError(
            "diffusion.loss = 'hybrid' trains a learned variance (its L_vlb term sees a detached mean): "
            "set model.args.learn_sigma = true"
        )


def _check_config(cfg: Config) -> None:
    """Value checks that go beyond types (choices and ranges)."""
    for name, klass in _SECTIONS.items():
        section = getattr(cfg, name)
        if not isinstance(section, klass):
            raise ConfigError(f"{name} must be a {klass.__name__}, got {type(section).__name__}")
    d, m, f, o, e, t, s = cfg.data, cfg.model, cfg.diffusion, cfg.optim, cfg.ema, cfg.train, cfg.sample
    if not d.name.startswith("folder:"):
        _choice("data.name", d.name, [*DATASET_NAMES, "folder:PATH"])
    _choice("data.split", d.split, SPLITS)
    _check_range(
        "data.image_size", d.image_size, 0, MAX_IMAGE_SIZE, f"0 (native size) or 1 to {MAX_IMAGE_SIZE}"
    )
    _check_range("data.p_uncond", d.p_uncond, 0.0, 1.0, "0 <= p_uncond <= 1")
    _check_range("data.lowres", d.lowres, 0, MAX_IMAGE_SIZE, f"0 (off) or 1 to {MAX_IMAGE_SIZE}")
    _choice("model.preset", m.preset, [*PRESETS, *ARCHITECTURES])
    _check_range("model.aux_loss_weight", m.aux_loss_weight, 0.0, None, ">= 0")
    _choice("diffusion.process", f.process, PROCESSES)
    _choice("diffusion.prediction", f.prediction, PREDICTIONS)
    _choice("diffusion.weighting", f.weighting, WEIGHTINGS)
    _choice("diffusion.t_dist", f.t_dist, T_DISTRIBUTIONS)
    _choice("diffusion.coupling", f.coupling, COUPLINGS)
    _check_vlb_loss(f, m)
    if f.t_dist == "discrete" and not f.process.startswith("ddpm"):
        raise ConfigError(
            f"diffusion.t_dist = 'discrete' needs a DDPM table process; allowed values with "
            f"process {f.process!r}: {', '.join(x for x in T_DISTRIBUTIONS if x != 'discrete')}"
        )
    _check_range("diffusion.sigma_data", f.sigma_data, 1e-6, None, "> 0")
    _check_range("diffusion.min_snr_gamma", f.min_snr_gamma, 1e-6, None, "> 0")
    _check_range("diffusion.aug_max", f.aug_max, 0.0, 1.0, "0 <= aug_max <= 1 (a time of the process)")
    _check_range("optim.lr", o.lr, 1e-12, None, "> 0")
    for i, b in enumerate(o.betas):
        _check_range(f"optim.betas[{i}]", b, 0.0, 1.0 - 1e-12, "0 <= beta < 1")
    _check_range("optim.weight_decay", o.weight_decay, 0.0, None, ">= 0")
    _check_range("optim.eps", o.eps, 1e-30, None, "> 0")
    _check_range("optim.warmup", o.warmup, 0, MAX_STEPS, f">= 0 and <= {MAX_STEPS}")
    _check_range("optim.min_lr_ratio", o.min_lr_ratio, 0.0, 1.0, "0 <= min_lr_ratio <= 1")
    _check_range("optim.grad_clip", o.grad_clip, 0.0, None, ">= 0 (0 disables clipping)")
    if not e.decays:
        raise ConfigError("ema.decays is empty; allowed values: a list of decays in [0, 1), e.g. [0.999]")
    for i, dec in enumerate(e.decays):
        _check_range(f"ema.decays[{i}]", dec, 0.0, 1.0 - 1e-12, "0 <= decay < 1")
    _check_range("train.steps", t.steps, 1, MAX_STEPS, f">= 1 and <= {MAX_STEPS}")
    _check_range("train.batch_size", t.batch_size, 1, MAX_BATCH, f">= 1 and <= {MAX_BATCH}")
    _check_range("train.seed", t.seed, 0, 2**62, "0 <= seed < 2**62")
    _check_range("train.log_every", t.log_every, 1, MAX_STEPS, f">= 1 and <= {MAX_STEPS}")
    _check_range(
        "train.sample_every", t.sample_every, 0, MAX_STEPS, f">= 0 (0: only at the end) and <= {MAX_STEPS}"
    )
    _check_range(
        "train.checkpoint_every",
        t.checkpoint_every,
        0,
        MAX_STEPS,
        f">= 0 (0: only at the end) and <= {MAX_STEPS}",
    )
    _check_range("train.keep_last", t.keep_last, 1, MAX_KEEP, f">= 1 and <= {MAX_KEEP}")
    _check_range("train.max_seconds", t.max_seconds, 0.0, None, ">= 0 (0: no limit)")
    _choice("train.device", t.device, ("auto", "cpu", "cuda"))
    if isinstance(t.bf16, str) and t.bf16 != "auto":
        raise ConfigError(f"train.bf16 = {t.bf16!r} is not allowed; allowed values: true, false, auto")
    _check_range(
        "train.threads", t.threads, 0, MAX_THREADS, f">= 0 (0: torch's default) and <= {MAX_THREADS}"
    )
    _choice("sample.sampler", s.sampler, SAMPLERS)
    _choice("sample.grid", s.grid, GRIDS)
    _check_range("sample.steps", s.steps, 1, MAX_SAMPLE_STEPS, f">= 1 and <= {MAX_SAMPLE_STEPS}")
    _check_range("sample.n", s.n, 1, MAX_GRID, f">= 1 and <= {MAX_GRID}")
    _check_range("sample.seed", s.seed, 0, 2**62, "0 <= seed < 2**62")
    _choice("text.encoder", cfg.text.encoder, ("", "minilm"))
    _check_range("text.max_length", cfg.text.max_length, 2, 512, "2 <= max_length <= 512")
    _choice("text.captions", cfg.text.captions, ("auto", "captions", "templates"))
    if cfg.text.encoder and d.conditional:
        raise ConfigError(
            "text.encoder is set, so the caption is the condition: set data.conditional = false "
            "(class labels are then only used to pick caption templates)"
        )


# --------------------------------------------------------------------------------------------
# overrides and files


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"train.steps=100"`` into ``(["train", "steps"], 100)``.

    The value is read as a TOML value when it is one, else as a plain string.
    """
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not KEY=VALUE (e.g. train.steps=100)")
    key, raw = text.split("=", 1)
    path = [p.strip() for p in key.strip().split(".")]
    if len(path) < 2 or not all(path):
        raise ConfigError(
            f"override key {key!r} must be TABLE.KEY (e.g. optim.lr); tables: {', '.join(_SECTIONS)}"
        )
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return path, value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``--set`` overrides to nested dicts (returns a new dict; checks happen in from_dict).

    ``model.args.model_channels=16`` sets one entry of the ``model.args`` table.
    """
    data = copy.deepcopy(dict(data))
    for text in overrides:
        path, value = parse_override(text)
        section = path[0]
        if section not in _SECTIONS:
            raise ConfigError(
                f"unknown config table {section!r} in --set; allowed tables: {', '.join(_SECTIONS)}"
            )
        names = [f.name for f in dataclasses.fields(_SECTIONS[section])]
        if path[1] not in names:
            raise ConfigError(
                f"unknown key {section}.{path[1]}; allowed keys in [{section}]: {', '.join(names)}"
            )
        node = data.setdefault(section, {})
        for part in path[1:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(path[:-1])} is not a table: cannot set {'.'.join(path)}")
            node = child
        node[path[-1]] = value
    return data


def load_config(path: str | os.PathLike | None = None, overrides: Iterable[str] = ()) -> Config:
    """Read a config file (``None``: all defaults) and apply ``--set`` overrides.

    ``path`` is a TOML file, or a run's ``config.json`` (what :meth:`Config.to_dict` wrote beside the
    checkpoints), so ``--config RUN/config.json --resume`` continues a run with its own settings.
    """
    data: dict[str, Any] = {}
    if path is not None:
        is_json = os.fspath(path).endswith(".json")
        try:
            with open(path, "rb") as fh:
                data = json.load(fh) if is_json else tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path} is not valid TOML: {err}") from None
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path} is not valid JSON: {err}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a table of config sections, not {type(data).__name__}")
    data = apply_overrides(data, overrides)
    try:
        return Config.from_dict(data)
    except ConfigError as err:
        where = f" (in {path})" if path is not None else ""
        raise ConfigError(f"{err}{where}") from None


def config_diff(a: Mapping[str, Any], b: Mapping[str, Any], ignore: Iterable[str] = ()) -> list[str]:
    """Dotted keys whose values differ between two :meth:`Config.to_dict` dicts."""
    ignore = set(ignore)
    out: list[str] = []
    for section in sorted(set(a) | set(b)):
        sa, sb = a.get(section, {}), b.get(section, {})
        for key in sorted(set(sa) | set(sb)):
            dotted = f"{section}.{key}"
            if dotted not in ignore and sa.get(key) != sb.get(key):
                out.append(dotted)
    return out
