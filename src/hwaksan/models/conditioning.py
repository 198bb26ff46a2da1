"""The condition of an image network, read once for the U-Net and the DiT.

A network's ``cond`` argument is one of

- ``None``: unconditional (the class embedding, if any, gets the null class);
- a ``(B,)`` long tensor of class labels;
- a mapping whose keys are among :data:`COND_FIELDS` and :data:`EXTRA_COND_FIELDS`;
- any object (e.g. a dataclass) with some of these attributes.

The fields: ``labels (B,)`` (index ``num_classes`` is the null class of classifier-free guidance),
``context (B, L, Dc)`` and ``context_mask (B, L)`` bool (True = real token) for cross-attention
(Rombach et al. 2022, sec. 3.3), ``image (B, Ce, H, W)`` concatenated to the input (Saharia et al.
2022, SR3), ``aug_level (B,)`` or a scalar, the noise-conditioning augmentation level of a
super-resolution model (Ho et al. 2022, cascades, sec. 3.2), and ``pooled (B, Dp)``, a pooled
condition vector added to the embedding (Saharia et al. 2022, Imagen, sec. 2.1), and ``signal (B, Cs,
Ts)``, a conditioning sequence on a coarser time grid that a sequence network upsamples (the mel
spectrogram of a vocoder, Chen et al. 2021, WaveGrad, sec. 3). A network ignores
the fields it has no layer for, except two it cannot do without or would silently drop:
:meth:`NetworkCondition.parse` raises when an ``image`` is missing for a network with extra input
channels, and when an ``aug_level`` reaches a network that does not embed it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

__all__ = [
    "COND_FIELDS",
    "EXTRA_COND_FIELDS",
    "CondParts",
    "NetworkCondition",
    "check_aug_level",
    "cond_field",
    "labels_or_null",
    "unpack_cond",
]

#: The fields every network may read.
COND_FIELDS = ("labels", "context", "context_mask", "image")
#: Optional fields that only some networks read; accepted in a mapping everywhere.
EXTRA_COND_FIELDS = ("aug_level", "pooled", "signal")


class CondParts(NamedTuple):
    """The parts a network may read from ``cond`` (each ``None`` when absent)."""

    labels: torch.Tensor | None
    context: torch.Tensor | None
    context_mask: torch.Tensor | None
    image: torch.Tensor | None


@dataclass(frozen=True)
class NetworkCondition:
    """A network's condition, field by field (each ``None`` when absent; module docstring)."""

    labels: torch.Tensor | None = None
    context: torch.Tensor | None = None
    context_mask: torch.Tensor | None = None
    image: torch.Tensor | None = None
    aug_level: Any = None
    pooled: torch.Tensor | None = None
    signal: torch.Tensor | None = None

    @classmethod
    def parse(
        cls,
        cond: Any,
        *,
        network: str = "network",
        in_extra_channels: int = 0,
        reads_aug_level: bool = False,
    ) -> NetworkCondition:
        """Read ``cond`` (module docstring) and check it against what the network reads.

        Args:
            cond: ``None``, labels ``(B,)``, a mapping or an object with the fields as attributes.
            network: the network's name in error messages (e.g. ``"UNet"``).
            in_extra_channels: channels the network expects in ``image`` (0: ``image`` is not needed).
            reads_aug_level: whether the network embeds ``aug_level``.

        Raises:
            ValueError: a mapping with an unknown key; a missing ``image`` when
                ``in_extra_channels > 0``; an ``aug_level`` when ``reads_aug_level`` is False.
            TypeError: ``cond`` of any other type.
        """
        if cond is None:
            parsed = cls()
        elif isinstance(cond, torch.Tensor):
            parsed = cls(labels=cond)
        elif isinstance(cond, Mapping):
            unknown = sorted(set(cond) - set(COND_FIELDS) - set(EXTRA_COND_FIELDS))
            if unknown:
                allowed = [*COND_FIELDS, *EXTRA_COND_FIELDS]
                raise ValueError(f"unknown cond keys {unknown}: allowed keys are {allowed}")
            parsed = cls(**{k: cond.get(k) for k in (*COND_FIELDS, *EXTRA_COND_FIELDS)})
        elif dataclasses.is_dataclass(cond) or any(hasattr(cond, k) for k in COND_FIELDS):
            parsed = cls(**{k: getattr(cond, k, None) for k in (*COND_FIELDS, *EXTRA_COND_FIELDS)})
        else:
            raise TypeError(f"cannot read a condition from {type(cond).__name__}")
        check_aug_level(parsed.aug_level, reads_aug_level, network)
        if in_extra_channels and parsed.image is None:
            raise ValueError(
                f"this {network} has in_extra_channels={in_extra_channels}: "
                "pass cond={'image': (B, Ce, H, W), ...}"
            )
        return parsed

    @property
    def parts(self) -> CondParts:
        """``(labels, context, context_mask, image)``."""
        return CondParts(self.labels, self.context, self.context_mask, self.image)

    def pooled_vector(self, like: torch.Tensor, dim: int) -> torch.Tensor:
        """The pooled vector ``(B, dim)`` in ``like``'s dtype: zeros when absent, and zero for a
        sample whose ``context_mask`` is all False (the null caption has no pooled vector).
        ``like (B, D)`` is the embedding it will be added to."""
        if self.pooled is None:
            return like.new_zeros(like.shape[0], dim)
        pooled = self.pooled
        if self.context_mask is not None:
            pooled = pooled * self.context_mask.to(torch.bool).any(-1, keepdim=True)
        return pooled.to(like.dtype)


def check_aug_level(aug_level: Any, reads_aug_level: bool, network: str = "network") -> None:
    """Raise one clear error when an ``aug_level`` reaches a network that does not embed it."""
    if aug_level is not None and not reads_aug_level:
        raise ValueError(
            f"cond['aug_level'] given but this {network} has no augmentation-level embedding: drop "
            "the field, or use a UNet built with aug_conditioning=True"
        )


def labels_or_null(
    labels: torch.Tensor | None, batch: int, null_class: int, device: torch.device
) -> torch.Tensor:
    """Class labels ``(B,)`` as long, or the null class ``null_class`` (= ``num_classes``) for every
    sample when ``labels`` is None."""
    if labels is None:
        return torch.full((batch,), null_class, dtype=torch.long, device=device)
    return labels.long()


def unpack_cond(cond: Any) -> CondParts:
    """Split a network's ``cond`` argument into ``(labels, context, context_mask, image)``
    (:meth:`NetworkCondition.parse` without a network's checks).

    Raises:
        ValueError: for a mapping with an unknown key.
        TypeError: for a ``cond`` of another type.
    """
    return NetworkCondition.parse(cond, reads_aug_level=True).parts


def cond_field(cond: Any, name: str) -> Any:
    """One optional field of ``cond`` (e.g. ``"aug_level"``): ``cond[name]`` for a mapping, the
    attribute for an object, ``None`` when absent or when ``cond`` is ``None`` or a label tensor."""
    if cond is None or isinstance(cond, torch.Tensor):
        return None
    if isinstance(cond, Mapping):
        return cond.get(name)
    return getattr(cond, name, None)
