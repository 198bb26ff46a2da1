"""``hwaksan`` sub-commands: flows (see :mod:`hwaksan.commands`)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's sub-commands to ``sub``."""
