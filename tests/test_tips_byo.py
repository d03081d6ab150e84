"""Bring your own model: every tip on the architectures users have (examples/byo_models.py and the
built-in resnet8), checked on the config and on the rebuilt Keras model, without conversion."""
import os
import re
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")

from orchestrator import build, keras_shapes  # noqa: E402
from orchestrator.bases import build_base_model  # noqa: E402
from orchestrator.keras_config import ModelConfig  # noqa: E402
from orchestrator.tips import TipNotApplicable, apply_tip  # noqa: E402

EXAMPLES = str(Path(__file__).resolve().parents[1] / "examples")
ARCHS = {
    "mobilenet_v1": {"builder": "byo_models:mobilenet_v1"},
    "mobilenet_v2": {"builder": "byo_models:mobilenet_v2"},
    "mobilenet_v3_small": {"builder": "byo_models:mobilenet_v3_small"},
    "resnet3": {"builder": "byo_models:resnet3"},
    "resnet8": {"builtin": "resnet8"},
    "conv1d_kws": {"builder": "byo_models:conv1d_kws"},
    "sepconv": {"builder": "byo_models:sepconv"},
    "gru_kws": {"builder": "byo_models:gru_kws"},
    "lstm_kws": {"builder": "byo_models:lstm_kws"},
    "mlp": {"builder": "byo_models:mlp"},
}
# every level of the seven tips a sweep tries in the README's example, and one strides level more
LEVELS = [("input_size", 0.5), ("input_dtype", "float32"), ("filters", 0.5), ("strides", 1),
          ("strides", 2), ("kernel_size", 1), ("dense_units", 0.5), ("pooling", "max")]
# (tip, level) -> the reason's gist, for the levels an architecture cannot take
NOT_APPLICABLE = {
    "mobilenet_v1": {("strides", 2): r"doubling the stride of 'conv_dw_1' \(after 'conv1'\): depthwise "
                                     "convolution 'conv_dw_12': its 2x2 input is smaller than its 3x3 window",
                     ("dense_units", 0.5): r"no Dense layers \(it has 15 Conv2D, 13 DepthwiseConv2D\)"},
    "mobilenet_v2": {("strides", 2): "'block_13_depthwise': its 2x2 input is smaller than its 3x3 window",
                     ("dense_units", 0.5): r"no hidden Dense layers \(only the output layer 'predictions'\)"},
    "mobilenet_v3_small": {("strides", 2): "its 2x2 input is smaller than its 3x3 window",
                           ("dense_units", 0.5): "no Dense layers"},
    "resnet3": {("dense_units", 0.5): r"no hidden Dense layers \(only the output layer '"},
    "resnet8": {("dense_units", 0.5): r"no hidden Dense layers \(only the output layer '"},
    "conv1d_kws": {},
    "sepconv": {("dense_units", 0.5): r"no hidden Dense layers \(only the output layer '"},
    "gru_kws": {("strides", 2): r"only 1 place where a stride can double on every path \('conv1d'\), fewer than 2"},
    "lstm_kws": {("strides", 2): r"only 1 place where a stride can double on every path \('conv1d'\)"},
    "mlp": {("input_size", 0.5): r"model input \(640\) has no spatial dimensions",
            ("filters", 0.5): r"no convolutions to narrow \(it has 4 Dense\)",
            ("strides", 1): r"no convolutions whose stride could grow \(it has 4 Dense\)",
            ("strides", 2): "no convolutions whose stride",
            ("kernel_size", 1): r"no convolutions \(it has 4 Dense\)",
            ("pooling", "max"): r"no feature maps to pool \(it has 4 Dense\)"},
}


@pytest.fixture(scope="module")
def bases():
    """name -> (Keras model, model config), each built once."""
    out = {}
    for name, base in ARCHS.items():
        keras.backend.clear_session()
        model = build_base_model(dict(base, search_path=[EXAMPLES]))
        out[name] = (model, build.config_of_model(model))
    return out


def rebuilt(variant):
    """The variant's Keras model as the build worker makes it; its weights are left uninitialized
    (a stateless scope defers them), since only its layers and shapes are looked at. Keras's
    session is not cleared for each (a tenth of a second in the garbage collector every time):
    layer names come from the config."""
    with keras.StatelessScope():
        return build.keras_model(variant)


@pytest.fixture(scope="module")
def variants(bases):
    """(arch, tip, level) -> (variant config, its Keras model rebuilt from it), or the reason the
    level is not applicable. A variant whose Keras config is the base's (input_dtype: a converter
    setting) is not rebuilt: its Keras model is the base's."""
    out = {}
    keras.backend.clear_session()
    for arch, (model, config) in bases.items():
        for tip, level in LEVELS:
            try:
                variant = apply_tip(config, tip, level)
            except TipNotApplicable as e:
                out[arch, tip, level] = str(e)
                continue
            out[arch, tip, level] = (variant, model if variant["keras"] == config["keras"] else rebuilt(variant))
    return out


def shapes_of(model) -> dict:
    return {L.name: list(L.output.shape[1:]) for L in model.layers}


@pytest.mark.parametrize("arch", list(ARCHS))
def test_inferred_shapes_equal_keras(bases, arch):
    model, config = bases[arch]
    inferred = keras_shapes.infer(ModelConfig(config["keras"]), config["global_pools"])
    assert inferred == shapes_of(model)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_every_tip_builds_with_the_output_shape_or_says_why_not(bases, variants, arch):
    """Every level either rebuilds in Keras (what the build worker does before converting) with
    the base's output shape, every layer's shape as keras_shapes inferred it, or is not applicable
    with the reason in the model's own terms."""
    model, config = bases[arch]
    refused = {}
    for tip, level in LEVELS:
        got = variants[arch, tip, level]
        if isinstance(got, str):
            refused[(tip, level)] = got
            continue
        variant, keras_model = got
        assert variant != config, (tip, level)
        assert keras_model.output.shape[1:] == model.output.shape[1:], (tip, level)
        inferred = keras_shapes.infer(ModelConfig(variant["keras"]), variant["global_pools"])
        assert inferred == shapes_of(keras_model), (tip, level)
    assert set(refused) == set(NOT_APPLICABLE[arch]), refused
    for key, gist in NOT_APPLICABLE[arch].items():
        assert re.search(gist, refused[key]), (key, refused[key])


def test_filters_leave_the_classifier_behind_reshape_and_flatten(bases, variants):
    for arch, head in (("mobilenet_v1", "conv_preds"), ("mobilenet_v3_small", "logits")):
        variant = variants[arch, "filters", 0.5][1]
        assert variant.get_layer(head).filters == 2 and tuple(variant.output.shape) == (1, 2)
        widths = [L.filters for L in variant.layers if type(L).__name__ == "Conv2D"]
        base = [L.filters for L in bases[arch][0].layers if type(L).__name__ == "Conv2D"]
        assert widths[:-1] == [max(1, int(w * 0.5 + 0.5)) for w in base[:-1]]


def test_strides_follow_both_branches_of_a_residual_block(bases, variants):
    for arch in ("resnet8", "resnet3"):
        variant = variants[arch, "strides", 2][1]
        adds = [L for L in variant.layers if type(L).__name__ == "Add"]
        base_adds = [L for L in bases[arch][0].layers if type(L).__name__ == "Add"]
        # the stem (1/2 everywhere) and the first downsampling block, its 3x3 and its 1x1 shortcut alike
        # (1/4 from there on); the identity block in between cannot take a stride on its own
        base_maps = [L.output.shape[1] for L in base_adds]
        assert [L.output.shape[1] for L in adds] == [base_maps[0] // 2] + [d // 4 for d in base_maps[1:]]
        assert variant.output.shape[1:] == bases[arch][0].output.shape[1:]


def test_kernel_size_shrinks_the_explicit_padding_with_the_kernel(bases, variants):
    model, config = bases["mobilenet_v2"]
    variant = variants["mobilenet_v2", "kernel_size", 1][1]
    assert not [L for L in variant.layers if type(L).__name__ == "ZeroPadding2D"]
    maps = {L.name: tuple(L.output.shape[1:3]) for L in variant.layers if len(L.output.shape) == 4}
    base = {L.name: tuple(L.output.shape[1:3]) for L in model.layers if len(L.output.shape) == 4}
    assert {n: base[n] for n in maps} == maps          # no feature map grew


def test_pooling_on_a_1d_model_is_1d(bases):
    variant = rebuilt(apply_tip(bases["conv1d_kws"][1], "pooling", "avg"))
    pool = [L for L in variant.layers if type(L).__name__ == "AveragePooling1D"]
    assert len(pool) == 1 and tuple(pool[0].output.shape) == (1, 13, 32)    # 25 frames -> 13
    assert tuple(variant.output.shape) == (1, 12)


def test_dense_units_narrow_the_recurrent_state(variants):
    """A GRU's or LSTM's gates are Dense layers unrolled over the frames: dense_units halves its
    units with the hidden Dense, and the classifier keeps its width."""
    for arch, cls in (("gru_kws", "GRU"), ("lstm_kws", "LSTM")):
        variant = variants[arch, "dense_units", 0.5][1]
        assert [L.units for L in variant.layers if type(L).__name__ in (cls, "Dense")] == [8, 16, 4]
