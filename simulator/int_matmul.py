"""The exact int8 matrix product of the layers with weights (conv_2d's im2col rows, fully
connected): ONNX Runtime's MatMulInteger on one thread, giving TFLM's int32 accumulators.

Why ONNX Runtime: TFLM sums int8 x int8 products in an int32 accumulator. Integer products are
exact by construction, so any kernel that accumulates in int32 (wrapping, as TFLM's C++ does)
gives the same accumulator bits; MLAS, ONNX Runtime's kernel library, does that with the CPU's
int8 dot-product instructions (AVX512-VNNI, AVX-VNNI, AMX, NEON dot product), 3-10x the speed
of the exact float32 BLAS products this replaces (measured on a Xeon with AMX, one thread: 64x64
pointwise over 32,000 rows 1.0 ms against 3.6 ms, a 576-deep 3x3 conv 5.1 ms against 32 ms).

Operands: the activations go in as uint8 (x + 128, zero point in_zp + 128: the same differences
x - in_zp) because MLAS's fast kernels are u8 x s8; its s8 x s8 path is slower than float BLAS.
On an x86 CPU without VNNI, MLAS's u8 x s8 kernel (VPMADDUBSW) saturates int16 pair sums (Intel's
"nuances of int8 computations"; ONNX Runtime itself turns u8 x s8 into u8 x u8 there for its
transformer ops), so the first product probes that worst case and, if it is not exact there,
every product takes the u8 x u8 kernel (weights + 128, zero point w_zp + 128), which widens to
int16 first and cannot saturate. One session per weight matrix: MLAS packs the constant weights once.
"""
from __future__ import annotations

import numpy as np

_OPSET = 13
_U8S8_EXACT: bool | None = None     # the probe's verdict, once per process


def _session(weights: np.ndarray, a_zero_point: int, w_zero_point: int):
    """A one-node MatMulInteger session: y[rows, N] int32 = (a - a_zp) @ (w - w_zp), a the uint8
    input of [rows, K]; weights [K, N] int8 (u8 x s8) or uint8 (u8 x u8) with their zero point
    and a's as initializers."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    k, n = weights.shape
    node = helper.make_node("MatMulInteger", ["a", "w", "a_zp", "w_zp"], ["y"])
    graph = helper.make_graph(
        [node], "int_matmul",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [None, k])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [None, n])],
        initializer=[numpy_helper.from_array(np.ascontiguousarray(weights), "w"),
                     numpy_helper.from_array(np.array(a_zero_point, dtype=np.uint8), "a_zp"),
                     numpy_helper.from_array(np.array(w_zero_point, dtype=weights.dtype), "w_zp")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)])
    model.ir_version = 8            # what every onnxruntime since 1.10 reads
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1     # one thread, as BLAS and XNNPACK run (one worker per core)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _u8s8_exact() -> bool:
    """Whether MLAS's u8 x s8 kernel is exact on this CPU: the pair sums that saturate int16 in
    VPMADDUBSW (255 * -128 twice, 255 * 127 twice) over a depth and width its blocked kernels
    take."""
    global _U8S8_EXACT
    if _U8S8_EXACT is None:
        k, n = 64, 32
        w = np.where((np.arange(k * n).reshape(k, n) // 2) % 2 == 0, -128, 127).astype(np.int8)
        a = np.full((8, k), 255, dtype=np.uint8)
        got = _session(w, 0, 0).run(None, {"a": a})[0]
        _U8S8_EXACT = bool(np.array_equal(got, a.astype(np.int64) @ w.astype(np.int64)))
    return _U8S8_EXACT


class IntMatmul:
    """`IntMatmul(weights, in_zero_point, w_zero_point)(a)`: the int32 products
    (a - (in_zero_point + 128)) @ (weights - w_zero_point) of a [rows, K] uint8 (the int8
    activations + 128: `biased`) with the constant int8 weights [K, N]."""

    def __init__(self, weights: np.ndarray, in_zero_point: int, w_zero_point: int = 0):
        w = np.asarray(weights)
        if w.dtype != np.int8 or w.ndim != 2:
            raise ValueError(f"weights must be a 2-D int8 matrix, got {w.dtype} {w.shape}")
        self.depth, self.width = w.shape
        a_zp = int(in_zero_point) + 128
        if _u8s8_exact():
            self._session = _session(w, a_zp, int(w_zero_point))
        else:
            self._session = _session(biased(w), a_zp, int(w_zero_point) + 128)

    def __call__(self, a: np.ndarray) -> np.ndarray:
        return self._session.run(None, {"a": a})[0]


def biased(x: np.ndarray) -> np.ndarray:
    """int8 values as uint8 x + 128 (the activation operand of `IntMatmul`)."""
    return np.asarray(x).view(np.uint8) ^ np.uint8(0x80)
