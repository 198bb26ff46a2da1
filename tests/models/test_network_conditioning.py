"""The one condition parser of the image networks (hwaksan.models.conditioning): the U-Net and the
DiT accept and reject the same condition forms, with the same messages."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hwaksan.models.conditioning import NetworkCondition, labels_or_null, unpack_cond
from hwaksan.models.dit import DiT
from hwaksan.models.unet import UNet

B, CTX, POOLED, EXTRA, CLASSES = 2, 8, 6, 1, 3


@dataclasses.dataclass
class _Cond:
    labels: torch.Tensor | None = None
    image: torch.Tensor | None = None


def _networks(**kw) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {
        "UNet": UNet(
            in_channels=1, model_channels=8, channel_mult=(1, 2), num_res_blocks=1, num_head_channels=8, **kw
        ),
        "DiT": DiT(input_size=8, patch_size=2, in_channels=1, hidden_size=16, depth=1, num_heads=2, **kw),
    }


def _forms() -> dict[str, object]:
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, CLASSES])
    ctx = torch.randn(B, 4, CTX, generator=g)
    mask = torch.tensor([[True, False, False, False], [False] * 4])
    image = torch.randn(B, EXTRA, 8, 8, generator=g)
    pooled = torch.randn(B, POOLED, generator=g)
    full = {"labels": labels, "context": ctx, "context_mask": mask, "image": image, "pooled": pooled}
    return {
        "none": None,
        "label tensor": labels,
        "image only": {"image": image},
        "full dict": full,
        "dataclass": _Cond(labels=labels, image=image),
        "dataclass without image": _Cond(labels=labels),
        "unknown key": {**full, "lables": labels},
        "aug_level": {**full, "aug_level": torch.zeros(B)},
        "a float": 1.0,
    }


@pytest.mark.parametrize("extra", [0, EXTRA])
def test_unet_and_dit_accept_and_reject_the_same_forms(extra):
    nets = _networks(num_classes=CLASSES, context_dim=CTX, in_extra_channels=extra, pooled_dim=POOLED)
    x, s = torch.randn(B, 1, 8, 8), torch.zeros(B)
    for form, cond in _forms().items():
        outcome = {}
        for name, net in nets.items():
            try:
                with torch.no_grad():
                    out = net(x, s, cond)
                outcome[name] = ("ok", tuple(out.shape))
            except (TypeError, ValueError) as err:
                outcome[name] = (type(err).__name__, str(err).replace(f"this {name} ", "this <net> "))
        assert outcome["UNet"] == outcome["DiT"], (form, outcome)
        if form in ("unknown key", "aug_level", "a float"):
            assert outcome["UNet"][0] != "ok", form
        if extra and form in ("none", "label tensor", "dataclass without image"):
            assert "in_extra_channels" in outcome["UNet"][1], form


def test_parse_reads_every_form():
    labels, image = torch.tensor([1, 2]), torch.zeros(B, 1, 8, 8)
    assert NetworkCondition.parse(None) == NetworkCondition()
    assert NetworkCondition.parse(labels).labels is labels
    from_dict = NetworkCondition.parse({"labels": labels, "image": image})
    from_object = NetworkCondition.parse(_Cond(labels=labels, image=image))
    assert from_dict.labels is from_object.labels is labels and from_dict.image is from_object.image is image
    assert unpack_cond({"image": image, "aug_level": 0.1}).image is image  # the 4-tuple view
    with pytest.raises(ValueError, match="aug_conditioning=True"):
        NetworkCondition.parse({"aug_level": torch.zeros(B)}, network="DiT")
    assert NetworkCondition.parse({"aug_level": 0.1}, reads_aug_level=True).aug_level == 0.1
    with pytest.raises(ValueError, match="in_extra_channels=2"):
        NetworkCondition.parse({"labels": labels}, network="UNet", in_extra_channels=2)


def test_pooled_vector_and_null_labels():
    like = torch.zeros(B, 5, dtype=torch.float64)
    assert torch.equal(NetworkCondition().pooled_vector(like, 3), torch.zeros(B, 3, dtype=torch.float64))
    pooled = torch.ones(B, 3)
    mask = torch.tensor([[True, False], [False, False]])  # sample 1: the null caption
    got = NetworkCondition(pooled=pooled, context_mask=mask).pooled_vector(like, 3)
    assert got.dtype == torch.float64 and got[0].eq(1).all() and got[1].eq(0).all()
    assert labels_or_null(None, 3, CLASSES, torch.device("cpu")).tolist() == [CLASSES] * 3
    assert labels_or_null(torch.tensor([1, 0], dtype=torch.int32), 2, CLASSES, None).dtype == torch.long
