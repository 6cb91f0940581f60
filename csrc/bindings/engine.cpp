// engine.cpp — the compiled training plans, _C.Net (CPU) and _C.CudaNet (GPU), bound by
// one template over the two engines (csrc/engine/CONTRACT.md is their Python contract):
// the layer and optimizer dicts parsed and checked, batches and datasets checked, the GIL
// released and the engine's mutex held around every call into it.
#include <pybind11/stl.h>

#include <memory>
#include <mutex>
#include <optional>

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

Activation parse_activation(const py::dict& d, const std::string& where) {
  const std::string name = d.contains("activation") ? field<std::string>(d, "activation", where) : "linear";
  if (name == "linear") return Activation::Linear;
  if (name == "relu") return Activation::Relu;
  if (name == "softmax") return Activation::Softmax;
  fail(where, ": unknown activation '", name, "' (expected 'linear', 'relu' or 'softmax')");
}

LayerSpec parse_layer(const py::dict& d, size_t index) {
  using Kind = LayerSpec::Kind;
  const std::string where = "layer " + std::to_string(index);
  const std::string type = field<std::string>(d, "type", where);
  LayerSpec spec{};
  if (type == "conv2d") {
    spec.kind = Kind::Conv2d;
    spec.units = field<int64_t>(d, "filters", where);
    std::tie(spec.kh, spec.kw) = field_pair(d, "kernel_size", where);
    std::tie(spec.sh, spec.sw) = field_pair(d, "strides", where);
    spec.same = parse_padding(field<std::string>(d, "padding", where));
    spec.activation = parse_activation(d, where);
    spec.use_bias = field<bool>(d, "use_bias", where);
  } else if (type == "maxpool2d") {
    spec.kind = Kind::MaxPool2d;
    std::tie(spec.kh, spec.kw) = field_pair(d, "pool_size", where);
    std::tie(spec.sh, spec.sw) = field_pair(d, "strides", where);
  } else if (type == "flatten") {
    spec.kind = Kind::Flatten;
  } else if (type == "dense") {
    spec.kind = Kind::Dense;
    spec.units = field<int64_t>(d, "units", where);
    spec.activation = parse_activation(d, where);
    spec.use_bias = field<bool>(d, "use_bias", where);
  } else if (type == "dropout") {
    spec.kind = Kind::Dropout;
    spec.rate = field<double>(d, "rate", where);
  } else {
    fail(where, ": unknown type '", type, "' (expected conv2d, maxpool2d, flatten, dense or dropout)");
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

template <class Engine>
std::unique_ptr<Engine> make_engine(const py::list& layers, const std::vector<int64_t>& input_shape,
                                    const py::dict& optimizer) {
  std::vector<LayerSpec> specs;
  for (size_t i = 0; i < layers.size(); ++i) {
    if (!py::isinstance<py::dict>(layers[i])) fail("layer ", i, " must be a dict");
    specs.push_back(parse_layer(layers[i].cast<py::dict>(), i));
  }
  return std::make_unique<Engine>(std::move(specs), input_shape, parse_optimizer(optimizer));
}

// A batch for the net: x (n, *input_shape) and, when given, labels (n,) in range.
template <class Engine>
int64_t check_batch(Engine& net, const FloatArray& x, const std::optional<LabelArray>& labels,
                    std::vector<int32_t>& labels32) {
  std::vector<int64_t> expected{x.ndim() > 0 ? x.shape(0) : 0};
  for (int64_t d : net.input_shape()) expected.push_back(d);
  if (x.ndim() == 0 || shape_of(x) != expected) {
    std::vector<int64_t> per_sample(net.input_shape());
    fail("x must have shape (N, ", shape_str(per_sample).substr(1), " (the model's input shape ",
         shape_str(per_sample), " with a batch axis), got ", shape_str(shape_of(x)));
  }
  const int64_t n = x.shape(0);
  if (n == 0) fail("x must not be empty: the batch has 0 samples");
  if (!labels) return n;
  if (labels->ndim() != 1 || labels->shape(0) != n) {
    fail("labels must have shape (", n, ",) (one class index per sample), got ",
         shape_str(shape_of(*labels)));
  }
  labels32.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t label = labels->data()[i];
    if (label < 0 || label >= net.classes()) {
      fail("labels[", i, "] = ", label, " is out of range: the model has ", net.classes(),
           " outputs, so labels must be in [0, ", net.classes(), ")");
    }
    labels32[i] = static_cast<int32_t>(label);
  }
  return n;
}

// Checks a labelled batch, then runs `step` (train_step or evaluate) without the GIL.
template <class Engine>
std::pair<double, int64_t> run_batch(
    Engine& net, const FloatArray& x, const LabelArray& labels,
    BatchResult (Engine::*step)(const float*, const int32_t*, int64_t)) {
  std::vector<int32_t> labels32;
  const int64_t n = check_batch(net, x, labels, labels32);
  py::gil_scoped_release nogil;
  std::lock_guard<std::mutex> lock(net.mutex);
  const BatchResult r = (net.*step)(x.data(), labels32.data(), n);
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
  std::vector<int32_t> labels;
  bool labelled;
  int64_t count;
  HostDataset view() const {
    return {x.data(), labelled ? labels.data() : nullptr, count};
  }
};

template <class Engine>
struct EngineTraits;

template <>
struct EngineTraits<Net> {
  using Data = std::shared_ptr<HostData>;
  static constexpr const char* device = "cpu";
  static Data dataset(Net&, FloatArray x, std::vector<int32_t> labels, bool has_labels,
                      int64_t n) {
    return std::make_shared<HostData>(HostData{std::move(x), std::move(labels), has_labels, n});
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
  static Data dataset(CudaNet& net, const FloatArray& x, const std::vector<int32_t>& labels,
                      bool has_labels, int64_t n) {
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(net.mutex);
    return net.dataset(x.data(), has_labels ? labels.data() : nullptr, n);
  }
  static const Data& unwrap(const Data& data) { return data; }
  static int64_t count(const Data& data) { return data->count(); }
  static bool labelled(const Data& data) { return data->has_labels(); }
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
          py::arg("optimizer"))
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
      .def("train_step", [](Engine& net, const FloatArray& x, const LabelArray& labels) {
        return run_batch(net, x, labels, &Engine::train_step);
      }, py::arg("x"), py::arg("labels"))
      .def("evaluate", [](Engine& net, const FloatArray& x, const LabelArray& labels) {
        return run_batch(net, x, labels, &Engine::evaluate);
      }, py::arg("x"), py::arg("labels"))
      .def("predict", [](Engine& net, const FloatArray& x) {
        std::vector<int32_t> unused;
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
      .def("dataset", [](Engine& net, const FloatArray& x, const std::optional<LabelArray>& labels) {
        std::vector<int32_t> labels32;
        const int64_t n = check_batch(net, x, labels, labels32);
        return Traits::dataset(net, x, std::move(labels32), labels.has_value(), n);
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
