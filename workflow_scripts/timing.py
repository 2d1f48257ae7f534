"""Durations as a person reads them in a log (shared by training and evaluation progress lines)."""

from __future__ import annotations


def clock(seconds: float) -> str:
    """'1h02m', '3m07s' or '42s'."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"
