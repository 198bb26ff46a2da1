"""The models a studio serves, each named by an id; the browser never names a path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...io.artifact import TrainedModel
from ...samplers import GRIDS, SAMPLERS
from .limits import Limits

__all__ = ["ServedModel", "served_name", "catalogue", "DEFAULTS"]

DEFAULTS = {"sampler": "heun", "steps": 18, "grid": "karras"}
"""The sampling defaults of a studio run (those of ``hwaksan sample``)."""
DEFAULT_N = {"image": 16, "points": 500}
"""How many results a sample run draws when the request does not say."""


@dataclass
class ServedModel:
    """A loaded model and how the studio names it.

    Attributes:
        id: the id requests use (``"0"``, ``"1"``, ... in command-line order).
        name: the run folder's name.
        path: the path as given on the command line (what the reproducing command names).
        model: the loaded model.
    """

    id: str
    name: str
    path: str
    model: TrainedModel

    @property
    def kind(self) -> str:
        """``"points"`` for a 2-D model, ``"image"`` otherwise."""
        return "points" if self.model.is_lowdim else "image"

    @property
    def operations(self) -> list[str]:
        """What the studio runs on it: sampling, and inpainting and editing for image models."""
        return ["sample", "inpaint", "edit"] if self.model.is_image else ["sample"]

    def default_n(self) -> int:
        """The number of samples of a sample run that does not say."""
        return DEFAULT_N[self.kind]

    def to_json(self) -> dict[str, Any]:
        """The model as ``GET /api/models`` lists it."""
        m = self.model
        return {
            "id": self.id,
            "name": self.name,
            "path": self.path,
            "kind": self.kind,
            "shape": list(m.output_shape),
            "num_classes": m.num_classes or None,
            "text": m.text is not None,
            "latent": m.is_latent,
            "description": m.describe(),
            "operations": self.operations,
            "defaults": {**DEFAULTS, "n": self.default_n()},
        }


def served_name(given: str, model: TrainedModel) -> str:
    """The run folder's name of a model given on the command line as ``given``: the folder
    itself, or the folder holding the checkpoint (``RUN/checkpoints/step_N`` names ``RUN``)."""
    path = Path(given)
    if path.is_dir():
        return path.resolve().name
    parent = (model.path or path).resolve().parent
    return parent.parent.name if parent.name == "checkpoints" else parent.name


def catalogue(models: list[ServedModel], limits: Limits) -> dict[str, Any]:
    """The body of ``GET /api/models``: the models, the samplers, the grids and the limits."""
    return {
        "models": [m.to_json() for m in models],
        "samplers": [
            {"name": name, "description": spec.description, "stochastic": spec.stochastic}
            for name, spec in SAMPLERS.items()
        ],
        "grids": list(GRIDS),
        "limits": limits.to_json(),
    }
