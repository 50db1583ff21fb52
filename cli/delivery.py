"""Subcommands for outbox sending and export, FTOP tasks (issue 5)."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def register(sub: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add this module's subcommands to ``sub``; return their handlers by name."""
    return {}
