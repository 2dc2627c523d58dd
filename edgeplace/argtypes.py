"""argparse value types shared by every command: a bad value is a usage error (exit 2)
with a message that says what was expected."""

from __future__ import annotations

import argparse
import math


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _number(text)
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def nonneg_float(text: str) -> float:
    """A finite number >= 0."""
    value = _number(text)
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    return _whole(text, 1)


def nonneg_int(text: str) -> int:
    """A whole number >= 0."""
    return _whole(text, 0)


def fraction(text: str) -> float:
    """A number in 0..1."""
    value = nonneg_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in 0..1, got {text}")
    return value


def _whole(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be >= {least}, got {text}")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
