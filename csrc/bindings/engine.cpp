// engine.cpp — the compiled training plans, _C.Net (CPU) and _C.CudaNet (GPU), bound by
// one template over the two engines (csrc/engine/CONTRACT.md is their Python contract):
// the layer and optimizer dicts parsed and checked, batches and datasets checked, the GIL
// released and the engine's mutex held around every call into it.
#include <pybind11/stl.h>

#include <memory>
#include <mutex>
#include <optional>

#include <cmath>

#include "bindings/activation_names.h"
#include "bindings/augment_dict.h"
#include "bindings/arrays.h"
#include "engine/net.h"
#ifdef FASTNN_WITH_CUDA
#include "engine/cuda_net.h"
#endif

namespace fastnn::bindings {
namespace {

// ---- the engine ---------------------------------------------------------------------

// dict[key] as T, or an error naming the layer and the key.
template <class T>
T field(const py::dict& d, const char* key, const std::string& where) {
  if (!d.contains(key)) fail(where, " is missing '", key, "'");
  try {
    return d[key].cast<T>();
  } catch (const py::cast_error&) {
    fail(where, ": '", key, "' has the wrong type (", std::string(py::str(py::type::of(d[key]))), ")");
  }
}

std::pair<int64_t, int64_t> field_pair(const py::dict& d, const char* key, const std::string& where) {
  const auto pair = field<std::vector<int64_t>>(d, key, where);
  if (pair.size() != 2) fail(where, ": '", key, "' must be a pair, got ", pair.size(), " values");
  return {pair[0], pair[1]};
}

template <class T>
T field_or(const py::dict& d, const char* key, T fallback, const std::string& where) {
  return d.contains(key) ? field<T>(d, key, where) : fallback;
}

// "activation": a Keras name (activation_names.h), with its "activation_alpha", "_beta",
// "_gamma" numbers where the kind takes them (ops.h ActivationSpec).
ActivationSpec parse_activation(const py::dict& d, const std::string& where) {
  ActivationSpec a;
  const std::string name = field_or<std::string>(d, "activation", "linear", where);
  try {
    a.kind = activation_kind(name);
  } catch (const Error& error) {
    fail(where, ": ", error.what());
  }
  a.alpha = static_cast<float>(field_or<double>(d, "activation_alpha", 0.0, where));
  a.beta = static_cast<float>(field_or<double>(d, "activation_beta", 0.0, where));
  a.gamma = static_cast<float>(field_or<double>(d, "activation_gamma", 0.0, where));
  return a;
}

LayerSpec parse_layer(const py::dict& d, size_t index) {
  using Kind = LayerSpec::Kind;
  std::string where = "layer " + std::to_string(index);
  const std::string type = field<std::string>(d, "type", where);
  where += " (" + type + ")";
  LayerSpec spec{};
  spec.activation = parse_activation(d, where);
  if (type == "conv2d") {
    spec.kind = Kind::Conv2d;
    spec.units = field<int64_t>(d, "filters", where);
    std::tie(spec.kh, spec.kw) = field_pair(d, "kernel_size", where);
    std::tie(spec.sh, spec.sw) = field_pair(d, "strides", where);
    spec.same = parse_padding(field<std::string>(d, "padding", where));
    spec.use_bias = field<bool>(d, "use_bias", where);
  } else if (type == "maxpool2d" || type == "avgpool2d") {
    spec.kind = type == "maxpool2d" ? Kind::MaxPool2d : Kind::AvgPool2d;
    std::tie(spec.kh, spec.kw) = field_pair(d, "pool_size", where);
    std::tie(spec.sh, spec.sw) = field_pair(d, "strides", where);
    spec.same = parse_padding(field_or<std::string>(d, "padding", "valid", where));
  } else if (type == "flatten") {
    spec.kind = Kind::Reshape;  // to one axis: the plan forms the shape
  } else if (type == "reshape") {
    spec.kind = Kind::Reshape;
    spec.shape = field<std::vector<int64_t>>(d, "shape", where);
  } else if (type == "dense") {
    spec.kind = Kind::Dense;
    spec.units = field<int64_t>(d, "units", where);
    spec.use_bias = field<bool>(d, "use_bias", where);
  } else if (type == "dropout") {
    spec.kind = Kind::Dropout;
    spec.rate = field<double>(d, "rate", where);
  } else if (type == "activation") {
    spec.kind = Kind::Activation;
  } else if (type == "augment") {
    spec.kind = Kind::Augment;
    spec.augment = parse_augment(d, where);
    if (spec.augment.mode == AugmentStep::Mode::Crop) {
      spec.shape = field<std::vector<int64_t>>(d, "crop", where);
    }
    if (d.contains("seed") && !d["seed"].is_none()) {
      spec.has_seed = true;
      spec.seed = field<uint64_t>(d, "seed", where);
    }
  } else if (type == "batchnorm") {
    spec.kind = Kind::BatchNorm;
    spec.epsilon = field<double>(d, "epsilon", where);
    spec.momentum = field<double>(d, "momentum", where);
    spec.center = field<bool>(d, "center", where);
    spec.scale = field<bool>(d, "scale", where);
  } else {
    fail("layer ", index, ": unknown type '", type, "' (expected conv2d, maxpool2d, avgpool2d, flatten, "
         "reshape, dense, dropout, activation, batchnorm or augment)");
  }
  return spec;
}

OptimizerSpec parse_optimizer(const py::dict& d) {
  OptimizerSpec spec;
  const std::string type = field<std::string>(d, "type", "optimizer");
  spec.learning_rate = field<double>(d, "learning_rate", "optimizer");
  if (type == "adam") {
    spec.kind = OptimizerSpec::Kind::Adam;
    spec.beta_1 = field<double>(d, "beta_1", "optimizer");
    spec.beta_2 = field<double>(d, "beta_2", "optimizer");
    spec.epsilon = field<double>(d, "epsilon", "optimizer");
  } else if (type == "sgd") {
    spec.kind = OptimizerSpec::Kind::Sgd;
    spec.momentum = field<double>(d, "momentum", "optimizer");
    spec.nesterov = field<bool>(d, "nesterov", "optimizer");
  } else {
    fail("optimizer: unknown type '", type, "' (expected 'adam' or 'sgd')");
  }
  return spec;
}

// {"type": a Keras loss name, "from_logits": bool, "delta": float (huber), "accuracy":
// "argmax" | "binary" | "none"}; None: sparse categorical cross-entropy, argmax accuracy.
LossSpec parse_loss(const std::optional<py::dict>& maybe) {
  using Kind = LossSpec::Kind;
  LossSpec spec;
  if (!maybe) return spec;
  const py::dict& d = *maybe;
  const std::string type = field<std::string>(d, "type", "loss");
  if (type == "sparse_categorical_crossentropy") {
    spec.kind = Kind::SparseCategorical;
  } else if (type == "categorical_crossentropy") {
    spec.kind = Kind::Categorical;
  } else if (type == "binary_crossentropy") {
    spec.kind = Kind::Binary;
  } else if (type == "mean_squared_error") {
    spec.kind = Kind::MeanSquared;
  } else if (type == "mean_absolute_error") {
    spec.kind = Kind::MeanAbsolute;
  } else if (type == "huber") {
    spec.kind = Kind::Huber;
  } else {
    fail("loss: unknown type '", type, "' (expected sparse_categorical_crossentropy, "
         "categorical_crossentropy, binary_crossentropy, mean_squared_error, "
         "mean_absolute_error or huber)");
  }
  spec.from_logits = field_or<bool>(d, "from_logits", false, "loss");
  spec.delta = field_or<double>(d, "delta", 1.0, "loss");
  const std::string accuracy = field_or<std::string>(d, "accuracy", "argmax", "loss");
  if (accuracy == "argmax") {
    spec.accuracy = LossSpec::Accuracy::Argmax;
  } else if (accuracy == "binary") {
    spec.accuracy = LossSpec::Accuracy::Binary;
  } else if (accuracy == "none") {
    spec.accuracy = LossSpec::Accuracy::None;
  } else {
    fail("loss: unknown accuracy '", accuracy, "' (expected 'argmax', 'binary' or 'none')");
  }
  return spec;
}

template <class Engine>
std::unique_ptr<Engine> make_engine(const py::list& layers, const std::vector<int64_t>& input_shape,
                                    const py::dict& optimizer, const std::optional<py::dict>& loss) {
  std::vector<LayerSpec> specs;
  for (size_t i = 0; i < layers.size(); ++i) {
    if (!py::isinstance<py::dict>(layers[i])) fail("layer ", i, " must be a dict");
    specs.push_back(parse_layer(layers[i].cast<py::dict>(), i));
  }
  LossSpec loss_spec = parse_loss(loss);
  // Without a loss dict (the engine's own contract): sparse cross-entropy, on the softmax
  // when the last layer has one, else on its outputs as logits.
  if (!loss && !specs.empty()) loss_spec.from_logits = specs.back().activation.kind != Act::Softmax;
  return std::make_unique<Engine>(std::move(specs), input_shape, parse_optimizer(optimizer),
                                  loss_spec);
}

// A batch for the net: x (n, *input_shape) and, when given, its targets: for a sparse
// loss one class index per sample ((n,) or (n, 1), whole numbers in range), else
// target_width() finite numbers per sample. Returns n; the targets as floats in `out`.
template <class Engine>
int64_t check_batch(Engine& net, const FloatArray& x, const std::optional<FloatArray>& targets,
                    std::vector<float>& out) {
  std::vector<int64_t> expected{x.ndim() > 0 ? x.shape(0) : 0};
  for (int64_t d : net.input_shape()) expected.push_back(d);
  if (x.ndim() == 0 || shape_of(x) != expected) {
    std::vector<int64_t> per_sample(net.input_shape());
    fail("x must have shape (N, ", shape_str(per_sample).substr(1), " (the model's input shape ",
         shape_str(per_sample), " with a batch axis), got ", shape_str(shape_of(x)));
  }
  const int64_t n = x.shape(0);
  if (n == 0) fail("x must not be empty: the batch has 0 samples");
  if (!targets) return n;
  const int64_t width = net.target_width();
  const bool sparse = net.plan().loss.kind == LossSpec::Kind::SparseCategorical;
  if (targets->ndim() == 0 || targets->shape(0) != n || targets->size() != n * width) {
    fail(sparse ? "labels must have shape (" : "targets must have shape (", n, ", ",
         sparse ? "" : std::to_string(width), sparse ? ") (one class index per sample)" :
         ") (one value per output of the model)", ", got ", shape_str(shape_of(*targets)));
  }
  out.assign(targets->data(), targets->data() + n * width);
  for (int64_t i = 0; i < n * width; ++i) {
    const float v = out[i];
    if (sparse && !(v >= 0 && v < static_cast<float>(net.classes()) && v == std::floor(v))) {
      fail("labels[", i, "] = ", v, " is out of range: the model has ", net.classes(),
           " outputs, so labels must be whole numbers in [0, ", net.classes(), ")");
    }
    if (!std::isfinite(v)) fail("targets contain ", v, " (at flat index ", i, ")");
  }
  return n;
}

// Checks a batch and its targets, then runs `step` (train_step or evaluate) without the GIL.
template <class Engine>
std::pair<double, int64_t> run_batch(
    Engine& net, const FloatArray& x, const FloatArray& targets,
    BatchResult (Engine::*step)(const float*, const float*, int64_t)) {
  std::vector<float> checked;
  const int64_t n = check_batch(net, x, targets, checked);
  py::gil_scoped_release nogil;
  std::lock_guard<std::mutex> lock(net.mutex);
  const BatchResult r = (net.*step)(x.data(), checked.data(), n);
  return {r.loss, r.correct};
}

// Arrays that view the net's own memory (on the host); they keep the net alive.
template <class Engine>
py::list views(py::object owner, Engine& net, float* base) {
  py::list out;
  for (const ParameterSlot& slot : net.parameter_slots()) {
    out.append(py::array_t<float>(slot.shape, base + slot.offset, owner));
  }
  return out;
}

// ---- datasets: what a whole epoch reads ---------------------------------------------

// The CPU engine reads the caller's samples in place: this keeps them alive.
struct HostData {
  FloatArray x;
  std::vector<float> targets;
  bool labelled;
  int64_t count;
  HostDataset view() const {
    return {x.data(), labelled ? targets.data() : nullptr, count};
  }
};

template <class Engine>
struct EngineTraits;

template <>
struct EngineTraits<Net> {
  using Data = std::shared_ptr<HostData>;
  static constexpr const char* device = "cpu";
  static Data dataset(Net&, FloatArray x, std::vector<float> targets, bool has_targets,
                      int64_t n) {
    return std::make_shared<HostData>(HostData{std::move(x), std::move(targets), has_targets, n});
  }
  static HostDataset unwrap(const Data& data) { return data->view(); }
  static int64_t count(const Data& data) { return data->count; }
  static bool labelled(const Data& data) { return data->labelled; }
  static void pull(Net&) {}  // the views are the engine's memory
  static void push(Net&) {}
};

#ifdef FASTNN_WITH_CUDA
template <>
struct EngineTraits<CudaNet> {
  using Data = std::shared_ptr<CudaDataset>;
  static constexpr const char* device = "cuda";
  static Data dataset(CudaNet& net, const FloatArray& x, const std::vector<float>& targets,
                      bool has_targets, int64_t n) {
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(net.mutex);
    return net.dataset(x.data(), has_targets ? targets.data() : nullptr, n);
  }
  static const Data& unwrap(const Data& data) { return data; }
  static int64_t count(const Data& data) { return data->count(); }
  static bool labelled(const Data& data) { return data->has_targets(); }
  static void pull(CudaNet& net) { net.pull(); }
  static void push(CudaNet& net) { net.push(); }
};
#endif

// The steps [first, first + count) of an epoch of `batch_size` over `data`, checked.
template <class Engine>
void check_steps(const typename EngineTraits<Engine>::Data& data, int64_t batch_size,
                 int64_t first, int64_t count, bool need_labels) {
  using Traits = EngineTraits<Engine>;
  if (batch_size < 1) fail("batch_size must be >= 1, got ", batch_size);
  const int64_t steps = epoch_steps(Traits::count(data), batch_size);
  if (first < 0 || count < 1 || first + count > steps) {
    fail("steps [", first, ", ", first + count, ") are outside the epoch: ",
         Traits::count(data), " samples in batches of ", batch_size, " make ", steps, " steps");
  }
  if (need_labels && !Traits::labelled(data)) fail("this dataset has no labels");
}

// What only one engine has: the CPU's timings, each engine's way to take a dropout seed.
void bind_device_specifics(py::class_<Net>& cls);
#ifdef FASTNN_WITH_CUDA
void bind_device_specifics(py::class_<CudaNet>& cls);
#endif

template <class Engine>
void bind_engine(py::module_& m, const char* name, const char* doc) {
  using Traits = EngineTraits<Engine>;
  using Data = typename Traits::Data;
  py::class_<Engine> cls(m, name, doc);
  cls.def(py::init(&make_engine<Engine>), py::arg("layers"), py::arg("input_shape"),
          py::arg("optimizer"), py::arg("loss") = py::none())
      .def_property_readonly("device", [](const Engine&) { return Traits::device; })
      .def("parameters", [](py::object self) {
        Engine& net = self.cast<Engine&>();
        return views(self, net, net.parameters());
      })
      .def("optimizer_state", [](py::object self) {
        Engine& net = self.cast<Engine&>();
        py::list out;
        for (int s = 0; s < net.optimizer_slot_count(); ++s) {
          for (py::handle a : views(self, net, net.optimizer_state(s))) out.append(a);
        }
        return out;
      })
      .def("pull", [](Engine& net) {
        py::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lock(net.mutex);
        Traits::pull(net);
      }, "Refresh the host copy that parameters() and optimizer_state() view (CUDA)")
      .def("push", [](Engine& net) {
        py::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lock(net.mutex);
        Traits::push(net);
      }, "Send the host copy to the device after writing into the views (CUDA)")
      .def_readwrite("iterations", &Engine::iterations)
      .def_readwrite("learning_rate", &Engine::learning_rate)
      .def("output_shapes", [](const Engine& net) {
        py::list out;
        for (const auto& shape : net.output_shapes()) out.append(py::tuple(py::cast(shape)));
        return out;
      })
      .def_property_readonly("parameter_count", &Engine::parameter_count)
      .def("train_step", [](Engine& net, const FloatArray& x, const FloatArray& targets) {
        return run_batch(net, x, targets, &Engine::train_step);
      }, py::arg("x"), py::arg("labels"))
      .def("evaluate", [](Engine& net, const FloatArray& x, const FloatArray& targets) {
        return run_batch(net, x, targets, &Engine::evaluate);
      }, py::arg("x"), py::arg("labels"))
      .def_property_readonly("target_width", &Engine::target_width)
      .def("trainable", [](const Engine& net) {
        py::list out;
        for (const ParameterSlot& slot : net.parameter_slots()) out.append(slot.trainable);
        return out;
      }, "For each array of parameters(): whether the optimizer trains it")
      .def("predict", [](Engine& net, const FloatArray& x) {
        std::vector<float> unused;
        const int64_t n = check_batch(net, x, std::nullopt, unused);
        FloatArray out({n, net.classes()});
        float* p = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          std::lock_guard<std::mutex> lock(net.mutex);
          net.predict(x.data(), n, p);
        }
        return out;
      }, py::arg("x"))
      .def("dataset", [](Engine& net, const FloatArray& x, const std::optional<FloatArray>& labels) {
        std::vector<float> targets;
        const int64_t n = check_batch(net, x, labels, targets);
        return Traits::dataset(net, x, std::move(targets), labels.has_value(), n);
      }, py::arg("x"), py::arg("labels") = py::none(),
         "The samples (and labels) a run of steps reads: on the GPU, copied there once")
      .def("train_steps", [](Engine& net, const Data& data, int64_t batch_size,
                             std::optional<uint64_t> shuffle_key, int64_t first, int64_t count) {
        check_steps<Engine>(data, batch_size, first, count, true);
        py::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lock(net.mutex);
        net.train_steps(Traits::unwrap(data), batch_size, shuffle_key.has_value(),
                        shuffle_key.value_or(0), first, count);
      }, py::arg("data"), py::arg("batch_size"), py::arg("shuffle_key"), py::arg("first_step"),
         py::arg("count"),
         "Run (CPU) or enqueue (CUDA) steps [first_step, first_step + count) of an epoch")
      .def("step_results", [](Engine& net, int64_t first, int64_t count) {
        if (first < 0 || count < 1) fail("step_results: first >= 0 and count >= 1, got ", first, ", ", count);
        py::array_t<float> loss(count);
        py::array_t<int32_t> correct(count);
        float* l = loss.mutable_data();
        int32_t* c = correct.mutable_data();
        {
          py::gil_scoped_release nogil;
          std::lock_guard<std::mutex> lock(net.mutex);
          net.step_results(first, count, l, c);
        }
        return py::make_tuple(loss, correct);
      }, py::arg("first_step"), py::arg("count"),
         "(mean loss, correct count) of each of those steps, once they are done")
      .def("evaluate_steps", [](Engine& net, const Data& data, int64_t batch_size, int64_t first,
                                int64_t count) {
        check_steps<Engine>(data, batch_size, first, count, true);
        py::array_t<double> loss(count);
        py::array_t<int32_t> correct(count);
        double* l = loss.mutable_data();
        int32_t* c = correct.mutable_data();
        {
          py::gil_scoped_release nogil;
          std::lock_guard<std::mutex> lock(net.mutex);
          net.evaluate_steps(Traits::unwrap(data), batch_size, first, count, l, c);
        }
        return py::make_tuple(loss, correct);
      }, py::arg("data"), py::arg("batch_size"), py::arg("first_step"), py::arg("count"),
         "(summed loss, correct count) of each batch, in order, without training")
      .def("predict_steps", [](Engine& net, const Data& data, int64_t batch_size, int64_t first,
                               int64_t count) {
        check_steps<Engine>(data, batch_size, first, count, false);
        const int64_t rows = std::min(Traits::count(data), (first + count) * batch_size) -
                             first * batch_size;
        FloatArray out({rows, net.classes()});
        float* p = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          std::lock_guard<std::mutex> lock(net.mutex);
          net.predict_steps(Traits::unwrap(data), batch_size, first, count, p);
        }
        return out;
      }, py::arg("data"), py::arg("batch_size"), py::arg("first_step"), py::arg("count"),
         "The outputs of those batches' rows, in order");
  bind_device_specifics(cls);
}

void bind_device_specifics(py::class_<Net>& cls) {
  cls.def("seed", [](Net& net, uint64_t seed) { net.seed = seed; }, py::arg("seed"))
      .def("timings", [](const Net& net) {
        const Net::Timings& t = net.timings();
        py::dict d;
        d["forward"] = t.forward;
        d["backward"] = t.backward;
        d["loss"] = t.loss;
        d["update"] = t.update;
        d["steps"] = t.steps;
        return d;
      }, "Wall seconds per layer (forward, backward lists), loss and update, and the "
         "number of training steps, since the last reset_timings()")
      .def("reset_timings", &Net::reset_timings);
}

#ifdef FASTNN_WITH_CUDA
void bind_device_specifics(py::class_<CudaNet>& cls) {
  cls.def("seed", [](CudaNet& net, uint64_t seed) {
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(net.mutex);
    net.set_seed(seed);
  }, py::arg("seed"));
}
#endif

}  // namespace

void bind_engines(py::module_& m) {
  py::class_<HostData, std::shared_ptr<HostData>>(m, "HostDataset",
                                                  "Samples the CPU engine reads in place")
      .def("__len__", [](const HostData& d) { return d.count; });
  bind_engine<Net>(m, "Net", "The compiled training plan on the CPU (csrc/engine/CONTRACT.md)");
#ifdef FASTNN_WITH_CUDA
  py::class_<CudaDataset, std::shared_ptr<CudaDataset>>(
      m, "CudaDataset", "Samples copied to the GPU once")
      .def("__len__", &CudaDataset::count);
  bind_engine<CudaNet>(m, "CudaNet",
                               "The compiled training plan on the GPU (csrc/engine/CONTRACT.md)");
#endif
}


}  // namespace fastnn::bindings
