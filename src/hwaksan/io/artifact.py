"""One trained-model artifact: everything a command needs to use a checkpoint, typed.

:func:`load_trained` reads any diffusion / flow checkpoint this project writes (2-D models of
``hwaksan train --data``, image runs of ``hwaksan train --config``, latent and text models, reflow
students, and the layouts of earlier versions) and returns a :class:`TrainedModel`:

- ``denoiser`` - the :class:`~hwaksan.parameterizations.ModelDenoiser` on the data space;
- ``codec`` - the map between data space and output space (:mod:`hwaksan.io.codec`: identity for
  pixel and 2-D models, the autoencoder for latent models), with ``data_shape`` / ``output_shape``;
- ``num_classes``, ``text`` (:class:`TextSpec`), ``superres`` (:class:`SuperResSpec`);
- the EMA choices, the training config, the data set's name, the step.

No code outside ``hwaksan.io`` reads checkpoint metadata keys: commands, evaluation and tasks take a
:class:`TrainedModel`. Writers describe a model with :func:`model_metadata` (and the ``to_meta``
of the specs and codecs), so the keys are named in this package only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..parameterizations import ModelDenoiser
from ..processes import Process, process_from_config
from ..samplers import SampleResult, sample
from .checkpoint import NETWORKS, CheckpointError, load_tensors, resolve_checkpoint
from .codec import Codec, IdentityCodec, VAECodec, apply_through_codec
from .vae import load_vae, resolve_vae, vae_from_tensors

__all__ = [
    "TextSpec",
    "SuperResSpec",
    "TrainedModel",
    "load_trained",
    "trained_from_metadata",
    "model_metadata",
    "VAE_PREFIX",
]

VAE_PREFIX = "vae."
"""Prefix of the autoencoder's tensors inside a latent-diffusion checkpoint."""


@dataclass(frozen=True)
class TextSpec:
    """How a text-conditional model embeds prompts (:mod:`hwaksan.conditioning.text`).

    Attributes:
        encoder: the encoder's name (``"minilm"``).
        max_length: tokens per prompt, ``[CLS]`` and ``[SEP]`` included.
        dim: width of the token states and of the pooled vector.
        captions: where training captions came from (``"captions"`` or ``"templates"``).
        pooled: the network also takes the pooled sentence vector.
        null: the dropped caption of training (``"zeros"``: zero tokens, all-False mask).
    """

    encoder: str = "minilm"
    max_length: int = 32
    dim: int = 384
    captions: str = "captions"
    pooled: bool = False
    null: str = "zeros"

    def to_meta(self) -> dict[str, Any]:
        return {
            "encoder": self.encoder,
            "max_length": self.max_length,
            "dim": self.dim,
            "captions": self.captions,
            "null": self.null,
            "pooled": self.pooled,
        }

    @classmethod
    def from_meta(cls, info: dict[str, Any]) -> TextSpec:
        return cls(
            encoder=str(info.get("encoder", "minilm")),
            max_length=int(info.get("max_length", 32)),
            dim=int(info.get("dim", 384)),
            captions=str(info.get("captions", "captions")),
            pooled=bool(info.get("pooled", False)),
            null=str(info.get("null", "zeros")),
        )


@dataclass(frozen=True)
class SuperResSpec:
    """A super-resolution model (Saharia et al. 2022; Ho et al. 2022, cascaded diffusion).

    Attributes:
        lowres: side of the low-resolution input it was trained on.
        aug_max: largest noise-conditioning augmentation time of training (0: none).
        aug_conditioning: the network takes the augmentation level ``cond["aug_level"]``.
    """

    lowres: int
    aug_max: float = 0.0
    aug_conditioning: bool = False


@dataclass
class TrainedModel:
    """A trained diffusion / flow model and everything needed to use it (see the module docstring).

    Attributes:
        denoiser: ``D(x_t, t, cond) -> x0_hat`` on the data space, in eval mode.
        codec: data space <-> output space.
        num_classes: classes of a class-conditional model (0: unconditional); label ``num_classes``
            is the null class of classifier-free guidance.
        text: the prompt encoder's spec of a text-conditional model, else None.
        superres: the spec of a super-resolution model, else None.
        dataset: the name of the training data set (``"moons"``, ``"mnist"``, ...), if recorded.
        source: what a 2-D flow transports from (``"gaussian"``, or another 2-D data set's name).
        ema_decays: the EMA decays the checkpoint holds.
        ema: which EMA the weights are (index into ``ema_decays``), None for the raw weights.
        config: the training config as a dict (runs of the image trainer), else None.
        step: the training step of the checkpoint, if recorded.
        path: the checkpoint path (no suffix), None for a model built in memory.
        info: free-form facts the writer recorded (training seconds, steps, coupling, ...).
        modality_params: what the outputs of an audio / video / motion model need
            (``{"sample_rate": 16000}``; :class:`hwaksan.data.dataset.ImageDataset`).
    """

    denoiser: ModelDenoiser
    codec: Codec
    num_classes: int = 0
    text: TextSpec | None = None
    superres: SuperResSpec | None = None
    dataset: str | None = None
    source: str = "gaussian"
    ema_decays: tuple[float, ...] = ()
    ema: int | None = None
    config: dict[str, Any] | None = None
    step: int | None = None
    path: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)
    recorded_modality: str | None = None
    modality_params: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------------------------------
    # what it is

    @property
    def modality(self) -> str:
        """What a sample is: ``"image"``, ``"audio"``, ``"video"``, ``"motion"`` (as the data set
        recorded it), or ``"points"`` for a model of vectors ``(D,)``."""
        if self.recorded_modality:
            return self.recorded_modality
        return "points" if len(self.output_shape) == 1 else "image"

    @property
    def process(self) -> Process:
        return self.denoiser.process

    @property
    def network(self) -> torch.nn.Module:
        return self.denoiser.net

    @property
    def data_shape(self) -> tuple[int, ...]:
        """Per-sample shape the samplers work in."""
        return tuple(self.codec.data_shape)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Per-sample shape of decoded outputs (pixels ``(C, H, W)`` or points ``(D,)``)."""
        return tuple(self.codec.output_shape)

    @property
    def is_latent(self) -> bool:
        return not getattr(self.codec, "is_identity", False)

    @property
    def is_image(self) -> bool:
        """Outputs are images ``(C, H, W)``."""
        return self.modality == "image" and len(self.output_shape) == 3

    @property
    def is_lowdim(self) -> bool:
        """A model of points ``(D,)`` (the 2-D toy sets)."""
        return len(self.output_shape) == 1

    @property
    def device(self) -> torch.device:
        p = next(self.network.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def describe(self) -> str:
        """One line: network, process, prediction, shapes, conditioning."""
        net = type(self.network).__name__
        d = self.denoiser
        shape = "x".join(map(str, self.output_shape))
        process = d.process.config().get("name", type(d.process).__name__)
        parts = [f"{net} {process}/{d.prediction}", f"output {shape}"]
        if self.is_latent:
            parts.append("latent " + "x".join(map(str, self.data_shape)))
        if self.num_classes:
            parts.append(f"{self.num_classes} classes")
        if self.text is not None:
            parts.append(f"text ({self.text.encoder})")
        if self.superres is not None:
            parts.append(f"super-resolution from {self.superres.lowres}px")
        if self.source != "gaussian":
            parts.append(f"flow from {self.source}")
        if self.modality not in ("image", "points"):
            parts.insert(1, self.modality)
        return ", ".join(parts)

    def requires(self, operation: str, *, image: bool = False, pixel: bool = False) -> None:
        """Raise one ``ValueError`` line when ``operation`` does not apply to this model.

        Args:
            operation: the command or task, for the message.
            image: the operation needs an image model.
            pixel: the operation needs a pixel-space model (not latent).
        """
        where = f" ({self.path})" if self.path is not None else ""
        if image and not self.is_image:
            raise ValueError(f"{operation} works on image models; this is a {self.describe()} model{where}")
        if pixel and self.is_latent:
            raise ValueError(
                f"{operation} does not apply to a latent-diffusion model{where}: it needs a pixel-space model"
            )

    # ------------------------------------------------------------------------------------------
    # moving between spaces

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Output space ``(B, *output_shape)`` -> data space ``(B, *data_shape)``."""
        return self.codec.encode(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Data space ``(B, *data_shape)`` -> output space ``(B, *output_shape)``."""
        return self.codec.decode(z)

    def data_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """An output-space mask (1 = known) on the data grid."""
        return self.codec.data_mask(mask)

    # ------------------------------------------------------------------------------------------
    # using it

    def to(self, device: str | torch.device) -> TrainedModel:
        """Move the network (and the autoencoder) to ``device``; returns ``self``."""
        self.denoiser.to(device)
        ae = getattr(self.codec, "autoencoder", None)
        if ae is not None:
            ae.to(device)
        return self

    def labels(self, n: int, label: int | None = None, device: str | torch.device | None = None):
        """The default class labels of ``n`` samples: ``label`` for all, or ``i % num_classes``;
        None for a model without classes."""
        if not self.num_classes:
            return None
        device = device or self.device
        if label is not None:
            if not 0 <= label < self.num_classes:
                raise ValueError(f"the class must be in 0..{self.num_classes - 1}, got {label}")
            return torch.full((n,), int(label), dtype=torch.long, device=device)
        return torch.arange(n, device=device) % self.num_classes

    @torch.no_grad()
    def sample(self, n: int, *, denoiser: Any = None, decode: bool = True, **kwargs: Any) -> SampleResult:
        """``n`` samples: :func:`hwaksan.samplers.sample` in data space, then :meth:`decode`.

        Args:
            n: how many.
            denoiser: sample this denoiser instead of :attr:`denoiser` (e.g. a guidance wrapper
                around it); it must work on the same data space.
            decode: map the samples to output space (False: data space, e.g. to keep latents).
            **kwargs: passed on (``sampler``, ``steps``, ``grid``, ``cond``, ``generator``,
                ``device``, sampler options).
        """
        kwargs.setdefault("device", self.device)
        out = sample(denoiser or self.denoiser, (n, *self.data_shape), **kwargs)
        return SampleResult(self.decode(out.x) if decode else out.x, out.ts, out.nfe)

    def apply(self, task: Any, images: torch.Tensor, *args: Any, denoiser: Any = None, **kwargs: Any):
        """Run a data-space task (``task(denoiser, x0, ...) -> SampleResult``) on output-space
        ``images``: encode, move ``mask=`` to the data grid, run, decode (see
        :func:`hwaksan.io.codec.apply_through_codec`)."""
        return apply_through_codec(task, denoiser or self.denoiser, self.codec, images, *args, **kwargs)

    def with_ema(self, index: int | None) -> TrainedModel:
        """The same model with EMA ``index`` (None: the raw weights), read again from :attr:`path`."""
        if self.path is None:
            raise ValueError("this model was not loaded from a checkpoint: its other weights are unknown")
        return load_trained(self.path, ema=index)


# ----------------------------------------------------------------------------------------------
# writing


def model_metadata(
    denoiser: ModelDenoiser,
    *,
    dataset: str | None,
    data_shape: tuple[int, ...],
    output_shape: tuple[int, ...] | None = None,
    num_classes: int = 0,
    ema_decays: tuple[float, ...] | list[float] = (),
    codec: Codec | None = None,
    text: TextSpec | None = None,
    source: str = "gaussian",
    info: dict[str, Any] | None = None,
    modality: str = "image",
    modality_params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON that describes a model in a checkpoint (read back by :func:`load_trained`).

    ``modality`` and ``modality_params`` are the data set's
    (:class:`hwaksan.data.dataset.ImageDataset`); images record none.

    Training state (optimiser, step, config) is added by the writer beside these keys.
    """
    net = denoiser.net
    if not hasattr(net, "config"):
        raise CheckpointError(f"{type(net).__name__} has no .config dict: it cannot be rebuilt")
    output_shape = tuple(output_shape or data_shape)
    meta: dict[str, Any] = {
        "network": {"class": type(net).__name__, "config": net.config},
        "denoiser": denoiser.config(),
        "data": {"name": dataset, "output_shape": list(output_shape)},
        "data_shape": list(data_shape),
        "output_shape": list(output_shape),
        "num_classes": int(num_classes),
        "ema_decays": [float(d) for d in ema_decays],
    }
    if modality != "image":
        meta["data"]["modality"] = modality
        meta["data"]["modality_params"] = dict(modality_params or {})
    latent = codec.to_meta() if codec is not None else None
    if latent is not None:
        meta["latent"] = latent
    if len(output_shape) == 3 and modality == "image":
        # the image shape the network works on (latent grid for latent models)
        meta["image_shape"] = list(data_shape) if latent is not None else list(output_shape)
    if text is not None:
        meta["text"] = text.to_meta()
    if source != "gaussian":
        meta["source"] = source
    if info:
        meta["info"] = info
    return {k: v for k, v in meta.items() if v is not None}


# ----------------------------------------------------------------------------------------------
# reading


def _shape(value: Any) -> tuple[int, ...] | None:
    if not value:
        return None
    return tuple(int(v) for v in value)


def _ema_prefix(tensors: dict[str, torch.Tensor], ema: int | None, decays: list[float], path: Path) -> str:
    if ema is None:
        return "model."
    has_ema = any(k.startswith("ema.") for k in tensors)
    if ema == 0:
        return "ema." if has_ema else "model."
    if not 0 <= ema < len(decays):
        raise CheckpointError(f"EMA {ema}: {path} has EMAs 0..{len(decays) - 1} ({decays})")
    return f"ema{ema}."


def _codec(
    meta: dict[str, Any], tensors: dict[str, torch.Tensor], data_shape: tuple[int, ...], path: Path
) -> Codec:
    info = meta.get("latent")
    if not info:
        out = _shape(meta.get("output_shape")) or _shape(meta.get("image_shape")) or data_shape
        return IdentityCodec(data_shape, out)
    if any(k.startswith(VAE_PREFIX) for k in tensors):
        vae = vae_from_tensors(tensors, info, prefix=VAE_PREFIX)
    else:  # an earlier layout recorded only the autoencoder's folder
        try:
            vae, _ = load_vae(resolve_vae(info["vae"]))
        except (CheckpointError, KeyError) as err:
            raise CheckpointError(f"{path}: the latent model's autoencoder is missing: {err}") from None
    vae.requires_grad_(False)
    out = _shape(info.get("image_shape"))
    if out is None:
        raise CheckpointError(f"{path}: the latent metadata records no image shape")
    keep = {k: v for k, v in info.items() if k != "image_shape"}
    return VAECodec(vae, out, info=keep)


def trained_from_metadata(
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    *,
    path: str | os.PathLike | None = None,
    ema: int | None = 0,
) -> TrainedModel:
    """Build a :class:`TrainedModel` from a checkpoint's tensors and metadata (see
    :func:`load_trained`).

    Raises:
        CheckpointError: the metadata is incomplete or malformed, or the weights do not fit (one
            line naming the file).
    """
    where = Path(path) if path is not None else Path("<memory>")
    try:
        return _trained_from_metadata(tensors, meta, where, path, ema)
    except CheckpointError:
        raise
    except KeyError as err:
        raise CheckpointError(f"{where}: the metadata lacks {err}: not a hwaksan model checkpoint") from None
    except (TypeError, ValueError, AttributeError, IndexError, RuntimeError) as err:
        why = " ".join(str(err).split())[:300] or type(err).__name__
        raise CheckpointError(f"{where}: malformed model metadata or weights ({why})") from None


def _trained_from_metadata(
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    where: Path,
    path: str | os.PathLike | None,
    ema: int | None,
) -> TrainedModel:
    try:
        net_cls = NETWORKS()[meta["network"]["class"]]
        net_config = dict(meta["network"]["config"])
        dcfg = meta["denoiser"]
        process = process_from_config(dcfg["process"])
    except KeyError as err:
        raise CheckpointError(f"{where}: the metadata lacks {err}: not a hwaksan model checkpoint") from None
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{where}: malformed model metadata: {err}") from None
    try:
        net = net_cls(**net_config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(
            f"{where}: the network config does not build a {net_cls.__name__}: {err}"
        ) from None
    decays = [float(d) for d in meta.get("ema_decays") or []]
    prefix = _ema_prefix(tensors, ema, decays, where)
    state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{where}: weights do not fit the network: missing {missing}, unexpected {unexpected}"
        )
    denoiser = ModelDenoiser(net, process, dcfg["prediction"], dcfg.get("sigma_data", 1.0)).eval()
    net.requires_grad_(False)

    data = meta.get("data")
    modality, modality_params = None, {}
    if isinstance(data, dict):
        dataset = data.get("name")
        modality = data.get("modality")
        modality_params = dict(data.get("modality_params") or {})
    else:  # 2-D models of earlier versions recorded the set's name alone
        dataset = data if isinstance(data, str) else None
    data_shape = _shape(meta.get("data_shape"))
    if data_shape is None:
        data_shape = _shape(meta.get("image_shape"))
    if data_shape is None and "dim" in net_config:  # a 2-D MLP of earlier versions
        data_shape = (int(net_config["dim"]),)
    if data_shape is None:
        raise CheckpointError(f"{where}: the metadata records no data shape")
    codec = _codec(meta, tensors, data_shape, where)

    config = meta.get("config") if isinstance(meta.get("config"), dict) else None
    num_classes = int(meta.get("num_classes") or net_config.get("num_classes") or 0)
    if config is not None and config.get("data", {}).get("conditional") is False:
        num_classes = 0
    text = TextSpec.from_meta(meta["text"]) if meta.get("text") else None
    superres = None
    lowres = int(((config or {}).get("data") or {}).get("lowres") or 0)
    if lowres:
        superres = SuperResSpec(
            lowres=lowres,
            aug_max=float(((config or {}).get("diffusion") or {}).get("aug_max") or 0.0),
            aug_conditioning=bool(net_config.get("aug_conditioning")),
        )
    info = dict(meta.get("info") or {})
    for key in ("train_steps", "seconds", "coupling"):  # 2-D runs of earlier versions
        if key in meta:
            info.setdefault(key, meta[key])
    used_ema = None if prefix == "model." else (0 if prefix == "ema." else ema)
    return TrainedModel(
        denoiser=denoiser,
        codec=codec,
        num_classes=num_classes,
        text=text,
        superres=superres,
        dataset=dataset,
        source=str(meta.get("source") or "gaussian"),
        ema_decays=tuple(decays),
        ema=used_ema,
        config=config,
        step=int(meta["step"]) if meta.get("step") is not None else None,
        path=Path(path) if path is not None else None,
        info=info,
        recorded_modality=str(modality) if modality else None,
        modality_params=modality_params,
    )


def load_trained(
    path: str | os.PathLike, *, ema: int | None = 0, device: str | torch.device | None = None
) -> TrainedModel:
    """Load a trained model from a checkpoint or a run folder (its newest checkpoint).

    Args:
        path: ``PATH``, ``PATH.json`` or ``PATH.safetensors`` of a checkpoint, a run folder of
            ``hwaksan train --config`` (``RUN/checkpoints/step_*.json``) or of 2-D training
            (``RUN/model.json``).
        ema: which EMA's weights (index into the checkpoint's decays; 0, the first, is the
            default); None for the raw weights. A checkpoint without EMAs gives its raw weights.
        device: move the model there (default: stay on the CPU).

    Raises:
        CheckpointError: no checkpoint there, or one that is incomplete, malformed or not a model
            (one line naming the file).
    """
    ckpt = resolve_checkpoint(path)
    tensors, meta = load_tensors(ckpt)
    if not isinstance(meta, dict):
        raise CheckpointError(f"{ckpt}.json does not hold a JSON object: not a hwaksan checkpoint")
    kind = meta.get("kind")
    if kind in ("hwaksan-vae", "hwaksan-classifier"):
        what = kind.removeprefix("hwaksan-")
        raise CheckpointError(f"{ckpt} is an {what} checkpoint, not a diffusion model")
    model = trained_from_metadata(tensors, meta, path=ckpt, ema=ema)
    return model.to(device) if device is not None else model
