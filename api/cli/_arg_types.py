"""Argument types shared by the `evoprune` sub-commands: bounded integers, refused with a clear message."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An integer above zero (argparse type).

    Args:
        text: the command-line value.

    Returns:
        The integer.

    Raises:
        argparse.ArgumentTypeError: not an integer, or not above zero.

    """
    value = _integer(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer of zero or more (argparse type).

    Args:
        text: the command-line value.

    Returns:
        The integer.

    Raises:
        argparse.ArgumentTypeError: not an integer, or negative.

    """
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
