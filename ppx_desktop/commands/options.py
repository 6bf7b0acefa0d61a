"""Value types for the commands' options: a bad value is refused by argparse with a clear
message, before anything is loaded."""

from __future__ import annotations

import argparse
import math


def temperature(value: str) -> float:
    try:
        t = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not math.isfinite(t) or t < 0:
        raise argparse.ArgumentTypeError(f"a temperature is a number of 0 or more (0: always the most likely token), "
                                         f"got {value!r}")
    return t


def top_k(value: str) -> int:
    try:
        k = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if k < 0:
        raise argparse.ArgumentTypeError(f"top-k is 0 (no limit) or more, got {value!r}")
    return k


def seed(value: str) -> int:
    try:
        s = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if not 0 <= s < 2**63:
        raise argparse.ArgumentTypeError(f"a seed is between 0 and 2**63 - 1, got {value!r}")
    return s
