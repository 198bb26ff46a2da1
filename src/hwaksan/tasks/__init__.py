"""Tasks built on a trained model: compositions of the core, no new sampling loop.

- :mod:`.edit`: SDEdit (noise to a strength, denoise under any condition) and DDIM inversion;
- :mod:`.inpaint`: RePaint inpainting with the jump / resampling schedule;
- :mod:`.superres`: super-resolution with noise-conditioning augmentation, cascades, PSNR / SSIM;
- :mod:`.reflow`: rectified flow's ODE map from source samples (reflow pairs, one-step models);
- :mod:`.latent`: any of them in a latent space, through an autoencoder (Rombach et al. 2022).

Tasks import the core (samplers, guidance, parameterizations, processes, utils) and, for the
latent wrapper, :mod:`hwaksan.io.codec`; never training code or the CLI. A trained model of any
kind runs them through :meth:`hwaksan.io.artifact.TrainedModel.apply`.
"""

from .edit import ddim_invert, edit_grid, invert_and_generate, sdedit, strength_time
from .inpaint import check_mask, inpaint, paste, repaint_schedule
from .reflow import one_step, push_forward, source_sample
from .superres import Stage, cascade, psnr, ssim, superres_cond, upscale

__all__ = [
    "sdedit",
    "edit_grid",
    "strength_time",
    "ddim_invert",
    "invert_and_generate",
    "inpaint",
    "repaint_schedule",
    "check_mask",
    "paste",
    "upscale",
    "superres_cond",
    "cascade",
    "Stage",
    "psnr",
    "ssim",
    "push_forward",
    "source_sample",
    "one_step",
]
