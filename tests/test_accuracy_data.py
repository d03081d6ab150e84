"""Bad data for accuracy sweeps: one line naming the key, exit status 2, nothing trained; the sweep
file's [data]/[train]/[constraints] checks; the resizing rule against TensorFlow's bilinear resize."""
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from orchestrator import datasets

ROOT = Path(__file__).resolve().parents[1]
BASE = 'base = { builtin = "digits_cnn", kwargs = { filters = 4, dense_units = 8 } }\n'


def good() -> dict:
    rng = np.random.default_rng(0)
    return {"x_train": rng.random((40, 8, 8, 1), dtype=np.float32), "y_train": np.arange(40) % 10,
            "x_val": rng.random((10, 8, 8, 1), dtype=np.float32), "y_val": np.arange(10) % 10}


def write_sweep(tmp_path: Path, arrays: dict | None, data_line: str | None = None) -> Path:
    if arrays is not None:
        np.savez(tmp_path / "d.npz", **arrays)
    f = tmp_path / "sweep.toml"
    f.write_text(f'name = "bad"\n{BASE}[data]\n{data_line or "npz = " + chr(34) + "d.npz" + chr(34)}\n'
                 '[train]\nepochs = 1\n[[targets]]\nkind = "simulator"\naccelerator = "none"\n')
    return f


def run_cli(tmp_path: Path, arrays: dict | None, data_line: str | None = None):
    """`mvpfarm sweep run` in a process of its own (the exit status and stderr as a user sees them)."""
    f = write_sweep(tmp_path, arrays, data_line)
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", "sweep", "run", str(f), "--results",
                           str(tmp_path / "results"), "--num-cpus", "1"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def run_in_process(tmp_path: Path, arrays: dict, capsys):
    """The same command in this process: these data fail before Ray starts, so it is cheap."""
    from orchestrator.cli import main
    f = write_sweep(tmp_path, arrays)
    capsys.readouterr()
    code = main(["sweep", "run", str(f), "--results", str(tmp_path / "results"), "--num-cpus", "1"])
    return subprocess.CompletedProcess([], code, "", capsys.readouterr().err)


def assert_one_line_exit_2_nothing_trained(p, tmp_path: Path, *needles: str) -> None:
    assert p.returncode == 2, p.stderr[-2000:]
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("mvpfarm: error:")]     # besides progress steps
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr[-2000:]
    for n in needles:
        assert n in lines[0], lines[0]
    assert not (tmp_path / "results" / "cache" / "train").exists()
    db = tmp_path / "results" / "mvpfarm.sqlite"
    if db.exists():
        with sqlite3.connect(db) as con:
            assert con.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == 0


def drop(d: dict, key: str) -> dict:
    return {k: v for k, v in d.items() if k != key}


def with_(d: dict, **kw) -> dict:
    return dict(d, **kw)


NAN_X = good()["x_train"].copy()
NAN_X[3, 2, 2, 0] = np.nan
# (name, arrays, what the one line names); all of these fail before Ray starts
EARLY = [
    ("missing_array", drop(good(), "y_val"), ("data.y_val", "missing array in d.npz")),
    ("nan", with_(good(), x_train=NAN_X), ("data.x_train", "NaN or inf")),
    ("inf_labels", with_(good(), y_val=np.full(10, np.inf)), ("data.y_val", "NaN or inf")),
    ("empty_x_val", with_(good(), x_val=np.zeros((0, 8, 8, 1), np.float32), y_val=np.zeros(0, np.int64)),
     ("data.x_val", "empty")),
    ("length", with_(good(), y_train=np.zeros(7, np.int64)), ("data.y_train", "7 rows for 40 samples")),
]


@pytest.mark.parametrize("name,arrays,needles", EARLY, ids=[c[0] for c in EARLY])
def test_bad_data_before_any_work(tmp_path, name, arrays, needles, capsys):
    p = run_in_process(tmp_path, arrays, capsys)
    assert_one_line_exit_2_nothing_trained(p, tmp_path, str(tmp_path / "sweep.toml"), *needles)
    with sqlite3.connect(tmp_path / "results" / "mvpfarm.sqlite") as con:     # not even a run was started
        assert con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0


def test_missing_file(tmp_path):
    p = run_cli(tmp_path, None, 'npz = "nowhere.npz"')
    assert_one_line_exit_2_nothing_trained(p, tmp_path, "data.npz", "nowhere.npz", "does not exist")


@pytest.mark.slow
def test_bad_data_against_the_base_model(tmp_path):
    """Shape, label range and class count need the base's config: with it in the cache (here: built
    by this process), they are checked before Ray starts; the first case builds it in a worker."""
    cases = [
        (with_(good(), x_train=good()["x_train"][..., 0], x_val=good()["x_val"][..., 0]),
         ("data.x_train", "samples of shape [8, 8] do not match the base model's input [8, 8, 1]")),
        (with_(good(), y_val=np.arange(10) + 1),
         ("data.y_val", "label 10 is out of range for the base's 10 output units (0..9)")),
        (with_(good(), y_train=np.full(40, 3)), ("data.y_train", "has 1 class; a classifier needs at least two")),
    ]
    for i, (arrays, needles) in enumerate(cases):
        p = run_cli(tmp_path, arrays)
        assert_one_line_exit_2_nothing_trained(p, tmp_path, *needles)
        if i == 0:          # the worker cached the base's config: the others need no Ray
            assert len(list((tmp_path / "results" / "cache" / "base").glob("*.json"))) == 1


@pytest.mark.parametrize("text,needle", [
    ('[data]\nbuiltin = "mnist"\n', "data.builtin: unknown data set 'mnist'"),
    ('[data]\nbuiltin = "digits"\nnpz = "d.npz"\n', "data: needs exactly one of npz, loader or builtin"),
    ('[data]\nloader = "not a ref"\n', "data.loader: 'not a ref' is not of the form package.module:function"),
    ('[data]\nbuiltin = "digits"\nmetric = "f1"\n', "data.metric: 'f1' is not top1, mse"),
    ('[train]\nepochs = 2\n', "train: needs a [data] table"),
    ('[data]\nbuiltin = "digits"\n[train]\nepochs = 0\n', "train.epochs: 0 is not a whole number from 1"),
    ('[data]\nbuiltin = "digits"\n[train]\nlr = 0.1\n', "train.lr: unknown key"),
    ('[constraints]\nmax_ram_bytes = -1\n', "constraints.max_ram_bytes: -1 is not a whole number >= 0"),
    ('[constraints]\nmax_latency = 3\n', "constraints.max_latency: unknown key"),
])
def test_sweep_file_sections_checked(tmp_path, text, needle):
    from orchestrator.sweep_file import SweepFileError, load
    f = tmp_path / "s.toml"
    f.write_text(BASE + text)
    with pytest.raises(SweepFileError) as e:
        load(f)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_sweep_file_defaults(tmp_path):
    from orchestrator.sweep_file import load
    f = tmp_path / "s.toml"
    f.write_text(BASE + '[data]\nbuiltin = "digits"\n[constraints]\nmax_latency_ms = 5\n')
    s = load(f)
    assert s.data.source == {"builtin": "digits"} and s.data.metric == "top1"
    assert s.train == {"epochs": 20, "batch_size": 32, "seed": 0, "seeds": 1, "learning_rate": 0.001}
    assert s.constraints.max_latency_ms == 5.0 and s.constraints.max_accuracy_drop_pts == 1.0


def test_digits_split_is_fixed():
    a, b = datasets.digits(), datasets.digits()
    assert [len(a[k]) for k in datasets.ARRAYS] == [1438, 1438, 359, 359]
    assert a["x_train"].shape[1:] == (8, 8, 1) and 0.0 <= a["x_train"].min() and a["x_train"].max() <= 1.0
    assert all(np.array_equal(a[k], b[k]) for k in datasets.ARRAYS)
    assert set(a["y_val"]) == set(range(10))


def test_resize_is_tensorflow_bilinear():
    tf = pytest.importorskip("tensorflow")
    x = np.random.default_rng(1).random((3, 8, 8, 2), dtype=np.float32)
    for size in ([6, 6], [4, 4], [5, 7], [12, 10]):
        ours = datasets.resize(x, size + [2])
        theirs = tf.image.resize(x, size, method="bilinear", antialias=False).numpy()
        assert ours.shape == (3, *size, 2)
        np.testing.assert_allclose(ours, theirs, atol=1e-6)
    with pytest.raises(datasets.DataError, match="cannot be resized"):
        datasets.resize(x, [4, 4, 3])


@pytest.mark.slow
def test_training_per_seed_cached_by_content(tmp_path):
    """Two seeds train two different models; the second call serves both from the cache, the
    same bits; another data set is another cache entry."""
    from orchestrator import build, training
    spec = build.base_config({"builtin": "digits_cnn", "kwargs": {"filters": 4, "dense_units": 8}})
    d = datasets.digits()
    small = {"x_train": d["x_train"][:300], "y_train": d["y_train"][:300], "x_val": d["x_val"][:50],
             "y_val": d["y_val"][:50]}
    ds = datasets.DataSet(**small, source="test")
    train = {"epochs": 1, "batch_size": 64, "seed": 3, "seeds": 2, "learning_rate": 0.01}
    meta, models = training.train_variant(spec, small, ds.sha256, train, "top1", (), None, tmp_path)
    assert meta["ok"] and not meta["cached"] and [m["seed"] for m in meta["seeds"]] == [3, 4]
    assert models["tflite"][0] != models["tflite"][1]
    assert models["x_val"].shape == (50, 8, 8, 1) and models["reference_outputs"][0].shape == (50, 10)
    again, models2 = training.train_variant(spec, small, ds.sha256, train, "top1", (), None, tmp_path)
    assert again["cached"] and models2["tflite"] == models["tflite"]
    assert [m["accuracy_tflite"] for m in again["seeds"]] == [m["accuracy_tflite"] for m in meta["seeds"]]
    assert len(list((tmp_path / "train").iterdir())) == 2
    other = dict(small, y_train=(small["y_train"] + 1) % 10)
    assert training.seed_key(spec, datasets.DataSet(**other, source="o").sha256, train, "top1", 3) \
        != meta["seeds"][0]["key"]
