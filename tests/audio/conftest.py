"""The audio tests need librosa (the ``audio`` extra); the speech-digits clips need espeak-ng
(``make data``), checked in each test module."""

from __future__ import annotations

import pytest

pytest.importorskip("librosa", reason="the audio features need librosa (pip install 'hwaksan[audio]')")
