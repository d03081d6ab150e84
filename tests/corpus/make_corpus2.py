"""Build the bring-your-own-model corpus in tests/data/corpus2/: the architectures users have and their tip variants.

The architectures are examples/byo_models.py (Keras's MobileNet v1/v2/v3-small at 96x96x3, a 3-block ResNet, a
Conv1D keyword spotter, SeparableConv2D with Rescaling and Dropout, GRU and LSTM keyword spotters) and the built-in
resnet8; their variants are made by the farm's own tips (orchestrator.tips) and converted by the farm's own build
(orchestrator.build.convert), exactly as a sweep makes them. Small models add what those do not pin down: MLPs with
int8 (and float32) input and output, stride-2 depthwise layers on maps from 24x24 to 64x64 with 16 to 96 channels,
1x1 convolutions on small maps with wide outputs, and adds on 1x1 maps. The oracle's numbers for them come from
../shared/oracle: `mltk_sim.jsonl` (profile_dir.py's records) and `mltk_outputs.jsonl` (run_dir.py's: 3 inputs of
numpy.random.default_rng(0) per model and accelerator); a run that crashes the oracle is a record with an "error".
The Keras MobileNets at 96x96 are large (0.3-0.9 MB) and slow in the oracle (minutes per run on this machine):
MobileNet v1 (base and filters=0.5), MobileNetV2 (int8 and float32 input) and MobileNetV3Small are kept, their tip
variants are not.

Usage (project venv):
    .venv/bin/python tests/corpus/make_corpus2.py [--only NAME ...]      # build models + manifest + README
    .venv/bin/python tests/corpus/make_corpus2.py --readme-only
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "examples"), str(Path(__file__).parent)]

import make_corpus  # noqa: E402  (the first corpus: seeded layers, per-tensor conversion, opcodes)

CORPUS_DIR = ROOT / "tests" / "data" / "corpus2"
# The oracle's runs that crash (SIGSEGV in MLTK 0.20): their records say so instead of holding numbers.
MLTK_SEGFAULT = "mltk crashed: SIGSEGV"
# Oracle outputs are kept for models whose output has at most this many elements (the large stride-2 depthwise
# maps would add megabytes of integers; their profiles are kept).
OUTPUT_FIXTURE_MAX_ELEMENTS = 4096
BUILD = {"seed": 0, "n_samples": 8}


@dataclass(frozen=True)
class Model2:
    name: str
    exercises: str
    make: Callable[[], bytes]          # -> .tflite bytes
    oracle_crashes: tuple[str, ...] = ()     # the accelerators ("mvp", "none") whose oracle run crashes

    def path(self, out: Path) -> Path:
        return out / f"{self.name}.tflite"


def _farm(base: dict, levels: dict | None = None) -> Callable[[], bytes]:
    """A sweep variant as the farm builds it: the base's config, the tips, the farm's converter."""
    def make() -> bytes:
        import keras
        from orchestrator import build
        from orchestrator.bases import build_base_model
        from orchestrator.tips import apply_tips
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        config = build.config_of_model(build_base_model(dict(base, search_path=[str(ROOT / "examples")])))
        keras.backend.clear_session()
        return build.convert(apply_tips(config, levels or {}), BUILD)
    return make


def _small(name: str, builder: Callable, float_io: bool = False) -> Callable[[], bytes]:
    """A few layers, converted like the first corpus (per-tensor Dense weights, as the vendor's FC expects)."""
    return lambda: make_corpus.convert(make_corpus.CorpusModel(name, "", builder, float_io=float_io))


def _mlp(units: tuple[int, ...], seed: int):
    def build():
        import keras
        s = make_corpus.Seeds(seed)
        x = keras.Input((units[0],), batch_size=1)
        y = x
        for u in units[1:-1]:
            y = s.dense(u, activation="relu")(y)
        return keras.Model(x, s.dense(units[-1])(y))
    return build


def _dw_s2(hw: int, ch: int, seed: int):
    def build():
        import keras
        s = make_corpus.Seeds(seed)
        x = keras.Input((hw, hw, ch), batch_size=1)
        return keras.Model(x, s.dwconv(3, strides=2, padding="same", activation="relu")(x))
    return build


def _pw_wide(hw: int, cin: int, cout: int, seed: int):
    def build():
        import keras
        s = make_corpus.Seeds(seed)
        x = keras.Input((hw, hw, cin), batch_size=1)
        return keras.Model(x, s.conv(cout, 1, padding="same", activation="relu")(x))
    return build


def _add_1x1(ch: int, seed: int):
    """Two 1x1 maps added (the tail of a MobileNet on a small input): a squeeze and a 1x1 conv of it."""
    def build():
        import keras
        s = make_corpus.Seeds(seed)
        x = keras.Input((4, 4, ch), batch_size=1)
        g = keras.layers.GlobalAveragePooling2D(keepdims=True)(s.conv(ch, 3, padding="same", activation="relu")(x))
        return keras.Model(x, keras.layers.Add()([g, s.conv(ch, 1, padding="same")(g)]))
    return build


V1 = {"builder": "byo_models:mobilenet_v1"}
V2 = {"builder": "byo_models:mobilenet_v2"}
V3 = {"builder": "byo_models:mobilenet_v3_small"}
RESNET3 = {"builder": "byo_models:resnet3"}
RESNET8 = {"builtin": "resnet8"}
KWS1D = {"builder": "byo_models:conv1d_kws"}
SEP = {"builder": "byo_models:sepconv"}
F32 = {"input_dtype": "float32"}

MODELS: list[Model2] = [
    Model2("mnv1", "keras MobileNet alpha 0.25 96x96x3, 2 classes (Conv2D classifier, Reshape, Softmax)", _farm(V1)),
    Model2("mnv1_filters05", "MobileNet v1, tip filters=0.5", _farm(V1, {"filters": 0.5})),
    Model2("mnv2", "keras MobileNetV2 alpha 0.35 96x96x3, 2 classes", _farm(V2)),
    Model2("mnv2_float32", "keras MobileNetV2 alpha 0.35 96x96x3 with float32 input", _farm(V2, F32)),
    Model2("mnv3s", "keras MobileNetV3Small alpha 0.75 minimalistic 96x96x3, 2 classes (Rescaling, Conv2D "
           "classifier, Flatten, Softmax)", _farm(V3)),
    Model2("resnet3", "3-block ResNet 32x32x3 (identity block, two projection blocks)", _farm(RESNET3)),
    Model2("resnet3_strides1", "3-block ResNet, tip strides=1", _farm(RESNET3, {"strides": 1})),
    Model2("resnet3_strides2", "3-block ResNet, tip strides=2 (a block's 3x3 and its shortcut)",
           _farm(RESNET3, {"strides": 2})),
    Model2("resnet3_filters05", "3-block ResNet, tip filters=0.5", _farm(RESNET3, {"filters": 0.5})),
    Model2("resnet3_pool", "3-block ResNet, tip pooling=max", _farm(RESNET3, {"pooling": "max"})),
    Model2("resnet8", "built-in resnet8", _farm(RESNET8)),
    Model2("resnet8_strides2", "built-in resnet8, tip strides=2", _farm(RESNET8, {"strides": 2})),
    Model2("resnet8_float32", "built-in resnet8 with float32 input", _farm(RESNET8, F32)),
    Model2("kws1d", "Conv1D keyword spotter 49x40", _farm(KWS1D)),
    Model2("kws1d_float32", "Conv1D keyword spotter with float32 input", _farm(KWS1D, F32)),
    Model2("kws1d_kernel1", "Conv1D keyword spotter, tip kernel_size=1", _farm(KWS1D, {"kernel_size": 1})),
    Model2("kws1d_pool", "Conv1D keyword spotter, tip pooling=max (MaxPooling1D)", _farm(KWS1D, {"pooling": "max"})),
    Model2("kws1d_dense05", "Conv1D keyword spotter, tip dense_units=0.5", _farm(KWS1D, {"dense_units": 0.5})),
    Model2("sepconv", "SeparableConv2D with Rescaling and Dropout 32x32x3", _farm(SEP)),
    Model2("sepconv_filters05", "SeparableConv2D model, tip filters=0.5", _farm(SEP, {"filters": 0.5})),
    Model2("sepconv_float32", "SeparableConv2D model with float32 input", _farm(SEP, F32)),
    Model2("gru", "GRU keyword spotter 16x20, unrolled by the build (the oracle's reference kernels crash on it)",
           _farm({"builder": "byo_models:gru_kws"}), oracle_crashes=("none",)),
    Model2("lstm", "LSTM keyword spotter 16x20, unrolled by the build", _farm({"builder": "byo_models:lstm_kws"})),
    Model2("mlp_farm", "MLP 640-128-128-8-640 as the farm converts it (per-channel Dense weights: the oracle's MVP "
           "fully_connected crashes on it, as on the first corpus's fc_per_channel_units256)",
           _farm({"builder": "byo_models:mlp"}), oracle_crashes=("mvp",)),
    Model2("mlp_640_128_128_8_640", "MLP 640-128-128-8-640, int8 I/O, per-tensor",
           _small("mlp_640_128_128_8_640", _mlp((640, 128, 128, 8, 640), 201))),
    Model2("mlp_490_256_256_10", "MLP 490-256-256-10, int8 I/O", _small("mlp_490_256_256_10", _mlp((490, 256, 256, 10), 202))),
    Model2("mlp_256_64_64_256", "MLP 256-64-64-256, int8 I/O", _small("mlp_256_64_64_256", _mlp((256, 64, 64, 256), 203))),
    Model2("mlp_128_128_128_128", "MLP 128-128-128-128, int8 I/O",
           _small("mlp_128_128_128_128", _mlp((128, 128, 128, 128), 204))),
    Model2("mlp_640_float32", "MLP 640-128-128-8-640 with float32 I/O",
           _small("mlp_640_float32", _mlp((640, 128, 128, 8, 640), 201), float_io=True)),
    *[Model2(f"dw_s2_{hw}x{hw}x{ch}", f"depthwise 3x3 stride 2 SAME on {hw}x{hw}x{ch}",
             _small(f"dw_s2_{hw}x{hw}x{ch}", _dw_s2(hw, ch, 300 + i)))
      for i, (hw, ch) in enumerate((hw, ch) for hw in (24, 32, 48, 64) for ch in (16, 24, 48, 96))],
    Model2("pw_3x3x96_576", "1x1 conv on a 3x3 map, 96 -> 576 channels", _small("pw_3x3x96_576", _pw_wide(3, 96, 576, 401))),
    Model2("pw_2x2x64_512", "1x1 conv on a 2x2 map, 64 -> 512 channels", _small("pw_2x2x64_512", _pw_wide(2, 64, 512, 402))),
    Model2("pw_6x6x48_288", "1x1 conv on a 6x6 map, 48 -> 288 channels", _small("pw_6x6x48_288", _pw_wide(6, 48, 288, 403))),
    Model2("add_1x1x32", "add of two 1x1x32 maps", _small("add_1x1x32", _add_1x1(32, 501))),
    Model2("add_1x1x96", "add of two 1x1x96 maps", _small("add_1x1x96", _add_1x1(96, 502))),
]


def write_manifest(out: Path) -> None:
    import keras
    import tensorflow as tf
    files = {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("**/*.tflite"))}
    (out / "manifest.json").write_text(json.dumps({"tensorflow": tf.__version__, "keras": keras.__version__,
                                                   "files": files}, indent=1, sort_keys=True) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=CORPUS_DIR)
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args(argv)
    make_corpus._import_tf()
    args.out.mkdir(parents=True, exist_ok=True)
    unknown = sorted(set(args.only or ()) - {m.name for m in MODELS})
    if unknown:
        print(f"make_corpus2: unknown model name(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    for spec in MODELS:
        if args.only and spec.name not in args.only:
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            data = spec.make()
        path = spec.path(args.out)
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        print(f"{spec.name:24s} {len(data):8d} B  {len(make_corpus.opcodes(data))} ops", flush=True)
    write_manifest(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
