"""Several sweeps on one Ray connection (`mvpfarm sweep run A B`, `api.run_sweeps`, a nightly
suite): the later sweeps are built by the workers that the first one started, which have already
imported TensorFlow; every file is checked before any work."""
import os
import sqlite3

import pytest

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

from orchestrator import api, cli  # noqa: E402
from tests.conftest import SMALL_MLP_SWEEP  # noqa: E402

pytestmark = pytest.mark.slow


def _file(tmp_path, name: str, level: float):
    f = tmp_path / f"{name}.toml"
    f.write_text(SMALL_MLP_SWEEP.format(name=name, levels=f"[{level}]"))
    return f


def _files(tmp_path):
    return [_file(tmp_path, name, level) for name, level in (("first", 0.5), ("second", 0.25))]


def test_later_sweeps_are_built_by_the_first_sweeps_workers(tmp_path):
    first, second = api.run_sweeps(_files(tmp_path), tmp_path / "results", num_cpus=1, progress=False,
                                   report=False)
    assert first.counts.profiled == 2 and second.counts.profiled == 2
    assert (first.n_built, first.n_cached) == (2, 0) and (second.n_built, second.n_cached) == (1, 1)  # one base
    # one CPU, one build worker: the second sweep's build ran in the process the first one started
    assert len(first.build_pids) == 1 and second.build_pids == first.build_pids
    # on the local Ray no warm-up: the worker forked its builder from the fork server, which had
    # imported TensorFlow while Ray started, and every build found it imported
    assert first.warm_pids == set() and first.warmup_s == 0
    assert (first.n_built_warm, second.n_built_warm) == (first.n_built, second.n_built)
    assert second.warm_pids == set() and second.warmup_s == 0
    # built variants are profiled by their build task; the second sweep's base, found in the build
    # cache, by a profile task in a simulator worker, which never imports TensorFlow
    assert (first.n_profiled_by_build, second.n_profiled_by_build) == (2, 1)
    assert second.profile_workers_with_tf == set()
    # again: nothing left to measure, so the session starts no Ray for it
    import ray
    ray_up = []
    again = api.run_sweeps(_files(tmp_path), tmp_path / "results", num_cpus=1, progress=False, report=False,
                           on_result=lambda r: ray_up.append(ray.is_initialized()))
    assert [(r.n_skipped, r.counts.total) for r in again] == [(2, 0), (2, 0)] and ray_up == [False, False]
    # a new Ray in the same process (it numbers its job as the first one did) has new build workers,
    # which fork builders from the same fork server
    (third,) = api.run_sweeps([_file(tmp_path, "third", 0.75)], tmp_path / "results", num_cpus=1, progress=False,
                              report=False)
    assert third.n_built == 1 and third.n_built_warm == 1 and not third.warm_pids
    assert len(third.build_pids) == 1 and third.build_pids.isdisjoint(first.build_pids)
    with sqlite3.connect(tmp_path / "results" / "mvpfarm.sqlite") as con:
        rows = con.execute("SELECT r.name, m.variant, m.status FROM measurements m JOIN runs r USING (run_id) "
                           "ORDER BY r.name, m.variant").fetchall()
    assert rows == [("first", "base", "measured"), ("first", "dense_units=0.5", "measured"),
                    ("second", "base", "measured"), ("second", "dense_units=0.25", "measured"),
                    ("third", "base", "measured"), ("third", "dense_units=0.75", "measured")]


def test_the_cli_checks_every_file_before_running_any(tmp_path, capsys):
    good, bad = _files(tmp_path)
    bad.write_text(bad.read_text().replace("dense_units", "dense_unitz"))
    results = tmp_path / "results"
    assert cli.main(["sweep", "run", str(good), str(bad), "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{bad}: tips.dense_unitz: unknown tip" in err
    assert not results.exists()             # the good file did not run either


def test_variants_that_share_a_build_each_get_the_profile_of_every_target(tmp_path):
    """dense_units 0.5 and 0.51 both give 16 units: one build, whose task profiles both variants on
    both simulator targets; each row gets the profile of its own variant and target."""
    f = tmp_path / "shared.toml"
    f.write_text(SMALL_MLP_SWEEP.format(name="shared", levels="[0.5, 0.51]")
                 + '[[targets]]\nkind = "simulator"\naccelerator = "none"\n')
    (res,) = api.run_sweeps([f], tmp_path / "results", num_cpus=1, progress=False, report=False)
    assert (res.n_built, res.counts.profiled) == (2, 6) and res.n_profiled_by_build == 6
    with sqlite3.connect(tmp_path / "results" / "mvpfarm.sqlite") as con:
        rows = con.execute("SELECT variant, accelerator, model_sha256, n_layers_on_mvp, accelerator_cycles, "
                           "json_extract(record_json, '$.model.name') FROM measurements "
                           "ORDER BY variant, accelerator").fetchall()
    assert [(v, acc, name) for v, acc, *_, name in rows] == [
        (v, acc, v) for v in ("base", "dense_units=0.5", "dense_units=0.51") for acc in ("mvp", "none")]
    by = {(v, acc): (sha, on_mvp, cycles) for v, acc, sha, on_mvp, cycles, _ in rows}
    assert by[("dense_units=0.5", "mvp")] == by[("dense_units=0.51", "mvp")]      # one model
    assert by[("dense_units=0.5", "none")] == by[("dense_units=0.51", "none")]
    assert by[("dense_units=0.5", "mvp")][1] > 0 and by[("dense_units=0.5", "none")][1:] == (0, 0)
