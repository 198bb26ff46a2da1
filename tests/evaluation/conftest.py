"""Fixtures of the evaluation tests: a tiny data-set classifier in a private cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwaksan.evaluation import classifier as classifier_module

TINY_CLASSIFIER = {
    "net_args": {"model_channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1, "attention": False,
                 "num_groups": 4},
    "steps": 3, "batch_size": 16, "lr": 1e-2, "weight_decay": 0.05, "seed": 0,
}  # fmt: skip


@pytest.fixture
def tiny_classifier(monkeypatch, tmp_path) -> Path:
    """The FD-<dataset> classifier trained for 3 steps (wiring, not quality); returns the cache
    folder to pass as ``cache_dir`` / ``--cache-dir``."""
    monkeypatch.setattr(classifier_module, "classifier_config", lambda dataset, size: TINY_CLASSIFIER)
    monkeypatch.setattr(classifier_module, "_LOADED", {})
    return tmp_path / "cache"
