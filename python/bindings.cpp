// pybind11 bindings: the module lrp_kernels._C, generated from LRP_KERNEL_LIST and
// LRP_CPU_KERNEL_LIST (csrc/kernels.h; the latter's kernels have no `_cuda` binding).
//
// Tensors cross the boundary as integer addresses (torch.Tensor.data_ptr()) with sizes, row
// strides (elements) and a dtype code (0 float32, 1 float16, 2 bfloat16); CUDA launchers, named
// <kernel>_cuda, also take the device index and the stream as an integer
// (torch.cuda.current_stream().cuda_stream). No libtorch linkage, so one build works with any torch
// version. The GIL is released while a kernel runs. lrp_kernels/backends/cpp/ is the torch glue
// on top.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels.h"

namespace py = pybind11;

namespace {

// A kernel parameter as Python passes it: a pointer as an integer address, anything else as is.
template <class T>
struct Boundary {
  using type = T;
  static T in(T value) { return value; }
};
template <class T>
struct Boundary<T*> {
  using type = std::uintptr_t;
  static T* in(std::uintptr_t address) { return reinterpret_cast<T*>(address); }
};

// The names of a stringified parameter list "(int dtype, int64_t rows, ...)": the last identifier
// of each comma-separated declaration.
std::vector<std::string> parameter_names(const std::string& params) {
  static const char* const kIdentifier =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_";
  std::vector<std::string> names;
  std::size_t start = params.find('(') + 1;
  while (start < params.size()) {
    const std::size_t end = params.find_first_of(",)", start);
    const std::string declaration = params.substr(start, end - start);
    const std::size_t last = declaration.find_last_of(kIdentifier);
    if (last != std::string::npos) {
      const std::size_t before = declaration.find_last_not_of(kIdentifier, last);
      const std::size_t first = before == std::string::npos ? 0 : before + 1;
      names.push_back(declaration.substr(first, last - first + 1));
    }
    if (end == std::string::npos || params[end] == ')') break;
    start = end + 1;
  }
  return names;
}

bool is_size(const std::string& name) { return name == "rows" || name == "cols" || name == "n"; }

template <class T>
int64_t as_size(T value) {
  if constexpr (std::is_integral_v<T>)
    return int64_t(value);
  else
    return 0;
}

template <class Signature>
struct Binder;

// Defines `name` on the module: takes the parameters of Signature with pointers as addresses,
// checks the sizes, releases the GIL and calls call(parameters...).
template <class... A>
struct Binder<void(A...)> {
  template <class Call>
  static void def(py::module_& m, const char* name, const std::vector<std::string>& names,
                  Call call) {
    if (names.size() != sizeof...(A))
      throw std::logic_error(std::string("lrp_kernels._C: cannot read the parameter names of ") +
                             name);
    def(m, name, names, call, std::index_sequence_for<A...>{});
  }

 private:
  template <class Call, std::size_t... I>
  static void def(py::module_& m, const char* name, const std::vector<std::string>& names,
                  Call call, std::index_sequence<I...>) {
    std::vector<std::string> sizes;  // names of the size parameters, "" for the others
    for (const std::string& n : names) sizes.push_back(is_size(n) ? n : "");
    m.def(
        name,
        [call, sizes](typename Boundary<A>::type... args) {
          const int64_t values[] = {as_size(args)..., 0};
          for (std::size_t i = 0; i < sizeof...(A); ++i)
            if (!sizes[i].empty() && values[i] < 0)
              throw std::invalid_argument(sizes[i] + " must be non-negative");
          py::gil_scoped_release nogil;
          call(Boundary<A>::in(args)...);
        },
        py::arg(names[I].c_str())...);
  }
};

std::vector<std::string> with_device_and_stream(std::vector<std::string> names) {
  names.emplace_back("device");
  names.emplace_back("stream");
  return names;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "Fused LRP kernels of lrp_kernels (C++/OpenMP CPU kernels and, if built, CUDA).";
  m.attr("FLOAT32") = int(lrp::kFloat32);
  m.attr("FLOAT16") = int(lrp::kFloat16);
  m.attr("BFLOAT16") = int(lrp::kBFloat16);
  m.attr("GELU_ERF") = int(lrp::kGeluErf);
  m.attr("GELU_TANH") = int(lrp::kGeluTanh);
  m.attr("GATED_SILU") = int(lrp::kGatedSilu);  // gated MLP activations: GELU_ERF, GELU_TANH, this
  m.attr("GELU_GUARD") = lrp::kGeluGuard;  // the float32 value, as a Python float

  m.def("has_cuda", [] {
#ifdef LRP_WITH_CUDA
    return true;
#else
    return false;
#endif
  }, "Whether the CUDA kernels were compiled in.");
  m.def("cpu_isa", [] { return std::string(lrp::cpu::kernels().isa); },
        "Instruction set of the CPU kernels in use.");
  m.def("supported_cpu_isas", &lrp::cpu::supported_isas,
        "Instruction sets compiled in and supported by this CPU, narrowest first.");
  m.def("set_cpu_isa", &lrp::cpu::set_isa, py::arg("name"),
        "Use the CPU kernels of another instruction set (tests and benchmarks).");
  m.def("num_threads", &lrp::cpu::num_threads, "OpenMP threads the CPU kernels use.");

  // CPU kernels: the instruction set in use at the time of the call.
#define LRP_BIND_CPU(name, params)                                                      \
  Binder<decltype(lrp::base::name)>::def(m, #name, parameter_names(#params),            \
                                         [](auto... args) { lrp::cpu::kernels().name(args...); });
  LRP_CPU_KERNELS(LRP_BIND_CPU)
#undef LRP_BIND_CPU

#ifdef LRP_WITH_CUDA
  // CUDA kernels: the same parameters plus the device index and the stream.
#define LRP_BIND_CUDA(name, params)                                                    \
  Binder<decltype(lrp::cuda::name)>::def(m, #name "_cuda",                             \
                                         with_device_and_stream(parameter_names(#params)), \
                                         [](auto... args) { lrp::cuda::name(args...); });
  LRP_KERNEL_LIST(LRP_BIND_CUDA)
#undef LRP_BIND_CUDA
#endif
}
