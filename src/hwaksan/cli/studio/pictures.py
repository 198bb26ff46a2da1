"""Pictures in and out of the studio: PNG grids of tensors as bytes and data URLs, and uploaded
PNG data URLs checked and decoded.

Previews are encoded straight from the uint8 grid of :func:`hwaksan.plotting.image_grid` (no
matplotlib) with fast compression; final grids with Pillow's default settings, as
``hwaksan sample`` saves them.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

import torch

from ...plotting import image_grid
from .errors import RequestError
from .limits import Limits

__all__ = ["png_bytes", "grid_png", "data_url", "strip_png", "read_png_upload", "PNG_URL_PREFIX"]

PNG_URL_PREFIX = "data:image/png;base64,"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_bytes(image: Any, fast: bool = False) -> bytes:
    """A ``PIL.Image`` as PNG bytes (``fast``: the least compression, for previews)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", **({"compress_level": 1} if fast else {}))
    return buf.getvalue()


def grid_png(images: torch.Tensor, nrow: int, scale: int = 1, fast: bool = False) -> bytes:
    """Images ``(N, C, H, W)`` in [-1, 1] as one PNG grid (:func:`hwaksan.plotting.image_grid`)."""
    return png_bytes(image_grid(images, nrow=nrow, scale=scale), fast=fast)


def data_url(png: bytes) -> str:
    """PNG bytes as a ``data:image/png;base64,...`` URL."""
    return PNG_URL_PREFIX + base64.b64encode(png).decode("ascii")


def strip_png(frames: list[torch.Tensor], scale: int, count: int = 8) -> bytes | None:
    """About ``count`` evenly spaced frames ``(1, C, H, W)`` of a denoising walk, first to last,
    side by side as one PNG row; None without frames."""
    if not frames:
        return None
    last = len(frames) - 1
    picks = sorted({round(k * last / max(count - 1, 1)) for k in range(count)}) if last else [0]
    row = torch.cat([frames[i] for i in picks])
    return grid_png(row, nrow=len(picks), scale=scale)


def read_png_upload(url: Any, field: str, limits: Limits) -> Any:
    """Check and decode an uploaded ``data:image/png;base64,...`` URL; returns the ``PIL.Image``.

    Raises:
        RequestError: 413 over ``limits.max_upload_bytes``; 422 not a PNG data URL, undecodable,
            or wider or taller than ``limits.max_image_side``.
    """
    from PIL import Image

    if not isinstance(url, str) or not url.startswith(PNG_URL_PREFIX):
        raise RequestError(422, f"{field} must be a PNG data URL ({PNG_URL_PREFIX}...)")
    encoded = url[len(PNG_URL_PREFIX) :]
    if len(encoded) * 3 // 4 > limits.max_upload_bytes + 3:
        raise RequestError(413, f"{field} is over the upload limit of {limits.max_upload_bytes} bytes")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(422, f"{field} is not valid base64") from None
    if len(raw) > limits.max_upload_bytes:
        raise RequestError(413, f"{field} is over the upload limit of {limits.max_upload_bytes} bytes")
    if not raw.startswith(_PNG_SIGNATURE):
        raise RequestError(422, f"{field} is not a PNG image: upload a PNG")
    side = limits.max_image_side
    try:
        image = Image.open(io.BytesIO(raw), formats=["PNG"])
        if image.width > side or image.height > side:
            raise RequestError(
                422, f"{field} is {image.width}x{image.height}: images are at most {side}x{side} pixels"
            )
        image.load()
    except RequestError:
        raise
    except Exception as err:  # Pillow raises many kinds on a damaged file
        raise RequestError(
            422, f"{field} is not a readable PNG ({type(err).__name__}): upload a PNG"
        ) from None
    return image
