"""The linear interpolant of flow matching and rectified flow (Lipman et al. 2023; Liu et al. 2022).

``x_t = (1 - t) x0 + (sigma_min + (1 - sigma_min) t) eps``: with ``sigma_min = 0`` the straight line
from data (t = 0) to noise (t = 1), whose velocity is ``eps - x0``.
"""

from __future__ import annotations

from typing import Any

import torch

from .base import Process, TimeLike, _t

__all__ = ["LinearInterpolant"]


class LinearInterpolant(Process):
    """``alpha = 1 - t``, ``sigma = sigma_min + (1 - sigma_min) t``.

    Args:
        sigma_min: optional noise floor at t = 0 (Lipman et al. 2023, eq. 20, in our time direction).
    """

    name = "flow"

    def __init__(self, sigma_min: float = 0.0) -> None:
        if not 0 <= sigma_min < 1:
            raise ValueError("sigma_min must be in [0, 1)")
        self.sigma_min = float(sigma_min)
        self.t_min = 0.0

    def alpha(self, t: TimeLike) -> torch.Tensor:
        return 1.0 - _t(t)

    def sigma(self, t: TimeLike) -> torch.Tensor:
        return self.sigma_min + (1.0 - self.sigma_min) * _t(t)

    def d_alpha(self, t: TimeLike) -> torch.Tensor:
        return torch.full_like(_t(t), -1.0)

    def d_sigma(self, t: TimeLike) -> torch.Tensor:
        return torch.full_like(_t(t), 1.0 - self.sigma_min)

    def t_from_log_snr(self, lam: TimeLike) -> torch.Tensor:
        # exp(lambda/2) = (1 - t) / (sigma_min + (1 - sigma_min) t)
        lam = _t(lam)
        r = torch.exp(0.5 * lam)
        t = (1.0 - r * self.sigma_min) / (1.0 + r * (1.0 - self.sigma_min))
        return torch.where(torch.isposinf(lam), torch.zeros_like(t), t)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "sigma_min": self.sigma_min}
