"""hwaksan (확산): diffusion and flow generative models on PyTorch.

The public API in one place (DESIGN idea 1-5): a :class:`Process` makes ``x_t = alpha x0 + sigma eps``,
a :class:`ModelDenoiser` turns a raw network into the canonical ``D(x_t, t, cond) -> x0_hat``, and
every sampler in :data:`SAMPLERS` runs any denoiser on any grid from :func:`make_grid`.

    >>> import torch, hwaksan as hw
    >>> oracle = hw.GaussianMixtureDenoiser(hw.anisotropic_mixture(2), hw.make_process("edm"))
    >>> out = hw.sample(oracle, (8, 2), sampler="dpmpp_2m", steps=10, grid="log_snr",
    ...                 generator=torch.Generator().manual_seed(0))
    >>> out.x.shape, out.nfe
    (torch.Size([8, 2]), 10)
"""

from .distributions import GaussianMixture
from .guidance import ClassifierFreeGuidance, ClassifierGuidance
from .losses import denoising_loss, dsm_loss, score_matching_loss
from .models.mlp import MLP
from .oracles import GaussianMixtureDenoiser, anisotropic_mixture
from .parameterizations import PREDICTIONS, ModelDenoiser, convert_prediction
from .processes import (
    EDM,
    PROCESSES,
    VESDE,
    VPSDE,
    DiscreteVP,
    LinearInterpolant,
    Process,
    SubVPSDE,
    make_process,
)
from .samplers import GRIDS, SAMPLERS, SampleResult, get_sampler, log_likelihood, make_grid, sample

__version__ = "0.1.0"

__all__ = [
    "Process",
    "DiscreteVP",
    "VPSDE",
    "SubVPSDE",
    "VESDE",
    "EDM",
    "LinearInterpolant",
    "PROCESSES",
    "make_process",
    "ModelDenoiser",
    "PREDICTIONS",
    "convert_prediction",
    "denoising_loss",
    "dsm_loss",
    "score_matching_loss",
    "SAMPLERS",
    "GRIDS",
    "get_sampler",
    "make_grid",
    "sample",
    "SampleResult",
    "log_likelihood",
    "GaussianMixture",
    "GaussianMixtureDenoiser",
    "anisotropic_mixture",
    "MLP",
    "ClassifierFreeGuidance",
    "ClassifierGuidance",
    "__version__",
]
