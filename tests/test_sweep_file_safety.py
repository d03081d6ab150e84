"""Sweep files are checked without running any of their code, and every value is checked before
Ray starts: builders are located, not imported; the sweep's folder goes last on the import path;
standard-library "builders" are refused; grids have a size limit; seeds, builtin kwargs and
samples are checked against what they feed."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from orchestrator import builder_ref
from orchestrator.sweep_file import MAX_VARIANTS_DEFAULT, SEED_MAX, SweepFileError, load


def _sweep(folder: Path, body: str, name: str = "s.toml") -> Path:
    p = folder / name
    p.write_text(textwrap.dedent(body))
    return p


def _evil_package(folder: Path, name: str = "evilpkg") -> Path:
    """A package whose import leaves a marker file: proof that something imported it."""
    marker = folder / f"{name}-was-imported"
    pkg = folder / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('pwned')\n")
    (pkg / "models.py").write_text(f"open({str(marker)!r}, 'a').write('!')\ndef build():\n    return 1\n")
    return marker


def test_checking_a_builder_imports_nothing(tmp_path):
    marker = _evil_package(tmp_path)
    path_before, modules_before = list(sys.path), set(sys.modules)
    with pytest.raises(SweepFileError, match=r"base\.builder: module 'evilpkg\.nothere' not found"):
        load(_sweep(tmp_path, 'base = { builder = "evilpkg.nothere:build" }\n'))
    sweep = load(_sweep(tmp_path, 'base = { builder = "evilpkg.models:build" }\n'))
    assert sweep.base["search_path"] == [str(tmp_path.resolve())]
    assert not marker.exists()                                  # neither package nor module ran
    assert sys.path == path_before and "evilpkg" not in sys.modules
    assert set(sys.modules) - modules_before <= {m for m in sys.modules if not m.startswith("evilpkg")}


def test_the_sweep_folder_is_appended_so_it_never_shadows_an_installed_module(tmp_path):
    (tmp_path / "ray.py").write_text("raise SystemExit('the fake ray ran')\n")
    (tmp_path / "mybuilder.py").write_text("def build():\n    return 'built'\n")
    # a builder named like an installed module would be that module: refused, with the reason
    with pytest.raises(SweepFileError, match=r"'ray' would be imported from .*site-packages.*not from .*ray\.py "
                                             r"beside the sweep file.*rename your module"):
        load(_sweep(tmp_path, 'base = { builder = "ray:init" }\n'))
    sweep = load(_sweep(tmp_path, 'base = { builder = "mybuilder:build" }\n'))
    path_before = list(sys.path)
    try:
        fn = builder_ref.resolve(sweep.base["builder"], sweep.base["search_path"])
        assert fn() == "built"
        assert sys.path[:len(path_before)] == path_before and sys.path[-1] == str(tmp_path.resolve())
        import ray
        assert Path(ray.__file__).parent.name == "ray" and tmp_path not in Path(ray.__file__).parents
    finally:
        sys.path[:] = path_before
        sys.modules.pop("mybuilder", None)


@pytest.mark.parametrize("ref", ["os:system", "subprocess:run", "builtins:exec", "importlib.util:find_spec"])
def test_standard_library_functions_are_refused_as_builders(tmp_path, ref):
    with pytest.raises(SweepFileError, match="standard library, not a model builder"):
        load(_sweep(tmp_path, f'base = {{ builder = "{ref}", kwargs = {{ command = "touch pwned" }} }}\n'))
    assert not (tmp_path / "pwned").exists()


def test_locate_finds_modules_packages_and_namespace_packages_without_importing(tmp_path):
    (tmp_path / "ns" / "inner").mkdir(parents=True)                 # namespace packages (no __init__)
    (tmp_path / "ns" / "inner" / "m.py").write_text("raise SystemExit\n")
    assert builder_ref.locate("ns.inner.m", [str(tmp_path)]) == tmp_path / "ns" / "inner" / "m.py"
    assert builder_ref.locate("ns.inner.absent", [str(tmp_path)]) is None
    assert builder_ref.locate("numpy.linalg").name == "linalg"
    assert builder_ref.locate("orchestrator.bases").name == "bases.py"
    assert "ns" not in sys.modules


def _grid(tmp_path, levels: int, extra: str = "") -> Path:
    scales = [0.25, 0.5, 0.75, 1.5, 2.0][:levels]
    return _sweep(tmp_path, f"""\
        base = {{ builtin = "ds_cnn" }}
        mode = "grid"
        {extra}
        [tips]
        input_size = {scales}
        filters = {scales}
        dense_units = {scales}
        strides = {list(range(1, levels + 1))}
        kernel_size = {list(range(1, levels + 1))}
    """)


def test_grid_mode_refuses_more_than_max_variants_and_says_how_many(tmp_path):
    assert MAX_VARIANTS_DEFAULT == 1000
    with pytest.raises(SweepFileError, match=r"tips: grid mode makes 7,776 variants, more than max_variants = 1,000"):
        load(_grid(tmp_path, 5))                                    # 6^5 with the base
    with pytest.raises(SweepFileError, match="grid mode makes 1,024 variants"):
        load(_grid(tmp_path, 3))                                    # 4^5: just over
    assert len(load(_grid(tmp_path, 2)).tips) == 5                  # 3^5 = 243
    with pytest.raises(SweepFileError, match="makes 7,776 variants, more than max_variants = 5,000"):
        load(_grid(tmp_path, 5, "max_variants = 5000"))
    assert load(_grid(tmp_path, 5, "max_variants = 8000")).mode == "grid"
    with pytest.raises(SweepFileError, match="max_variants: 0 is not a whole number >= 1"):
        load(_grid(tmp_path, 2, "max_variants = 0"))


@pytest.mark.parametrize("seed,ok", [(0, True), (SEED_MAX, True), (SEED_MAX + 1, False), (2**63 - 1, False),
                                     (-1, False)])
def test_seed_range(tmp_path, seed, ok):
    p = _sweep(tmp_path, f'base = {{ builtin = "fc_autoencoder" }}\n[build]\nseed = {seed}\n')
    if ok:
        assert load(p).build.seed == seed
    else:
        with pytest.raises(SweepFileError, match=r"build\.seed: .* is not a whole number from 0 to 4294967295"):
            load(p)


@pytest.mark.parametrize("kwargs,problem", [
    ('filters = "abc"', r"base\.kwargs\.filters: 'abc': must be a whole number from 1 to 65536"),
    ("filters = -3", r"base\.kwargs\.filters: -3: must be a whole number"),
    ("input_shape = [49, 10]", r"base\.kwargs\.input_shape: \[49, 10\]: must be 3 whole numbers"),
    ("input_shape = [4096, 4096, 3]", r"base\.kwargs: an input of \[4096, 4096, 3\] .* cannot fit the board"),
    ("n_blocks = 1e9", r"base\.kwargs\.n_blocks: 1000000000.0: must be a whole number"),
])
def test_builtin_kwargs_values_are_checked(tmp_path, kwargs, problem):
    with pytest.raises(SweepFileError, match=problem):
        load(_sweep(tmp_path, f'base = {{ builtin = "ds_cnn", kwargs = {{ {kwargs} }} }}\n'))


def test_samples_are_checked_against_the_base_input_before_any_work(tmp_path):
    np.save(tmp_path / "wrong.npy", np.zeros((4, 49, 10, 3), np.float32))      # 3 channels, ds_cnn takes 1
    np.save(tmp_path / "resized.npy", np.zeros((4, 98, 20, 1), np.float32))    # resized to the input: fine
    np.save(tmp_path / "flat.npy", np.zeros((4, 100), np.float32))
    np.save(tmp_path / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    body = 'base = {{ builtin = "{b}" }}\n[build]\nsamples = "{s}"\n'
    with pytest.raises(SweepFileError, match=r"build\.samples: .*wrong\.npy: samples of shape \[49, 10, 3\] do "
                                             r"not fit the base model's input \[49, 10, 1\]"):
        load(_sweep(tmp_path, body.format(b="ds_cnn", s="wrong.npy")))
    assert load(_sweep(tmp_path, body.format(b="ds_cnn", s="resized.npy"))).build.samples.endswith("resized.npy")
    with pytest.raises(SweepFileError, match=r"samples of shape \[100\] do not fit the base model's input \[640\]"):
        load(_sweep(tmp_path, body.format(b="fc_autoencoder", s="flat.npy")))
    with pytest.raises(SweepFileError, match=r"pickled\.npy: not a readable \.npy array"):
        load(_sweep(tmp_path, body.format(b="fc_autoencoder", s="pickled.npy")))
