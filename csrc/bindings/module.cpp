// module.cpp — fastnn._C: the build's facts, threads, the CPU ISA path and kernel timing;
// the ops (ops.cpp) and the engines (engine.cpp) bind themselves. Error (a C++
// std::invalid_argument) becomes ValueError, CudaError RuntimeError, out of memory
// MemoryError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "bindings/op_call.h"
#include "common.h"
#include "cpu/dispatch.h"
#include "cpu/threads.h"
#include "ops.h"
#ifdef FASTNN_WITH_CUDA
#include "cuda/device.h"
#endif

namespace py = pybind11;

namespace fastnn::bindings {
void bind_ops(py::module_& m);
void bind_activation_ops(py::module_& m);  // ops_activation.cpp
void bind_pool_norm_ops(py::module_& m);   // ops_pool_norm.cpp
void bind_loss_ops(py::module_& m);        // ops_loss.cpp
void bind_augment_ops(py::module_& m);     // ops_augment.cpp
void bind_engines(py::module_& m);

namespace {

py::dict build_info() {
  py::dict info;
  info["version"] = FASTNN_VERSION;
  info["cpu_isa_available"] = cpu_isa_available();
  info["cpu_isa"] = std::string(cpu_kernels().name);
  info["num_threads"] = get_num_threads();
  info["max_threads"] = max_threads();
#ifdef FASTNN_WITH_CUDA
  info["cuda_compiled"] = true;
  info["cuda_runtime_version"] = cuda::runtime_version();
  const cuda::DeviceStatus status = cuda::device_status();
  info["cuda_devices"] = status.count;
  // Why no GPU is usable, naming the CUDA error (a driver too old, no device, ...).
  info["cuda_error"] = status.error.empty() ? py::object(py::none()) : py::str(status.error);
  py::list names;
  for (int i = 0; i < status.count; ++i) names.append(cuda::device_name(i));
  info["cuda_device_names"] = names;
#else
  info["cuda_compiled"] = false;
  info["cuda_devices"] = 0;
  info["cuda_error"] = "this fastnn was built without CUDA";
#endif
  info["compiler"] = __VERSION__;
  return info;
}

}  // namespace
}  // namespace fastnn::bindings

PYBIND11_MODULE(_C, m) {
  using namespace fastnn;
  m.doc() = "fastnn's compiled kernels; use fastnn.ops for the checked NumPy API";
  m.attr("__version__") = FASTNN_VERSION;
  init_cpu_isa_from_env();

  m.def("build_info", &bindings::build_info);
  m.def("get_num_threads", &get_num_threads);
  m.def("set_num_threads", &set_num_threads, py::arg("n"));
  m.def("get_cpu_isa", [] { return std::string(cpu_kernels().name); });
  m.def("set_cpu_isa", &set_cpu_isa, py::arg("name"));
  m.def("time_kernels", [](int repeats) {
    if (repeats < 0) fail("repeats must be >= 0, got ", repeats);
    bindings::kernel_timing().repeats = repeats;
  }, py::arg("repeats"),
     "With repeats > 0, each op call also runs its kernels `repeats` more times on the data "
     "already in the backend's memory; 0 switches it off");
  m.def("last_kernel_seconds", [] { return bindings::kernel_timing().last_seconds; },
        "Mean seconds per run of the last op call's kernels while time_kernels is on");
  m.def("shuffle_order", [](uint64_t key, int64_t n) {
    if (n < 1) fail("n must be >= 1, got ", n);
    py::array_t<int64_t> order(n);
    int64_t* o = order.mutable_data();
    for (int64_t i = 0; i < n; ++i) {
      o[i] = static_cast<int64_t>(shuffle_index(key, i, static_cast<uint64_t>(n)));
    }
    return order;
  }, py::arg("key"), py::arg("n"), "The epoch's sample order for a shuffle key (ops.h shuffle_index)");

  bindings::bind_ops(m);
  bindings::bind_activation_ops(m);
  bindings::bind_pool_norm_ops(m);
  bindings::bind_loss_ops(m);
  bindings::bind_augment_ops(m);
  bindings::bind_engines(m);
}
