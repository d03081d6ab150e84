"""The farm's timing models by name: the simulator's built-in ones and those `mvpfarm calibrate`
saved under RESULTS/timing_models/. The simulator knows no results folder; this module tells it
which one the farm uses (the command line's default, or the caller's)."""
from __future__ import annotations

from pathlib import Path

from simulator.timing import MODELS_DIR, TimingModel, load_timing_model, user_models_dir

DEFAULT_RESULTS_DIR = "results"


def resolve(timing: str, results_dir: str | Path = DEFAULT_RESULTS_DIR) -> str:
    """A timing model's name or path as the profiler takes it: a model that `mvpfarm calibrate`
    saved under RESULTS/timing_models/ by its path, so that it is found whatever the cwd."""
    if Path(timing).suffix == ".json" or (MODELS_DIR / f"{timing}.json").is_file():
        return timing
    user = user_models_dir(results_dir) / f"{timing}.json"
    if user.is_file():
        return str(user)
    load_timing_model(timing, results_dir)      # raises ModelError listing the known ones
    return timing


def load(timing: str, results_dir: str | Path = DEFAULT_RESULTS_DIR) -> TimingModel:
    """A timing model by name (built in, or saved in the results folder) or by JSON path."""
    return load_timing_model(timing, results_dir)
