"""The cached data-set classifier (FD-<dataset>), class accuracy / entropy and real statistics."""

from __future__ import annotations

import math

import pytest
import torch

from hwaksan.data.images import load_dataset
from hwaksan.evaluation import (
    ClassifierChecksumError,
    class_accuracy,
    class_entropy,
    dataset_classifier,
    gaussian_statistics,
    image_features,
    real_statistics,
)
from hwaksan.evaluation import classifier as classifier_module

TINY = {
    "net_args": {"model_channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1, "attention": False,
                 "num_groups": 4},
    "steps": 3,
    "batch_size": 16,
    "lr": 1e-2,
    "weight_decay": 0.05,
    "seed": 0,
}  # fmt: skip


@pytest.fixture
def fresh(monkeypatch):
    """No in-process memo between tests: every call reads the cache folder."""
    monkeypatch.setattr(classifier_module, "_LOADED", {})


def test_cache_round_trip_and_checksum(tmp_path, fresh):
    first = dataset_classifier("digits", config=TINY, cache_dir=tmp_path, progress=False)
    folder = first.path.parent
    assert folder.parent == tmp_path / "classifiers" and folder.name.startswith("digits-8x8-")
    assert {p.name for p in folder.iterdir()} >= {
        "classifier.safetensors",
        "classifier.json",
        "checksum.json",
    }
    assert first.name == "FD-digits" and first.feature_dim == 16 and first.accuracy_split == "val"
    assert 0.0 <= first.accuracy <= 1.0
    assert first.meta["evaluation"]["config"] == TINY

    classifier_module._LOADED.clear()
    again = dataset_classifier("digits", config=TINY, cache_dir=tmp_path, progress=False)  # from the cache
    for (k, a), b in zip(first.net.state_dict().items(), again.net.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert again.sha256 == first.sha256

    weights = folder / "classifier.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one bit of one weight: still a valid file, but not the file that was written
    weights.write_bytes(bytes(data))
    classifier_module._LOADED.clear()
    with pytest.raises(ClassifierChecksumError, match="does not match its checksum.*Delete"):
        dataset_classifier("digits", config=TINY, cache_dir=tmp_path, progress=False)
    retrained = dataset_classifier("digits", config=TINY, cache_dir=tmp_path, progress=False, retrain=True)
    assert retrained.sha256 == first.sha256  # deterministic training writes the same bytes again


def test_accuracy_entropy_and_features(tmp_path, fresh):
    val = load_dataset("digits", "val")
    x, y = val.images[:64], val.labels[:64]
    kw = {"config": TINY, "cache_dir": tmp_path, "progress": False}
    clf = dataset_classifier("digits", **kw)
    with torch.no_grad():
        pred = clf.net(x).argmax(-1)
    assert class_accuracy(x, pred, "digits", **kw) == 1.0  # its own predictions
    assert class_accuracy(x, y, "digits", **kw) == pytest.approx(float((pred == y).double().mean()))
    ent = class_entropy(x, "digits", **kw)
    assert ent.max == pytest.approx(math.log(10))
    assert 0.0 <= ent.conditional <= ent.max and 0.0 <= ent.marginal <= ent.max
    one_class = class_entropy(x[pred == pred[0]], "digits", **kw)
    assert one_class.marginal == 0.0  # every image predicted as the same class

    feats = image_features(x, "classifier", "digits", batch_size=10, **kw)
    assert feats.shape == (64, clf.feature_dim)
    with torch.no_grad():
        torch.testing.assert_close(feats, clf.net.features(x))
    with pytest.raises(ValueError, match="needs dataset"):
        image_features(x, "classifier")


def test_real_statistics_are_cached_and_match_the_features(tmp_path, fresh):
    kw = {"cache_dir": tmp_path, "config": TINY}
    stats = real_statistics("digits", "val", "classifier", 50, seed=1, **kw)
    assert stats.n == 50 and stats.name == "FD-digits" and len(set(stats.indices.tolist())) == 50
    images = load_dataset("digits", "val").images[stats.indices]
    mu, cov = gaussian_statistics(image_features(images, "classifier", "digits", **kw))
    torch.testing.assert_close(stats.mu, mu)
    torch.testing.assert_close(stats.cov, cov)
    files = list((tmp_path / "statistics").glob("*.safetensors"))
    assert len(files) == 1
    again = real_statistics("digits", "val", "classifier", 50, seed=1, **kw)
    assert torch.equal(again.feats, stats.feats)
    other = real_statistics("digits", "val", "classifier", 50, seed=2, **kw)
    assert not torch.equal(other.indices, stats.indices)
    with pytest.raises(ValueError, match="split has"):
        real_statistics("digits", "val", "classifier", 10_000, **kw)


def test_subsets_come_from_the_cached_whole_split(tmp_path, fresh, monkeypatch):
    kw = {"cache_dir": tmp_path, "config": TINY}
    full = real_statistics("digits", "val", "classifier", None, **kw)
    import hwaksan.evaluation.features as features_module

    def no_network(*args, **kwargs):
        raise AssertionError("the network ran again")

    monkeypatch.setattr(features_module, "image_features", no_network)
    part = real_statistics("digits", "val", "classifier", 40, seed=3, **kw)
    torch.testing.assert_close(part.feats, full.feats[part.indices])
