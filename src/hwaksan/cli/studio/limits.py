"""The bounds of what one studio request may ask for."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Limits"]


@dataclass(frozen=True)
class Limits:
    """What the studio accepts; a request over a bound is refused in one line.

    Attributes:
        max_steps: sampler steps of a run.
        max_batch: images of a run.
        max_points: points of a 2-D model's run.
        max_upload_bytes: bytes of one uploaded PNG (decoded from base64).
        max_image_side: width and height of an uploaded PNG, in pixels.
        max_moves: moves of an inpainting walk (RePaint's resampling multiplies the steps).
        max_prompt_chars: characters of a prompt.
        keep_runs: runs (and their results) kept in memory; the oldest finished ones go first.
    """

    max_steps: int = 200
    max_batch: int = 64
    max_points: int = 5000
    max_upload_bytes: int = 2_000_000
    max_image_side: int = 256
    max_moves: int = 2000
    max_prompt_chars: int = 500
    keep_runs: int = 50

    @property
    def max_body_bytes(self) -> int:
        """A request body: two uploads in base64 (4/3 of their bytes) and the other fields."""
        return 3 * self.max_upload_bytes + 65_536

    def to_json(self) -> dict[str, Any]:
        """The limits the page shows (``keep_runs`` and ``max_prompt_chars`` included)."""
        return asdict(self)
