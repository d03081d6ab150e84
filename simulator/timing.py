"""Named timing models (first cut; the MVP program model replaces this)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TimingModel:
    name: str

    def accelerator_cycles(self, plan) -> int:
        return 0


def load_timing_model(name: str) -> TimingModel:
    return TimingModel(name)
