"""The C++ training engine fastnn._C.Net against its NumPy specification ReferenceNet.

Both nets are built from the same spec and given the same random weights; the engine runs in
float32, ReferenceNet in float64 on the same float32 inputs, and after each train_step the
losses, correct counts, parameters and optimizer state must agree to
||engine - ref|| / ||ref|| < 1e-4 per array (several Adam steps amplify float32 rounding, so
this is looser than the 1e-5 of the single-op tests). Also: shapes, predict / evaluate,
dropout masks and seeds, determinism, and ValueErrors on bad specs and batches. A finite
difference check of ReferenceNet's gradients keeps the specification itself honest.
"""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastnn

from fastnn._C import Net
from fastnn.reference_net import ReferenceNet, dropout_keep_mask

TOLERANCE = 1e-4


# ---- specs --------------------------------------------------------------------------------

def conv(filters, kernel=(3, 3), strides=(1, 1), padding="valid", activation="relu",
         use_bias=True):
    return {"type": "conv2d", "filters": filters, "kernel_size": kernel, "strides": strides,
            "padding": padding, "activation": activation, "use_bias": use_bias}


def pool(size=(2, 2), strides=None):
    return {"type": "maxpool2d", "pool_size": size, "strides": strides or size}


def dense(units, activation="relu", use_bias=True):
    return {"type": "dense", "units": units, "activation": activation, "use_bias": use_bias}


FLATTEN = {"type": "flatten"}


def dropout(rate):
    return {"type": "dropout", "rate": rate}


def adam(learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    return {"type": "adam", "learning_rate": learning_rate, "beta_1": beta_1,
            "beta_2": beta_2, "epsilon": epsilon}


def sgd(learning_rate=0.01, momentum=0.0, nesterov=False):
    return {"type": "sgd", "learning_rate": learning_rate, "momentum": momentum,
            "nesterov": nesterov}


SEED_CNN = [conv(32), pool(), conv(64), pool(), conv(64), FLATTEN, dense(64),
            dense(10, "softmax")]
SEED_SHAPES = [(26, 26, 32), (13, 13, 32), (11, 11, 64), (5, 5, 64), (3, 3, 64), (576,),
               (64,), (10,)]
SEED_PARAM_SHAPES = [(3, 3, 1, 32), (32,), (3, 3, 32, 64), (64,), (3, 3, 64, 64), (64,),
                     (576, 64), (64,), (64, 10), (10,)]


# ---- helpers ------------------------------------------------------------------------------

def init_weights(nets, seed=0):
    """Glorot-uniform kernels and small random biases, the same float32 values in every net."""
    rng = np.random.default_rng(seed)
    for arrays in zip(*(net.parameters() for net in nets)):
        shape = arrays[0].shape
        if len(shape) == 1:
            value = rng.uniform(-0.1, 0.1, shape)
        else:
            receptive = int(np.prod(shape[:-2]))
            limit = np.sqrt(6.0 / (receptive * (shape[-2] + shape[-1])))
            value = rng.uniform(-limit, limit, shape)
        for array in arrays:
            array[...] = value.astype(np.float32)


def make_pair(layers, input_shape, optimizer, seed=0):
    """(engine, float64 reference) with identical random weights."""
    net = Net(layers, input_shape, optimizer)
    truth = ReferenceNet(layers, input_shape, optimizer, dtype=np.float64)
    init_weights([net, truth], seed)
    return net, truth


def batch(input_shape, classes, n, seed):
    rng = np.random.default_rng(1000 + seed)
    x = rng.uniform(0, 1, (n, *input_shape)).astype(np.float32)
    return x, rng.integers(0, classes, n).astype(np.int32)


def rel_error(out, expected):
    out = np.asarray(out, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    norm = np.linalg.norm(expected)
    return np.linalg.norm(out - expected) / (norm if norm > 0 else 1.0)


def assert_close(out, expected, what):
    assert np.shape(out) == np.shape(expected), f"{what}: shape {np.shape(out)} != " \
                                                f"{np.shape(expected)}"
    error = rel_error(out, expected)
    assert error < TOLERANCE, f"{what}: relative error {error:.3g}"


def assert_nets_close(net, truth, what=""):
    for name, ours, theirs in (("parameter", net.parameters(), truth.parameters()),
                               ("optimizer state", net.optimizer_state(),
                                truth.optimizer_state())):
        assert len(ours) == len(theirs), f"{what}: {len(ours)} {name} arrays, " \
                                         f"expected {len(theirs)}"
        for k, (a, b) in enumerate(zip(ours, theirs)):
            assert a.dtype == np.float32, f"{what}: {name} {k} has dtype {a.dtype}"
            assert_close(a, b, f"{what}: {name} {k}")


def train_and_compare(net, truth, input_shape, batches, what):
    """train_step both nets on the same batches; compare after each step.

    Before each step the reference takes the engine's weights and optimizer state, so each
    step is checked alone: over several free-running steps the float32/float64 difference
    is chaotic, not small (with the seed CNN at batches 64, 1, 63, weights 6e-7 apart flip
    one ReLU at 0 under a max-pool and move the first conv's gradient by 4e-3, in float64).
    """
    classes = truth.output_shapes()[-1][0]
    for step, n in enumerate(batches):
        for a, b in zip(snapshot(truth, copy=False), snapshot(net, copy=False)):
            a[...] = b
        x, y = batch(input_shape, classes, n, step)
        loss, correct = net.train_step(x, y)
        loss_ref, correct_ref = truth.train_step(x, y)
        assert isinstance(loss, float) and isinstance(correct, int)
        assert abs(loss - loss_ref) <= TOLERANCE * abs(loss_ref), \
            f"{what} step {step}: loss {loss} vs {loss_ref}"
        assert correct == correct_ref, f"{what} step {step}: correct {correct} vs {correct_ref}"
        assert_nets_close(net, truth, f"{what} step {step}")
    assert net.iterations == truth.iterations == len(batches)


def snapshot(net, copy=True):
    """All parameters then all optimizer state (copies, or the live arrays)."""
    arrays = net.parameters() + net.optimizer_state()
    return [a.copy() for a in arrays] if copy else arrays


# ---- the seed CNN -------------------------------------------------------------------------

def test_seed_cnn_shapes_and_zero_init():
    net = Net(SEED_CNN, (28, 28, 1), adam())
    assert [tuple(s) for s in net.output_shapes()] == SEED_SHAPES
    params = net.parameters()
    assert [p.shape for p in params] == SEED_PARAM_SHAPES
    assert sum(p.size for p in params) == 93322
    assert all(p.dtype == np.float32 and not p.any() for p in params)
    state = net.optimizer_state()
    assert [s.shape for s in state] == SEED_PARAM_SHAPES * 2  # m_0..m_9, v_0..v_9
    assert all(s.dtype == np.float32 and not s.any() for s in state)
    assert net.iterations == 0
    assert net.learning_rate == pytest.approx(1e-3)


def test_parameters_are_writable_views():
    net = Net(SEED_CNN, (28, 28, 1), adam())
    net.parameters()[1][...] = 3.0
    net.optimizer_state()[0][0, 0, 0, :] = 2.0
    assert (net.parameters()[1] == 3.0).all()
    assert (net.optimizer_state()[0][0, 0, 0] == 2.0).all()


ISAS = fastnn.build_info()["cpu_isa_available"]


@pytest.fixture(params=ISAS)
def isa(request, restore_runtime):
    """Run the engine on each CPU ISA path (conftest's restore_runtime restores the choice)."""
    fastnn.set_cpu_isa(request.param)
    return request.param


def test_seed_cnn_three_steps_match_reference(isa):
    net, truth = make_pair(SEED_CNN, (28, 28, 1), adam())
    train_and_compare(net, truth, (28, 28, 1), [64, 1, 63], "seed CNN")


# ---- awkward specs ------------------------------------------------------------------------

AWKWARD = {
    "same padding, stride 2, non-square kernel": (
        [conv(5, (3, 5), (2, 2), "same"), conv(6, (2, 3), (2, 1), "same"),
         pool((3, 2), (2, 1)), FLATTEN, dense(4, "softmax")], (11, 9, 2), adam()),
    "no biases": (
        [conv(4, use_bias=False), pool(), FLATTEN, dense(8, use_bias=False),
         dense(3, "softmax", use_bias=False)], (8, 8, 2), adam()),
    "odd channel counts 3 and 17": (
        [conv(17), conv(17, (2, 2)), pool((2, 2), (1, 1)), FLATTEN, dense(5, "softmax")],
        (9, 7, 3), adam()),
    "dense only on (F,)": (
        [dense(13), dense(9), dense(6, "softmax")], (20,), adam()),
    "linear last layer (logits)": (
        [conv(4), FLATTEN, dense(7, "linear")], (6, 6, 1), adam()),
    "sgd": (
        [conv(4), FLATTEN, dense(8), dense(3, "softmax")], (6, 5, 2), sgd(0.1)),
    "sgd momentum 0.9": (
        [conv(4), FLATTEN, dense(8), dense(3, "softmax")], (6, 5, 2), sgd(0.05, 0.9)),
    "sgd nesterov": (
        [conv(4), FLATTEN, dense(8), dense(3, "softmax")], (6, 5, 2), sgd(0.05, 0.9, True)),
    "adam custom hyperparameters": (
        [conv(4), pool(), FLATTEN, dense(3, "softmax")], (7, 7, 2),
        adam(0.01, 0.8, 0.99, 1e-4)),
    "pool stride wider than its window, odd sizes": (
        [conv(5, (2, 2)), pool((2, 2), (3, 3)), conv(3), pool((1, 2), (2, 3)), FLATTEN,
         dense(3, "softmax")], (13, 14, 1), adam()),
    "dropout 0.5 in the middle": (
        [conv(6), pool(), FLATTEN, dropout(0.5), dense(16), dropout(0.25), dense(4, "softmax")],
        (10, 10, 1), adam()),
}


@pytest.mark.parametrize("name", AWKWARD)
def test_awkward_spec_matches_reference(name, isa):
    layers, input_shape, optimizer = AWKWARD[name]
    net, truth = make_pair(layers, input_shape, optimizer, seed=len(name))
    assert [tuple(s) for s in net.output_shapes()] == truth.output_shapes()
    assert [p.shape for p in net.parameters()] == [p.shape for p in truth.parameters()]
    train_and_compare(net, truth, input_shape, [5, 1, 7], name)


def test_learning_rate_and_iterations_set_between_steps():
    layers, input_shape, _ = AWKWARD["sgd"]
    for optimizer in (adam(), sgd(0.05, 0.9)):
        net, truth = make_pair(layers, input_shape, optimizer)
        train_and_compare(net, truth, input_shape, [4], "before")
        for n in (net, truth):
            n.learning_rate = 0.02
            n.iterations = 10  # Adam's next step is t = 11
        assert net.learning_rate == pytest.approx(0.02) and net.iterations == 10
        x, y = batch(input_shape, 3, 6, seed=9)
        assert net.train_step(x, y)[1] == truth.train_step(x, y)[1]
        assert net.iterations == 11
        assert_nets_close(net, truth, f"{optimizer['type']} after setting learning_rate")


def test_sgd_without_momentum_has_no_state():
    assert Net([dense(3, "softmax")], (4,), sgd(0.1)).optimizer_state() == []
    assert len(Net([dense(3, "softmax")], (4,), sgd(0.1, 0.5)).optimizer_state()) == 2


# ---- dropout and seeds --------------------------------------------------------------------

DROPOUT_SPEC = AWKWARD["dropout 0.5 in the middle"]


def train_dropout_net(seed, steps=2):
    layers, input_shape, optimizer = DROPOUT_SPEC
    net = Net(layers, input_shape, optimizer)
    init_weights([net])
    net.seed(seed)
    for step in range(steps):
        net.train_step(*batch(input_shape, 4, 8, step))
    return net


def test_dropout_seed_matches_reference():
    layers, input_shape, optimizer = DROPOUT_SPEC
    net, truth = make_pair(layers, input_shape, optimizer)
    net.seed(12345)
    truth.seed(12345)
    train_and_compare(net, truth, input_shape, [8, 3, 8], "dropout seed 12345")


def test_dropout_same_seed_same_weights_other_seed_differs():
    a, b, c = train_dropout_net(7), train_dropout_net(7), train_dropout_net(8)
    assert all(np.array_equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(np.array_equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


# ---- predict and evaluate -----------------------------------------------------------------

@pytest.mark.parametrize("name", ["dropout 0.5 in the middle", "linear last layer (logits)"])
def test_predict_and_evaluate_match_reference(name):
    layers, input_shape, optimizer = AWKWARD[name]
    net, truth = make_pair(layers, input_shape, optimizer)
    classes = truth.output_shapes()[-1][0]
    net.train_step(*batch(input_shape, classes, 6, 0))  # iterations 1: masks would differ
    truth.train_step(*batch(input_shape, classes, 6, 0))
    before = snapshot(net)
    x, y = batch(input_shape, classes, 9, seed=5)

    out = net.predict(x)
    assert out.dtype == np.float32 and out.shape == (9, classes)
    assert_close(out, truth.predict(x), f"{name}: predict")
    if layers[-1]["activation"] == "softmax":
        np.testing.assert_allclose(out.sum(axis=1), 1, rtol=1e-5)

    loss_sum, correct = net.evaluate(x, y)
    loss_ref, correct_ref = truth.evaluate(x, y)
    assert abs(loss_sum - loss_ref) <= TOLERANCE * loss_ref and correct == correct_ref
    assert np.array_equal(net.predict(x), out)  # dropout off: repeatable
    assert net.iterations == 1
    assert all(np.array_equal(p, q) for p, q in zip(before, snapshot(net)))


# ---- determinism --------------------------------------------------------------------------

def test_identical_nets_train_to_identical_weights():
    nets = [Net(SEED_CNN, (28, 28, 1), adam()) for _ in range(2)]
    init_weights(nets)
    for step, n in enumerate([32, 7]):
        x, y = batch((28, 28, 1), 10, n, step)
        assert nets[0].train_step(x, y) == nets[1].train_step(x, y)
    assert all(np.array_equal(p, q) for p, q in zip(snapshot(nets[0]), snapshot(nets[1])))


# ---- errors -------------------------------------------------------------------------------

BAD_SPECS = [
    ([conv(4, (3, 3)), conv(4, (5, 5)), FLATTEN, dense(3, "softmax")], (6, 6, 1), adam(),
     r"layer 1 \(conv2d\).*kernel"),
    ([pool((4, 4)), FLATTEN, dense(3)], (3, 8, 1), adam(), r"layer 0 \(maxpool2d\)"),
    ([dense(3)], (5,), {"type": "rmsprop", "learning_rate": 0.1}, r"rmsprop"),
    ([conv(4), FLATTEN, dense(3)], (6,), adam(), r"layer 0 \(conv2d\)"),
]


@pytest.mark.parametrize("cls", [Net, ReferenceNet], ids=["engine", "reference"])
@pytest.mark.parametrize("layers, input_shape, optimizer, message", BAD_SPECS)
def test_bad_spec_raises(cls, layers, input_shape, optimizer, message):
    with pytest.raises(ValueError, match=message):
        cls(layers, input_shape, optimizer)


SPARSE = {"type": "sparse_categorical_crossentropy", "from_logits": False}
ENGINE_BAD_SPECS = [
    ([dense(3, "swishy")], (5,), None, r"unknown activation 'swishy'"),
    ([conv(4), dense(3, "softmax")], (6, 6, 1), None, r"one vector per sample"),
    ([{"type": "groupnorm"}, dense(3)], (5,), None, r"layer 0: unknown type 'groupnorm'"),
    ([{"type": "reshape", "shape": [7]}, dense(3)], (5,), None,
     r"layer 0 \(reshape\).*cannot reshape"),
    ([{"type": "batchnorm", "epsilon": 0.0, "momentum": 0.99, "center": True, "scale": True},
      dense(3)], (5,), None, r"layer 0 \(batchnorm\): epsilon"),
    ([dense(3, "relu")], (5,), SPARSE, r"from_logits=False needs a softmax"),
    ([dense(3, "softmax")], (5,), {"type": "binary_crossentropy"}, r"needs a sigmoid"),
    ([dense(3)], (5,), {"type": "hinge"}, r"unknown type 'hinge'"),
]


@pytest.mark.parametrize("layers, input_shape, loss, message", ENGINE_BAD_SPECS)
def test_engine_bad_spec_raises(layers, input_shape, loss, message):
    with pytest.raises(ValueError, match=message):
        Net(layers, input_shape, adam(), loss)


GOOD_X, GOOD_Y = batch((6, 6, 1), 3, 4, seed=0)
BAD_BATCHES = {
    "wrong image size": (np.zeros((4, 7, 6, 1), np.float32), GOOD_Y, r"x|shape"),
    "missing channel axis": (np.zeros((4, 6, 6), np.float32), GOOD_Y, r"x|shape"),
    "labels length mismatch": (GOOD_X, GOOD_Y[:3], r"labels"),
    "label out of range": (GOOD_X, np.array([0, 1, 3, 2], np.int32), r"labels?|range"),
    "negative label": (GOOD_X, np.array([0, -1, 1, 2], np.int32), r"labels?|range"),
    "labels not 1-D": (GOOD_X, GOOD_Y.reshape(2, 2), r"labels"),
}
BAD_BATCH_SPEC = ([conv(2), FLATTEN, dense(3, "softmax")], (6, 6, 1), adam())


@pytest.mark.parametrize("cls", [Net, ReferenceNet], ids=["engine", "reference"])
@pytest.mark.parametrize("case", BAD_BATCHES)
def test_bad_batch_raises_and_leaves_net_unchanged(cls, case):
    x, y, message = BAD_BATCHES[case]
    net = cls(*BAD_BATCH_SPEC)
    init_weights([net])
    before = snapshot(net)
    with pytest.raises(ValueError, match=message):
        net.train_step(x, y)
    with pytest.raises(ValueError, match=message):
        net.evaluate(x, y)
    assert net.iterations == 0
    assert all(np.array_equal(p, q) for p, q in zip(before, snapshot(net)))
    net.train_step(GOOD_X, GOOD_Y)  # still usable
    assert net.iterations == 1


def test_errors_do_not_crash_the_interpreter():
    """Every bad spec and batch in a fresh interpreter, then a good step: it must exit 0."""
    script = textwrap.dedent("""
        import numpy as np
        import test_engine as t
        for layers, shape, opt, _ in t.BAD_SPECS:
            try:
                t.Net(layers, shape, opt)
            except ValueError:
                pass
        net = t.Net(*t.BAD_BATCH_SPEC)
        for x, y, _ in t.BAD_BATCHES.values():
            for call in (net.train_step, net.evaluate):
                try:
                    call(x, y)
                except ValueError:
                    pass
            try:
                net.predict(x)
            except ValueError:
                pass
        print("alive", net.train_step(t.GOOD_X, t.GOOD_Y)[1] >= 0)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=__file__.rsplit("/", 1)[0], timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "alive True" in result.stdout


# ---- the specification itself -------------------------------------------------------------

def test_reference_gradients_match_finite_differences():
    """SGD with lr 1 and no momentum moves every parameter by -grad of the mean loss, which
    must equal central finite differences of that loss (float64 throughout). The loss is
    read from train_step with lr 0 at iteration 0, so the dropout mask is the same."""
    layers = [conv(3, (2, 2)), pool((2, 2), (1, 1)), conv(2, (2, 3), (1, 2), "same"),
              FLATTEN, dropout(0.3), dense(5), dense(3, "softmax")]
    net = ReferenceNet(layers, (5, 5, 2), sgd(1.0), dtype=np.float64)
    init_weights([net], seed=3)
    x, y = batch((5, 5, 2), 3, 4, seed=3)
    before = [p.copy() for p in net.parameters()]
    net.train_step(x, y)
    grads = [b - p for b, p in zip(before, net.parameters())]
    for p, b in zip(net.parameters(), before):
        p[...] = b
    net.learning_rate = 0.0

    def loss():
        net.iterations = 0
        return net.train_step(x, y)[0]

    for k, (p, grad) in enumerate(zip(net.parameters(), grads)):
        numeric = np.zeros_like(grad)
        for idx in np.ndindex(p.shape):
            for sign in (1, -1):
                p[idx] = before[k][idx] + sign * 1e-6
                numeric[idx] += sign * loss() / 2e-6
            p[idx] = before[k][idx]
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9,
                                   err_msg=f"parameter {k}")
    assert loss() != net.evaluate(x, y)[0] / len(y)  # dropout was active in training


def test_reference_dropout_mask():
    """splitmix64(0) is the published first output; the mask keeps about 1 - rate."""
    from fastnn.reference_net import _splitmix64_int
    assert _splitmix64_int(0) == 0xE220A8397B1DCDAF
    keep = dropout_keep_mask((64, 100), 0.3, seed=1, layer_index=2, iteration=5)
    assert abs(keep.mean() - 0.7) < 0.02
    assert np.array_equal(keep, dropout_keep_mask((64, 100), 0.3, 1, 2, 5))
    assert not np.array_equal(keep, dropout_keep_mask((64, 100), 0.3, 1, 2, 6))
    assert not np.array_equal(keep, dropout_keep_mask((64, 100), 0.3, 1, 3, 5))
    assert not np.array_equal(keep, dropout_keep_mask((64, 100), 0.3, 2, 2, 5))
    # element i's mask depends on its flat index only, not on the batch size
    assert np.array_equal(keep[:10], dropout_keep_mask((10, 100), 0.3, 1, 2, 5))
    assert dropout_keep_mask((1000,), 0.0, 0, 0, 0).all()
