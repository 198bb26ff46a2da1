"""The image trainer: the training loop with the extensions a config asks for.

``Trainer(config, out_dir).run()`` loads the config's data set, picks its extensions with
:func:`~hwaksan.training.extensions.extensions_for` (latent diffusion, text conditioning,
super-resolution, ``L_hybrid``, reflow pairs, the MoE auxiliary loss) and trains with
:class:`~hwaksan.training.loop.TrainingLoop`, whose docstring describes the outputs, determinism
and checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..data.catalog import load_data
from ..data.dataset import ImageDataset
from .config import Config
from .extension import Extension
from .extensions import extensions_for
from .loop import ConfigMismatchError, TrainingLoop, TrainResult, native_bf16, set_threads
from .memory import MemoryBudgetError

__all__ = ["Trainer", "TrainResult", "ConfigMismatchError", "MemoryBudgetError", "native_bf16"]


class Trainer(TrainingLoop):
    """Train a diffusion / flow model on an image set as a :class:`Config` describes.

    Args:
        config: the experiment.
        out_dir: where checkpoints, samples, metrics and plots go (created).
        progress: show a tqdm progress bar (rank 0 only).
        pictures: write sample grids and the loss curve (off: checkpoints and metrics only).
        data: use this data set instead of ``load_data(config.data...)`` (tests, notebooks); a
            :class:`~hwaksan.training.pairs.PairedImageDataset` trains on its fixed pairs.
        extensions: extensions to use after those of the config.
        overwrite: a fresh run may replace ``config.json``, ``metrics.jsonl`` and the pictures in
            ``out_dir`` although hwaksan did not write them (the CLI's ``--overwrite``).

    Raises:
        ConfigError: settings that do not compose, or that the data or network cannot take.

    :meth:`run` holds ``out_dir`` (:class:`~hwaksan.io.runlock.RunLock`): a second run into the
    same folder is refused with the holder's PID before it writes anything.

    Example:
        >>> from hwaksan.training.config import load_config
        >>> cfg = load_config("configs/digits.toml", ["train.steps=200"])  # doctest: +SKIP
        >>> Trainer(cfg, "runs/digits").run()  # doctest: +SKIP
    """

    def __init__(
        self,
        config: Config,
        out_dir: str | Path,
        *,
        progress: bool = True,
        pictures: bool = True,
        data: ImageDataset | None = None,
        extensions: Sequence[Extension] = (),
        overwrite: bool = False,
    ) -> None:
        set_threads(config)
        if data is None:
            dc = config.data
            data = load_data(dc.name, dc.split, dc.image_size or None, dc.args)
        super().__init__(
            config,
            out_dir,
            data=data,
            extensions=[*extensions_for(config, data, progress=progress), *extensions],
            progress=progress,
            pictures=pictures,
            overwrite=overwrite,
        )
