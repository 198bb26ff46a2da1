"""The one map from a config (and its data set) to the trainer's extensions.

:func:`extensions_for` returns, in the order the loop calls them: latent diffusion
(``latent.vae``), reflow pairs (a :class:`~hwaksan.training.pairs.PairedImageDataset`), text
conditioning (``text.encoder``), super-resolution (``data.lowres``), ``L_hybrid`` / ``L_vlb``
(``diffusion.loss``), the MoE load-balancing loss (an MoE network), then the extension of the data
set's modality (:data:`MODALITY_EXTENSIONS`: audio, video, motion), which reads its settings from
``data.args``. Class labels and their dropout stay in the loop, since every model may have them.

:func:`check_combinations` rejects what does not compose, with one :class:`ConfigError` line each.
Text and super-resolution compose (the condition carries both the caption and the low-resolution
image); latent diffusion and super-resolution do not (the low-resolution condition is in pixels),
nor latent diffusion and an MLP (which takes flat vectors, not latent grids), nor fixed pairs
with a loss, condition or coupling that draws its own source side.
"""

from __future__ import annotations

from collections.abc import Callable

from ..data.dataset import ImageDataset
from .audio import make_audio_extension
from .config import Config, ConfigError, base_network_spec
from .extension import Extension
from .hybrid import HybridLossExtension
from .latent import LatentExtension
from .moe import MoEExtension
from .motion import make_motion_extension
from .pairs import PairedImageDataset, PairsExtension
from .superres import SuperResExtension
from .text import TextExtension

__all__ = ["MODALITY_EXTENSIONS", "extensions_for", "check_combinations"]

#: The extension of each modality that needs one: ``make(config, data) -> Extension``.
MODALITY_EXTENSIONS: dict[str, Callable[[Config, ImageDataset], Extension]] = {
    "audio": make_audio_extension,
    "motion": make_motion_extension,
}


def _is_moe(config: Config) -> bool:
    spec = base_network_spec(config)
    return spec.get("arch") == "moe-dit" or bool(spec.get("num_experts"))


def check_combinations(config: Config, paired: bool = False) -> None:
    """Raise :class:`ConfigError` for settings that do not compose.

    Args:
        config: the experiment.
        paired: the data set holds fixed pairs (reflow).
    """
    d, f = config.data, config.diffusion
    if d.lowres and config.latent.vae:
        raise ConfigError(
            "data.lowres (super-resolution) conditions on a low-resolution image in pixels and cannot "
            "train in a latent space: set latent.vae = '' or data.lowres = 0"
        )
    if config.latent.vae and base_network_spec(config).get("arch") == "mlp":
        raise ConfigError(
            "latent.vae trains on latent grids, which an MLP cannot take: use a U-Net or DiT preset"
        )
    if d.lowres and f.coupling != "independent":
        raise ConfigError("data.lowres (super-resolution) needs diffusion.coupling = 'independent'")
    if not paired:
        return
    if f.loss != "simple":
        raise ConfigError(
            f"fixed pairs (reflow) need diffusion.loss = 'simple' ({f.loss!r} draws its own noise)"
        )
    if f.coupling != "independent":
        raise ConfigError(
            "training on fixed pairs (reflow) fixes the coupling: set diffusion.coupling = 'independent'"
        )
    if d.lowres:
        raise ConfigError(
            "training on fixed pairs (reflow) is not supported for super-resolution: data.lowres = 0"
        )
    if config.text.encoder:
        raise ConfigError("training on fixed pairs (reflow) has no captions: set text.encoder = ''")


def extensions_for(config: Config, data: ImageDataset, *, progress: bool = True) -> list[Extension]:
    """The extensions of ``config`` training on ``data``, in calling order.

    Args:
        config: the experiment.
        data: the data set as loaded (before any extension prepares it).
        progress: show progress bars (latent encoding).

    Raises:
        ConfigError: settings that do not compose (:func:`check_combinations`), or an autoencoder
            that cannot be read.
    """
    paired = isinstance(data, PairedImageDataset)
    check_combinations(config, paired=paired)
    out: list[Extension] = []
    if config.latent.vae:
        out.append(LatentExtension(config, progress=progress))
    if paired:
        out.append(PairsExtension())
    if config.text.encoder:
        out.append(TextExtension(config))
    if config.data.lowres:
        out.append(SuperResExtension(config))
    if config.diffusion.loss != "simple":
        out.append(HybridLossExtension(config))
    if _is_moe(config):
        out.append(MoEExtension(config))
    make = MODALITY_EXTENSIONS.get(data.modality)
    if make is not None:
        out.append(make(config, data))
    return out
