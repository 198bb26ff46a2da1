"""Geometric losses of motion models (Tevet et al. 2023, MDM, sec. 3, eq. 3-5) as a trainer extension.

MDM predicts the clean motion ``x0_hat`` and adds, to the denoising loss, terms that hold the
prediction to the geometry of real motion:

    L = L_simple + l_vel L_vel + l_foot L_foot + l_bone L_bone

- ``L_vel = mean_i || (x0_{i+1} - x0_i) - (x0_hat_{i+1} - x0_hat_i) ||^2`` (MDM eq. 5): the
  frame-to-frame velocities of every joint coordinate;
- ``L_foot = mean_i || (p_hat_{i+1} - p_hat_i) * f_i ||^2`` (MDM eq. 4): the predicted feet do not
  move while the real feet are in contact with the ground, ``f_i = 1`` where a real foot moves less
  than ``contact_speed`` between frames ``i`` and ``i + 1`` (MDM reads binary contact labels);
- ``L_bone = mean || len_b(x0_hat) - len_b(x0) ||^2`` over the bones ``b`` of the skeleton (each
  frame): the skeleton keeps its proportions (our positions need no forward kinematics, so MDM's
  ``L_pos`` is ``L_simple`` itself with ``prediction = "x0"``).

``x0_hat`` is read from any prediction type through the path (``hwaksan.parameterizations``), so
the terms apply with ``x0``, ``eps``, ``v`` or EDM models alike. ``L_simple`` is the loop's
denoising loss of the same draw (same noise and times from the per-sample generators, so a run is
as deterministic as without the extension).

The weights come from ``data.args`` (``velocity_weight``, ``bone_weight``, ``foot_weight``,
default 0: off; with all three 0 the loop's own loss runs unchanged).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..data.dataset import ImageDataset
from ..losses import draw, x0_weight
from ..parameterizations import prediction_from_x0_eps, prediction_scale, x0_eps_from_prediction
from ..processes import make_coupling
from .config import Config, ConfigError
from .extension import Extension, StepContext

__all__ = ["MotionExtension", "bone_lengths", "foot_contact", "geometric_losses", "make_motion_extension"]

#: ``data.args`` keys read here (the loader of the set accepts and ignores them).
WEIGHT_KEYS = ("velocity_weight", "bone_weight", "foot_weight")


def _joints(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """``(B, 2 J, T)`` (or flattened) -> joint positions ``(B, J, 2, T)``."""
    d, t = shape
    return x.reshape(x.shape[0], d // 2, 2, t)


def bone_lengths(p: torch.Tensor, parents: list[int]) -> torch.Tensor:
    """Bone lengths ``(B, n_bones, T)`` of joint positions ``p (B, J, 2, T)``."""
    child = [j for j, q in enumerate(parents) if q >= 0]
    parent = [parents[j] for j in child]
    return (p[:, child] - p[:, parent]).norm(dim=2)


def foot_contact(p: torch.Tensor, feet: list[int], contact_speed: float) -> torch.Tensor:
    """Contact labels ``(B, F, T - 1)`` (1 = the foot moves less than ``contact_speed`` between
    frames ``i`` and ``i + 1``) of joint positions ``p (B, J, 2, T)``."""
    speed = p[:, feet].diff(dim=-1).norm(dim=2)
    return (speed < contact_speed).to(p.dtype)


def geometric_losses(
    x0: torch.Tensor,
    x0_hat: torch.Tensor,
    shape: tuple[int, ...],
    parents: list[int],
    feet: list[int],
    contact_speed: float = 0.01,
) -> dict[str, torch.Tensor]:
    """``L_vel``, ``L_foot`` and ``L_bone`` (module docstring), per sample ``(B,)`` each.

    Args:
        x0, x0_hat: real and predicted motions ``(B, 2 J, T)`` (or flattened ``(B, 2 J T)``).
        shape: the per-sample shape ``(2 J, T)``.
        parents: parent of every joint (-1 for the root).
        feet: the foot joints.
        contact_speed: the largest per-frame displacement of a real foot in contact.
    """
    p, p_hat = _joints(x0, shape), _joints(x0_hat, shape)
    b = x0.shape[0]
    vel = (p.diff(dim=-1) - p_hat.diff(dim=-1)).pow(2).reshape(b, -1).mean(1)
    contact = foot_contact(p, feet, contact_speed)  # (B, F, T-1)
    moved = p_hat[:, feet].diff(dim=-1).pow(2).sum(2)  # (B, F, T-1)
    foot = (moved * contact).reshape(b, -1).mean(1)
    bone = (bone_lengths(p_hat, parents) - bone_lengths(p, parents)).pow(2).reshape(b, -1).mean(1)
    return {"vel": vel, "foot": foot, "bone": bone}


class MotionExtension(Extension):
    """MDM's geometric losses in place of the loop's loss (module docstring).

    Args:
        config: the experiment (``[diffusion]`` for the denoising part).
        shape: the per-sample shape ``(2 J, T)``.
        params: the data set's ``modality_params`` (``parents``, ``feet``).
        weights: ``{"velocity_weight": ..., "bone_weight": ..., "foot_weight": ...}``.
        contact_speed: see :func:`foot_contact` (normalised units per frame).
    """

    name = "motion"

    def __init__(
        self,
        config: Config,
        shape: tuple[int, ...],
        params: dict[str, Any],
        weights: dict[str, float],
        contact_speed: float = 0.01,
    ) -> None:
        self.config = config.diffusion
        self.shape = tuple(int(s) for s in shape)
        self.parents = [int(q) for q in params.get("parents") or []]
        self.feet = [int(f) for f in params.get("feet") or []]
        self.weights = {k: float(weights.get(k) or 0.0) for k in WEIGHT_KEYS}
        self.contact_speed = contact_speed
        self._last: dict[str, float] = {}
        if self.active and (len(self.shape) != 2 or self.shape[0] != 2 * len(self.parents)):
            raise ConfigError(
                f"the motion losses need samples (2 x joints, T) and a skeleton: got samples {self.shape} "
                f"and {len(self.parents)} joints; set data.args velocity/bone/foot weights to 0"
            )
        if self.weights["foot_weight"] > 0 and not self.feet:
            raise ConfigError("data.args.foot_weight needs a skeleton with feet: set it to 0")

    @property
    def active(self) -> bool:
        return any(w > 0 for w in self.weights.values())

    def loss(
        self,
        model: nn.Module,
        x0: torch.Tensor,
        cond: Any,
        generators: list[torch.Generator],
        ctx: StepContext,
    ) -> torch.Tensor | None:
        """``L_simple + sum_k w_k L_k`` of this rank's batch, or None when every weight is 0."""
        if not self.active:
            return None
        fc = self.config
        labels = cond.get("labels") if isinstance(cond, dict) else cond
        coupling = make_coupling(fc.coupling, labels=labels)
        d = draw(model.process, x0, t_dist=fc.t_dist, generator=generators, coupling=coupling)
        pred = model.predict(d.x_t, d.t, cond)
        # L_simple, as hwaksan.losses.denoising_loss computes it for the same draw
        target = prediction_from_x0_eps(model.prediction, d.x0, d.eps, d.t, model.process, model.sigma_data)
        simple = (pred - target).pow(2).reshape(x0.shape[0], -1).mean(1)
        if fc.weighting != "simple":
            w = x0_weight(
                fc.weighting, model.process, d.t, min_snr_gamma=fc.min_snr_gamma, sigma_data=model.sigma_data
            )
            w = w / prediction_scale(model.prediction, model.process, d.t, model.sigma_data)
            simple = simple * w.to(simple.dtype)
        x0_hat, _ = x0_eps_from_prediction(
            model.prediction, pred, d.x_t, d.t, model.process, model.sigma_data
        )
        terms = geometric_losses(d.x0, x0_hat, self.shape, self.parents, self.feet, self.contact_speed)
        total = simple.mean()
        for key, name in (("velocity_weight", "vel"), ("foot_weight", "foot"), ("bone_weight", "bone")):
            if self.weights[key] > 0:
                total = total + self.weights[key] * terms[name].mean()
        self._last = {f"loss_{k}": float(v.detach().mean()) for k, v in terms.items()}
        return total

    def metrics(self) -> dict[str, Any]:
        """The geometric terms of the last step (``loss_vel``, ``loss_foot``, ``loss_bone``)."""
        return dict(self._last)


def make_motion_extension(config: Config, data: ImageDataset) -> MotionExtension:
    """The motion extension of a run on ``data`` (weights from ``config.data.args``).

    Raises:
        ConfigError: a negative weight, or losses the data cannot give (no skeleton).
    """
    weights = {k: config.data.args.get(k, 0.0) for k in WEIGHT_KEYS}
    for key, value in weights.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"data.args.{key} must be a number >= 0, got {value!r}")
    return MotionExtension(config, tuple(data.images.shape[1:]), data.modality_params, weights)
