"""The jinja2 environment: autoescaping on for every template, no undefined variable allowed."""

from __future__ import annotations

from jinja2 import Environment, PackageLoader, StrictUndefined


def human(n: int | None) -> str:
    """1234567 -> '1.2M' (the exact value goes in the title attribute)."""
    if n is None:
        return "–"
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= size:
            return f"{n / size:.1f}{suffix}"
    return str(n)


def thousands(n: float | int | None) -> str:
    return "–" if n is None else f"{n:,.0f}"


def environment() -> Environment:
    env = Environment(loader=PackageLoader("mqarbench.leaderboard", "templates"),
                      autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["human"] = human
    env.filters["thousands"] = thousands
    return env
