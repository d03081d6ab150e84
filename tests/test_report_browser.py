"""The sweep report as a reader sees it: rendered by headless Chromium (Debian's `chromium`; the
Makefile's test target installs it when missing), the page loads, every image loads, tables are in
rank order, blanks are blank (never `nan`), text is left-aligned and numbers right-aligned."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from orchestrator import api
from orchestrator.results_db import Measurement, ResultsDB
from simulator.profiler import profile_model

ZOO = Path(__file__).parent / "data" / "zoo"
SIM, BOARD = "simulator/mvp/board", "board/brd2601b/mvp"
# stand-ins for variants: real records of real models, so every number and layer is a real one
VARIANTS = {"base": "keyword_spotting", "filters=0.5": "audio_example1", "input_size=0.5": "tflite_micro_speech",
            "strides=2": "anomaly_detection"}

# what the page reports about itself once loaded: the checker the test adds beside the report
CHECK = """<script>window.addEventListener('load', () => {
  const imgs = [...document.images], b = document.body;
  b.dataset.images = imgs.length;
  b.dataset.broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src')).join(',');
  const cells = [...document.querySelectorAll('td')];
  b.dataset.misaligned = cells.filter(td => {
    const right = getComputedStyle(td).textAlign === 'right', t = td.textContent.trim();
    const numeric = /^[-+]?[\\d,.]+ ?(%|ms|kB)?( \\([-+]\\d+\\))?$/.test(t);
    return t && numeric !== right;
  }).map(td => td.textContent.trim()).slice(0, 5).join('|');
  b.dataset.height = document.documentElement.scrollHeight;
});</script>"""


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("report") / "results"
    with ResultsDB(results) as db:
        db.start_run("r-1", "browser", "s.toml", "0" * 64, "", "one-at-a-time", {"builtin": "ds_cnn"}, 6, 2, {})
        for target, kind in ((SIM, "simulator"), (BOARD, "board")):
            for variant, model in VARIANTS.items():
                tip, _, level = variant.partition("=")
                rec = profile_model((ZOO / f"{model}.tflite").read_bytes(), name=variant)
                db.write(Measurement("r-1", variant, target, kind, "mvp", "board", tip=tip, level=level), rec)
            db.write(Measurement("r-1", "dense_units=0.5", target, kind, tip="dense_units", level="0.5",
                                 error="not applicable: the model has no hidden Dense layers"), None)
            db.write(Measurement("r-1", "pooling=max", target, kind, tip="pooling", level="max",
                                 error="build worker failed: ValueError: boom"), None)
        db.set_status("r-1", "finished")
    return api.write_report("r-1", results)


def test_the_report_is_in_rank_order_with_units_and_blanks(report):
    md = report.read_text()
    page = (report.parent / "report.html").read_text()
    assert "nan" not in md.lower() and "nan" not in re.sub(r"<[^>]+>", " ", page).lower().split()
    assert "8 measured, 2 not applicable, 2 failed on 2 target(s): simulator mvp, board timing, board brd2601b mvp" in md
    ranked = api.rank("r-1", report.parent.parent).to_json_list()
    sim = [e["variant"] for e in ranked if e["target"] == SIM]
    section = md.split("## Ranking on simulator mvp, board timing", 1)[1].split("## ", 1)[0]
    rows = [ln.split(" | ")[1] for ln in section.splitlines() if ln.startswith("| ") and " | " in ln][1:]
    assert rows == ["base"] + sim                                   # the base first, then by rank
    assert re.search(r"\| base \| [\d.]+ ms \|  \| [\d.]+ kB \|", section)
    # simulator first, then the board; a plot of each kind per target
    assert md.index("## Ranking on simulator mvp") < md.index("## Ranking on board brd2601b mvp")
    for kind in ("ranking", "pareto", "layers"):
        for slug in ("simulator-mvp-board", "board-brd2601b-mvp"):
            assert f"]({kind}-{slug}.png)" in md and (report.parent / f"{kind}-{slug}.png").stat().st_size > 10_000
    measurements = md.split("## Measurements", 1)[1].split("## ", 1)[0]
    assert "| pooling=max | simulator mvp, board timing | failed |  |  |  |  |" in measurements
    assert "| dense_units=0.5 | simulator mvp, board timing | not applicable |" in measurements


def test_the_report_renders_in_headless_chromium_with_every_image(report, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on PATH (`make test` installs Debian's)")
    page = report.parent / "report.html"
    checked = report.parent / "report-checked.html"          # beside it: the images' paths still resolve
    checked.write_text(page.read_text().replace("</body>", CHECK + "</body>"))
    common = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
              "--allow-file-access-from-files", "--virtual-time-budget=10000", "--window-size=1300,2000"]
    dom = subprocess.run(common + ["--dump-dom", checked.as_uri()], capture_output=True, text=True, timeout=180)
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body, dom.stderr[-2000:]
    attrs = dict(re.findall(r'data-(\w+)="([^"]*)"', body.group(1)))
    n_images = len(re.findall(r"<img ", page.read_text()))
    assert n_images == 6 and attrs["images"] == str(n_images)
    assert attrs["broken"] == ""                                   # every image loaded
    assert attrs["misaligned"] == ""                               # numbers right, text left
    assert int(attrs["height"]) > 3000                             # the page laid out, plots and all
    shot = tmp_path / "report.png"
    subprocess.run(common + [f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=180)
    from PIL import Image
    im = Image.open(shot).convert("L")
    assert im.size == (1300, 2000) and len(set(im.getdata())) > 50   # not a blank page
