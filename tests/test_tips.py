"""Each tip changes a real Keras model's config as intended, and refuses models it does not fit."""
import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")
from keras import layers  # noqa: E402

from orchestrator import build  # noqa: E402
from orchestrator.keras_config import ModelConfig  # noqa: E402
from orchestrator.tips import TIPS, TipNotApplicable, apply_tip, apply_tips, check_level  # noqa: E402


def spec_of(model) -> dict:
    cfg = keras.saving.serialize_keras_object(model)
    return {"keras": ModelConfig(cfg).finish(), "input_dtype": "int8", "global_pools": []}


def rebuilt(spec):
    return build.keras_model(spec)


def by_class(model, cls):
    return [L for L in model.layers if type(L).__name__ == cls]


@pytest.fixture(scope="module")
def cnn():
    """Functional: conv block, depthwise block, a residual Add, a hidden Dense, the output Dense."""
    inp = keras.Input((20, 12, 2))
    x = layers.Conv2D(8, (5, 3), strides=(1, 1), padding="same")(inp)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    y = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same")(x)
    y = layers.Conv2D(8, 1)(y)
    x = layers.Add()([x, y])
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(32, activation="relu")(x)
    out = layers.Dense(4)(x)
    return keras.Model(inp, out)


@pytest.fixture(scope="module")
def mlp():
    return keras.Sequential([keras.Input((40,)), layers.Dense(16, activation="relu"),
                             layers.Dense(10, activation="relu"), layers.Dense(3)])


def test_input_size_scales_spatial_dims_only(cnn):
    m = rebuilt(apply_tip(spec_of(cnn), "input_size", 0.5))
    assert tuple(m.inputs[0].shape) == (1, 10, 6, 2)          # channels kept, batch 1 for the board
    assert m.output.shape[-1] == 4


@pytest.mark.parametrize("scale", [1e-9, 0.02])
def test_input_size_below_one_element_is_not_applicable(cnn, scale):
    """20x12 scaled by 1e-9 (or 0.02: 0.4 x 0.24) is no input; it is not measured as a 1x1 one."""
    with pytest.raises(TipNotApplicable, match=f"input_size {scale:g} makes the input's 20-long dimension .* below 1"):
        apply_tip(spec_of(cnn), "input_size", scale)


def test_input_size_not_applicable_without_spatial_dims(mlp):
    with pytest.raises(TipNotApplicable, match="no spatial dimensions"):
        apply_tip(spec_of(mlp), "input_size", 0.5)


def test_input_dtype_is_a_converter_setting(cnn):
    spec = apply_tip(spec_of(cnn), "input_dtype", "float32")
    assert spec["input_dtype"] == "float32"
    assert spec["keras"] == spec_of(cnn)["keras"]
    with pytest.raises(TipNotApplicable, match="already int8"):
        apply_tip(spec_of(cnn), "input_dtype", "int8")


def test_filters_scale_convs_and_depth_multiplier_but_not_outputs(cnn):
    m = rebuilt(apply_tip(spec_of(cnn), "filters", 0.5))
    assert [L.filters for L in by_class(m, "Conv2D")] == [4, 4]
    assert by_class(m, "DepthwiseConv2D")[0].depth_multiplier == 1
    assert [L.units for L in by_class(m, "Dense")] == [32, 4]     # Dense is dense_units' business


def test_filters_not_applicable_without_convolutions(mlp):
    with pytest.raises(TipNotApplicable, match="no convolution"):
        apply_tip(spec_of(mlp), "filters", 0.5)


def test_strides_double_the_first_n_convolutions(cnn):
    m = rebuilt(apply_tip(spec_of(cnn), "strides", 1))
    assert tuple(by_class(m, "Conv2D")[0].strides) == (2, 2)
    assert tuple(by_class(m, "DepthwiseConv2D")[0].strides) == (1, 1)
    assert tuple(m.get_layer(index=1).output.shape[1:3]) == (10, 6)
    # the depthwise and 1x1 sit on a branch that meets an identity shortcut: not a place to stride
    with pytest.raises(TipNotApplicable, match="only 1 place where a stride can double on every path.*"
                                               r"shortcut without a convolution at 'add(_\d+)?'"):
        apply_tip(spec_of(cnn), "strides", 2)


def test_kernel_size_caps_kernels(cnn):
    m = rebuilt(apply_tip(spec_of(cnn), "kernel_size", 2))
    assert tuple(by_class(m, "Conv2D")[0].kernel_size) == (2, 2)
    assert tuple(by_class(m, "DepthwiseConv2D")[0].kernel_size) == (2, 2)
    assert tuple(by_class(m, "Conv2D")[1].kernel_size) == (1, 1)
    with pytest.raises(TipNotApplicable, match="larger than 5"):
        apply_tip(spec_of(cnn), "kernel_size", 5)


def test_dense_units_scale_hidden_layers_only(mlp, cnn):
    m = rebuilt(apply_tip(spec_of(mlp), "dense_units", 0.5))
    assert [L.units for L in m.layers] == [8, 5, 3]
    one_dense = keras.Sequential([keras.Input((40,)), layers.Dense(3)])
    with pytest.raises(TipNotApplicable, match="no hidden Dense"):
        apply_tip(spec_of(one_dense), "dense_units", 0.5)


def test_pooling_is_spliced_after_the_first_conv_block(cnn):
    m = rebuilt(apply_tip(spec_of(cnn), "pooling", "max"))
    pool = by_class(m, "MaxPooling2D")[0]
    assert type(pool._inbound_nodes[0].operation).__name__ == "MaxPooling2D"
    assert type(m.layers[m.layers.index(pool) - 1]).__name__ == "ReLU"      # after conv, BN, ReLU
    assert tuple(pool.output.shape[1:3]) == (10, 6)
    # both branches of the residual Add now see the pooled map
    assert tuple(by_class(m, "Add")[0].output.shape[1:3]) == (10, 6)
    m = rebuilt(apply_tip(spec_of(cnn), "pooling", "avg"))
    assert len(by_class(m, "AveragePooling2D")) == 1


def test_pooling_on_sequential_and_not_twice():
    seq = keras.Sequential([keras.Input((16, 16, 1)), layers.Conv2D(4, 3), layers.ReLU(),
                            layers.Flatten(), layers.Dense(2)])
    spec = apply_tip(spec_of(seq), "pooling", "avg")
    m = rebuilt(spec)
    assert [type(L).__name__ for L in m.layers][:3] == ["Conv2D", "ReLU", "AveragePooling2D"]
    with pytest.raises(TipNotApplicable, match="already follows"):
        apply_tip(spec, "pooling", "max")
    with pytest.raises(TipNotApplicable, match=r"no feature maps to pool \(it has 1 Dense\)"):
        apply_tip(spec_of(keras.Sequential([keras.Input((4,)), layers.Dense(2)])), "pooling", "max")


def test_grid_applies_tips_in_canonical_order_and_names_the_one_that_fails(cnn):
    a = apply_tips(spec_of(cnn), {"pooling": "max", "filters": 0.5})
    b = apply_tips(spec_of(cnn), {"filters": 0.5, "pooling": "max"})
    assert a == b
    with pytest.raises(TipNotApplicable, match=r"^kernel_size=9: "):
        apply_tips(spec_of(cnn), {"filters": 0.5, "kernel_size": 9})


def test_global_pool_follows_the_feature_map():
    inp = keras.Input((16, 8, 1))
    x = layers.Conv2D(4, 3, padding="same")(inp)
    x = layers.AveragePooling2D(pool_size=(16, 8))(x)
    out = layers.Dense(2)(layers.Flatten()(x))
    spec = dict(spec_of(keras.Model(inp, out)), global_pools=[x._keras_history[0].name])
    m = rebuilt(apply_tip(spec, "input_size", 0.5))
    pool = by_class(m, "AveragePooling2D")[0]
    assert tuple(pool.pool_size) == (8, 4) and tuple(pool.output.shape[1:3]) == (1, 1)


def test_levels_are_checked():
    assert check_level("input_size", 0.5) is None
    assert check_level("input_size", 0) and check_level("input_size", 1) and check_level("input_size", "x")
    assert check_level("strides", 2) is None and check_level("strides", 1.5) and check_level("strides", 0)
    assert check_level("pooling", "median") and check_level("input_dtype", "int16")
    assert set(TIPS) == {"input_size", "input_dtype", "filters", "strides", "kernel_size", "dense_units",
                         "pooling"}
