"""The CUDA backend: every op and direction with device='cuda' against the float64
reference, on awkward shapes and large batches, and bitwise determinism. Marked `gpu`:
skipped where this process sees no CUDA GPU. Without one, device='cuda' must refuse
cleanly, and that part runs everywhere.
"""
import numpy as np
import pytest

import fastnn
from fastnn import ops
from fastnn import reference as ref
from test_ops import CONV_CASES, assert_close, conv_id, f64, floats, rng_for

HAS_GPU = fastnn.build_info()["cuda_devices"] > 0
gpu = pytest.mark.skipif(not HAS_GPU, reason="no CUDA GPU in this process")


# ---- without a GPU: a clean refusal --------------------------------------------------------

@pytest.mark.skipif(HAS_GPU, reason="this process has a GPU")
def test_cuda_without_gpu_refuses_cleanly():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(RuntimeError, match="device='cuda'"):
        ops.relu(x, device="cuda")
    with pytest.raises(RuntimeError, match="device='cuda'"):
        ops.gemm(x, x.T, device="cuda")
    assert (ops.relu(x) == x).all()  # the CPU still works after the refusal


def test_bad_device_names_the_argument():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda', got 'gpu'"):
        ops.relu(x, device="gpu")
    with pytest.raises(TypeError, match="device must be"):
        ops.relu(x, device=0)


# ---- on a GPU: every op against the reference --------------------------------------------

@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("case", CONV_CASES, ids=conv_id)
def test_conv2d(case):
    n, h, w, cin, kh, kw, cout, strides, padding = case
    rng = rng_for("conv", case)
    x, k, b = floats(rng, n, h, w, cin), floats(rng, kh, kw, cin, cout), floats(rng, cout)
    y = ops.conv2d(x, k, b, strides, padding, device="cuda")
    assert_close(y, ref.conv2d(*f64(x, k, b), strides, padding), "y")
    dy = floats(rng, *y.shape)
    expected = ref.conv2d_backward(*f64(x, k, dy), strides, padding)
    got = ops.conv2d_backward(x, k, dy, strides, padding, device="cuda")
    for name, out, exp in zip(("dx", "dw", "db"), got, expected):
        assert_close(out, exp, name)


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 13, 5), (64, 576, 64), (100, 300, 600),
                                   (1024, 1024, 1024), (33, 1, 65)], ids=str)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm(shape, trans_a, trans_b):
    m, k, n = shape
    rng = rng_for("gemm", shape, trans_a, trans_b)
    a = floats(rng, *((k, m) if trans_a else (m, k)))
    b = floats(rng, *((n, k) if trans_b else (k, n)))
    assert_close(ops.gemm(a, b, trans_a, trans_b, device="cuda"),
                 ref.gemm(*f64(a, b), trans_a, trans_b), "c")


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(64, 576, 64), (1, 3, 1), (63, 64, 10), (1024, 576, 64)],
                         ids=str)
def test_dense(shape):
    n, fin, fout = shape
    rng = rng_for("dense", shape)
    x, w, b, dy = floats(rng, n, fin), floats(rng, fin, fout), floats(rng, fout), floats(rng, n, fout)
    assert_close(ops.dense(x, w, b, device="cuda"), ref.dense(*f64(x, w, b)), "y")
    for name, out, exp in zip(("dx", "dw", "db"), ops.dense_backward(x, w, dy, device="cuda"),
                              ref.dense_backward(*f64(x, w, dy))):
        assert_close(out, exp, name)


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("case", [((64, 26, 26, 32), (2, 2), None), ((1, 5, 7, 3), (2, 3), (1, 2)),
                                  ((3, 9, 9, 17), (3, 3), (2, 2)), ((2, 8, 8, 1), (2, 2), (3, 3)),
                                  ((1024, 11, 11, 64), (2, 2), None)], ids=str)
def test_maxpool2d(case):
    shape, pool, strides = case
    rng = rng_for("pool", case)
    x = np.round(floats(rng, *shape) * 2) / 2  # coarse values: many ties within a window
    y = ops.maxpool2d(x, pool, strides, device="cuda")
    assert_close(y, ref.maxpool2d(x.astype(np.float64), pool, strides), "y")
    dy = floats(rng, *y.shape)
    assert_close(ops.maxpool2d_backward(x, dy, pool, strides, device="cuda"),
                 ref.maxpool2d_backward(*f64(x, dy), pool, strides), "dx")


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(1,), (17,), (64, 26, 26, 32), (1 << 22,)], ids=str)
def test_relu(shape):
    rng = rng_for("relu", shape)
    x, dy = floats(rng, *shape), floats(rng, *shape)
    x.flat[0] = 0.0
    assert_close(ops.relu(x, device="cuda"), ref.relu(x), "y")
    assert_close(ops.relu_backward(x, dy, device="cuda"), ref.relu_backward(x, dy), "dx")


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("scale", [1.0, 30.0], ids=["moderate", "large"])
@pytest.mark.parametrize("shape", [(64, 10), (1, 10), (63, 10), (5, 1), (3, 1000), (1024, 17)],
                         ids=str)
def test_softmax_cross_entropy(shape, scale):
    n, classes = shape
    rng = rng_for("xent", shape, scale)
    logits, labels = floats(rng, n, classes, scale=scale), rng.integers(0, classes, n)
    loss, dlogits = ops.softmax_cross_entropy(logits, labels, device="cuda")
    ref_loss, ref_dlogits = ref.softmax_cross_entropy(logits.astype(np.float64), labels)
    assert_close(loss, ref_loss, "loss")
    assert_close(dlogits, ref_dlogits, "dlogits")


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("size", [1, 93_322, 1 << 20], ids=str)
def test_adam_update(size):
    rng = rng_for("adam", size)
    param, grad = floats(rng, size), floats(rng, size)
    m, v = floats(rng, size), np.abs(floats(rng, size))
    expected = [a.astype(np.float64) for a in (param, m, v)]
    ref.adam_update(*expected[:1], grad.astype(np.float64), *expected[1:], 3)
    ops.adam_update(param, grad, m, v, 3, device="cuda")
    for name, out, exp in zip(("param", "m", "v"), (param, m, v), expected):
        assert_close(out, exp, name)


@gpu
@pytest.mark.gpu
def test_same_inputs_same_bits():
    rng = rng_for("determinism")
    x, k = floats(rng, 256, 13, 13, 32), floats(rng, 3, 3, 32, 64)
    dy = floats(rng, 256, 11, 11, 64)
    first = ops.conv2d_backward(x, k, dy, device="cuda")
    second = ops.conv2d_backward(x, k, dy, device="cuda")
    for a, b in zip(first, second):
        assert np.array_equal(a, b)
    logits, labels = floats(rng, 1024, 10, scale=5.0), rng.integers(0, 10, 1024)
    assert ops.softmax_cross_entropy(logits, labels, device="cuda")[0] == \
        ops.softmax_cross_entropy(logits, labels, device="cuda")[0]
