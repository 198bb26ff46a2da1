"""Every conversion between what a network can predict, written once in terms of the process,
and the preconditioning that turns a raw network into a denoiser.

With ``x = alpha x0 + sigma eps`` at time ``t``:

====================  ===================================  ====================================
prediction            from (x0, eps)                        back to x0
====================  ===================================  ====================================
``eps``               ``eps``                               ``(x - sigma eps) / alpha``
``x0``                ``x0``                                ``x0``
``v``                 ``alpha eps - sigma x0``              ``(alpha x - sigma v)/(alpha^2+sigma^2)``
``velocity``          ``alpha' x0 + sigma' eps``            ``(sigma' x - sigma u)/det``,
                                                            ``det = alpha sigma' - sigma alpha'``
``score``             ``-eps / sigma``                      ``(x + sigma^2 s) / alpha``
``edm``               ``F = (x0 - c_skip x~) / c_out``      ``c_skip x~ + c_out F``
====================  ===================================  ====================================

``v`` is Salimans & Ho (2022) generalised to any path (for ``alpha^2 + sigma^2 = 1`` it is theirs);
``score`` is Tweedie's formula; ``edm`` is Karras et al. (2022) Table 1 on the EDM variables
``x~ = x / alpha``, ``sigma~ = sigma / alpha``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._typing import Cond
from .processes import Process
from .utils import append_dims, as_time

__all__ = [
    "PREDICTIONS",
    "NOISE_LEVEL_LIMIT",
    "path_coefficients",
    "x0_eps_from_prediction",
    "prediction_from_x0_eps",
    "convert_prediction",
    "eps_from_x0",
    "score_from_x0",
    "velocity_from_x0",
    "edm_preconditioning",
    "input_scale",
    "noise_level",
    "prediction_scale",
    "VARIANCES",
    "reverse_log_variance",
    "ModelDenoiser",
]

PREDICTIONS = ("eps", "x0", "v", "velocity", "score", "edm")

#: The noise level seen by networks is clamped to +-this (only reached where alpha or sigma is 0).
NOISE_LEVEL_LIMIT = 5.0


def path_coefficients(process: Process, t: torch.Tensor, like: torch.Tensor):
    """``alpha, sigma, alpha', sigma'`` at ``t (B,)``, broadcast to ``like`` and cast to its dtype."""
    n, dt = like.ndim, like.dtype
    return tuple(
        append_dims(f(t), n).to(dt) for f in (process.alpha, process.sigma, process.d_alpha, process.d_sigma)
    )


def _check_kind(kind: str) -> None:
    if kind not in PREDICTIONS:
        raise ValueError(f"unknown prediction {kind!r}; choose one of {', '.join(PREDICTIONS)}")


def edm_preconditioning(sigma_tilde: torch.Tensor, sigma_data: float):
    """Karras et al. (2022) Table 1: ``c_skip, c_out, c_in, c_noise`` at noise level ``sigma~``.

    ``c_skip = sd^2 / (s^2 + sd^2)``, ``c_out = s sd / sqrt(s^2 + sd^2)``, ``c_in = 1/sqrt(s^2 + sd^2)``,
    ``c_noise = ln(s) / 4``.
    """
    s2 = sigma_tilde**2
    sd2 = sigma_data**2
    c_skip = sd2 / (s2 + sd2)
    c_out = sigma_tilde * sigma_data / (s2 + sd2).sqrt()
    c_in = 1.0 / (s2 + sd2).sqrt()
    c_noise = sigma_tilde.log() / 4
    return c_skip, c_out, c_in, c_noise


def x0_eps_from_prediction(
    kind: str,
    pred: torch.Tensor,
    x: torch.Tensor,
    t: torch.Tensor,
    process: Process,
    sigma_data: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Recover ``(x0, eps)`` from a prediction of type ``kind`` at ``(x, t)``. Shapes ``(B, *shape)``."""
    _check_kind(kind)
    a, s, da, ds = path_coefficients(process, t, x)
    if kind == "eps":
        eps = pred
        return (x - s * eps) / a, eps
    if kind == "x0":
        x0 = pred
    elif kind == "v":
        x0 = (a * x - s * pred) / (a**2 + s**2)
    elif kind == "velocity":
        x0 = (ds * x - s * pred) / (a * ds - s * da)
    elif kind == "score":
        return (x + s**2 * pred) / a, -s * pred
    else:  # edm
        st = append_dims(process.sigma_tilde(t), x.ndim)
        c_skip, c_out, _, _ = edm_preconditioning(st, sigma_data)
        x0 = c_skip.to(x.dtype) * (x / a) + c_out.to(x.dtype) * pred
    return x0, eps_from_x0(x, x0, t, process)


def prediction_from_x0_eps(
    kind: str,
    x0: torch.Tensor,
    eps: torch.Tensor,
    t: torch.Tensor,
    process: Process,
    sigma_data: float = 1.0,
) -> torch.Tensor:
    """The value a perfect ``kind``-predicting network outputs for the pair ``(x0, eps)``."""
    _check_kind(kind)
    a, s, da, ds = path_coefficients(process, t, x0)
    if kind == "eps":
        return eps
    if kind == "x0":
        return x0
    if kind == "v":
        return a * eps - s * x0
    if kind == "velocity":
        return da * x0 + ds * eps
    if kind == "score":
        return -eps / s
    st = append_dims(process.sigma_tilde(t), x0.ndim)
    c_skip, c_out, _, _ = edm_preconditioning(st, sigma_data)
    x_tilde = x0 + st.to(x0.dtype) * eps
    return (x0 - c_skip.to(x0.dtype) * x_tilde) / c_out.to(x0.dtype)


def convert_prediction(
    pred: torch.Tensor,
    from_kind: str,
    to_kind: str,
    x: torch.Tensor,
    t: torch.Tensor,
    process: Process,
    sigma_data: float = 1.0,
) -> torch.Tensor:
    """Convert a prediction between any two types through ``(x0, eps)``."""
    if from_kind == to_kind:
        return pred
    x0, eps = x0_eps_from_prediction(from_kind, pred, x, t, process, sigma_data)
    return prediction_from_x0_eps(to_kind, x0, eps, t, process, sigma_data)


def eps_from_x0(x: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, process: Process):
    """``eps = (x - alpha x0) / sigma``."""
    a, s, _, _ = path_coefficients(process, t, x)
    return (x - a * x0) / s


def score_from_x0(x: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, process: Process):
    """Tweedie: ``grad log p_t(x) = (alpha x0_hat - x) / sigma^2``."""
    a, s, _, _ = path_coefficients(process, t, x)
    return (a * x0 - x) / s**2


def velocity_from_x0(x: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, process: Process):
    """Probability-flow ODE velocity ``dx/dt = alpha' x0_hat + sigma' eps_hat``."""
    a, s, da, ds = path_coefficients(process, t, x)
    return da * x0 + ds * (x - a * x0) / s


def input_scale(process: Process, t: torch.Tensor, sigma_data: float = 1.0) -> torch.Tensor:
    """``c_in = 1 / sqrt(alpha^2 sd^2 + sigma^2)``: unit-variance network input for data of std sd.

    Equal to EDM's ``c_in`` on ``x~ = x / alpha`` (it is the same scaling of the same input).
    """
    return 1.0 / (process.alpha(t) ** 2 * sigma_data**2 + process.sigma(t) ** 2).sqrt()


def noise_level(process: Process, t: torch.Tensor) -> torch.Tensor:
    """What networks see: ``c_noise = -lambda(t) / 8`` (= EDM's ``ln(sigma~) / 4``), float64 ``(B,)``.

    Clamped to ``+-NOISE_LEVEL_LIMIT``, reached only where alpha or sigma vanishes.
    """
    lam = process.log_snr(t)
    return (-lam / 8).clamp(-NOISE_LEVEL_LIMIT, NOISE_LEVEL_LIMIT)


def prediction_scale(kind: str, process: Process, t: torch.Tensor, sigma_data: float = 1.0) -> torch.Tensor:
    """``|d pred / d x0|^2`` at fixed ``x_t``: an error in x0 of size e is an error in ``kind`` of size
    ``sqrt(scale) e``. Converts loss weightings between spaces (Kingma & Gao 2023).

    eps: ``snr``; x0: 1; v: ``((alpha^2+sigma^2)/sigma)^2``; velocity: ``(alpha' - sigma' alpha/sigma)^2``;
    score: ``(alpha/sigma^2)^2``; edm: ``1/c_out^2``.
    """
    _check_kind(kind)
    a, s = process.alpha(t), process.sigma(t)
    if kind == "eps":
        return (a / s) ** 2
    if kind == "x0":
        return torch.ones_like(a)
    if kind == "v":
        return ((a**2 + s**2) / s) ** 2
    if kind == "velocity":
        return (process.d_alpha(t) - process.d_sigma(t) * a / s) ** 2
    if kind == "score":
        return (a / s**2) ** 2
    _, c_out, _, _ = edm_preconditioning(s / a, sigma_data)
    return 1.0 / c_out**2


#: Variances of a reverse step ``p(x_s | x_t)``: the posterior ``beta~``, the forward ``beta``, or the
#: network's interpolation between them (Nichol & Dhariwal 2021).
VARIANCES = ("posterior", "beta", "learned")


def reverse_log_variance(
    process: Process,
    t: torch.Tensor,
    s: torch.Tensor,
    kind: str = "posterior",
    v: torch.Tensor | None = None,
) -> torch.Tensor:
    """Log-variance of the reverse step ``p(x_s | x_t)``, ``s < t``, float64.

    ``posterior``: ``log beta~`` with ``beta~ = var q(x_s | x_t, x0)``; ``beta``: ``log beta`` with
    ``beta = var q(x_t | x_s)``; ``learned`` (Nichol & Dhariwal 2021, eq. 15):
    ``frac log beta + (1 - frac) log beta~`` with ``frac = (v + 1) / 2`` and ``v`` the network's
    second output (not clamped, as in their code). On DDPM knots ``s = t - 1/T`` these are the
    table's ``beta_t`` and ``beta~_t``.

    A step onto ``sigma_s = 0`` has ``beta~ = 0``; there ``beta~`` is replaced by the posterior
    variance of the step ``2t - s -> t`` (``beta~_2`` at DDPM's first step, improved-diffusion's
    ``posterior_log_variance_clipped``), and ``beta`` is replaced by it as well (their
    ``FIXED_LARGE`` decoder variance), so the decoder of the variational bound has a finite width;
    ``learned`` keeps the true ``beta`` as its upper end there, as theirs does.

    Shapes: ``t, s (B,)`` -> ``(B,)`` for the fixed kinds; ``v (B, *shape)`` -> ``(B, *shape)``.
    """
    if kind not in VARIANCES:
        raise ValueError(f"unknown variance {kind!r}; choose one of {', '.join(VARIANCES)}")
    t = torch.as_tensor(t, dtype=torch.float64)
    s = torch.as_tensor(s, dtype=torch.float64)
    var_post = process.posterior_coefficients(t, s)[2]
    last = var_post <= 0
    if bool(last.any()):
        t_up = (2 * t - s).clamp(max=process.t_max)
        var_post = torch.where(last, process.posterior_coefficients(t_up, t)[2], var_post)
    log_post = var_post.log()
    if kind == "posterior":
        return log_post
    log_beta = process.transition(t, s)[1].log()
    if kind == "beta":
        return torch.where(last, log_post, log_beta)
    if v is None:
        raise ValueError("variance 'learned' needs the network's variance output v")
    frac = (v.double() + 1) / 2
    n = v.ndim
    return frac * append_dims(log_beta, n) + (1 - frac) * append_dims(log_post, n)


class ModelDenoiser(nn.Module):
    """A raw network made into a denoiser ``D(x_t, t, cond) -> x0_hat``.

    The network sees ``net(c_in(t) x_t, c_noise(t), cond)`` with ``c_in = 1/sqrt(alpha^2 sd^2 +
    sigma^2)`` and ``c_noise = -lambda(t)/8``, and its output is read as a prediction of type
    ``prediction``; for ``"edm"`` that is EDM's ``F`` with ``D = c_skip x~ + c_out F``.

    Args:
        net: ``net(x, noise_level, cond) -> Tensor`` (e.g. :class:`hwaksan.models.MLP`).
        process: the Gaussian path.
        prediction: one of :data:`PREDICTIONS`.
        sigma_data: data standard deviation assumed by the input scaling and EDM.
        learn_sigma: the network also outputs a variance (Nichol & Dhariwal 2021): its output has
            twice the data channels, ``[prediction, v]`` along dim 1; the denoiser reads the first
            half and :meth:`x0_and_variance` both. Default: ``net.config["learn_sigma"]``.
    """

    def __init__(
        self,
        net: nn.Module,
        process: Process,
        prediction: str = "eps",
        sigma_data: float = 1.0,
        learn_sigma: bool | None = None,
    ) -> None:
        super().__init__()
        _check_kind(prediction)
        zero_terminal = bool(getattr(process, "zero_terminal_snr", False))
        if prediction == "eps" and zero_terminal:
            raise ValueError(
                "eps-prediction is undefined at zero terminal SNR (x_T carries no x0; Lin et al. "
                "2024): use prediction='v' or 'x0' with this schedule"
            )
        self.net = net
        self.process = process
        self.prediction = prediction
        self.sigma_data = float(sigma_data)
        if learn_sigma is None:
            learn_sigma = bool((getattr(net, "config", None) or {}).get("learn_sigma", False))
        self.learn_sigma = bool(learn_sigma)

    def network_inputs(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(c_in x, c_noise)``: what the raw network receives."""
        c_in = append_dims(input_scale(self.process, t, self.sigma_data), x.ndim).to(x.dtype)
        return c_in * x, noise_level(self.process, t).to(x.dtype)

    def _network(self, x: torch.Tensor, t: torch.Tensor, cond: Cond) -> torch.Tensor:
        t = as_time(t, x.shape[0], x.device)
        x_in, c_noise = self.network_inputs(x, t)
        param = next(self.net.parameters(), None)
        dtype = param.dtype if param is not None else x.dtype
        return self.net(x_in.to(dtype), c_noise.to(dtype), cond).to(x.dtype)

    def predict(self, x: torch.Tensor, t: torch.Tensor, cond: Cond = None) -> torch.Tensor:
        """The network's raw prediction (of type ``self.prediction``). Shapes ``(B, *shape)``."""
        if self.learn_sigma:
            return self.predict_with_variance(x, t, cond)[0]
        return self._network(x, t, cond)

    def predict_with_variance(
        self, x: torch.Tensor, t: torch.Tensor, cond: Cond = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The prediction and the raw variance output ``v`` of a ``learn_sigma`` network, from one
        network call. Shapes ``(B, *shape)`` each."""
        if not self.learn_sigma:
            raise ValueError(
                "this model has no learned variance: build its network with learn_sigma=True "
                "(e.g. --set model.args.learn_sigma=true) or use a fixed variance"
            )
        out = self._network(x, t, cond)
        if out.shape[1] != 2 * x.shape[1]:
            raise ValueError(
                f"a learn_sigma network must output 2 x {x.shape[1]} channels along dim 1, got {out.shape[1]}"
            )
        pred, v = out.chunk(2, dim=1)
        return pred, v

    def x0_and_variance(
        self, x: torch.Tensor, t: torch.Tensor, cond: Cond = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x0_hat, v)`` from one network call: the denoised estimate and the variance output
        ``v`` (``frac = (v + 1) / 2``, see :func:`reverse_log_variance`). Shapes ``(B, *shape)``."""
        t = as_time(t, x.shape[0], x.device)
        pred, v = self.predict_with_variance(x, t, cond)
        x0, _ = x0_eps_from_prediction(self.prediction, pred, x, t, self.process, self.sigma_data)
        return x0, v

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Cond = None) -> torch.Tensor:
        """``x0_hat (B, *shape)`` at per-sample times ``t (B,)``."""
        t = as_time(t, x.shape[0], x.device)
        pred = self.predict(x, t, cond)
        x0, _ = x0_eps_from_prediction(self.prediction, pred, x, t, self.process, self.sigma_data)
        return x0

    def config(self) -> dict[str, Any]:
        """JSON-serialisable description (without the network weights)."""
        return {
            "process": self.process.config(),
            "prediction": self.prediction,
            "sigma_data": self.sigma_data,
        }
