"""Bad arguments to every fastnn.ops function, and to the thread and ISA setters: each must
raise TypeError or ValueError whose message names the argument, what was expected and what
came. The table CASES is run three ways: in-process (type and message), in a subprocess
(nothing may crash the interpreter), and before a good call (errors leave no state behind).
Then conversions: float64, Fortran-order, strided, int and list inputs give bitwise the same
result as float32 C-contiguous ones, and adam_update updates converted arrays in place.
"""
import subprocess
import sys
import textwrap
from typing import Callable, NamedTuple

import numpy as np
import pytest

import fastnn
from fastnn import ops
from fastnn import reference as ref


def f32(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# Good inputs the bad cases perturb one at a time. conv2d(X, W, B) is (2, 3, 3, 4).
X = f32(2, 5, 5, 3)
W = f32(3, 3, 3, 4, seed=1)
B = f32(4, seed=2)
DY_CONV = f32(2, 3, 3, 4, seed=3)
XD = f32(2, 3)            # dense: x (N=2, in=3), w (3, 4), dy (2, 4)
WD = f32(3, 4, seed=1)
DY_DENSE = f32(2, 4, seed=3)
DY_POOL = f32(2, 2, 2, 3, seed=3)  # maxpool2d(X) with the default 2x2 pool
LOGITS = f32(2, 3)
LABELS = np.array([0, 2])


def adam(**changes):
    """adam_update on fresh (3, 4) arrays, with any argument replaced by `changes`."""
    args = dict(param=f32(3, 4), grad=f32(3, 4, seed=1), m=np.zeros((3, 4), np.float32),
                v=np.zeros((3, 4), np.float32), step=1)
    args.update(changes)
    return ops.adam_update(**args)


def sgd(**changes):
    """sgd_update on fresh (3, 4) arrays with momentum, any argument replaced by `changes`."""
    args = dict(param=f32(3, 4), grad=f32(3, 4, seed=1), velocity=np.zeros((3, 4), np.float32),
                lr=0.01, momentum=0.9)
    args.update(changes)
    return ops.sgd_update(**args)


def read_only(array):
    array = array.copy()
    array.setflags(write=False)
    return array


class Case(NamedTuple):
    id: str
    call: Callable[[], object]  # makes the bad call
    exc: object                 # exception type (or tuple of types) it must raise
    match: str                  # regex that must occur in the message


V, T = ValueError, TypeError

CASES = [
    # ---- conv2d ----------------------------------------------------------------------
    Case("conv2d-x-3d", lambda: ops.conv2d(X[0], W, B), V,
         r"x must be a 4-D array \(N, H, W, C_in\), got shape \(5, 5, 3\)"),
    Case("conv2d-x-5d", lambda: ops.conv2d(X[None], W, B), V,
         r"x must be a 4-D array .*got shape \(1, 2, 5, 5, 3\)"),
    Case("conv2d-w-3d", lambda: ops.conv2d(X, W[0], B), V,
         r"w must be a 4-D array \(KH, KW, C_in, C_out\), got shape \(3, 3, 4\)"),
    Case("conv2d-channel-mismatch", lambda: ops.conv2d(X, f32(3, 3, 2, 4), B), V,
         r"w has 2 input channels .*\(3, 3, 2, 4\).* x has 3 channels .*\(2, 5, 5, 3\)"),
    Case("conv2d-bias-length", lambda: ops.conv2d(X, W, f32(5)), V,
         r"b must have shape \(4,\) .*got \(5,\)"),
    Case("conv2d-bias-2d", lambda: ops.conv2d(X, W, B[None]), V,
         r"b must have shape \(4,\) .*got \(1, 4\)"),
    Case("conv2d-stride-0", lambda: ops.conv2d(X, W, B, strides=0), V,
         r"strides must be >= 1, got 0"),
    Case("conv2d-stride-negative", lambda: ops.conv2d(X, W, B, strides=-1), V,
         r"strides must be >= 1, got -1"),
    Case("conv2d-stride-pair-0", lambda: ops.conv2d(X, W, B, strides=(1, 0)), V,
         r"strides\[1\] must be >= 1, got 0"),
    Case("conv2d-stride-float", lambda: ops.conv2d(X, W, B, strides=1.5), T,
         r"strides must be an int, got float 1\.5"),
    Case("conv2d-stride-str", lambda: ops.conv2d(X, W, B, strides="2"), T,
         r"strides must be an int, got str '2'"),
    Case("conv2d-stride-triple", lambda: ops.conv2d(X, W, B, strides=(1, 2, 3)), V,
         r"strides must be an int or a pair \(height, width\), got \(1, 2, 3\)"),
    Case("conv2d-stride-bool", lambda: ops.conv2d(X, W, B, strides=True), T,
         r"strides must be an int, got bool True"),
    Case("conv2d-stride-huge", lambda: ops.conv2d(X, W, B, strides=10**30), V,
         r"strides must be <= \d+, got 10{30}"),
    Case("conv2d-padding-full", lambda: ops.conv2d(X, W, B, padding="full"), V,
         r"padding must be 'valid' or 'same', got 'full'"),
    # Not a str at all: TypeError would fit the ops docstring too; Keras says ValueError.
    Case("conv2d-padding-none", lambda: ops.conv2d(X, W, B, padding=None), (T, V),
         r"padding must be 'valid' or 'same', got None"),
    Case("conv2d-padding-int", lambda: ops.conv2d(X, W, B, padding=3), (T, V),
         r"padding must be 'valid' or 'same', got 3"),
    Case("conv2d-kernel-taller-than-input", lambda: ops.conv2d(f32(1, 2, 5, 3), W, B), V,
         r"kernel height \(3\) is larger than the input height \(2\) with padding='valid'"),
    Case("conv2d-kernel-wider-than-input", lambda: ops.conv2d(f32(1, 5, 2, 3), W, B), V,
         r"kernel width \(3\) is larger than the input width \(2\)"),
    Case("conv2d-empty-batch", lambda: ops.conv2d(f32(0, 5, 5, 3), W, B), V,
         r"x must not be empty.*got shape \(0, 5, 5, 3\)"),
    Case("conv2d-zero-channels", lambda: ops.conv2d(f32(2, 5, 5, 0), f32(3, 3, 0, 4), B), V,
         r"x must not be empty.*got shape \(2, 5, 5, 0\)"),
    Case("conv2d-zero-height", lambda: ops.conv2d(f32(2, 0, 5, 3), W, B), V,
         r"x must not be empty.*got shape \(2, 0, 5, 3\)"),
    Case("conv2d-zero-filters", lambda: ops.conv2d(X, f32(3, 3, 3, 0), None), V,
         r"w must not be empty.*got shape \(3, 3, 3, 0\)"),
    Case("conv2d-x-str", lambda: ops.conv2d("image", W, B), T,
         r"x must be an array of real numbers, got dtype <U5"),
    Case("conv2d-x-none", lambda: ops.conv2d(None, W, B), T,
         r"x must be an array of real numbers, got dtype object"),
    Case("conv2d-x-object-array", lambda: ops.conv2d(X.astype(object), W, B), T,
         r"x must be an array of real numbers, got dtype object"),
    Case("conv2d-x-complex", lambda: ops.conv2d(X.astype(np.complex64), W, B), T,
         r"x must be an array of real numbers, got dtype complex64"),
    Case("conv2d-x-ragged", lambda: ops.conv2d([[[[1.0]]], [[[1.0, 2.0]]]], W, B), T,
         r"x must be an array of real numbers"),
    Case("conv2d-w-complex", lambda: ops.conv2d(X, W.astype(complex), B), T,
         r"w must be an array of real numbers, got dtype complex128"),
    Case("conv2d-b-str", lambda: ops.conv2d(X, W, "zeros"), T,
         r"b must be an array of real numbers"),
    # A scalar's shape is (), but np.ascontiguousarray makes it (1,) before the check.
    Case("conv2d-x-scalar", lambda: ops.conv2d(1.0, W, B), V,
         r"x must be a 4-D array .*got shape \(\)"),

    # ---- conv2d_backward -------------------------------------------------------------
    Case("conv2d_backward-dy-channels", lambda: ops.conv2d_backward(X, W, f32(2, 3, 3, 5)), V,
         r"dy must have shape \(2, 3, 3, 4\) .*got \(2, 3, 3, 5\)"),
    Case("conv2d_backward-dy-3d", lambda: ops.conv2d_backward(X, W, DY_CONV[0]), V,
         r"dy must have shape \(2, 3, 3, 4\) .*got \(3, 3, 4\)"),
    Case("conv2d_backward-dy-for-same", lambda: ops.conv2d_backward(X, W, f32(2, 5, 5, 4)), V,
         r"dy must have shape \(2, 3, 3, 4\) .*got \(2, 5, 5, 4\)"),
    Case("conv2d_backward-dy-for-stride", lambda: ops.conv2d_backward(X, W, DY_CONV, strides=2), V,
         r"dy must have shape \(2, 2, 2, 4\) .*got \(2, 3, 3, 4\)"),
    Case("conv2d_backward-x-3d", lambda: ops.conv2d_backward(X[0], W, DY_CONV), V,
         r"x must be a 4-D array .*got shape \(5, 5, 3\)"),
    Case("conv2d_backward-channel-mismatch",
         lambda: ops.conv2d_backward(X, f32(3, 3, 2, 4), DY_CONV), V,
         r"w has 2 input channels .* x has 3 channels"),
    Case("conv2d_backward-stride-0", lambda: ops.conv2d_backward(X, W, DY_CONV, strides=(0, 1)), V,
         r"strides\[0\] must be >= 1, got 0"),
    Case("conv2d_backward-padding-full",
         lambda: ops.conv2d_backward(X, W, DY_CONV, padding="full"), V,
         r"padding must be 'valid' or 'same', got 'full'"),
    Case("conv2d_backward-kernel-too-big",
         lambda: ops.conv2d_backward(f32(2, 2, 2, 3), W, DY_CONV), V,
         r"kernel height \(3\) is larger than the input height \(2\)"),
    Case("conv2d_backward-empty-batch",
         lambda: ops.conv2d_backward(f32(0, 5, 5, 3), W, f32(0, 3, 3, 4)), V,
         r"x must not be empty.*\(0, 5, 5, 3\)"),
    Case("conv2d_backward-dy-none", lambda: ops.conv2d_backward(X, W, None), T,
         r"dy must be an array of real numbers"),

    # ---- dense -----------------------------------------------------------------------
    Case("dense-x-1d", lambda: ops.dense(XD[0], WD, None), V,
         r"x must be a 2-D array \(N, features_in\), got shape \(3,\)"),
    Case("dense-x-3d", lambda: ops.dense(XD[None], WD, None), V,
         r"x must be a 2-D array .*got shape \(1, 2, 3\)"),
    Case("dense-w-1d", lambda: ops.dense(XD, WD[0], None), V,
         r"w must be a 2-D array \(features_in, features_out\), got shape \(4,\)"),
    Case("dense-features-mismatch", lambda: ops.dense(XD, f32(4, 4), None), V,
         r"w has 4 input features .*\(4, 4\).* x has 3 .*\(2, 3\)"),
    Case("dense-bias-length", lambda: ops.dense(XD, WD, f32(3)), V,
         r"b must have shape \(4,\) .*got \(3,\)"),
    Case("dense-empty-batch", lambda: ops.dense(f32(0, 3), WD, None), V,
         r"x must not be empty.*got shape \(0, 3\)"),
    Case("dense-zero-features", lambda: ops.dense(f32(2, 0), f32(0, 4), None), V,
         r"x must not be empty.*got shape \(2, 0\)"),
    Case("dense-x-object-array", lambda: ops.dense(np.array([[1, None]], dtype=object), WD, None),
         T, r"x must be an array of real numbers, got dtype object"),
    Case("dense-x-ragged", lambda: ops.dense([[1.0, 2.0, 3.0], [1.0]], WD, None), T,
         r"x must be an array of real numbers"),

    # ---- dense_backward --------------------------------------------------------------
    Case("dense_backward-dy-shape", lambda: ops.dense_backward(XD, WD, f32(2, 5)), V,
         r"dy must have shape \(2, 4\) .*got \(2, 5\)"),
    Case("dense_backward-dy-transposed", lambda: ops.dense_backward(XD, WD, DY_DENSE.T), V,
         r"dy must have shape \(2, 4\) .*got \(4, 2\)"),
    Case("dense_backward-features-mismatch", lambda: ops.dense_backward(XD, WD.T, DY_DENSE), V,
         r"w has 4 input features .* x has 3"),
    Case("dense_backward-empty-batch", lambda: ops.dense_backward(f32(0, 3), WD, f32(0, 4)), V,
         r"x must not be empty.*\(0, 3\)"),

    # ---- gemm: op(a) is 2x3, op(b) is 4x5 under every trans combination ---------------
    Case("gemm-inner-NN", lambda: ops.gemm(f32(2, 3), f32(4, 5)), V,
         r"inner dimensions differ: op\(a\) is 2x3 \(a has shape \(2, 3\), trans_a=False\) "
         r"but op\(b\) is 4x5 \(b has shape \(4, 5\), trans_b=False\)"),
    Case("gemm-inner-NT", lambda: ops.gemm(f32(2, 3), f32(5, 4), trans_b=True), V,
         r"op\(a\) is 2x3 .*trans_a=False.* op\(b\) is 4x5 \(b has shape \(5, 4\), trans_b=True\)"),
    Case("gemm-inner-TN", lambda: ops.gemm(f32(3, 2), f32(4, 5), trans_a=True), V,
         r"op\(a\) is 2x3 \(a has shape \(3, 2\), trans_a=True\) .*op\(b\) is 4x5"),
    Case("gemm-inner-TT", lambda: ops.gemm(f32(3, 2), f32(5, 4), trans_a=True, trans_b=True), V,
         r"op\(a\) is 2x3 .*trans_a=True.* op\(b\) is 4x5 .*trans_b=True"),
    Case("gemm-a-1d", lambda: ops.gemm(f32(3), f32(3, 2)), V,
         r"a must be a 2-D array \(M, K\), got shape \(3,\)"),
    Case("gemm-b-3d-transposed", lambda: ops.gemm(f32(2, 3), f32(1, 2, 3), trans_b=True), V,
         r"b must be a 2-D array \(N, K\), got shape \(1, 2, 3\)"),
    Case("gemm-trans_a-str", lambda: ops.gemm(f32(2, 3), f32(3, 2), trans_a="yes"), T,
         r"trans_a must be a bool, got str 'yes'"),
    Case("gemm-trans_b-int", lambda: ops.gemm(f32(2, 3), f32(2, 3), trans_b=1), T,
         r"trans_b must be a bool, got int 1"),
    Case("gemm-trans_b-none", lambda: ops.gemm(f32(2, 3), f32(3, 2), trans_b=None), T,
         r"trans_b must be a bool, got NoneType"),
    Case("gemm-empty", lambda: ops.gemm(f32(0, 3), f32(3, 2)), V,
         r"a must not be empty.*got shape \(0, 3\)"),
    Case("gemm-zero-inner", lambda: ops.gemm(f32(2, 0), f32(0, 2)), V,
         r"a must not be empty.*got shape \(2, 0\)"),
    Case("gemm-b-complex", lambda: ops.gemm(f32(2, 3), np.ones((3, 2), complex)), T,
         r"b must be an array of real numbers, got dtype complex128"),

    # ---- maxpool2d -------------------------------------------------------------------
    Case("maxpool2d-x-3d", lambda: ops.maxpool2d(X[0]), V,
         r"x must be a 4-D array \(N, H, W, C\), got shape \(5, 5, 3\)"),
    Case("maxpool2d-pool-0", lambda: ops.maxpool2d(X, pool_size=0), V,
         r"pool_size must be >= 1, got 0"),
    Case("maxpool2d-pool-negative", lambda: ops.maxpool2d(X, pool_size=-2), V,
         r"pool_size must be >= 1, got -2"),
    Case("maxpool2d-pool-pair-0", lambda: ops.maxpool2d(X, pool_size=(2, 0)), V,
         r"pool_size\[1\] must be >= 1, got 0"),
    Case("maxpool2d-pool-taller-than-input", lambda: ops.maxpool2d(X, pool_size=6), V,
         r"pool height \(6\) is larger than the input height \(5\)"),
    Case("maxpool2d-pool-wider-than-input", lambda: ops.maxpool2d(X, pool_size=(1, 6)), V,
         r"pool width \(6\) is larger than the input width \(5\)"),
    Case("maxpool2d-pool-float", lambda: ops.maxpool2d(X, pool_size=2.0), T,
         r"pool_size must be an int, got float 2\.0"),
    Case("maxpool2d-pool-triple", lambda: ops.maxpool2d(X, pool_size=(2, 2, 2)), V,
         r"pool_size must be an int or a pair .*got \(2, 2, 2\)"),
    Case("maxpool2d-stride-0", lambda: ops.maxpool2d(X, strides=0), V,
         r"strides must be >= 1, got 0"),
    Case("maxpool2d-stride-str", lambda: ops.maxpool2d(X, strides="1"), T,
         r"strides must be an int, got str '1'"),
    Case("maxpool2d-pool-huge", lambda: ops.maxpool2d(X, pool_size=10**30), V,
         r"pool_size must be <= \d+, got 10{30}"),
    # Each side passes the <= 2**30 check, their product trips a bare "pool_size is too large".
    Case("maxpool2d-pool-huge-area", lambda: ops.maxpool2d(X, pool_size=(2**16, 2**16)), V,
         r"pool.*65536"),
    Case("maxpool2d-empty-batch", lambda: ops.maxpool2d(f32(0, 4, 4, 3)), V,
         r"x must not be empty.*got shape \(0, 4, 4, 3\)"),
    Case("maxpool2d-zero-channels", lambda: ops.maxpool2d(f32(2, 4, 4, 0)), V,
         r"x must not be empty.*got shape \(2, 4, 4, 0\)"),
    Case("maxpool2d-x-str", lambda: ops.maxpool2d("pixels"), T,
         r"x must be an array of real numbers, got dtype <U6"),

    # ---- maxpool2d_backward ----------------------------------------------------------
    Case("maxpool2d_backward-dy-shape", lambda: ops.maxpool2d_backward(X, f32(2, 2, 2, 4)), V,
         r"dy must have shape \(2, 2, 2, 3\) .*got \(2, 2, 2, 4\)"),
    Case("maxpool2d_backward-dy-unpooled", lambda: ops.maxpool2d_backward(X, X), V,
         r"dy must have shape \(2, 2, 2, 3\) .*got \(2, 5, 5, 3\)"),
    Case("maxpool2d_backward-dy-for-stride",
         lambda: ops.maxpool2d_backward(X, DY_POOL, strides=1), V,
         r"dy must have shape \(2, 4, 4, 3\) .*got \(2, 2, 2, 3\)"),
    Case("maxpool2d_backward-pool-too-big",
         lambda: ops.maxpool2d_backward(X, DY_POOL, pool_size=(6, 1)), V,
         r"pool height \(6\) is larger than the input height \(5\)"),
    Case("maxpool2d_backward-stride-negative",
         lambda: ops.maxpool2d_backward(X, DY_POOL, strides=(-1, 2)), V,
         r"strides\[0\] must be >= 1, got -1"),
    Case("maxpool2d_backward-x-3d", lambda: ops.maxpool2d_backward(X[0], DY_POOL), V,
         r"x must be a 4-D array .*got shape \(5, 5, 3\)"),

    # ---- relu / relu_backward --------------------------------------------------------
    Case("relu-empty", lambda: ops.relu(f32(0)), V, r"x must not be empty, got shape \(0,\)"),
    Case("relu-zero-dim", lambda: ops.relu(f32(3, 0, 2)), V,
         r"x must not be empty, got shape \(3, 0, 2\)"),
    Case("relu-str", lambda: ops.relu("abc"), T,
         r"x must be an array of real numbers, got dtype <U3"),
    Case("relu-none", lambda: ops.relu(None), T,
         r"x must be an array of real numbers, got dtype object"),
    Case("relu-complex", lambda: ops.relu(np.ones(3, complex)), T,
         r"x must be an array of real numbers, got dtype complex128"),
    Case("relu-datetime", lambda: ops.relu(np.array(["2020-01-01"], "datetime64[D]")), T,
         r"x must be an array of real numbers, got dtype datetime64"),
    Case("relu-int-too-big-for-any-dtype", lambda: ops.relu([2**70]), T,
         r"x must be an array of real numbers, got dtype object"),
    Case("relu-ragged", lambda: ops.relu([[1.0, 2.0], [3.0]]), T,
         r"x must be an array of real numbers"),
    Case("relu_backward-dy-shape", lambda: ops.relu_backward(X, f32(2, 5, 5, 4)), V,
         r"dy must have shape \(2, 5, 5, 3\) \(the shape of x\), got \(2, 5, 5, 4\)"),
    # Broadcastable is not enough: dy must match x exactly.
    Case("relu_backward-dy-broadcastable", lambda: ops.relu_backward(X, X[:1]), V,
         r"dy must have shape \(2, 5, 5, 3\) .*got \(1, 5, 5, 3\)"),
    Case("relu_backward-empty", lambda: ops.relu_backward(f32(0, 3), f32(0, 3)), V,
         r"x must not be empty, got shape \(0, 3\)"),
    Case("relu_backward-dy-none", lambda: ops.relu_backward(X, None), T,
         r"dy must be an array of real numbers"),

    # ---- softmax_cross_entropy -------------------------------------------------------
    Case("sce-logits-1d", lambda: ops.softmax_cross_entropy(LOGITS[0], [0]), V,
         r"logits must be a 2-D array \(N, classes\), got shape \(3,\)"),
    Case("sce-logits-3d", lambda: ops.softmax_cross_entropy(LOGITS[None], LABELS), V,
         r"logits must be a 2-D array .*got shape \(1, 2, 3\)"),
    Case("sce-empty-batch", lambda: ops.softmax_cross_entropy(f32(0, 3), np.zeros(0, int)), V,
         r"logits must not be empty.*got shape \(0, 3\)"),
    Case("sce-zero-classes", lambda: ops.softmax_cross_entropy(f32(2, 0), LABELS), V,
         r"logits must not be empty.*got shape \(2, 0\)"),
    Case("sce-labels-fraction", lambda: ops.softmax_cross_entropy(LOGITS, [0, 1.5]), V,
         r"labels must be integer class indices, got .*1\.5.* at index 1"),
    Case("sce-labels-nan", lambda: ops.softmax_cross_entropy(LOGITS, [np.nan, 1.0]), V,
         r"labels must be integer class indices, got .*nan.* at index 0"),
    Case("sce-labels-negative", lambda: ops.softmax_cross_entropy(LOGITS, [0, -1]), V,
         r"labels\[1\] = -1 is out of range: expected 0 <= label < 3"),
    Case("sce-labels-equal-classes", lambda: ops.softmax_cross_entropy(LOGITS, [3, 0]), V,
         r"labels\[0\] = 3 is out of range: expected 0 <= label < 3"),
    Case("sce-labels-too-short", lambda: ops.softmax_cross_entropy(LOGITS, [0]), V,
         r"labels must have shape \(2,\) .*got \(1,\)"),
    Case("sce-labels-too-long", lambda: ops.softmax_cross_entropy(LOGITS, [0, 1, 2]), V,
         r"labels must have shape \(2,\) .*got \(3,\)"),
    Case("sce-labels-one-hot", lambda: ops.softmax_cross_entropy(LOGITS, np.eye(3)[LABELS]), V,
         r"labels must be integer class indices of shape \(N,\), got shape \(2, 3\).*argmax"),
    Case("sce-labels-bool", lambda: ops.softmax_cross_entropy(LOGITS, [True, False]), T,
         r"labels must be integer class indices, got dtype bool"),
    Case("sce-labels-str", lambda: ops.softmax_cross_entropy(LOGITS, ["cat", "dog"]), T,
         r"labels must be integer class indices, got dtype <U3"),
    Case("sce-labels-none", lambda: ops.softmax_cross_entropy(LOGITS, None), T,
         r"labels must be integer class indices, got dtype object"),
    # float -> int64 and uint64 -> int64 casts wrap: the message then shows INT64_MIN.
    Case("sce-labels-huge-float", lambda: ops.softmax_cross_entropy(LOGITS, [0, 1e20]), V,
         r"labels.*(1e\+20|100000000000000000000)"),
    Case("sce-labels-huge-uint64",
         lambda: ops.softmax_cross_entropy(LOGITS, np.array([0, 2**63], np.uint64)), V,
         r"labels.*(?<!-)9223372036854775808"),
    Case("sce-logits-nan", lambda: ops.softmax_cross_entropy([[0, np.nan, 0], [0, 0, 0]], LABELS),
         V, r"logits must be finite, got nan at flat index 1"),
    Case("sce-logits-inf", lambda: ops.softmax_cross_entropy([[0, 0, 0], [0, 0, np.inf]], LABELS),
         V, r"logits must be finite, got inf at flat index 5"),
    Case("sce-logits-neg-inf", lambda: ops.softmax_cross_entropy([[-np.inf, 0, 0], [0, 0, 0]],
                                                                 LABELS),
         V, r"logits must be finite, got -inf at flat index 0"),
    Case("sce-logits-str", lambda: ops.softmax_cross_entropy("logits", LABELS), T,
         r"logits must be an array of real numbers"),

    # ---- softmax, dropout ------------------------------------------------------------
    Case("softmax-1d", lambda: ops.softmax(LOGITS[0]), V,
         r"logits must be a 2-D array \(N, classes\), got shape \(3,\)"),
    Case("softmax-nan", lambda: ops.softmax(np.array([[0.0, np.nan]])), V,
         r"logits must be finite, got nan at flat index 1"),
    Case("softmax-str", lambda: ops.softmax("z"), T, r"logits must be an array of real numbers"),
    Case("dropout-rate-one", lambda: ops.dropout(XD, 1.0), V, r"rate must be in \[0, 1\), got 1\.0"),
    Case("dropout-rate-negative", lambda: ops.dropout(XD, -0.1), V, r"rate must be in \[0, 1\)"),
    Case("dropout-rate-str", lambda: ops.dropout(XD, "half"), T, r"rate must be a real number"),
    Case("dropout-seed-negative", lambda: ops.dropout(XD, 0.5, seed=-1), V,
         r"seed must be in \[0, 18446744073709551615\], got -1"),
    Case("dropout-iteration-float", lambda: ops.dropout(XD, 0.5, iteration=1.5), T,
         r"iteration must be an int, got float 1\.5"),
    Case("dropout-empty", lambda: ops.dropout(f32(0, 3), 0.5), V, r"x must not be empty"),

    # ---- sgd_update ------------------------------------------------------------------
    Case("sgd_update-velocity-missing", lambda: sgd(velocity=None), V,
         r"velocity must be an array when momentum is not 0"),
    Case("sgd_update-velocity-shape", lambda: sgd(velocity=np.zeros((4, 3), np.float32)), V,
         r"velocity must have shape \(3, 4\) \(the shape of param\), got \(4, 3\)"),
    Case("sgd_update-param-read-only", lambda: sgd(param=read_only(f32(3, 4))), V,
         r"param must be writable \(sgd_update updates it in place\)"),
    Case("sgd_update-grad-shape", lambda: sgd(grad=f32(3, 5)), V,
         r"grad must have shape \(3, 4\) .*got \(3, 5\)"),
    Case("sgd_update-momentum-above-one", lambda: sgd(momentum=1.5), V,
         r"momentum must be in \[0, 1\], got 1\.5"),
    Case("sgd_update-lr-nan", lambda: sgd(lr=float("nan")), V, r"lr must be a finite real number"),
    Case("sgd_update-nesterov-int", lambda: sgd(nesterov=1), T, r"nesterov must be"),

    # ---- adam_update -----------------------------------------------------------------
    Case("adam-param-list", lambda: adam(param=[[0.0] * 4] * 3), T,
         r"param must be a NumPy array .*got list"),
    Case("adam-param-read-only", lambda: adam(param=read_only(f32(3, 4))), V,
         r"param must be writable"),
    Case("adam-param-int", lambda: adam(param=np.zeros((3, 4), np.int64)), T,
         r"param must be a floating-point array, got dtype int64"),
    Case("adam-param-complex", lambda: adam(param=np.zeros((3, 4), complex)), T,
         r"param must be a floating-point array, got dtype complex128"),
    Case("adam-param-empty", lambda: adam(param=f32(0, 4), grad=f32(0, 4),
                                          m=f32(0, 4), v=f32(0, 4)), V,
         r"param must not be empty, got shape \(0, 4\)"),
    Case("adam-m-read-only", lambda: adam(m=read_only(np.zeros((3, 4), np.float32))), V,
         r"m must be writable"),
    Case("adam-m-shape", lambda: adam(m=np.zeros((4, 3), np.float32)), V,
         r"m must have shape \(3, 4\) \(the shape of param\), got \(4, 3\)"),
    Case("adam-v-shape", lambda: adam(v=np.zeros(12, np.float32)), V,
         r"v must have shape \(3, 4\) .*got \(12,\)"),
    Case("adam-v-list", lambda: adam(v=[0.0] * 12), T, r"v must be a NumPy array .*got list"),
    Case("adam-grad-shape", lambda: adam(grad=f32(3, 5)), V,
         r"grad must have shape \(3, 4\) .*got \(3, 5\)"),
    Case("adam-grad-str", lambda: adam(grad="g"), T, r"grad must be an array of real numbers"),
    Case("adam-step-0", lambda: adam(step=0), V, r"step must be >= 1 .*got 0"),
    Case("adam-step-negative", lambda: adam(step=-3), V, r"step must be >= 1 .*got -3"),
    Case("adam-step-float", lambda: adam(step=1.0), T, r"step must be an int, got float 1\.0"),
    Case("adam-step-bool", lambda: adam(step=True), T, r"step must be an int, got bool True"),
    Case("adam-beta_1-one", lambda: adam(beta_1=1.0), V, r"beta_1 must be in \[0, 1\), got 1"),
    Case("adam-beta_1-negative", lambda: adam(beta_1=-0.1), V,
         r"beta_1 must be in \[0, 1\), got -0\.1"),
    Case("adam-beta_2-one", lambda: adam(beta_2=1), V, r"beta_2 must be in \[0, 1\), got 1"),
    Case("adam-lr-str", lambda: adam(lr="x"), T, r"lr must be a real number, got str 'x'"),
    Case("adam-lr-none", lambda: adam(lr=None), T, r"lr must be a real number, got NoneType"),
    Case("adam-lr-nan", lambda: adam(lr=float("nan")), V, r"lr must be finite, got nan"),
    Case("adam-lr-inf", lambda: adam(lr=float("inf")), V, r"lr must be finite, got inf"),
    Case("adam-epsilon-negative", lambda: adam(epsilon=-1), V,
         r"epsilon must be >= 0 and finite, got -1"),
    Case("adam-epsilon-nan", lambda: adam(epsilon=float("nan")), V,
         r"epsilon must be >= 0 and finite, got nan"),
    Case("adam-lr-int-beyond-float", lambda: adam(lr=10**400), (T, V), r"lr"),

    # ---- activations ------------------------------------------------------------------
    Case("activation-unknown-kind", lambda: ops.activation(XD, "swishy"), V,
         r"kind must be one of 'linear', 'relu'.*got 'swishy'"),
    Case("activation-softmax", lambda: ops.activation(XD, "softmax"), V,
         r"kind 'softmax' is not element-wise: use softmax"),
    Case("activation-alpha-nan", lambda: ops.activation(XD, "elu", alpha=float("nan")), V,
         r"alpha must be finite in float32, got nan"),
    Case("activation_backward-dy-shape", lambda: ops.activation_backward(XD, f32(3), "tanh"), V,
         r"dy must have shape \(2, 3\) \(the shape of x\), got \(3,\)"),
    Case("activation_backward-kind-int", lambda: ops.activation_backward(XD, XD, 3), T,
         r"kind must be an activation's name \(a str\), got int 3"),
    Case("softmax_backward-1d", lambda: ops.softmax_backward(f32(3), f32(3)), V,
         r"y must be a 2-D array \(N, classes\), got shape \(3,\)"),
    Case("softmax_backward-dy-shape", lambda: ops.softmax_backward(LOGITS, f32(2, 4)), V,
         r"dy must have shape \(2, 3\) \(the shape of y\), got \(2, 4\)"),

    # ---- average pooling and batch normalisation ---------------------------------------
    Case("avgpool2d-x-3d", lambda: ops.avgpool2d(X[0]), V,
         r"x must be a 4-D array \(N, H, W, C\), got shape \(5, 5, 3\)"),
    Case("avgpool2d-padding-full", lambda: ops.avgpool2d(X, padding="full"), V,
         r"padding must be 'valid' or 'same', got 'full'"),
    Case("avgpool2d-pool-0", lambda: ops.avgpool2d(X, pool_size=0), V,
         r"pool_size must be >= 1, got 0"),
    Case("avgpool2d_backward-dy-shape", lambda: ops.avgpool2d_backward(X, DY_CONV), V,
         r"dy must have shape \(2, 2, 2, 3\) \(the shape of avgpool2d's output\)"),
    Case("batchnorm-gamma-length", lambda: ops.batchnorm(XD, f32(2), f32(3), f32(3),
                                                         np.ones(3, np.float32)), V,
         r"gamma must have shape \(3,\) \(one value per channel"),
    Case("batchnorm-epsilon-0", lambda: ops.batchnorm(XD, None, None, f32(3),
                                                      np.ones(3, np.float32), epsilon=0), V,
         r"epsilon must be > 0, got 0"),
    Case("batchnorm-momentum-2", lambda: ops.batchnorm(XD, None, None, f32(3),
                                                       np.ones(3, np.float32), momentum=2), V,
         r"momentum must be in \[0, 1\], got 2"),
    Case("batchnorm-x-1d", lambda: ops.batchnorm(f32(4), None, None, f32(4),
                                                 np.ones(4, np.float32)), V,
         r"x must have at least 2 dimensions"),
    Case("batchnorm_backward-dy-shape", lambda: ops.batchnorm_backward(XD, f32(3), f32(3), f32(3),
                                                                       f32(2, 2)), V,
         r"dy must have shape \(2, 3\) \(the shape of x\), got \(2, 2\)"),

    # ---- losses ------------------------------------------------------------------------
    Case("categorical_cross_entropy-targets-shape",
         lambda: ops.categorical_cross_entropy(LOGITS, f32(2, 4)), V,
         r"targets must have shape \(2, 3\) \(one target per element of logits\), got \(2, 4\)"),
    Case("categorical_cross_entropy-targets-nan",
         lambda: ops.categorical_cross_entropy(LOGITS, np.full((2, 3), np.nan)), V,
         r"targets must be finite, got nan"),
    Case("sigmoid_cross_entropy-targets-shape",
         lambda: ops.sigmoid_cross_entropy(LOGITS, f32(3, 2)), V,
         r"targets must have shape \(2, 3\)"),
    Case("regression_loss-kind", lambda: ops.regression_loss(LOGITS, LOGITS, "hinge"), V,
         r"kind must be 'mean_squared_error', 'mean_absolute_error' or 'huber', got 'hinge'"),
    Case("regression_loss-delta-0", lambda: ops.regression_loss(LOGITS, LOGITS, "huber", delta=0),
         V, r"delta must be > 0"),
    Case("regression_loss-targets-shape",
         lambda: ops.regression_loss(LOGITS, f32(2, 2), "mean_squared_error"), V,
         r"targets must have shape \(2, 3\) \(one target per element of y\)"),

    # ---- augmentation ------------------------------------------------------------------
    Case("augment-x-3d", lambda: ops.augment(f32(5, 5, 3), {"mode": "flip", "flip_horizontal": True,
                                                            "flip_vertical": False}), V,
         r"x must be a 4-D array \(N, H, W, C\), got shape \(5, 5, 3\)"),
    Case("augment-spec-list", lambda: ops.augment(X, ["flip"]), T, r"spec must be a dict"),
    Case("augment-mode-unknown", lambda: ops.augment(X, {"mode": "shear"}), V,
         r"'mode' must be 'flip', 'translation', 'rotation', 'zoom', 'crop' or 'contrast', "
         r"got 'shear'"),
    Case("augment-mode-missing", lambda: ops.augment(X, {"rotation": [0, 1]}), V,
         r"'mode' is missing"),
    Case("augment-rotation-missing", lambda: ops.augment(X, {"mode": "rotation"}), V,
         r"'rotation' is missing"),
    Case("augment-rotation-unordered", lambda: ops.augment(X, {"mode": "rotation",
                                                               "rotation": [0.2, -0.2]}), V,
         r"'rotation' must be ordered \[lo, hi\]"),
    Case("augment-zoom-minus-one", lambda: ops.augment(X, {"mode": "zoom",
                                                           "zoom_height": [-1, 0.5]}), V,
         r"'zoom_height' values must be in \(-1, 1\]"),
    Case("augment-translate-nan",
         lambda: ops.augment(X, {"mode": "translation", "translate_height": [0, float("nan")],
                                 "translate_width": [0, 0]}), V,
         r"'translate_height' must be finite"),
    Case("augment-crop-zero", lambda: ops.augment(X, {"mode": "crop", "crop": [0, 3]}), V,
         r"'crop' must be \[height, width\] with each >= 1"),
    Case("augment-contrast-range", lambda: ops.augment(X, {"mode": "contrast",
                                                           "contrast": [0.5, 1.5]}), V,
         r"'contrast' values must be in \[0, 1\]"),
    Case("augment-fill-mode", lambda: ops.augment(X, {"mode": "rotation", "rotation": [0, 0.1],
                                                      "fill_mode": "mirror"}), V,
         r"'fill_mode' must be 'reflect', 'wrap', 'constant' or 'nearest', got 'mirror'"),
    Case("augment-interpolation", lambda: ops.augment(X, {"mode": "zoom", "zoom_height": [0, 0.1],
                                                          "interpolation": "bicubic"}), V,
         r"'interpolation' must be 'bilinear' or 'nearest', got 'bicubic'"),
    Case("augment-flip-str", lambda: ops.augment(X, {"mode": "flip", "flip_horizontal": "yes",
                                                     "flip_vertical": True}), V,
         r"'flip_horizontal' must be a bool, got str"),
    Case("augment-stream-negative", lambda: ops.augment(X, {"mode": "flip", "flip_horizontal": True,
                                                            "flip_vertical": True}, stream=-1), V,
         r"stream must be in \[0, 18446744073709551615\], got -1"),
    Case("augment-training-str", lambda: ops.augment(X, {"mode": "flip", "flip_horizontal": True,
                                                         "flip_vertical": True}, training="no"), T,
         r"training must be a bool"),

    # ---- threads and ISA -------------------------------------------------------------
    Case("set_num_threads-0", lambda: fastnn.set_num_threads(0), V,
         r"num_threads must be >= 1, got 0"),
    Case("set_num_threads-negative", lambda: fastnn.set_num_threads(-1), V,
         r"num_threads must be >= 1, got -1"),
    Case("set_num_threads-str", lambda: fastnn.set_num_threads("2"), T,
         r"set_num_threads: n must be an int, got str"),
    Case("set_num_threads-float", lambda: fastnn.set_num_threads(2.0), T,
         r"set_num_threads: n must be an int, got float"),
    Case("set_num_threads-bool", lambda: fastnn.set_num_threads(True), T,
         r"set_num_threads: n must be an int, got bool"),
    Case("set_num_threads-too-many", lambda: fastnn.set_num_threads(2000), V,
         r"num_threads must be <= 1024, got 2000"),
    Case("set_num_threads-beyond-int32", lambda: fastnn.set_num_threads(10**10), V,
         r"num_threads must be <= 1024, got 10000000000"),
    Case("set_cpu_isa-unknown", lambda: fastnn.set_cpu_isa("sse9"), V,
         r"unknown CPU ISA path 'sse9' \(expected one of: portable"),
    Case("set_cpu_isa-empty", lambda: fastnn.set_cpu_isa(""), V,
         r"unknown CPU ISA path '' \(expected one of: portable"),
    Case("set_cpu_isa-none", lambda: fastnn.set_cpu_isa(None), T,
         r"set_cpu_isa: name must be a str, got NoneType"),
]

assert len({case.id for case in CASES}) == len(CASES), "duplicate case ids"


@pytest.mark.usefixtures("restore_runtime")
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_argument(case):
    with pytest.raises(case.exc, match=case.match):
        case.call()


def test_every_ops_function_is_covered():
    names = {case.id.split("-")[0] for case in CASES}
    names = {"softmax_cross_entropy" if n == "sce" else "adam_update" if n == "adam" else n
             for n in names}
    assert set(ops.__all__) <= names


# The script loads this file by path (it is not importable as a package module) and
# makes every bad call; a segfault or abort shows up as a non-zero return code. The id
# of each case goes to stderr first, so the last one printed names the culprit.
CRASH_SCRIPT = textwrap.dedent("""
    import importlib.util, sys
    spec = importlib.util.spec_from_file_location("fastnn_error_cases", sys.argv[1])
    cases = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cases)
    for case in cases.CASES:
        print(case.id, file=sys.stderr, flush=True)
        try:
            case.call()
        except Exception:
            pass
    print("ALIVE")
""")


def test_bad_arguments_do_not_crash_the_interpreter():
    result = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, __file__],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (
        f"interpreter died (rc {result.returncode}); last case started:\n"
        + "\n".join(result.stderr.splitlines()[-5:]))
    assert "ALIVE" in result.stdout.splitlines()


def good_results():
    loss, dlogits = ops.softmax_cross_entropy(LOGITS, LABELS)
    return [ops.conv2d(X, W, B), *ops.conv2d_backward(X, W, DY_CONV), ops.dense(XD, WD, None),
            ops.maxpool2d(X), np.float64(loss), dlogits]


@pytest.mark.usefixtures("restore_runtime")
def test_errors_leave_no_state_behind():
    before = good_results()
    for case in CASES:
        try:
            case.call()
        except Exception:
            pass
        np.testing.assert_array_equal(ops.conv2d(X, W, B), before[0], err_msg=case.id)
    for got, want in zip(good_results(), before):
        assert np.array_equal(got, want)


def test_failed_adam_update_changes_nothing():
    for param in (f32(3, 4), f32(3, 4).astype(np.float64), f32(3, 8)[:, ::2]):
        saved = param.copy()
        m, v = np.ones((3, 4), np.float32), np.ones((3, 4), np.float32)
        with pytest.raises(ValueError, match="grad must have shape"):
            ops.adam_update(param, f32(4, 3), m, v, 1)
        assert np.array_equal(param, saved)
        assert (m == 1).all() and (v == 1).all()


def test_kernel_larger_than_input_is_fine_with_same_padding():
    x, w, b = f32(2, 3, 3, 2), f32(5, 5, 2, 4, seed=1), f32(4, seed=2)
    for strides, out_hw in (((1, 1), (3, 3)), ((2, 2), (2, 2)), ((1, 3), (3, 1))):
        y = ops.conv2d(x, w, b, strides=strides, padding="same")
        assert y.shape == (2, *out_hw, 4)
        np.testing.assert_allclose(y, ref.conv2d(x, w, b, strides, "same"), rtol=1e-5, atol=1e-5)
        dx, dw, db = ops.conv2d_backward(x, w, np.ones_like(y), strides=strides, padding="same")
        assert (dx.shape, dw.shape, db.shape) == (x.shape, w.shape, b.shape)


def test_padding_is_case_insensitive_as_in_keras():
    np.testing.assert_array_equal(ops.conv2d(X, W, B, padding="SAME"),
                                  ops.conv2d(X, W, B, padding="same"))


# ---------------------------------------------------------------------------------------
# Conversions: any real dtype and any layout is converted, and gives the same bits.
# ---------------------------------------------------------------------------------------

def strided(a):
    """A non-contiguous view holding a's values: every other column of a wider array."""
    a = np.asarray(a)
    if a.ndim == 1:
        wide = np.zeros(2 * a.shape[0], a.dtype)
        wide[::2] = a
        return wide[::2]
    wide = np.zeros((a.shape[0], 2 * a.shape[1], *a.shape[2:]), a.dtype)
    wide[:, ::2] = a
    return wide[:, ::2]


VARIANTS = {
    "float64": lambda a: a.astype(np.float64),
    "fortran": np.asfortranarray,
    "strided": strided,
    "int": lambda a: a.astype(np.int32),  # the inputs are rounded first for this one
    "list": lambda a: a.tolist(),
}

# name -> (float inputs, call). Only the float inputs are converted; labels stay int.
OPS = {
    "conv2d": ((X, W, B), lambda x, w, b: ops.conv2d(x, w, b, strides=(2, 1), padding="same")),
    "conv2d_backward": ((X, W, DY_CONV), ops.conv2d_backward),
    "dense": ((XD, WD, f32(4, seed=2)), ops.dense),
    "dense_backward": ((XD, WD, DY_DENSE), ops.dense_backward),
    "gemm": ((f32(7, 3), f32(5, 3, seed=1)), lambda a, b: ops.gemm(a, b, trans_b=True)),
    "maxpool2d": ((X,), lambda x: ops.maxpool2d(x, pool_size=(2, 3), strides=1)),
    "maxpool2d_backward": ((X, DY_POOL), ops.maxpool2d_backward),
    "relu": ((X,), ops.relu),
    "relu_backward": ((X, f32(2, 5, 5, 3, seed=1)), ops.relu_backward),
    "softmax_cross_entropy": ((LOGITS,), lambda z: ops.softmax_cross_entropy(z, LABELS)),
}


def as_list(result):
    return list(result) if isinstance(result, tuple) else [result]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("op", OPS)
def test_converted_inputs_give_identical_results(op, variant):
    inputs, call = OPS[op]
    if variant == "int":
        inputs = [np.round(4 * a) for a in inputs]  # still float32, now integer-valued
    converted = [VARIANTS[variant](a) for a in inputs]
    if variant in ("fortran", "strided"):
        assert any(not c.flags.c_contiguous for c in converted)
    expected, got = as_list(call(*inputs)), as_list(call(*converted))
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert np.array_equal(g, e), f"{op} with {variant} inputs differs"
        if isinstance(e, np.ndarray):
            assert g.dtype == np.float32 and g.flags.c_contiguous


@pytest.mark.parametrize("labels", [[0, 2], np.array([0, 2], np.int32), np.array([0, 2], np.uint8),
                                    np.array([0.0, 2.0]), strided(np.array([0, 2]))],
                         ids=["list", "int32", "uint8", "integral-float", "strided"])
def test_label_conversions(labels):
    expected = ops.softmax_cross_entropy(LOGITS, LABELS)
    got = ops.softmax_cross_entropy(LOGITS, labels)
    assert got[0] == expected[0] and np.array_equal(got[1], expected[1])


def test_read_only_inputs_are_accepted():
    assert np.array_equal(ops.conv2d(read_only(X), read_only(W), read_only(B)), ops.conv2d(X, W, B))


def test_relu_keeps_a_scalar_shape():
    assert ops.relu(np.float32(-2.0)).shape == ()


def adam_state():
    rng = np.random.default_rng(5)
    param, grad, m = (rng.standard_normal((3, 4)).astype(np.float32) for _ in range(3))
    v = rng.random((3, 4)).astype(np.float32)
    return param, grad, m, v


def test_adam_update_converts_and_writes_back():
    kwargs = dict(step=3, lr=0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-6)
    expected = [a.copy() for a in adam_state()]
    ops.adam_update(*expected, **kwargs)
    e_param, _, e_m, e_v = expected

    # float64 param, m and v (and grad): updated in place, same values as float32 would get.
    param, grad, m, v = (a.astype(np.float64) for a in adam_state())
    ops.adam_update(param, grad, m, v, **kwargs)
    for got, want in ((param, e_param), (m, e_m), (v, e_v)):
        assert got.dtype == np.float64
        assert np.array_equal(got.astype(np.float32), want)

    # Non-contiguous float32 views: the viewed elements change, the others do not.
    wides = []
    for a in adam_state():
        wide = np.full((3, 8), 7.0, np.float32)
        wide[:, ::2] = a
        wides.append(wide)
    ops.adam_update(*(w[:, ::2] for w in wides), **kwargs)
    for wide, want in ((wides[0], e_param), (wides[2], e_m), (wides[3], e_v)):
        assert np.array_equal(wide[:, ::2], want)
        assert (wide[:, 1::2] == 7.0).all()

    # A Fortran-order param with C-order m and v.
    param, grad, m, v = adam_state()
    param = np.asfortranarray(param)
    ops.adam_update(param, grad, m, v, **kwargs)
    assert np.array_equal(param, e_param) and np.array_equal(m, e_m) and np.array_equal(v, e_v)
