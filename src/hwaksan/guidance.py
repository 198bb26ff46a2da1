"""Guidance: denoiser -> denoiser wrappers.

Every wrapper here is itself a denoiser ``D(x_t, t, cond) -> x0_hat`` with a ``.process``, so it
works with every sampler in :data:`hwaksan.SAMPLERS` and every model family (diffusion or flow):
the samplers contain no guidance code.

- :class:`ClassifierFreeGuidance` (Ho & Salimans 2022):
  ``D_w = D(x, t, u) + w (D(x, t, c) - D(x, t, u))``, with ``u`` the null condition (or a negative
  condition). It is written on ``x0``; because ``eps``, ``v``, the flow velocity and the score are
  affine in ``x0`` at fixed ``(x_t, t)``, the same combination on any of them gives the same sampler
  step. ``w = 1`` is exactly the conditional model, ``w = 0`` the unconditional one. The two
  branches run as one forward pass on a batch of ``2B``. Options: guidance rescale (Lin et al.
  2024, eq. 15-16) and a guidance interval (Kynkaanniemi et al. 2024: guide only for noise levels
  ``sigma~`` in ``[lo, hi]``).
- :class:`ClassifierGuidance` (Dhariwal & Nichol 2021, Alg. 1-2 in score form):
  ``eps^ = eps - s sigma grad_x log p(y | x_t)``, i.e. ``x0^ = x0 + s sigma^2 grad_x log p(y | x_t)
  / alpha`` (docs/conventions.md). The gradient is taken with ``torch.enable_grad()`` inside, so the
  sampler may run under ``torch.no_grad()``. ``s = 0`` is exactly the unguided denoiser.
- :class:`ReconstructionGuidance` (Ho et al. 2022, Video Diffusion Models, sec. 3.1, eq. 7): for
  inpainting, ``x0^b = D^b - w alpha / 2 grad_{x_t} ||m (x_ref - D(x_t))||^2`` on the unknown part
  ``b``, the known part ``a`` given by the mask ``m``; it pulls the filled region towards samples
  that agree with the kept one, which replacement alone does only through the noisy ``x_t^a``.

Conditions follow docs/conventions.md: ``None``, class labels ``(B,)`` (index ``num_classes`` is the
null class) or a dict of tensors (``labels``, ``context (B, L, Dc)``, ``context_mask (B, L)`` bool,
True = real token, ``image``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from ._typing import Cond, Denoiser
from .parameterizations import path_coefficients, prediction_from_x0_eps, x0_eps_from_prediction
from .utils import append_dims, as_time

__all__ = [
    "ClassifierFreeGuidance",
    "ClassifierGuidance",
    "LogProb",
    "RESCALE_SPACES",
    "ReconstructionGuidance",
    "null_condition",
    "concat_conditions",
    "rescale_guidance",
]

#: ``log_prob(x_t (B, *shape), t (B,) float64, y (B,) long) -> (B,)``: ``log p(y | x_t)`` under the
#: guided denoiser's process (e.g. :func:`hwaksan.training.classifier.classifier_log_prob`).
LogProb = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

#: Where guidance rescale measures and rescales the standard deviation.
RESCALE_SPACES = ("x0", "v")

_FAIL = object()  # "these two conditions cannot be batched together"


# ------------------------------------------------------------------------------------------------
# conditions


def _infer_null_class(denoiser: Any) -> int | None:
    """The null class index ``num_classes`` of a class-conditional network inside ``denoiser``
    (looked up by attribute, through nested wrappers), or None."""
    seen = 0
    while denoiser is not None and seen < 16:
        net = getattr(denoiser, "net", None)
        for obj in (net, denoiser):
            k = getattr(obj, "num_classes", None)
            if k is None:
                config = getattr(obj, "config", None)
                k = config.get("num_classes") if isinstance(config, Mapping) else None
            if isinstance(k, int) and k > 0:
                return k
        denoiser = getattr(denoiser, "denoiser", None)
        seen += 1
    return None


def null_condition(cond: Cond, null_class: int | None) -> Cond:
    """The "no condition" counterpart of ``cond``, batch for batch.

    - labels ``(B,)``: every entry becomes ``null_class`` (the class index the network was trained
      with under condition dropout);
    - a dict: ``labels`` as above; a ``context`` keeps its tensor but gets an all-False
      ``context_mask`` (the U-Net's and DiT's cross-attention then add exactly nothing, as if the
      layer were absent); any other field (e.g. ``image``) is kept;
    - ``None``: ``None``.

    Models trained with another null (e.g. the embedding of the empty prompt) pass it to
    :class:`ClassifierFreeGuidance` as ``uncond`` instead.

    Raises:
        ValueError: labels without a ``null_class``.
    """
    if cond is None:
        return None

    def null_labels(labels: torch.Tensor) -> torch.Tensor:
        if null_class is None:
            raise ValueError(
                "classifier-free guidance on class labels needs the null class index: pass "
                "null_class=NUM_CLASSES (or uncond=...) to ClassifierFreeGuidance"
            )
        return torch.full_like(torch.as_tensor(labels), int(null_class))

    if isinstance(cond, torch.Tensor):
        return null_labels(cond)
    if isinstance(cond, Mapping):
        out = dict(cond)
        if cond.get("labels") is not None:
            out["labels"] = null_labels(cond["labels"])
        context = cond.get("context")
        if context is not None:
            out["context_mask"] = torch.zeros(context.shape[:2], dtype=torch.bool, device=context.device)
        return out
    raise TypeError(
        f"cannot derive a null condition from {type(cond).__name__}: pass uncond= to ClassifierFreeGuidance"
    )


def _expand(cond: Cond, batch: int) -> Cond:
    """Broadcast tensors with a leading dimension of 1 (or 0-d labels) to ``batch``."""
    if isinstance(cond, torch.Tensor):
        if cond.ndim == 0:
            return cond.expand(batch)
        if cond.shape[0] == 1 and batch != 1:
            return cond.expand(batch, *cond.shape[1:])
        return cond
    if isinstance(cond, Mapping):
        return {k: _expand(v, batch) for k, v in cond.items()}
    return cond


def _pad_context(d: dict, length: int) -> dict:
    """Zero-pad ``context (B, L, Dc)`` to ``length`` tokens; the padding is masked out."""
    ctx = d["context"]
    b, n = ctx.shape[:2]
    if n == length:
        return d
    mask = d.get("context_mask")
    if mask is None:
        mask = torch.ones(b, n, dtype=torch.bool, device=ctx.device)
    out = dict(d)
    out["context"] = torch.cat([ctx, ctx.new_zeros(b, length - n, *ctx.shape[2:])], dim=1)
    out["context_mask"] = torch.cat(
        [mask.to(torch.bool), torch.zeros(b, length - n, dtype=torch.bool, device=mask.device)], dim=1
    )
    return out


def concat_conditions(a: Cond, b: Cond) -> Cond:
    """Concatenate two conditions along the batch, or return ``NotImplemented`` if they do not fit.

    Labels ``(B1,)`` and ``(B2,)`` give ``(B1 + B2,)``. Dicts must have the same keys; each tensor
    field is concatenated (contexts of different lengths are zero-padded and masked, adding a
    mask where one is missing), ``None`` fields must be ``None`` in both. ``None`` with ``None`` is
    ``None``.
    """
    if a is None and b is None:
        return None
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape[1:] != b.shape[1:]:
            return NotImplemented
        return torch.cat([a, b.to(a.dtype)])
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        a, b = dict(a), dict(b)
        if isinstance(a.get("context"), torch.Tensor) and isinstance(b.get("context"), torch.Tensor):
            length = max(a["context"].shape[1], b["context"].shape[1])
            a, b = _pad_context(a, length), _pad_context(b, length)
            if a.get("context_mask") is not None or b.get("context_mask") is not None:
                for d in (a, b):  # a mask on one side needs one on the other
                    if d.get("context_mask") is None:
                        ctx = d["context"]
                        d["context_mask"] = torch.ones(ctx.shape[:2], dtype=torch.bool, device=ctx.device)
        if set(a) != set(b):
            return NotImplemented
        out = {}
        for k in a:
            va, vb = a[k], b[k]
            if va is None and vb is None:
                out[k] = None
                continue
            if not (isinstance(va, torch.Tensor) and isinstance(vb, torch.Tensor)):
                return NotImplemented
            if va.shape[1:] != vb.shape[1:]:
                return NotImplemented
            out[k] = torch.cat([va, vb.to(device=va.device, dtype=va.dtype)])
        return out
    return NotImplemented


def _labels_of(cond: Cond) -> torch.Tensor:
    if isinstance(cond, torch.Tensor):
        return cond
    if isinstance(cond, Mapping) and cond.get("labels") is not None:
        return cond["labels"]
    raise ValueError(
        "classifier guidance needs the target classes: pass cond=labels (B,) long (or a dict with "
        "'labels') to the sampler"
    )


def _scale(scale: float | torch.Tensor, like: torch.Tensor) -> float | torch.Tensor:
    if isinstance(scale, torch.Tensor) and scale.ndim > 0:
        return append_dims(scale, like.ndim).to(like.dtype)
    return float(scale)


def _is(scale: float | torch.Tensor, value: float) -> bool:
    if isinstance(scale, torch.Tensor):
        return bool((scale == value).all())
    return float(scale) == value


# ------------------------------------------------------------------------------------------------
# classifier-free guidance


def rescale_guidance(guided: torch.Tensor, cond: torch.Tensor, phi: float | torch.Tensor) -> torch.Tensor:
    """Guidance rescale (Lin et al. 2024, eq. 15-16), per sample over all non-batch dims.

    ``x_r = x_cfg std(x_cond) / std(x_cfg)``, ``x = phi x_r + (1 - phi) x_cfg``. ``phi = 0`` returns
    ``guided`` unchanged. Shapes ``(B, *shape)``.
    """
    if _is(phi, 0.0):
        return guided
    dims = tuple(range(1, guided.ndim))
    std_c = cond.std(dim=dims, keepdim=True, correction=0)
    std_g = guided.std(dim=dims, keepdim=True, correction=0)
    ratio = torch.where(std_g > 0, std_c / std_g.clamp_min(torch.finfo(std_g.dtype).tiny), 1.0)
    phi = _scale(phi, guided)
    return phi * (guided * ratio) + (1 - phi) * guided


class ClassifierFreeGuidance:
    """Classifier-free guidance as a denoiser (Ho & Salimans 2022, eq. 6 on ``x0``).

    ``D_w(x, t, c) = D(x, t, u) + w (D(x, t, c) - D(x, t, u))``: ``w = 1`` returns ``D(x, t, c)``
    itself (one call, bit for bit), ``w = 0`` the unconditional model, ``w > 1`` guides. The
    convention is that of docs/conventions.md. On eps, v or a flow's velocity the same formula
    gives the same result, since each is affine in ``x0`` at fixed ``(x_t, t)``.

    Args:
        denoiser: a conditional denoiser trained with condition dropout.
        scale: guidance weight ``w`` (a float, or ``(B,)`` per sample).
        uncond: the reference branch ``u``: None (default) for :func:`null_condition` of ``cond``; a
            condition (labels or a dict, leading dimension ``B`` or 1) to use instead -- a
            *negative condition* (e.g. another class, or a negative prompt's context); or a
            callable ``cond -> u``.
        null_class: the null class index; default: read from the wrapped network
            (``net.num_classes``).
        rescale: ``phi`` of guidance rescale (Lin et al. 2024, eq. 15-16); 0 (default) is plain
            CFG, the paper recommends 0.7.
        rescale_space: ``"x0"`` (default) or ``"v"``: which prediction's standard deviation is
            matched. The paper rescales the output of its v-prediction network; we default to
            ``x0`` because the denoiser's ``x0`` is defined for every process and parameterisation
            (v needs ``sigma > 0``) and it is the image whose over-saturation the rescale repairs.
            At high noise the two agree (``v ~ -sigma x0``).
        interval: ``(lo, hi)``: guide only where ``lo <= sigma~(t) <= hi`` (``sigma~ = sigma /
            alpha``, the EDM noise level; Kynkaanniemi et al. 2024); elsewhere the conditional
            model ``D(x, t, c)``. None: everywhere.
        batched: run both branches as one forward pass on ``2B`` inputs (default). Conditions that
            cannot be concatenated (e.g. ``None`` against labels) fall back to two calls.

    Shapes: ``x (B, *shape)``, ``t (B,)`` float64.

    Example:
        >>> import torch, hwaksan as hw
        >>> mix = hw.GaussianMixture([[-2.0], [2.0]], 0.25)
        >>> oracle = hw.GaussianMixtureDenoiser(mix, hw.make_process("edm"))
        >>> cfg = ClassifierFreeGuidance(oracle, 3.0, uncond=lambda c: None)
        >>> out = hw.sample(cfg, (4, 1), cond=torch.tensor([1, 1, 1, 1]), steps=8,
        ...                 generator=torch.Generator().manual_seed(0))
        >>> bool((out.x > 0).all())
        True
    """

    def __init__(
        self,
        denoiser: Denoiser,
        scale: float | torch.Tensor = 1.0,
        *,
        uncond: Cond | Callable[[Cond], Cond] = None,
        null_class: int | None = None,
        rescale: float | torch.Tensor = 0.0,
        rescale_space: str = "x0",
        interval: tuple[float, float] | None = None,
        batched: bool = True,
    ) -> None:
        if rescale_space not in RESCALE_SPACES:
            raise ValueError(f"rescale_space must be one of {RESCALE_SPACES}, got {rescale_space!r}")
        if interval is not None:
            lo, hi = (float(v) for v in interval)
            if not 0.0 <= lo <= hi:
                raise ValueError(f"interval must be (lo, hi) with 0 <= lo <= hi, got {interval}")
            interval = (lo, hi)
        self.denoiser = denoiser
        self.process = denoiser.process
        self.scale = scale
        self.uncond = uncond
        self.null_class = null_class if null_class is not None else _infer_null_class(denoiser)
        self.rescale = rescale
        self.rescale_space = rescale_space
        self.interval = interval
        self.batched = batched

    def reference_condition(self, cond: Cond, batch: int) -> Cond:
        """The condition of the reference ("unconditional" or negative) branch for ``cond``."""
        if callable(self.uncond):
            u = self.uncond(cond)
        elif self.uncond is None:
            u = null_condition(cond, self.null_class)
        else:
            u = self.uncond
        return _expand(u, batch)

    def active(self, t: torch.Tensor) -> torch.Tensor | None:
        """``(B,)`` bool: where guidance applies (None: everywhere)."""
        if self.interval is None:
            return None
        st = self.process.sigma_tilde(t)
        return (st >= self.interval[0]) & (st <= self.interval[1])

    def branches(self, x: torch.Tensor, t: torch.Tensor, cond: Cond) -> tuple[torch.Tensor, torch.Tensor]:
        """``(D(x, t, c), D(x, t, u))``, from one forward pass on ``2B`` when the conditions batch."""
        b = x.shape[0]
        u = self.reference_condition(cond, b)
        both = concat_conditions(cond, u) if self.batched else NotImplemented
        if both is NotImplemented:
            return self.denoiser(x, t, cond), self.denoiser(x, t, u)
        out = self.denoiser(torch.cat([x, x]), torch.cat([t, t]), both)
        return out[:b], out[b:]

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: Cond = None) -> torch.Tensor:
        t = as_time(t, x.shape[0], x.device)
        if _is(self.scale, 1.0) or (cond is None and self.uncond is None):
            return self.denoiser(x, t, cond)  # off, or nothing to guide towards
        active = self.active(t)
        if active is not None and not bool(active.any()):
            return self.denoiser(x, t, cond)
        x0_c, x0_u = self.branches(x, t, cond)
        w = _scale(self.scale, x)
        x0 = x0_u + w * (x0_c - x0_u)
        if not _is(self.rescale, 0.0):
            x0 = self._rescale(x0, x0_c, x, t)
        if active is not None and not bool(active.all()):
            x0 = torch.where(append_dims(active, x.ndim), x0, x0_c)
        return x0

    def _rescale(self, x0: torch.Tensor, x0_c: torch.Tensor, x: torch.Tensor, t: torch.Tensor):
        if self.rescale_space == "x0":
            return rescale_guidance(x0, x0_c, self.rescale)
        p = self.process
        a, s, _, _ = path_coefficients(p, t, x)
        v = prediction_from_x0_eps("v", x0, (x - a * x0) / s, t, p)
        v_c = prediction_from_x0_eps("v", x0_c, (x - a * x0_c) / s, t, p)
        return x0_eps_from_prediction("v", rescale_guidance(v, v_c, self.rescale), x, t, p)[0]


# ------------------------------------------------------------------------------------------------
# classifier guidance


def _check_cap(max_sigma_tilde: float) -> None:
    if not max_sigma_tilde > 0:
        raise ValueError(f"max_sigma_tilde must be > 0, got {max_sigma_tilde}")


def _capped_time(process: Any, t: torch.Tensor, max_sigma_tilde: float) -> torch.Tensor:
    """``t`` with every time whose noise level ``sigma~`` exceeds ``max_sigma_tilde`` replaced by the
    time of ``max_sigma_tilde`` (the cap of the gradient guidance wrappers)."""
    capped = process.sigma_tilde(t) > max_sigma_tilde
    if bool(capped.any()):
        t = torch.where(capped, process.t_from_sigma_tilde(torch.full_like(t, max_sigma_tilde)), t)
    return t


class ClassifierGuidance:
    """Classifier guidance as a denoiser (Dhariwal & Nichol 2021, sec. 4 and Alg. 2).

    ``eps^ = eps - s sigma_t grad_x log p(y | x_t)``, equivalently (score form, Song et al. 2021)
    ``grad log p_t(x | y) ~ grad log p_t(x) + s grad log p(y | x)``, written on ``x0`` as

        x0^ = D(x, t, .) + s sigma(t)^2 / alpha(t) * grad_x log p(y | x_t).

    With the exact posterior ``p_t(y | x_t)`` and ``s = 1`` this turns the exact unconditional
    denoiser into the exact class-conditional one at every noise level (Bayes and Tweedie). ``s = 0``
    returns the denoiser's output itself.

    Above ``max_sigma_tilde`` (default 80, EDM's ``sigma_max``: no default grid asks for more) the
    correction term is evaluated at ``max_sigma_tilde`` instead. This keeps it finite where
    ``alpha = 0`` (a flow's ``t = 1``, where ``sigma^2 / alpha`` is infinite and the gradient 0: the
    product's limit is finite and the capped value approximates it to ``O(1 / max_sigma_tilde)``),
    and never asks a trained classifier about noise levels it has not seen.

    The gradient is computed under ``torch.enable_grad()`` on a detached copy of ``x``, so samplers
    may run under ``torch.no_grad()``; the correction is returned detached.

    Args:
        denoiser: the model to guide (usually unconditional).
        log_prob: ``log_prob(x_t, t, y) -> (B,)``, ``log p(y | x_t)`` under the denoiser's process
            (:data:`LogProb`; e.g. :func:`hwaksan.training.classifier.classifier_log_prob`).
        scale: gradient scale ``s`` (a float or ``(B,)``).
        condition_model: also pass the sampler's ``cond`` to the denoiser (a class-conditional
            model with a classifier on top); default False: the denoiser gets ``None`` (its
            unconditional mode) and ``cond`` only names the target classes.
        max_sigma_tilde: the cap on the noise level of the correction term (see above).

    The sampler's ``cond`` gives the targets ``y``: labels ``(B,)`` long, or a dict with
    ``labels``.
    """

    def __init__(
        self,
        denoiser: Denoiser,
        log_prob: LogProb,
        scale: float | torch.Tensor = 1.0,
        *,
        condition_model: bool = False,
        max_sigma_tilde: float = 80.0,
    ) -> None:
        _check_cap(max_sigma_tilde)
        self.denoiser = denoiser
        self.process = denoiser.process
        self.log_prob = log_prob
        self.scale = scale
        self.condition_model = condition_model
        self.max_sigma_tilde = float(max_sigma_tilde)

    def grad_log_prob(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``grad_x log p(y | x_t)``, ``(B, *shape)``, with gradients enabled locally."""
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            lp = self.log_prob(xg, t, y)
            if lp.shape != (x.shape[0],):
                raise ValueError(f"log_prob must return ({x.shape[0]},), got {tuple(lp.shape)}")
            (grad,) = torch.autograd.grad(lp.sum(), xg)
        return grad.detach()

    def correction(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``sigma^2 / alpha * grad_x log p(y | x_t)`` (``(B, *shape)``), capped in noise level."""
        p = self.process
        t = _capped_time(p, t, self.max_sigma_tilde)
        a, s = p.alpha(t), p.sigma(t)
        coef = s**2 / a
        grad = self.grad_log_prob(x, t, y)
        return append_dims(coef, x.ndim).to(x.dtype) * grad

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: Cond = None) -> torch.Tensor:
        t = as_time(t, x.shape[0], x.device)
        y = _labels_of(cond)
        x0 = self.denoiser(x, t, cond if self.condition_model else None)
        if _is(self.scale, 0.0):
            return x0
        y = torch.as_tensor(y, device=x.device).reshape(-1).long()
        return x0 + _scale(self.scale, x) * self.correction(x, t, y)


class ReconstructionGuidance:
    """Reconstruction guidance for inpainting (Ho et al. 2022, "Video Diffusion Models", eq. 7).

    With the known part ``a`` of a reference ``x_ref`` (``mask = 1``) and the unknown part ``b``,

        x0^b = D^b(x_t) - w alpha(t) / 2 * grad_{x_t^b} ||mask * (x_ref - D(x_t))||^2,

    and ``x0^a = D^a(x_t)`` (inpainting replaces it anyway). It is classifier guidance
    (:class:`ClassifierGuidance`) with the Gaussian approximation ``p(x^a | x_t) = N(D^a(x_t),
    sigma^2 / alpha^2 I)``: ``sigma^2 / alpha * grad log p = -alpha / 2 * grad ||x^a - D^a||^2``,
    weighted by ``w``. ``w = 0`` returns the denoiser's output itself. Above ``max_sigma_tilde``
    the factor ``alpha`` is taken at ``max_sigma_tilde`` (as in :class:`ClassifierGuidance`).

    The gradient is taken under ``torch.enable_grad()`` (the sampler may run under
    ``torch.no_grad()``); it costs a backward pass through the network per evaluation.

    Args:
        denoiser: the model (conditional or not; the sampler's ``cond`` is passed on).
        reference: ``x_ref (B, *shape)``; only the known part is read.
        mask: 1 = known, 0 = unknown; broadcastable to ``reference``.
        scale: the weight ``w`` (Ho et al. use ``w > 1``).
        max_sigma_tilde: the cap on the noise level of the factor ``alpha``.
    """

    def __init__(
        self,
        denoiser: Denoiser,
        reference: torch.Tensor,
        mask: torch.Tensor,
        scale: float = 1.0,
        *,
        max_sigma_tilde: float = 80.0,
    ) -> None:
        _check_cap(max_sigma_tilde)
        self.denoiser = denoiser
        self.process = denoiser.process
        self.reference = reference
        self.mask = mask.to(reference.dtype)
        self.scale = float(scale)
        self.max_sigma_tilde = float(max_sigma_tilde)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: Cond = None) -> torch.Tensor:
        t = as_time(t, x.shape[0], x.device)
        if self.scale == 0.0:
            return self.denoiser(x, t, cond)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            x0 = self.denoiser(xg, t, cond)
            err = (self.mask * (self.reference - x0)).square().sum()
            (grad,) = torch.autograd.grad(err, xg)
        t = _capped_time(self.process, t, self.max_sigma_tilde)
        coef = append_dims(self.scale * self.process.alpha(t) / 2, x.ndim).to(x.dtype)
        return (x0 - (1 - self.mask) * coef * grad).detach()
