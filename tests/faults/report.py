"""Figures the fault tests measured (rescue times, duplicates, ...), printed at the end of
the run so that they can be quoted."""

from __future__ import annotations

FIGURES: list[tuple[str, object]] = []


def record_figure(name: str, value: object) -> None:
    if isinstance(value, float):
        value = round(value, 3)
    FIGURES.append((name, value))
