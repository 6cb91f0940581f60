"""The engine's newer layers, activations and losses: fastnn._C.Net (every CPU ISA path)
against its NumPy specification ReferenceNet, and the GPU engine _C.CudaNet against the CPU
engine, step by step.

Covered: every activation kind on a dense layer and as an activation layer; conv2d with
batch normalisation, an activation layer, max-pooling with 'same' padding, average pooling
(also global: the window is the whole input) and reshape; dense on a rank-3 input; every
loss (sparse / categorical / binary cross-entropy fused with their heads or from the
logits, mean squared / absolute error, Huber) and accuracy ('argmax', 'binary', 'none');
dropout (deterministic with its seed); batch 1 and channel counts 1, 3, 5 and 17. As in
test_engine.py, each step starts both nets from the engine's own state (parameters and
optimizer state), the reference in float64 on the same float32 inputs, and after each
step losses and correct counts must agree, and every parameter and optimizer-state array
to ||engine - ref|| / ||ref|| < 1e-4. Also predict / evaluate, batch normalisation's moving
statistics (updated by the forward pass, never by the optimizer), and the ValueErrors both
raise for bad layer and loss dicts and bad targets.
"""
import math

import numpy as np
import pytest

import fastnn
from fastnn import _C, reference
from fastnn._C import Net
from fastnn.reference_net import ReferenceNet

TOLERANCE = 1e-4
ISAS = fastnn.build_info()["cpu_isa_available"]
HAS_GPU = hasattr(_C, "CudaNet") and fastnn.build_info()["cuda_devices"] > 0


def on_gpu(test):
    """Marks a test `gpu` and skips it where this process sees no CUDA GPU."""
    skip = pytest.mark.skipif(not HAS_GPU, reason="no CUDA GPU in this process")
    return pytest.mark.gpu(skip(test))


# ---- specs --------------------------------------------------------------------------------

def activation_fields(activation, alpha=None, beta=None, gamma=None):
    fields = {"activation": activation}
    for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        if value is not None:
            fields[f"activation_{name}"] = value
    return fields


def conv(filters, kernel=(3, 3), strides=(1, 1), padding="valid", activation="relu",
         use_bias=True, **params):
    return {"type": "conv2d", "filters": filters, "kernel_size": kernel, "strides": strides,
            "padding": padding, "use_bias": use_bias, **activation_fields(activation, **params)}


def dense(units, activation="linear", use_bias=True, **params):
    return {"type": "dense", "units": units, "use_bias": use_bias,
            **activation_fields(activation, **params)}


def maxpool(size, strides=None, padding="valid"):
    return {"type": "maxpool2d", "pool_size": size, "strides": strides or size, "padding": padding}


def avgpool(size, strides=None, padding="valid"):
    return {"type": "avgpool2d", "pool_size": size, "strides": strides or size, "padding": padding}


def batchnorm(center=True, scale=True, momentum=0.9, epsilon=1e-3):
    return {"type": "batchnorm", "epsilon": epsilon, "momentum": momentum, "center": center,
            "scale": scale}


def act(activation, **params):
    return {"type": "activation", **activation_fields(activation, **params)}


def reshape(shape):
    return {"type": "reshape", "shape": list(shape)}


def dropout(rate):
    return {"type": "dropout", "rate": rate}


FLATTEN = {"type": "flatten"}


def loss(kind, from_logits=False, accuracy="argmax", **extra):
    return {"type": kind, "from_logits": from_logits, "accuracy": accuracy, **extra}


def adam(learning_rate=1e-3):
    return {"type": "adam", "learning_rate": learning_rate, "beta_1": 0.9, "beta_2": 0.999,
            "epsilon": 1e-7}


def sgd(learning_rate=0.05, momentum=0.9, nesterov=False):
    return {"type": "sgd", "learning_rate": learning_rate, "momentum": momentum,
            "nesterov": nesterov}


class Spec:
    """A model to train: layers, input shape, optimizer, loss dict (None: the engine's
    default), the targets it takes ('labels', 'labels-float', 'soft', 'binary' or 'real')
    and the batch sizes of its three steps."""

    def __init__(self, layers, input_shape, optimizer=None, loss=None, targets="labels",
                 batches=(5, 1, 7), seed=None):
        self.layers, self.input_shape = layers, input_shape
        self.optimizer = optimizer or adam()
        self.loss, self.targets, self.batches, self.seed = loss, targets, batches, seed


# Every element-wise kind (and its Keras aliases) with the numbers it takes, and softmax
# (over the last axis) in the middle of a net.
ACTIVATION_PARAMS = {
    "elu": {"alpha": 1.0},
    "leaky_relu": {"alpha": 0.2},
    "relu_clipped": {"alpha": 0.1, "beta": 1.2, "gamma": 0.3},
    "affine": {"alpha": 1.5, "beta": -0.25},
}
ACTIVATION_CASES = {kind: (kind, ACTIVATION_PARAMS.get(kind, {}))
                    for kind in reference.ACTIVATION_KINDS + ("softmax",)}
ACTIVATION_CASES["relu_clipped without max_value"] = (
    "relu_clipped", {"alpha": 0.05, "beta": math.inf, "gamma": -0.2})


def activation_spec(kind, params, as_layer):
    hidden = [dense(9), act(kind, **params)] if as_layer else [dense(9, kind, **params)]
    return Spec(hidden + [dense(4)], (6,), batches=(6, 1, 8))


BODY = [dense(8, "relu")]  # the hidden layer of the loss specs, on (6,) inputs

SPECS = {
    # conv without bias + batchnorm + a relu activation layer + max-pool 'same' + average
    # pool 'same' + a conv of 17 filters + global average pooling + reshape to a vector
    "cnn batchnorm relu-layer maxpool-same avgpool global-avgpool reshape": Spec(
        [conv(5, padding="same", activation="linear", use_bias=False), batchnorm(),
         act("relu"), maxpool((3, 3), (2, 2), "same"), avgpool((2, 2), (1, 1), "same"),
         conv(17, activation="relu"), avgpool((4, 3)), reshape([17]), dense(3, "softmax")],
        (11, 10, 3)),
    # a strided relu conv fused with its 'same' max-pool, batchnorm without center, a
    # one-filter elu conv, SGD with momentum (the moving statistics' velocity stays 0)
    "cnn fused conv-relu maxpool-same, batchnorm no center, 1 channel, sgd": Spec(
        [conv(4, (3, 3), (2, 2), "same"), maxpool((2, 2), (2, 2), "same"),
         batchnorm(center=False), conv(1, (2, 2), activation="elu", alpha=1.0), FLATTEN,
         dense(3)], (9, 9, 1), sgd()),
    # a gelu conv (not fused with the max-pool after it), strided 'same' average pool,
    # batchnorm without scale, a tanh activation layer, 5 input channels
    "cnn gelu conv maxpool, avgpool same stride 2, batchnorm no scale": Spec(
        [conv(6, (3, 2), padding="same", activation="gelu"), maxpool((2, 2)),
         avgpool((3, 3), (2, 2), "same"), batchnorm(scale=False), act("tanh"), FLATTEN,
         dense(4, "softmax")], (8, 7, 5)),
    "global max-pool and average pool after a sigmoid conv": Spec(
        [conv(3, (2, 2), activation="sigmoid"), maxpool((2, 2), (1, 1), "same"),
         maxpool((4, 4)), reshape([3]), dense(3, "softmax")], (5, 5, 2)),
    "dense on a rank-3 input, batchnorm on rank 3": Spec(
        [dense(5, "tanh"), batchnorm(), dense(2, "relu"), FLATTEN, dense(3, "softmax")],
        (4, 6, 3), batches=(5, 1, 7)),
    "softmax over the last axis of a rank-3 dense": Spec(
        [dense(5, "softmax"), FLATTEN, dense(3)], (2, 3, 4)),
    "rank-3 dense head, mean squared error": Spec(
        [dense(6, "swish"), dense(2)], (3, 5, 4), loss=loss("mean_squared_error", accuracy="none"),
        targets="real"),
    "sparse, softmax head": Spec(
        BODY + [dense(4, "softmax")], (6,), loss=loss("sparse_categorical_crossentropy")),
    "sparse from logits, float labels (N, 1)": Spec(
        BODY + [dense(4)], (6,), loss=loss("sparse_categorical_crossentropy", True),
        targets="labels-float"),
    "sparse from logits on a softmax head (not fused)": Spec(
        BODY + [dense(4, "softmax")], (6,), loss=loss("sparse_categorical_crossentropy", True)),
    "categorical, softmax head, soft targets": Spec(
        BODY + [dense(4, "softmax")], (6,), loss=loss("categorical_crossentropy"),
        targets="soft"),
    "categorical from logits": Spec(
        BODY + [dense(4)], (6,), loss=loss("categorical_crossentropy", True), targets="soft"),
    "categorical, softmax activation-layer head": Spec(
        BODY + [dense(4), act("softmax")], (6,), loss=loss("categorical_crossentropy"),
        targets="soft"),
    "binary, sigmoid head": Spec(
        BODY + [dense(3, "sigmoid")], (6,), loss=loss("binary_crossentropy", accuracy="binary"),
        targets="binary"),
    "binary from logits": Spec(
        BODY + [dense(3)], (6,), loss=loss("binary_crossentropy", True, "binary"),
        targets="binary"),
    "binary, sigmoid activation-layer head": Spec(
        BODY + [dense(3), act("sigmoid")], (6,),
        loss=loss("binary_crossentropy", accuracy="binary"), targets="binary"),
    "binary, one output, argmax accuracy": Spec(
        BODY + [dense(1, "sigmoid")], (6,), loss=loss("binary_crossentropy"), targets="binary"),
    "mean squared error": Spec(
        BODY + [dense(3)], (6,), loss=loss("mean_squared_error", accuracy="none"),
        targets="real"),
    "mean squared error on a softmax head": Spec(
        BODY + [dense(3, "softmax")], (6,), loss=loss("mean_squared_error"), targets="soft"),
    "mean absolute error, argmax of the targets": Spec(
        BODY + [dense(3, "tanh")], (6,), loss=loss("mean_absolute_error"), targets="real"),
    "huber delta 0.5": Spec(
        BODY + [dense(3)], (6,), loss=loss("huber", accuracy="none", delta=0.5), targets="real"),
    "dropout and batchnorm, seeded": Spec(
        [dense(16, "relu"), dropout(0.4), batchnorm(momentum=0.8), dense(12, "leaky_relu",
         alpha=0.2), dropout(0.25), dense(3, "softmax")], (7,), batches=(6, 3, 8), seed=99),
}


# ---- helpers ------------------------------------------------------------------------------

def parameter_roles(layers):
    """The role of each array of parameters() in order: kernel, bias, gamma, beta,
    moving_mean, moving_variance."""
    roles = []
    for layer in layers:
        if layer["type"] in ("conv2d", "dense"):
            roles += ["kernel"] + (["bias"] if layer["use_bias"] else [])
        elif layer["type"] == "batchnorm":
            roles += (["gamma"] if layer["scale"] else []) + (["beta"] if layer["center"] else [])
            roles += ["moving_mean", "moving_variance"]
    return roles


def init_weights(nets, layers, seed=0):
    """Glorot-uniform kernels, small biases, gamma near 1, moving variances in [0.5, 1.5]:
    the same float32 values in every net."""
    rng = np.random.default_rng(seed)
    for role, arrays in zip(parameter_roles(layers), zip(*(n.parameters() for n in nets))):
        shape = arrays[0].shape
        if role == "kernel":
            receptive = int(np.prod(shape[:-2]))
            limit = np.sqrt(6.0 / (receptive * (shape[-2] + shape[-1])))
            value = rng.uniform(-limit, limit, shape)
        elif role in ("gamma", "moving_variance"):
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.uniform(-0.1, 0.1, shape)
        for array in arrays:
            array[...] = value.astype(np.float32)


def make_pair(spec, seed=0):
    """(engine, float64 reference) with identical random weights and dropout seeds."""
    net = Net(spec.layers, spec.input_shape, spec.optimizer, spec.loss)
    truth = ReferenceNet(spec.layers, spec.input_shape, spec.optimizer, spec.loss,
                         dtype=np.float64)
    init_weights([net, truth], spec.layers, seed)
    if spec.seed is not None:
        net.seed(spec.seed)
        truth.seed(spec.seed)
    return net, truth


def make_batch(spec, classes, n, seed):
    """x (N, *input_shape) float32 and targets of the spec's kind for `classes` outputs."""
    rng = np.random.default_rng(1000 + seed)
    x = rng.normal(0, 1.5, (n, *spec.input_shape)).astype(np.float32)
    if spec.targets == "labels":
        y = rng.integers(0, classes, n).astype(np.int32)
    elif spec.targets == "labels-float":
        y = rng.integers(0, classes, (n, 1)).astype(np.float32)
    elif spec.targets == "soft":
        y = rng.dirichlet(np.ones(classes), n).astype(np.float32)
    elif spec.targets == "binary":  # mostly 0 / 1, some soft
        y = rng.integers(0, 2, (n, classes)).astype(np.float64)
        soft = rng.random((n, classes)) < 0.3
        y[soft] = rng.random(soft.sum())
        y = y.astype(np.float32)
    else:
        y = rng.normal(0, 1, (n, classes)).astype(np.float32)
    return x, y


def rel_error(out, expected):
    out = np.asarray(out, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    norm = np.linalg.norm(expected)
    return np.linalg.norm(out - expected) / (norm if norm > 0 else 1.0)


def assert_close(out, expected, what, tolerance=TOLERANCE):
    assert np.shape(out) == np.shape(expected), \
        f"{what}: shape {np.shape(out)} != {np.shape(expected)}"
    assert np.isfinite(out).all(), f"{what}: not finite"
    error = rel_error(out, expected)
    assert error < tolerance, f"{what}: relative error {error:.3g}"


def snapshot(net, copy=True):
    """All parameters then all optimizer state (copies, or the live arrays)."""
    arrays = net.parameters() + net.optimizer_state()
    return [a.copy() for a in arrays] if copy else arrays


def assert_states_close(net, other, what, tolerance=TOLERANCE):
    ours, theirs = snapshot(net, copy=False), snapshot(other, copy=False)
    assert len(ours) == len(theirs), f"{what}: {len(ours)} arrays, expected {len(theirs)}"
    for k, (a, b) in enumerate(zip(ours, theirs)):
        assert a.dtype == np.float32, f"{what}: array {k} has dtype {a.dtype}"
        assert_close(a, b, f"{what}: array {k} (parameters then optimizer state)", tolerance)


def copy_state(source, target):
    for a, b in zip(snapshot(target, copy=False), snapshot(source, copy=False)):
        a[...] = b
    target.push()


def train_and_compare(net, truth, spec, what):
    """Three train_steps of both nets on the same batches, each from the engine's state."""
    classes = truth.classes
    for step, n in enumerate(spec.batches):
        copy_state(net, truth)
        x, y = make_batch(spec, classes, n, step)
        loss_value, correct = net.train_step(x, y)
        loss_ref, correct_ref = truth.train_step(x, y)
        assert isinstance(loss_value, float) and isinstance(correct, int)
        assert abs(loss_value - loss_ref) <= TOLERANCE * abs(loss_ref), \
            f"{what} step {step}: loss {loss_value} vs {loss_ref}"
        assert correct == correct_ref, f"{what} step {step}: correct {correct} vs {correct_ref}"
        assert_states_close(net, truth, f"{what} step {step}")
    assert net.iterations == truth.iterations == len(spec.batches)


def assert_predict_and_evaluate_match(net, truth, spec, what):
    """predict and evaluate of both nets from the same state; neither changes it."""
    copy_state(net, truth)
    before = snapshot(net)
    x, y = make_batch(spec, truth.classes, 9, seed=5)
    out, out_ref = net.predict(x), truth.predict(x)
    assert out.dtype == np.float32 and out.shape == (9, truth.classes)
    assert_close(out, out_ref, f"{what}: predict")
    loss_sum, correct = net.evaluate(x, y)
    loss_ref, correct_ref = truth.evaluate(x, y)
    assert abs(loss_sum - loss_ref) <= TOLERANCE * abs(loss_ref), \
        f"{what}: evaluate loss {loss_sum} vs {loss_ref}"
    assert correct == correct_ref, f"{what}: evaluate correct {correct} vs {correct_ref}"
    assert np.array_equal(net.predict(x), out), f"{what}: predict is not repeatable"
    assert all(np.array_equal(p, q) for p, q in zip(before, snapshot(net))), \
        f"{what}: predict / evaluate changed the net"


@pytest.fixture(params=ISAS)
def isa(request, restore_runtime):
    """Run the engine on each CPU ISA path (conftest's restore_runtime restores the choice)."""
    fastnn.set_cpu_isa(request.param)
    return request.param


# ---- the engine against the reference -----------------------------------------------------

@pytest.mark.parametrize("as_layer", [False, True], ids=["on-dense", "activation-layer"])
@pytest.mark.parametrize("case", ACTIVATION_CASES)
def test_activation_kind_matches_reference(case, as_layer, isa):
    kind, params = ACTIVATION_CASES[case]
    spec = activation_spec(kind, params, as_layer)
    net, truth = make_pair(spec, seed=len(case))
    train_and_compare(net, truth, spec, case)
    assert_predict_and_evaluate_match(net, truth, spec, case)


@pytest.mark.parametrize("name", SPECS)
def test_spec_matches_reference(name, isa):
    spec = SPECS[name]
    net, truth = make_pair(spec, seed=len(name))
    assert [tuple(s) for s in net.output_shapes()] == truth.output_shapes()
    assert [p.shape for p in net.parameters()] == [p.shape for p in truth.parameters()]
    assert net.trainable() == truth.trainable()
    assert net.target_width == truth.target_width
    train_and_compare(net, truth, spec, name)
    assert_predict_and_evaluate_match(net, truth, spec, name)


def test_output_shapes_and_parameters_of_the_cnn():
    spec = SPECS["cnn batchnorm relu-layer maxpool-same avgpool global-avgpool reshape"]
    net = Net(spec.layers, spec.input_shape, spec.optimizer)
    assert [tuple(s) for s in net.output_shapes()] == [
        (11, 10, 5), (11, 10, 5), (11, 10, 5), (6, 5, 5), (6, 5, 5), (4, 3, 17), (1, 1, 17),
        (17,), (3,)]
    assert [p.shape for p in net.parameters()] == [
        (3, 3, 3, 5), (5,), (5,), (5,), (5,), (3, 3, 5, 17), (17,), (17, 3), (3,)]
    assert net.trainable() == [True, True, True, False, False, True, True, True, True]


def test_batchnorm_moving_statistics_move_by_the_forward_pass_only():
    """Training moves the moving statistics by momentum (the optimizer leaves them and their
    state at 0); evaluate and predict normalise with them and move nothing."""
    spec = Spec([dense(4, "tanh"), batchnorm(momentum=0.75), dense(3, "softmax")], (5,),
                batches=(8,))
    for optimizer in (adam(), sgd()):
        spec.optimizer = optimizer
        net, truth = make_pair(spec)
        mean_index, var_index = 4, 5  # kernel, bias, gamma, beta, moving_mean, moving_variance
        before = [p.copy() for p in net.parameters()]
        x, y = make_batch(spec, 3, 8, seed=0)
        net.train_step(x, y)
        # The statistics of the batch this step normalised (the first layer's outputs).
        w, b = before[0].astype(np.float64), before[1].astype(np.float64)
        h = np.tanh(x.astype(np.float64) @ w + b)
        np.testing.assert_allclose(net.parameters()[mean_index],
                                   0.75 * before[mean_index] + 0.25 * h.mean(axis=0), rtol=1e-5)
        np.testing.assert_allclose(net.parameters()[var_index],
                                   0.75 * before[var_index] + 0.25 * h.var(axis=0), rtol=1e-5)
        state = net.optimizer_state()
        slots = len(net.parameters())
        for k in (mean_index, var_index):
            for s in range(len(state) // slots):
                assert not state[s * slots + k].any(), f"{optimizer['type']}: state of {k} moved"
        truth_before = snapshot(truth)
        truth.train_step(x, y)
        assert_states_close(net, truth, f"{optimizer['type']} moving statistics")
        assert not np.array_equal(truth_before[mean_index], truth.parameters()[mean_index])
        assert_predict_and_evaluate_match(net, truth, spec, f"{optimizer['type']} inference")


def test_dropout_with_batchnorm_is_deterministic():
    spec = SPECS["dropout and batchnorm, seeded"]

    def train(seed):
        net = Net(spec.layers, spec.input_shape, spec.optimizer, spec.loss)
        init_weights([net], spec.layers)
        net.seed(seed)
        results = [net.train_step(*make_batch(spec, 3, n, step))
                   for step, n in enumerate(spec.batches)]
        return results, snapshot(net)

    first, second, other = train(99), train(99), train(100)
    assert first[0] == second[0]
    assert all(np.array_equal(p, q) for p, q in zip(first[1], second[1]))
    assert not all(np.array_equal(p, q) for p, q in zip(first[1], other[1]))


def test_default_loss_is_sparse_on_logits_unless_softmax():
    """Without a loss dict: sparse cross-entropy, from the logits unless the last layer has
    a softmax; any last activation is allowed (its outputs are then the logits)."""
    for head in ("relu", "tanh", "linear", "softmax"):
        spec = Spec(BODY + [dense(4, head)], (6,), batches=(5, 1, 6))
        net, truth = make_pair(spec, seed=3)
        assert net.target_width == truth.target_width == 1
        train_and_compare(net, truth, spec, f"default loss, {head} head")


# ---- errors: both raise ValueError naming the layer ---------------------------------------

BAD_SPECS = [
    ([dense(3, "swishy")], (5,), None, r"unknown activation 'swishy'"),
    ([{"type": "maxpool2d", "pool_size": (2, 2), "strides": (2, 2), "activation": "relu"},
      FLATTEN, dense(3)], (4, 4, 1), None, r"layer 0 \(maxpool2d\) takes no activation"),
    ([dense(3), dropout(0.5) | {"activation": "tanh"}], (5,), None,
     r"layer 1 \(dropout\) takes no activation"),
    ([reshape([7]), dense(3)], (5,), None, r"layer 0 \(reshape\).*cannot reshape"),
    ([reshape([2, 3]), dense(3)], (2, 2), None, r"layer 0 \(reshape\).*cannot reshape"),
    ([batchnorm(epsilon=0.0), dense(3)], (5,), None, r"layer 0 \(batchnorm\): epsilon"),
    ([dense(4), batchnorm(momentum=1.5), dense(3)], (5,), None,
     r"layer 1 \(batchnorm\): momentum"),
    ([dense(4), dropout(1.0), dense(3)], (5,), None, r"layer 1 \(dropout\): rate"),
    ([conv(4), FLATTEN, dense(3)], (6,), None, r"layer 0 \(conv2d\)"),
    ([avgpool((5, 5)), FLATTEN, dense(3)], (4, 6, 2), None, r"layer 0 \(avgpool2d\).*pool"),
    ([maxpool((2, 2), (0, 1)), FLATTEN, dense(3)], (4, 6, 2), None,
     r"layer 0 \(maxpool2d\): window and strides"),
    ([avgpool((2, 2), padding="full"), FLATTEN, dense(3)], (4, 4, 1), None,
     r"padding must be 'valid' or 'same'"),
    ([dense(0)], (5,), None, r"layer 0 \(dense\): units must be >= 1"),
    ([conv(0), FLATTEN, dense(3)], (5, 5, 1), None, r"layer 0 \(conv2d\): filters"),
    ([{"type": "dense", "units": 3}], (5,), None, r"layer 0.*missing 'use_bias'"),
    ([{"type": "batchnorm", "epsilon": 1e-3, "momentum": 0.9, "center": True}, dense(3)],
     (5,), None, r"layer 0.*missing 'scale'"),
    ([{"type": "reshape"}, dense(3)], (5,), None, r"layer 0.*missing 'shape'"),
    ([{"type": "groupnorm"}, dense(3)], (5,), None, r"layer 0: unknown type 'groupnorm'"),
    ([], (5,), None, r"no layers"),
    ([dense(3)], (5, 0), None, r"input_shape"),
    ([dense(3, "relu")], (5,), loss("sparse_categorical_crossentropy"),
     r"from_logits=False needs a softmax"),
    ([dense(3)], (5,), loss("categorical_crossentropy"), r"from_logits=False needs a softmax"),
    ([dense(3, "softmax")], (5,), loss("binary_crossentropy"), r"needs a sigmoid"),
    ([conv(3, activation="softmax")], (4, 4, 1), None, r"one vector per sample"),
    ([dense(3, "softmax")], (2, 5), loss("categorical_crossentropy", True),
     r"one vector per sample"),
    ([dense(3)], (5,), loss("huber", delta=0.0), r"Huber delta"),
    ([dense(3)], (5,), loss("hinge"), r"unknown type 'hinge'"),
    ([dense(3)], (5,), loss("mean_squared_error", accuracy="top5"), r"unknown accuracy 'top5'"),
]


@pytest.mark.parametrize("cls", [Net, ReferenceNet], ids=["engine", "reference"])
@pytest.mark.parametrize("layers, input_shape, loss_spec, message", BAD_SPECS)
def test_bad_spec_raises(cls, layers, input_shape, loss_spec, message):
    with pytest.raises(ValueError, match=message):
        cls(layers, input_shape, adam(), loss_spec)


def test_reference_names_the_layer_of_a_bad_activation():
    with pytest.raises(ValueError, match=r"layer 1 \(dense\): unknown activation 'swishy'"):
        ReferenceNet([dense(4), dense(3, "swishy")], (5,), adam())


GOOD_SPECS = [  # accepted by both: 'same' pooling wider than its input, softmax mid-net
    ([avgpool((5, 5), padding="same"), FLATTEN, dense(3)], (4, 6, 2), None),
    ([maxpool((3, 3), (2, 2), "same"), FLATTEN, dense(3)], (1, 1, 1), None),
    ([dense(4, "softmax"), dense(3, "softmax")], (5,), None),
    ([conv(3, activation="softmax"), FLATTEN, dense(2)], (4, 4, 1), None),
    ([dense(3, "sigmoid")], (2, 5), loss("binary_crossentropy", accuracy="binary")),
    ([{"type": "reshape", "shape": []}, dense(3)], (2, 5), None),  # empty shape: flatten
]


@pytest.mark.parametrize("layers, input_shape, loss_spec", GOOD_SPECS)
def test_good_edge_specs_build_and_agree(layers, input_shape, loss_spec):
    spec = Spec(layers, input_shape, loss=loss_spec,
                targets="binary" if loss_spec else "labels", batches=(3,))
    net, truth = make_pair(spec)
    assert [tuple(s) for s in net.output_shapes()] == truth.output_shapes()
    train_and_compare(net, truth, spec, str(layers))


BAD_TARGETS = {
    "regression targets too narrow": (SPECS["mean squared error"], "real",
                                      lambda y: y[:, :2], r"targets must have shape"),
    "regression targets of another batch": (SPECS["mean squared error"], "real",
                                            lambda y: y[:3], r"targets must have shape"),
    "non-finite target": (SPECS["huber delta 0.5"], "real",
                          lambda y: np.where(np.arange(y.size).reshape(y.shape) == 4, np.nan, y),
                          r"targets"),
    "fractional label": (SPECS["sparse from logits, float labels (N, 1)"], "labels-float",
                         lambda y: y + 0.5, r"labels"),
    "label out of range": (SPECS["sparse, softmax head"], "labels",
                           lambda y: np.where(np.arange(len(y)) == 2, 4, y), r"labels"),
    "sparse labels two per sample": (SPECS["sparse, softmax head"], "labels",
                                     lambda y: np.stack([y, y], axis=1), r"labels"),
}


@pytest.mark.parametrize("cls", [Net, ReferenceNet], ids=["engine", "reference"])
@pytest.mark.parametrize("case", BAD_TARGETS)
def test_bad_targets_raise_and_leave_the_net_unchanged(cls, case):
    spec, _, corrupt, message = BAD_TARGETS[case]
    net = cls(spec.layers, spec.input_shape, spec.optimizer, spec.loss)
    init_weights([net], spec.layers)
    x, y = make_batch(spec, math.prod(net.output_shapes()[-1]), 6, 0)
    before = snapshot(net)
    for call in (net.train_step, net.evaluate):
        with pytest.raises(ValueError, match=message):
            call(x, corrupt(y))
    assert net.iterations == 0
    assert all(np.array_equal(p, q) for p, q in zip(before, snapshot(net)))
    net.train_step(x, y)  # still usable
    assert net.iterations == 1


# ---- engine defects found against the reference, fixed: each stays a test ------------------

def test_adam_epsilon_0_leaves_the_moving_statistics_alone():
    spec = Spec([dense(4, "tanh"), batchnorm(), dense(3, "softmax")], (5,),
                {**adam(), "epsilon": 0.0}, batches=(8,))
    net, truth = make_pair(spec)
    train_and_compare(net, truth, spec, "adam epsilon 0")


def test_engine_rejects_a_reshape_to_negative_dimensions():
    with pytest.raises(ValueError, match=r"layer 0 \(reshape\)"):
        Net([reshape([-2, -3]), dense(3)], (6,), adam())


def test_engine_softmax_layer_head_trains_what_it_predicts():
    layers = [dense(4), act("softmax")]
    try:
        net = Net(layers, (2, 3), adam(), loss("categorical_crossentropy"))
    except ValueError:
        return  # rejected as a dense softmax head is: consistent
    init_weights([net], layers)
    spec = Spec(layers, (2, 3), targets="soft")
    x, t = make_batch(spec, 8, 5, seed=0)
    expected = -(t * np.log(net.predict(x))).sum()
    assert abs(net.evaluate(x, t)[0] - expected) <= TOLERANCE * abs(expected)


# ---- the GPU engine against the CPU engine ------------------------------------------------

def make_device_pair(spec, seed=0):
    """(CPU engine, GPU engine) with the same random weights and dropout seed."""
    cpu = Net(spec.layers, spec.input_shape, spec.optimizer, spec.loss)
    gpu_net = _C.CudaNet(spec.layers, spec.input_shape, spec.optimizer, spec.loss)
    init_weights([cpu, gpu_net], spec.layers, seed)
    gpu_net.push()
    for net in (cpu, gpu_net):
        net.seed(11 if spec.seed is None else spec.seed)
    return cpu, gpu_net


def device_train_and_compare(cpu, gpu_net, spec, what):
    classes = math.prod(cpu.output_shapes()[-1])
    for step, n in enumerate(spec.batches):
        copy_state(cpu, gpu_net)  # each step from the same start, the CPU's state
        x, y = make_batch(spec, classes, n, step)
        loss_cpu, correct_cpu = cpu.train_step(x, y)
        loss_gpu, correct_gpu = gpu_net.train_step(x, y)
        assert abs(loss_gpu - loss_cpu) <= TOLERANCE * abs(loss_cpu), \
            f"{what} step {step}: loss {loss_gpu} vs {loss_cpu}"
        assert correct_gpu == correct_cpu, f"{what} step {step}: correct {correct_gpu} vs " \
                                           f"{correct_cpu}"
        gpu_net.pull()
        assert_states_close(gpu_net, cpu, f"{what} step {step}")
    assert gpu_net.iterations == cpu.iterations == len(spec.batches)
    copy_state(cpu, gpu_net)
    x, y = make_batch(spec, classes, 9, seed=5)
    assert_close(gpu_net.predict(x), cpu.predict(x), f"{what}: predict")
    (loss_gpu, correct_gpu), (loss_cpu, correct_cpu) = gpu_net.evaluate(x, y), cpu.evaluate(x, y)
    assert abs(loss_gpu - loss_cpu) <= TOLERANCE * abs(loss_cpu), f"{what}: evaluate loss"
    assert correct_gpu == correct_cpu, f"{what}: evaluate correct"


@pytest.mark.parametrize("as_layer", [False, True], ids=["on-dense", "activation-layer"])
@pytest.mark.parametrize("case", ACTIVATION_CASES)
@on_gpu
def test_gpu_activation_kind_matches_cpu(case, as_layer):
    kind, params = ACTIVATION_CASES[case]
    spec = activation_spec(kind, params, as_layer)
    cpu, gpu_net = make_device_pair(spec, seed=len(case))
    device_train_and_compare(cpu, gpu_net, spec, case)


@pytest.mark.parametrize("name", SPECS)
@on_gpu
def test_gpu_spec_matches_cpu(name):
    spec = SPECS[name]
    cpu, gpu_net = make_device_pair(spec, seed=len(name))
    assert [tuple(s) for s in gpu_net.output_shapes()] == [tuple(s) for s in cpu.output_shapes()]
    assert gpu_net.trainable() == cpu.trainable()
    device_train_and_compare(cpu, gpu_net, spec, name)


@on_gpu
def test_gpu_dropout_with_batchnorm_is_deterministic():
    spec = SPECS["dropout and batchnorm, seeded"]

    def train():
        net = _C.CudaNet(spec.layers, spec.input_shape, spec.optimizer, spec.loss)
        init_weights([net], spec.layers)
        net.push()
        net.seed(99)
        results = [net.train_step(*make_batch(spec, 3, n, step))
                   for step, n in enumerate(spec.batches)]
        net.pull()
        return results, snapshot(net)

    first, second = train(), train()
    assert first[0] == second[0]
    assert all(np.array_equal(p, q) for p, q in zip(first[1], second[1]))
