// common.h — what the non-kernel C++ shares: the error type that becomes a Python
// ValueError, argument checks that name what they check, and 64-byte aligned buffers.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace fastnn {

// Derives from std::invalid_argument so pybind11 turns it into ValueError.
struct Error : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// Concatenates anything streamable into one message: fail("x must be ", 4, "-D").
template <class... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  std::ostringstream message;
  (message << ... << parts);
  throw Error(message.str());
}

inline std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    s += std::to_string(shape[i]);
    if (shape.size() == 1 || i + 1 < shape.size()) s += shape.size() == 1 ? "," : ", ";
  }
  return s + ")";
}

// A float buffer aligned to 64 bytes (one cache line, one AVX-512 register).
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(int64_t count) { resize(count); }
  void resize(int64_t count) {
    if (count <= size_) return;
    size_t bytes = (static_cast<size_t>(count) * sizeof(float) + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, bytes);
    if (p == nullptr) throw std::bad_alloc();
    data_.reset(static_cast<float*>(p));
    size_ = count;
  }
  float* data() { return data_.get(); }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> data_;
  int64_t size_ = 0;
};

}  // namespace fastnn
