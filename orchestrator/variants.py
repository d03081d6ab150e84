"""Variants: the models a sweep measures, one per combination of tip levels.

A variant's id is made from its tip levels in the canonical tip order ("base",
"filters=0.5", "filters=0.5+strides=2"), so it is the same in every run and on every machine,
and the result table can resume a sweep by id.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from orchestrator.tips import TIP_ORDER, format_level

BASE = "base"


@dataclass(frozen=True)
class Variant:
    id: str
    levels: dict = field(default_factory=dict, hash=False, compare=False)   # tip -> level

    @property
    def tip(self) -> str:
        """The `tip` column: `base`, one tip's name, or tip names joined by '+' for a grid cell."""
        return "+".join(self.levels) if self.levels else BASE

    @property
    def level(self) -> str:
        return "+".join(format_level(v) for v in self.levels.values())


def make_variant(levels: dict) -> Variant:
    ordered = {t: levels[t] for t in TIP_ORDER if t in levels}
    vid = "+".join(f"{t}={format_level(v)}" for t, v in ordered.items()) or BASE
    return Variant(vid, ordered)


def expand(tip_levels: dict[str, list], mode: str) -> list[Variant]:
    """The base first, then either each tip level on its own (one-at-a-time) or every
    combination of at most one level per tip (grid)."""
    out = [make_variant({})]
    if mode == "one-at-a-time":
        out += [make_variant({tip: level}) for tip, levels in tip_levels.items() for level in levels]
    elif mode == "grid":
        names = list(tip_levels)
        for choice in itertools.product(*[[None, *tip_levels[t]] for t in names]):
            levels = {t: c for t, c in zip(names, choice) if c is not None}
            if levels:
                out.append(make_variant(levels))
    else:
        raise ValueError(f"unknown mode {mode!r}")
    return out
