"""Keras-style models: ``Sequential`` and ``load_model``.

A Sequential model is a list of layers whose shapes are checked as they are added.
``compile()`` turns that list into one C++ engine (``fastnn._C.Net``) holding weights,
gradients, optimizer state and buffers; from then on every training step is one call,
``net.train_step(x_batch, labels)``, and the layers' weights are views of the engine's
memory. ``fit`` is a plain Python loop over batches around that call.

Labels are converted once, before training, to the engine's float32 targets (the loss
object checks them: class indices in range for the sparse cross-entropy, one value per
output for the others, label smoothing applied). A NaN or infinite loss during ``fit`` raises FloatingPointError naming the epoch and
batch, unless a callback (e.g. ``callbacks.TerminateOnNaN``) stops training first.
"""

import math

import numpy as np

from fastnn import _naming, _saving, _training, losses, optimizers, utils
from fastnn import callbacks as callbacks_module
from fastnn import metrics as metrics_module
from fastnn.layers import LAYER_CLASSES, InputLayer, Layer, check_shape, check_weights

__all__ = ["Sequential", "load_model"]


def _callbacks(callbacks, where):
    """The user's callbacks as a list, checked."""
    callbacks = [] if callbacks is None else callbacks
    if not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"{where}: callbacks must be a list of callbacks.Callback objects, "
                        f"got {type(callbacks).__name__}")
    for callback in callbacks:
        if not isinstance(callback, callbacks_module.Callback):
            raise TypeError(f"{where}: {callback!r} is not a callbacks.Callback")
    return list(callbacks)


class Sequential:
    """A linear stack of layers: ``Sequential([layers.Input((28, 28, 1)), layers.Conv2D(...),
    ...])`` or ``Sequential()`` then ``add(layer)``."""

    def __init__(self, layers=None, name=None):
        self.name = _naming.unique_name("sequential") if name is None else name
        self.optimizer = None
        self.loss = None
        self.stop_training = False
        self.history = None
        self._layers = []
        self._input_layer = None
        self._input_shape = None    # per sample, once known
        self._metric_names = []
        self._metric_kinds = []     # what the engine counts for each (metrics.get)
        self._net = None            # the engine, built on demand
        self._device = "cpu"        # where compile() put it: 'cpu' or 'cuda'
        self._device_newer = False  # a GPU engine trained since its host copy was read
        self._dropout_seed = None   # drawn from utils' generator with the first engine
        for layer in layers or []:
            self.add(layer)

    def __repr__(self):
        return f"<Sequential name={self.name!r}, {len(self._layers)} layers>"

    # -- structure -----------------------------------------------------------

    @property
    def layers(self):
        """The layers, without the Input layer (as Keras lists them)."""
        return list(self._layers)

    @property
    def built(self):
        return self._input_shape is not None

    @property
    def input_shape(self):
        self._require_built("input_shape")
        return (None,) + self._input_shape

    @property
    def output_shape(self):
        self._require_built("output_shape")
        return self._layers[-1].output_shape if self._layers else self.input_shape

    @property
    def metrics_names(self):
        return ["loss", *self._metric_names]

    def _require_built(self, what):
        if not self.built:
            raise ValueError(f"{self.name}: {what} is not known yet: the model has no input shape. "
                             f"Give the first layer input_shape=..., start with "
                             f"layers.Input(shape=...), or call build(), fit() or predict()")

    def get_layer(self, name=None, index=None):
        """A layer by its name or its index in ``layers`` (one of them), as Keras's."""
        if (name is None) == (index is None):
            raise ValueError(f"{self.name}.get_layer: provide either a layer name or a layer "
                             f"index, got name={name!r}, index={index!r}")
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, int):
                raise TypeError(f"{self.name}.get_layer: index must be an int, got {index!r}")
            if not -len(self._layers) <= index < len(self._layers):
                raise ValueError(f"{self.name}.get_layer: index {index} is out of range: the "
                                 f"model has {len(self._layers)} layers")
            return self._layers[index]
        for layer in self._layers:
            if layer.name == name:
                return layer
        raise ValueError(f"{self.name}.get_layer: no layer named {name!r}; its layers are "
                         f"{', '.join(repr(layer.name) for layer in self._layers)}")

    def add(self, layer):
        """Append ``layer``; with the input shape known, its shape is checked now (ValueError)."""
        if not isinstance(layer, Layer):
            raise TypeError(f"{self.name}.add: expected a fastnn layer, got {layer!r}")
        if type(layer) not in LAYER_CLASSES.values():
            # A subclass could change what the layer computes, which the engine would not see.
            raise TypeError(f"{self.name}.add: fastnn runs its own layers only "
                            f"({', '.join(LAYER_CLASSES)}), got a {type(layer).__name__}")
        if layer.model is not None:
            raise ValueError(f"{layer.where} already belongs to model {layer.model.name!r}; "
                             f"a layer can be in one model only")
        if isinstance(layer, InputLayer):
            if self._layers or self._input_layer is not None:
                raise ValueError(f"{layer.where}: an Input can only be the first layer of a model")
            self._input_layer, self._input_shape = layer, layer._output_shape
        elif self.built:
            shape = self._layers[-1]._output_shape if self._layers else self._input_shape
            if layer.declared_input_shape not in (None, shape):
                raise ValueError(f"{layer.where}: input_shape={layer.declared_input_shape} does "
                                 f"not match the previous layer's output shape {shape}")
            layer.build(shape)
        elif not self._layers and layer.declared_input_shape is not None:
            layer.build(layer.declared_input_shape)
            self._input_shape = layer.declared_input_shape
        self._drop_net()
        if not isinstance(layer, InputLayer):
            self._layers.append(layer)
        layer.model = self

    def build(self, input_shape):
        """Fix the input shape, given with its batch axis as Keras does: (None, 28, 28, 1)."""
        shape = check_shape(tuple(input_shape)[1:],
                            f"{self.name}.build: input_shape (after the batch axis)")
        if self.built:
            if shape != self._input_shape:
                raise ValueError(f"{self.name}.build: the model is built for input "
                                 f"{self.input_shape}, got {tuple(input_shape)}")
            return
        shapes = [shape]
        for layer in self._layers:  # check every layer before changing any
            shapes.append(layer.compute_output_shape(shapes[-1]))
        for layer, layer_input in zip(self._layers, shapes):
            layer.build(layer_input)
        self._input_shape = shape

    def count_params(self):
        self._require_built("count_params()")
        return sum(layer.count_params() for layer in self._layers)

    def summary(self, print_fn=None):
        """Print each layer's name, output shape and parameter count, then the totals."""
        self._require_built("summary()")
        print_fn = print_fn or print
        rows = [("Layer (type)", "Output Shape", "Param #")]
        rows += [(layer.where, str(layer.output_shape), str(layer.count_params()))
                 for layer in self._layers]
        widths = [max(len(row[i]) for row in rows) + 4 for i in range(2)]
        lines = [f"{a:{widths[0]}}{b:{widths[1]}}{c}" for a, b, c in rows]
        rule = max(65, *(len(line) for line in lines))
        total = self.count_params()
        trainable = sum(layer.count_trainable_params() for layer in self._layers)
        print_fn(f'Model: "{self.name}"')
        print_fn("_" * rule)
        print_fn(lines[0])
        print_fn("=" * rule)
        for line in lines[1:]:
            print_fn(line)
        print_fn("=" * rule)
        print_fn(f"Total params: {total:,}")
        print_fn(f"Trainable params: {trainable:,}")
        print_fn(f"Non-trainable params: {total - trainable:,}")
        print_fn("_" * rule)

    # -- weights -------------------------------------------------------------

    def get_weights(self):
        """Copies of all weights, layer by layer, kernel then bias: Keras's order and layouts."""
        return [w for layer in self._layers for w in layer.get_weights()]

    def set_weights(self, weights):
        """Overwrite all weights; ValueError names the first array of wrong count or shape."""
        targets = [w for layer in self._layers for w in layer._weights]
        values = check_weights(targets, weights, self._weight_labels(), "set_weights")
        self._pull_weights()
        for target, value in zip(targets, values):
            target[...] = value
        self._push_weights()

    def _weight_labels(self):
        return [label for layer in self._layers for label in layer.weight_labels()]

    # -- the engine ----------------------------------------------------------

    def _drop_net(self):
        """Forget the engine (the stack changed or is recompiled); weights move back to NumPy."""
        if self._net is None:
            return
        self._pull_weights()
        for layer in self._layers:
            layer._weights = layer.get_weights()
        if self.optimizer is not None:
            self.optimizer.bind(None)
        self._net = None

    def _engine_input_shape(self):
        return self._input_shape  # the engine takes any per-sample shape

    def _check_head(self, loss):
        """ValueError unless the stack has layers and ends as ``loss`` needs (a softmax or
        sigmoid for a cross-entropy on probabilities)."""
        if not self._layers:
            raise ValueError(f"{self.name} has no layers; add some before compile/fit/predict")
        if loss is not None:
            loss.check_activation(self._layers[-1])

    def _engine_layers(self):
        """The engine's layer list: each layer's engine_spec() (a list for some), an
        activation layer merged into the conv, dense or batch norm before it when that has
        none, as Keras scripts write ``Conv2D(...), BatchNormalization(), Activation('relu')``:
        the engine then applies it in the same pass (a ReLU inside the conv's kernel, or
        in place on the batch norm's output, its gradient inside the max-pool's)."""
        specs = []
        for layer in self._layers:
            spec = layer.engine_spec()
            for entry in spec if isinstance(spec, list) else [spec]:
                previous = specs[-1] if specs else None
                if (entry["type"] == "activation" and previous is not None
                        and previous["type"] in ("conv2d", "dense", "batchnorm")
                        and previous.get("activation", "linear") == "linear"):
                    specs[-1] = {**previous, **entry, "type": previous["type"]}
                else:
                    specs.append(entry)
        return specs

    def _engine_loss(self):
        """The loss's engine dict, with the count that the metrics need. Before compile
        (predict only) a loss that asks nothing of the head."""
        if self.loss is None:
            return {"type": "mean_squared_error", "accuracy": "none"}
        accuracy = metrics_module.engine_accuracy(self._metric_kinds, self._outputs)
        return self.loss.engine_spec(accuracy)

    @property
    def _accuracy_unit(self):
        """What one correct count is out of, per sample: each output (binary accuracy) or
        the sample."""
        return self._outputs if self._engine_loss()["accuracy"] == "binary" else 1

    def _ensure_net(self):
        """The engine for the current stack and compile settings, built when first needed."""
        if self._net is not None:
            return self._net
        self._check_head(self.loss)
        optimizer = self.optimizer or optimizers.Adam()  # predict() works before compile()
        net = _training.make_net(self._engine_layers(), self._engine_input_shape(),
                                 optimizer.engine_spec(), self._engine_loss(), self._device)
        views = iter(net.parameters())
        for layer in self._layers:
            engine_weights = [next(views) for _ in layer._weights]
            for view, value in zip(engine_weights, layer._weights):
                view[...] = value
            layer._weights = engine_weights
        net.push()  # a GPU engine's weights are its host copy's until sent
        if self._dropout_seed is None:
            self._dropout_seed = int(utils.generator().integers(2**63))
        net.seed(self._dropout_seed)
        if self.optimizer is not None:
            self.optimizer.bind(net)
        self._net = net
        return net

    def _pull_weights(self):
        """Bring a GPU engine's trained weights and optimizer state into the host arrays
        that the layers and optimizer_state() view (no-op on the CPU)."""
        if self._net is not None and self._device_newer:
            self._net.pull()
            self._device_newer = False

    def _push_weights(self):
        """Send the host arrays to a GPU engine (no-op on the CPU). Callers pull first, so
        the arrays they do not write still hold the trained values."""
        if self._net is not None:
            self._net.push()

    def _trained(self):
        """Note that the engine's weights moved (a GPU engine's host copy is now stale)."""
        self._device_newer = self._net.device != "cpu"

    @property
    def device(self):
        """Where the model trains: 'cpu' or 'cuda' (set by compile's device argument)."""
        return self._device

    @property
    def _outputs(self):
        """Output values per sample."""
        return math.prod(self._layers[-1]._output_shape)

    # -- compile -------------------------------------------------------------

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, device="auto"):
        """Choose the optimizer ('adam', 'sgd' or an object; Keras's default 'rmsprop' is not
        available), the loss and the metrics (['accuracy']), the device ('auto': the GPU
        when there is one, else the CPU; or 'cpu', 'cuda'), and build the engine.
        Compiling again keeps the weights and starts the optimizer state afresh."""
        device = _training.resolve_device(device, "compile")
        optimizer = optimizers.get(optimizer)
        loss = losses.get(loss)
        if metrics is None:
            metrics = []
        if not isinstance(metrics, (list, tuple)):
            raise TypeError(f"compile: metrics must be a list such as ['accuracy'], "
                            f"got {metrics!r}")
        resolved = [metrics_module.get(metric) for metric in metrics]
        self._check_head(loss)
        self._drop_net()
        self.optimizer, self.loss = optimizer, loss
        self._metric_names = [name for name, _ in resolved]
        self._metric_kinds = [kind for _, kind in resolved]
        if self.built:
            metrics_module.engine_accuracy(self._metric_kinds, self._outputs)  # fails early
        self._device = device
        if self.built:
            self._ensure_net()

    def _require_compiled(self, where):
        if self.loss is None:
            raise RuntimeError(f"{where}: the model is not compiled; call "
                               f"model.compile(optimizer=..., loss=..., metrics=[...]) first")

    # -- data ----------------------------------------------------------------

    def _inputs(self, x, where):
        """x as float32 (N, *engine input shape), building the model from x if needed."""
        if not self.built and x is not None:
            shape = np.shape(x)
            if len(shape) < 2:
                raise ValueError(f"{where}: x must have shape (N, *input_shape), got {shape}")
            self.build((None,) + tuple(int(d) for d in shape[1:]))
        self._require_built(f"{where}: the input shape")
        x = _training.as_inputs(x, self._input_shape, where)
        return x.reshape((len(x),) + self._engine_input_shape())

    def _data(self, x, y, where):
        """(x, float32 targets) checked against each other and the model."""
        x = self._inputs(x, where)
        if y is None:
            raise ValueError(f"{where}: y (the labels) is required")
        self._check_head(self.loss)
        if len(y) != len(x):
            raise ValueError(f"{where}: x and y must have the same number of samples, "
                             f"got {len(x)} and {len(y)}")
        targets = self.loss.targets(y, self._layers[-1]._output_shape, where)
        return x, targets

    def _logs(self, loss, accuracy, prefix=""):
        """The logs in Keras 3's order: the metrics, then the loss."""
        logs = {prefix + name: accuracy for name in self._metric_names}
        logs[prefix + "loss"] = loss
        return logs

    def _results(self, loss, accuracy, return_dict):
        if return_dict:
            return self._logs(loss, accuracy)
        return [loss] + [accuracy] * len(self._metric_names) if self._metric_names else loss

    # -- training ------------------------------------------------------------

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, initial_epoch=0):
        """Train for ``epochs`` epochs; returns a callbacks.History (also ``model.history``).

        As Keras: batch_size defaults to 32 and the last batch may be smaller;
        validation_split holds out the LAST fraction of x, y (before shuffling);
        validation_data=(x_val, y_val) overrides it; shuffle reorders the training samples
        each epoch with utils' seeded generator; epochs counts up from initial_epoch.
        """
        self._require_compiled("fit")
        batch_size = _training.int_arg(batch_size, "fit: batch_size", 1, default=32)
        epochs = _training.int_arg(epochs, "fit: epochs", 0)
        initial_epoch = _training.int_arg(initial_epoch, "fit: initial_epoch", 0)
        verbose = _training.verbose_arg(verbose, "fit")
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"fit: shuffle must be True or False, got {shuffle!r}")
        if not (isinstance(validation_split, (int, float)) and 0 <= validation_split < 1):
            raise ValueError(f"fit: validation_split must be a number in [0, 1), "
                             f"got {validation_split!r}")
        x, labels = self._data(x, y, "fit")
        validation = None
        if validation_data is not None:
            if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
                raise ValueError("fit: validation_data must be a tuple (x_val, y_val)")
            validation = self._data(*validation_data, "fit: validation_data")
        elif validation_split:
            split = int(len(x) * (1 - validation_split))
            if split in (0, len(x)):
                raise ValueError(f"fit: validation_split={validation_split} of {len(x)} samples "
                                 f"leaves {split} for training and {len(x) - split} for validation")
            validation = x[split:], labels[split:]
            x, labels = x[:split], labels[:split]

        net = self._ensure_net()
        data = net.dataset(x, labels)  # on the GPU: uploaded once for the whole fit
        if validation is not None:
            validation = net.dataset(*validation)
        steps = _training.batch_count(len(x), batch_size)
        self.history = callbacks_module.History()
        extra = [callbacks_module.ProgbarLogger()] if verbose else []
        params = {"verbose": verbose, "epochs": epochs, "steps": steps}
        hooks = callbacks_module.CallbackList([*_callbacks(callbacks, "fit"), self.history, *extra],
                                              self, params)
        self.history.params = params
        self.stop_training = False
        logs = {}
        hooks.call("on_train_begin", logs)
        for epoch in range(initial_epoch, epochs):
            hooks.call("on_epoch_begin", epoch, {})
            # The epoch's order is shuffle_index(key, ·), the same on both engines.
            key = int(utils.generator().integers(2**63)) if shuffle else None
            logs = self._train_epoch(net, data, batch_size, key, hooks, epoch) or logs
            if validation is not None:
                val_loss, val_accuracy = self._evaluate(validation, batch_size, hooks)
                logs.update(self._logs(val_loss, val_accuracy, prefix="val_"))
            hooks.call("on_epoch_end", epoch, logs)
            if self.stop_training:
                break
        hooks.call("on_train_end", logs)
        return self.history

    def _train_epoch(self, net, data, batch_size, key, hooks, epoch):
        """One epoch in runs of steps (_training.chunks). Each run's batch-begin hooks come
        before it starts, its batch-end hooks once its results are read; the GPU engine
        enqueues the next run first, so a stop requested by a callback takes effect after
        the run in flight. Returns the last logs."""
        n, steps = len(data), _training.batch_count(len(data), batch_size)
        runs = _training.chunks(net, steps)
        ahead = net.device != "cpu"

        def start(run):
            first, count = run
            for step in range(first, first + count):
                hooks.call("on_train_batch_begin", step, {})
            net.train_steps(data, batch_size, key, first, count)

        loss_sum, correct, seen, logs = 0.0, 0, 0, None
        if ahead:
            start(runs[0])
        for i, (first, count) in enumerate(runs):
            if not ahead:
                start(runs[i])
            elif i + 1 < len(runs) and not self.stop_training:
                start(runs[i + 1])
            losses, corrects = net.step_results(first, count)
            unit = self._accuracy_unit
            self._trained()
            for step, loss, step_correct in zip(range(first, first + count), losses.tolist(),
                                                corrects.tolist()):
                rows = _training.batch_rows(n, batch_size, step)
                loss_sum += loss * rows
                correct += step_correct
                seen += rows
                logs = self._logs(loss_sum / seen, correct / (seen * unit))
                hooks.call("on_train_batch_end", step, logs)
                if not math.isfinite(loss) and not self.stop_training:
                    raise FloatingPointError(
                        f"fit: the loss became {loss} at epoch {epoch + 1}, batch {step + 1} of "
                        f"{steps}; the weights are no longer usable. Try a lower learning "
                        f"rate or check the inputs' scale; callbacks.TerminateOnNaN() stops "
                        f"training without this exception.")
                if self.stop_training:
                    break
            if self.stop_training:
                if ahead and i + 1 < len(runs):
                    net.step_results(*runs[i + 1])  # already enqueued: let it finish
                break
        return logs

    def train_on_batch(self, x, y, return_dict=False):
        """One training step on this batch; returns [loss, accuracy] (or the loss alone)."""
        self._require_compiled("train_on_batch")
        x, labels = self._data(x, y, "train_on_batch")
        loss, correct = self._ensure_net().train_step(x, labels)
        self._trained()
        return self._results(loss, correct / (len(x) * self._accuracy_unit), return_dict)

    # -- inference -----------------------------------------------------------

    def _evaluate(self, data, batch_size, hooks, progbar=None):
        """(mean loss, accuracy) over a dataset of the engine's, batch by batch (the GPU
        engine runs all batches in one call, then the hooks see them)."""
        net = self._ensure_net()
        n, steps = len(data), _training.batch_count(len(data), batch_size)
        unit = self._accuracy_unit
        loss_sum, correct = 0.0, 0
        hooks.call("on_test_begin", {})
        for first, count in _training.inference_chunks(net, steps):
            for step in range(first, first + count):
                hooks.call("on_test_batch_begin", step, {})
            losses, corrects = net.evaluate_steps(data, batch_size, first, count)
            for step, loss, step_correct in zip(range(first, first + count), losses.tolist(),
                                                corrects.tolist()):
                loss_sum += loss
                correct += step_correct
                stop = step * batch_size + _training.batch_rows(n, batch_size, step)
                logs = self._logs(loss_sum / stop, correct / (stop * unit))
                hooks.call("on_test_batch_end", step, logs)
                if progbar and step + 1 < steps:
                    progbar.update(step + 1, logs.items())
        result = loss_sum / n, correct / (n * unit)
        hooks.call("on_test_end", self._logs(*result))
        if progbar:
            progbar.update(steps, self._logs(*result).items(), finalize=True)
        return result

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", callbacks=None,
                 return_dict=False):
        """Mean loss and metrics over (x, y): [loss, accuracy] (the loss alone without metrics)."""
        self._require_compiled("evaluate")
        batch_size = _training.int_arg(batch_size, "evaluate: batch_size", 1, default=32)
        verbose = _training.verbose_arg(verbose, "evaluate")
        x, labels = self._data(x, y, "evaluate")
        hooks = callbacks_module.CallbackList(_callbacks(callbacks, "evaluate"), self,
                                              {"verbose": verbose})
        steps = _training.batch_count(len(x), batch_size)
        progbar = _training.Progbar(steps, verbose) if verbose else None
        data = self._ensure_net().dataset(x, labels)
        return self._results(*self._evaluate(data, batch_size, hooks, progbar), return_dict)

    def test_on_batch(self, x, y, return_dict=False):
        """Loss and metrics on one batch, without updating the weights."""
        self._require_compiled("test_on_batch")
        x, labels = self._data(x, y, "test_on_batch")
        loss_sum, correct = self._ensure_net().evaluate(x, labels)
        return self._results(loss_sum / len(x), correct / (len(x) * self._accuracy_unit),
                             return_dict)

    def predict(self, x, batch_size=None, verbose=0, callbacks=None):
        """The last layer's outputs, float32 (N, *output shape): probabilities for a softmax
        model."""
        batch_size = _training.int_arg(batch_size, "predict: batch_size", 1, default=32)
        verbose = _training.verbose_arg(verbose, "predict")
        x = self._inputs(x, "predict")
        net = self._ensure_net()
        data = net.dataset(x)
        steps = _training.batch_count(len(x), batch_size)
        hooks = callbacks_module.CallbackList(_callbacks(callbacks, "predict"), self,
                                              {"verbose": verbose})
        progbar = _training.Progbar(steps, verbose) if verbose else None
        out = np.empty((len(x), self._outputs), np.float32)
        hooks.call("on_predict_begin", {})
        for first, count in _training.inference_chunks(net, steps):
            for step in range(first, first + count):
                hooks.call("on_predict_batch_begin", step, {})
            start = first * batch_size
            outputs = net.predict_steps(data, batch_size, first, count)
            out[start:start + len(outputs)] = outputs
            for step in range(first, first + count):
                rows = slice(step * batch_size,
                             step * batch_size + _training.batch_rows(len(x), batch_size, step))
                hooks.call("on_predict_batch_end", step, {"outputs": out[rows].reshape(
                    (-1,) + self._layers[-1]._output_shape)})
                if progbar and step + 1 < steps:
                    progbar.update(step + 1)
        hooks.call("on_predict_end", {})
        if progbar:
            progbar.update(steps, finalize=True)
        return out.reshape((len(x),) + self._layers[-1]._output_shape)

    def predict_on_batch(self, x):
        """predict() on one batch."""
        x = self._inputs(x, "predict_on_batch")
        return self._ensure_net().predict(x).reshape((len(x),) + self._layers[-1]._output_shape)

    # -- saving --------------------------------------------------------------

    def get_config(self):
        layers = ([self._input_layer] if self._input_layer else []) + self._layers
        return {"name": self.name,
                "input_shape": list(self._input_shape) if self.built else None,
                "layers": [{"class_name": type(layer).__name__, "config": layer.get_config()}
                           for layer in layers]}

    @classmethod
    def from_config(cls, config):
        model = cls(name=config["name"])
        for entry in config["layers"]:
            if entry["class_name"] not in LAYER_CLASSES:
                raise ValueError(f"unknown layer class {entry['class_name']!r}")
            model.add(LAYER_CLASSES[entry["class_name"]].from_config(entry["config"]))
        if config["input_shape"] is not None:
            model.build([None, *config["input_shape"]])
        return model

    def _compile_config(self):
        """The compile settings as a model file records them; None before compile()."""
        if self.loss is None:
            return None
        return {"optimizer": {"class_name": type(self.optimizer).__name__,
                              "config": self.optimizer.get_config()},
                "loss": {"class_name": type(self.loss).__name__, "config": self.loss.get_config()},
                "metrics": list(self._metric_names)}

    def save(self, filepath):
        """Save architecture, weights, compile settings and optimizer state to one file (a zip,
        see fastnn._saving), atomically: a failed save leaves any previous file intact."""
        compiled = self._compile_config()
        net = self._net if compiled else None
        self._pull_weights()  # a GPU engine's weights and optimizer state, as trained
        state = [a.copy() for a in net.optimizer_state()] if net is not None else []
        _saving.save_model(filepath, {"class_name": "Sequential", "config": self.get_config()},
                           compiled, self._dropout_seed, self._weight_labels(),
                           self.get_weights(), net.iterations if net is not None else None,
                           state)

    def save_weights(self, filepath):
        """Save the weights alone (same file format, atomic)."""
        _saving.save_weights(filepath, self._weight_labels(), self.get_weights())

    def load_weights(self, filepath):
        """Load weights saved by save_weights() or save() into this model (same architecture)."""
        _saving.load_weights(filepath, self.set_weights, self.name)

    def _restore_optimizer(self, saved):
        """Put a model file's (``_saving.ModelFile``) optimizer state into the new engine."""
        net = self._ensure_net()
        targets = net.optimizer_state()
        for target, value in zip(targets, saved.optimizer_state([t.shape for t in targets])):
            target[...] = value
        self._push_weights()
        net.iterations = int(saved.iterations)


def load_model(filepath, compile=True, device="auto"):
    """A model saved by ``model.save``, compiled for ``device`` (as compile's; a file
    does not record the device it was trained on) and with its optimizer state unless
    ``compile=False``. ValueError names the file and what is wrong with it."""
    device = _training.resolve_device(device, "load_model")  # before the file's own errors
    saved = _saving.read_model(filepath)
    with saved.building():
        model = Sequential.from_config(saved.model["config"])
        model.set_weights(saved.weights())
        model._dropout_seed = saved.dropout_seed
        compiled = saved.compiled
        if compile and compiled is not None:
            optimizer = optimizers.OPTIMIZER_CLASSES[compiled["optimizer"]["class_name"]]
            loss = losses.LOSS_CLASSES[compiled["loss"]["class_name"]]
            model.compile(optimizer=optimizer.from_config(compiled["optimizer"]["config"]),
                          loss=loss.from_config(compiled["loss"]["config"]),
                          metrics=compiled["metrics"], device=device)
            if saved.iterations is not None:
                model._restore_optimizer(saved)
    return model
