"""Whole epochs in one engine call (net.dataset / train_steps / step_results, the loop
model.fit drives on both engines): the shuffled order against its NumPy reference, runs of
steps against the same batches fed one train_step at a time (bit for bit), the short last
batch, evaluation and prediction by batches, the device argument, and bad calls.
"""
import numpy as np
import pytest

import fastnn
from fastnn import _C, layers, models
from fastnn.reference_net import shuffle_order
from test_engine import FLATTEN, adam, batch, conv, dense, dropout, init_weights, pool, snapshot

SPEC = [conv(4), pool(), FLATTEN, dropout(0.25), dense(8), dense(5, "softmax")]
SHAPE = (9, 9, 2)


def make_nets(count=2, layers_=SPEC, optimizer=None):
    nets = [_C.Net(layers_, SHAPE, optimizer or adam()) for _ in range(count)]
    init_weights(nets)
    for net in nets:
        net.seed(7)
    return nets


# ---- the epoch's order -----------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 3, 5, 16, 17, 100, 1000, 60000])
def test_shuffle_order_is_a_permutation_matching_the_reference(n):
    for key in (0, 1, 2**63 - 1):
        order = _C.shuffle_order(key, n)
        assert order.dtype == np.int64 and order.shape == (n,)
        np.testing.assert_array_equal(np.sort(order), np.arange(n))
        np.testing.assert_array_equal(order, shuffle_order(key, n))


def test_shuffle_order_depends_on_the_key():
    orders = {tuple(_C.shuffle_order(key, 1000)) for key in range(20)}
    assert len(orders) == 20
    # Not close to the identity: few samples keep their place.
    assert (_C.shuffle_order(3, 1000) == np.arange(1000)).sum() < 20


# ---- runs of steps ----------------------------------------------------------------------

@pytest.mark.parametrize("key", [None, 12345])
def test_train_steps_equal_train_step_on_the_same_batches(key):
    x, y = batch(SHAPE, 5, 100, seed=3)
    runs, single = make_nets()
    data = runs.dataset(x, y)
    assert len(data) == 100
    # 100 samples in batches of 32: steps of 32, 32, 32 and a short last one of 4.
    runs.train_steps(data, 32, key, 0, 3)
    runs.train_steps(data, 32, key, 3, 1)
    losses, correct = runs.step_results(0, 4)
    assert losses.dtype == np.float32 and correct.dtype == np.int32
    order = np.arange(100) if key is None else shuffle_order(key, 100)
    for step, start in enumerate(range(0, 100, 32)):
        rows = order[start:start + 32]
        loss, right = single.train_step(x[rows], y[rows])
        assert losses[step] == np.float32(loss) and correct[step] == right
    assert runs.iterations == single.iterations == 4
    for a, b in zip(snapshot(runs), snapshot(single)):
        np.testing.assert_array_equal(a, b)


def test_evaluate_and_predict_steps_equal_per_batch_calls():
    x, y = batch(SHAPE, 5, 70, seed=4)
    net, = make_nets(1)
    data = net.dataset(x, y)
    loss_sums, correct = net.evaluate_steps(data, 32, 0, 3)
    assert loss_sums.dtype == np.float64 and correct.dtype == np.int32
    for step, start in enumerate(range(0, 70, 32)):
        loss_sum, right = net.evaluate(x[start:start + 32], y[start:start + 32])
        assert loss_sums[step] == loss_sum and correct[step] == right
    np.testing.assert_array_equal(net.predict_steps(net.dataset(x), 32, 1, 2), net.predict(x[32:]))
    assert net.iterations == 0


@pytest.mark.parametrize("call, message", [
    (lambda net, d, x: net.train_steps(d, 32, None, 0, 5), r"steps \[0, 5\) are outside the epoch"),
    (lambda net, d, x: net.train_steps(d, 32, None, -1, 1), "outside the epoch"),
    (lambda net, d, x: net.train_steps(d, 0, None, 0, 1), "batch_size must be >= 1, got 0"),
    (lambda net, d, x: net.train_steps(net.dataset(x), 32, None, 0, 1), "has no labels"),
    (lambda net, d, x: net.evaluate_steps(d, 32, 3, 2), "outside the epoch"),
    (lambda net, d, x: net.step_results(0, 1), "were not run"),
    (lambda net, d, x: net.dataset(x[..., :1]), r"x must have shape \(N, 9, 9, 2"),
    (lambda net, d, x: net.dataset(x, np.array([0, 1, 9] * 33 + [0])),
     r"labels\[2\] = 9 is out of range"),
])
def test_bad_steps_raise_value_error(call, message):
    x, y = batch(SHAPE, 5, 100, seed=5)
    net, = make_nets(1)
    with pytest.raises(ValueError, match=message):
        call(net, net.dataset(x, y), x)
    assert net.iterations == 0


# ---- the device argument -----------------------------------------------------------------

def tiny_model():
    model = models.Sequential([layers.Input((6, 6, 1)), layers.Conv2D(2, 3, activation="relu"),
                               layers.Flatten(), layers.Dense(3, activation="softmax")])
    return model


HAS_GPU = fastnn.build_info()["cuda_devices"] > 0


def test_compile_device_auto_picks_what_this_machine_has():
    model = tiny_model()
    model.compile("adam", "sparse_categorical_crossentropy", device="auto")
    assert model.device == ("cuda" if HAS_GPU else "cpu")
    model.compile("adam", "sparse_categorical_crossentropy", device="cpu")
    assert model.device == "cpu" and model._net.device == "cpu"


@pytest.mark.skipif(HAS_GPU, reason="this process has a GPU")
def test_compile_device_cuda_without_gpu_refuses_and_keeps_the_model():
    model = tiny_model()
    model.compile("adam", "sparse_categorical_crossentropy", device="cpu")
    weights = model.get_weights()
    with pytest.raises(RuntimeError, match="device='cuda'"):
        model.compile("adam", "sparse_categorical_crossentropy", device="cuda")
    assert model.device == "cpu"
    for a, b in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(a, b)
    x = np.zeros((4, 6, 6, 1), np.float32)
    model.fit(x, np.zeros(4, int), verbose=0)  # still trains on the CPU


@pytest.mark.parametrize("device", ["gpu", "CUDA", None, 0])
def test_compile_bad_device_names_the_argument(device):
    with pytest.raises(ValueError, match="device must be 'auto', 'cpu' or 'cuda'"):
        tiny_model().compile("adam", "sparse_categorical_crossentropy", device=device)
