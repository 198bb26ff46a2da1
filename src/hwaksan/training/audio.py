"""A mel-conditioned waveform model (a vocoder, Chen et al. 2021, WaveGrad) as a trainer extension.

For a data set of modality ``"audio"`` (``speech-digits``) whose network reads a mel condition
(:class:`hwaksan.models.wavegrad.WaveGrad`), :class:`AudioExtension`:

- **prepare_data**: computes the normalised log-mel ``m (n_mels, T / hop)`` of every whole clip
  (:mod:`hwaksan.data.audio_features`) and cuts the clips into windows of ``window`` samples
  (default 4096) at a stride of ``stride`` samples (default ``window / 2``), each with its mel
  frames ``[s / hop, (s + window) / hop)`` (computed on the whole clip, so a window's frames are the
  frames a whole-clip vocoding sees). Silent windows are kept: where the mel is silent the vocoder
  must output silence, and a model that never saw it fills the pauses with noise. The network
  trains on ``(N_windows, 1, window)`` (Chen et al. 2021, sec. 5.1 train on segments of 7,200
  samples the same way);
- **network_spec**: sets the network's ``n_mels`` and checks that its upsampling factors multiply
  to the mel hop; for a network with ``envelope_prior`` (:mod:`hwaksan.models.wavegrad`) it sets
  ``sigma_data`` to the denoiser's and fits ``envelope_gain``: the least-squares gain ``g`` of
  ``rms_f ~ g e_f`` over all training frames, ``rms_f`` the waveform's RMS over frame ``f``'s hop
  and ``e_f`` the mel's frame envelope (:func:`~hwaksan.models.wavegrad.mel_envelope`);
- **batch_cond**: adds ``signal (b, n_mels, window / hop)``, the mel frames of the batch's windows;
- **sample_cond**: conditions the training grids on the first window of validation clips (voices
  the model never trained on), so the grids show generalisation: sample ``i`` uses the first
  validation clip of label ``i % 10`` not yet shown.

Settings come from ``data.args``: ``window``, ``stride`` and the data set's own (``clip_length``,
``n_mels``, ...). A data set without mel settings (not made by :mod:`hwaksan.data.audio`) is
refused with one line.
"""

from __future__ import annotations

from typing import Any

import torch

from ..data.audio import load_speech_digits
from ..data.audio_features import MelSettings, log_mel, normalise_log_mel
from ..data.dataset import ImageDataset
from ..models.wavegrad import mel_envelope
from .config import Config, ConfigError
from .extension import Extension, RunContext, StepContext

__all__ = ["AudioExtension", "cut_windows", "envelope_gain", "make_audio_extension"]


def cut_windows(
    clips: torch.Tensor, mels: torch.Tensor, window: int, stride: int, hop: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Windows ``(M, 1, window)`` of clips ``(N, 1, T)``, their mel frames ``(M, n_mels, window /
    hop)`` from ``mels (N, n_mels, T / hop)``, and the clip index ``(M,)`` of each; windows start at
    ``0, stride, 2 stride, ...`` (multiples of ``hop``), ``K`` per clip, clip by clip."""
    n, _, t = clips.shape
    starts = range(0, t - window + 1, stride)
    xs = clips[:, 0].unfold(-1, window, stride)  # (N, K, window)
    frames = window // hop
    ms = torch.stack([mels[:, :, s // hop : s // hop + frames] for s in starts], dim=1)  # (N, K, n_mels, F)
    clip_index = torch.arange(n)[:, None].expand(n, len(starts)).reshape(-1)
    return xs.reshape(-1, 1, window).contiguous(), ms.flatten(0, 1).contiguous(), clip_index


def envelope_gain(clips: torch.Tensor, mels: torch.Tensor, hop: int) -> float:
    """The least-squares gain ``g = sum rms_f e_f / sum e_f^2`` of the frame RMS of ``clips (N, 1,
    T)`` on the frame envelope of their normalised log-mels ``mels (N, n_mels, T / hop)``."""
    rms = clips.double().reshape(clips.shape[0], -1, hop).square().mean(-1).sqrt()  # (N, F)
    env = mel_envelope(mels, 1)[:, 0].double()
    return float((rms * env).sum() / env.square().sum())


class AudioExtension(Extension):
    """Train a vocoder on windows of the clips with their mel frames (module docstring).

    Args:
        config: the experiment (``data.args``: ``window``, ``stride``, the set's mel settings).
        data: the data set the loop loads (its ``modality_params`` hold the mel settings).
    """

    name = "audio"

    def __init__(self, config: Config, data: ImageDataset) -> None:
        args = dict(config.data.args)
        params = data.modality_params
        if "hop" not in params or "n_mels" not in params:
            raise ConfigError(
                f"the audio set {data.name!r} records no mel settings (n_mels, hop) in its modality_params: "
                "train a vocoder on speech-digits"
            )
        self.mel = MelSettings.from_dict(params)
        self.window = int(args.get("window", 4096))
        self.stride = int(args.get("stride", self.window // 2))
        hop = self.mel.hop
        if self.window % hop or self.window <= 0 or self.stride % hop or self.stride <= 0:
            raise ConfigError(
                f"data.args window = {self.window} and stride = {self.stride} must be positive multiples of "
                f"the mel hop {hop}"
            )
        clip = data.images.shape[-1]
        if self.window > clip:
            raise ConfigError(f"data.args.window = {self.window} is longer than the clips ({clip} samples)")
        self.config = config
        self.val: ImageDataset | None = None

    def prepare_data(self, data: ImageDataset) -> ImageDataset:
        mels = normalise_log_mel(log_mel(data.images, self.mel))
        self.gain = envelope_gain(data.images, mels, self.mel.hop)
        x, m, clip = cut_windows(data.images, mels, self.window, self.stride, self.mel.hop)
        self.mels = m
        return ImageDataset(
            images=x,
            labels=data.labels[clip] if data.labels is not None else None,
            captions=None,
            class_names=data.class_names,
            name=data.name,
            ids=[f"{data.ids[int(c)]}#{i}" for i, c in enumerate(clip)] if data.ids else None,
            modality=data.modality,
            modality_params=data.modality_params,
        )

    def network_spec(self, spec: dict[str, Any], image_shape: tuple[int, ...]) -> dict[str, Any]:
        """Set ``n_mels``; the network's upsampling must equal the mel hop."""
        if spec.get("arch") != "wavegrad":
            raise ConfigError(
                f"an audio model is a mel-conditioned vocoder: model.preset = 'wavegrad-speech' (or arch "
                f"'wavegrad'); got {spec.get('arch')!r}"
            )
        spec = {**spec, "n_mels": self.mel.n_mels}
        factors = spec.get("factors", (4, 4, 4, 4))
        prod = 1
        for f in factors:
            prod *= int(f)
        if prod != self.mel.hop:
            raise ConfigError(
                f"model.args.factors = {list(factors)} upsample by {prod}, but the mel hop is "
                f"{self.mel.hop}: make their product the hop"
            )
        if spec.get("envelope_prior"):
            diffusion = self.config.diffusion
            if diffusion.prediction != "x0":
                raise ConfigError(
                    "model.args.envelope_prior makes the network return the denoised waveform: set "
                    f"diffusion.prediction = 'x0' (got {diffusion.prediction!r})"
                )
            spec = {**spec, "sigma_data": diffusion.sigma_data}
            spec.setdefault("envelope_gain", self.gain)
        return spec

    def batch_cond(self, cond: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        """Add ``signal (b, n_mels, window / hop)``: the mel frames of the batch's windows."""
        return {**cond, "signal": self.mels[ctx.indices.cpu()].to(ctx.device)}

    def _val_windows(self, n: int, labels: torch.Tensor | None) -> torch.Tensor:
        if self.val is None:
            args = {k: v for k, v in self.config.data.args.items() if k not in ("window", "stride")}
            self.val = load_speech_digits("val", **args)
            self.val_mels = normalise_log_mel(log_mel(self.val.images, self.mel))
        picks, seen = [], {}
        for i in range(n):
            y = int(labels[i]) if labels is not None else i % 10
            where = torch.nonzero(self.val.labels == y).flatten()
            r = seen.get(y, 0)
            seen[y] = r + 1
            picks.append(int(where[(r * 7) % len(where)]))  # step over rates / pitches / voices
        return self.val_mels[picks][:, :, : self.window // self.mel.hop]

    def sample_cond(self, cond: dict[str, Any], n: int, ctx: RunContext) -> dict[str, Any]:
        """Add the mel frames of the first window of validation clips (module docstring)."""
        labels = cond.get("labels")
        mel = self._val_windows(n, None if labels is None else labels.cpu())
        return {**cond, "signal": mel.to(ctx.device)}


def make_audio_extension(config: Config, data: ImageDataset) -> Extension:
    """:data:`hwaksan.training.extensions.MODALITY_EXTENSIONS` entry of ``"audio"``."""
    return AudioExtension(config, data)
