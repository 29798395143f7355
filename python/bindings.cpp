// pybind11 bindings: the module lrp_kernels._C.
//
// Tensors cross the boundary as integer addresses (torch.Tensor.data_ptr()) with sizes, row
// strides (elements) and a dtype code (0 float32, 1 float16, 2 bfloat16); CUDA launchers also take
// the device index and the stream as an integer (torch.cuda.current_stream().cuda_stream). No
// libtorch linkage, so one build works with any torch version. The GIL is released while a kernel
// runs. lrp_kernels/_cpp_backend.py is the torch glue on top.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>

#include "kernels.h"

namespace py = pybind11;

namespace {

template <class T>
T* ptr(std::uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

void check_sizes(int64_t rows, int64_t cols) {
  if (rows < 0 || cols < 0) throw std::invalid_argument("rows and cols must be non-negative");
}

// The arguments shared by the CPU and CUDA launchers, as pybind11 keyword names.
#define LRP_ARGS_LN_FWD                                                                       \
  py::arg("dtype"), py::arg("rows"), py::arg("cols"), py::arg("x"), py::arg("x_stride"),      \
      py::arg("weight"), py::arg("bias"), py::arg("eps"), py::arg("y"), py::arg("y_stride"),  \
      py::arg("mean"), py::arg("rstd")
#define LRP_ARGS_LN_BWD                                                                       \
  py::arg("dtype"), py::arg("rows"), py::arg("cols"), py::arg("grad_y"), py::arg("g_stride"), \
      py::arg("weight"), py::arg("rstd"), py::arg("grad_x"), py::arg("out_stride")
#define LRP_ARGS_SM_FWD                                                                       \
  py::arg("dtype"), py::arg("rows"), py::arg("cols"), py::arg("rows_per_mask_row"),           \
      py::arg("scores"), py::arg("s_stride"), py::arg("mask"), py::arg("mask_stride"),        \
      py::arg("scale"), py::arg("probs"), py::arg("p_stride")
#define LRP_ARGS_SM_BWD                                                                       \
  py::arg("dtype"), py::arg("rows"), py::arg("cols"), py::arg("grad_p"), py::arg("g_stride"), \
      py::arg("probs"), py::arg("p_stride"), py::arg("factor"), py::arg("grad_s"),            \
      py::arg("out_stride")
#define LRP_ARGS_EPS                                                                          \
  py::arg("dtype"), py::arg("rows"), py::arg("cols"), py::arg("grad_z"), py::arg("g_stride"), \
      py::arg("z"), py::arg("z_stride"), py::arg("eps"), py::arg("out"), py::arg("out_stride")
#define LRP_ARGS_GELU_FWD                                                                     \
  py::arg("dtype"), py::arg("approximate"), py::arg("rows"), py::arg("cols"), py::arg("u"),   \
      py::arg("u_stride"), py::arg("out"), py::arg("out_stride")
#define LRP_ARGS_GELU_BWD                                                                     \
  py::arg("dtype"), py::arg("approximate"), py::arg("rows"), py::arg("cols"),                 \
      py::arg("grad_h"), py::arg("g_stride"), py::arg("u"), py::arg("u_stride"),              \
      py::arg("out"), py::arg("out_stride")
#define LRP_ARGS_GELU_EPS                                                                     \
  py::arg("dtype"), py::arg("approximate"), py::arg("rows"), py::arg("cols"),                 \
      py::arg("grad_h"), py::arg("g_stride"), py::arg("u"), py::arg("u_stride"),              \
      py::arg("eps"), py::arg("out"), py::arg("out_stride")
#define LRP_ARGS_CAST \
  py::arg("src_dtype"), py::arg("dst_dtype"), py::arg("n"), py::arg("src"), py::arg("dst")

using addr = std::uintptr_t;

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "Fused LRP kernels of lrp_kernels (C++/OpenMP CPU kernels and, if built, CUDA).";
  m.attr("FLOAT32") = int(lrp::kFloat32);
  m.attr("FLOAT16") = int(lrp::kFloat16);
  m.attr("BFLOAT16") = int(lrp::kBFloat16);
  m.attr("GELU_ERF") = int(lrp::kGeluErf);
  m.attr("GELU_TANH") = int(lrp::kGeluTanh);

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

  // ---- CPU kernels ----
  m.def("layer_norm_forward",
        [](int dtype, int64_t rows, int64_t cols, addr x, int64_t xs, addr w, addr b, float eps,
           addr y, int64_t ys, addr mean, addr rstd) {
          check_sizes(rows, cols);
          py::gil_scoped_release nogil;
          lrp::cpu::kernels().layer_norm_forward(dtype, rows, cols, ptr<const void>(x), xs,
                                                 ptr<const float>(w), ptr<const float>(b), eps,
                                                 ptr<void>(y), ys, ptr<float>(mean),
                                                 ptr<float>(rstd));
        },
        LRP_ARGS_LN_FWD);
  m.def("layer_norm_backward",
        [](int dtype, int64_t rows, int64_t cols, addr g, int64_t gs, addr w, addr rstd, addr out,
           int64_t os) {
          check_sizes(rows, cols);
          py::gil_scoped_release nogil;
          lrp::cpu::kernels().layer_norm_backward(dtype, rows, cols, ptr<const void>(g), gs,
                                                  ptr<const float>(w), ptr<const float>(rstd),
                                                  ptr<void>(out), os);
        },
        LRP_ARGS_LN_BWD);
  m.def("softmax_forward",
        [](int dtype, int64_t rows, int64_t cols, int64_t rpm, addr s, int64_t ss, addr mask,
           int64_t ms, float scale, addr p, int64_t ps) {
          check_sizes(rows, cols);
          py::gil_scoped_release nogil;
          lrp::cpu::kernels().softmax_forward(dtype, rows, cols, rpm, ptr<const void>(s), ss,
                                              ptr<const float>(mask), ms, scale, ptr<void>(p), ps);
        },
        LRP_ARGS_SM_FWD);
  m.def("softmax_backward",
        [](int dtype, int64_t rows, int64_t cols, addr g, int64_t gs, addr p, int64_t ps,
           float factor, addr out, int64_t os) {
          check_sizes(rows, cols);
          py::gil_scoped_release nogil;
          lrp::cpu::kernels().softmax_backward(dtype, rows, cols, ptr<const void>(g), gs,
                                               ptr<const void>(p), ps, factor, ptr<void>(out), os);
        },
        LRP_ARGS_SM_BWD);
  m.def("eps_ratio",
        [](int dtype, int64_t rows, int64_t cols, addr g, int64_t gs, addr z, int64_t zs,
           float eps, addr out, int64_t os) {
          check_sizes(rows, cols);
          py::gil_scoped_release nogil;
          lrp::cpu::kernels().eps_ratio(dtype, rows, cols, ptr<const void>(g), gs,
                                        ptr<const void>(z), zs, eps, ptr<void>(out), os);
        },
        LRP_ARGS_EPS);
  m.def("gelu_forward",
        [](int dtype, int approx, int64_t rows, int64_t cols, addr u, int64_t us, addr out,
           int64_t os) {
          check_sizes(rows, cols);
          py::gil_scoped_release nogil;
          lrp::cpu::kernels().gelu_forward(dtype, approx, rows, cols, ptr<const void>(u), us,
                                           ptr<void>(out), os);
        },
        LRP_ARGS_GELU_FWD);
  m.def("gelu_backward",
        [](int dtype, int approx, int64_t rows, int64_t cols, addr g, int64_t gs, addr u,
           int64_t us, addr out, int64_t os) {
          check_sizes(rows, cols);
          py::gil_scoped_release nogil;
          lrp::cpu::kernels().gelu_backward(dtype, approx, rows, cols, ptr<const void>(g), gs,
                                            ptr<const void>(u), us, ptr<void>(out), os);
        },
        LRP_ARGS_GELU_BWD);
  m.def("gelu_eps_ratio",
        [](int dtype, int approx, int64_t rows, int64_t cols, addr g, int64_t gs, addr u,
           int64_t us, float eps, addr out, int64_t os) {
          check_sizes(rows, cols);
          py::gil_scoped_release nogil;
          lrp::cpu::kernels().gelu_eps_ratio(dtype, approx, rows, cols, ptr<const void>(g), gs,
                                             ptr<const void>(u), us, eps, ptr<void>(out), os);
        },
        LRP_ARGS_GELU_EPS);
  m.def("cast",
        [](int sd, int dd, int64_t n, addr src, addr dst) {
          check_sizes(1, n);
          py::gil_scoped_release nogil;
          lrp::cpu::kernels().cast(sd, dd, n, ptr<const void>(src), ptr<void>(dst));
        },
        LRP_ARGS_CAST);

#ifdef LRP_WITH_CUDA
  // ---- CUDA kernels: same arguments plus the device index and the stream ----
  m.def("layer_norm_forward_cuda",
        [](int dtype, int64_t rows, int64_t cols, addr x, int64_t xs, addr w, addr b, float eps,
           addr y, int64_t ys, addr mean, addr rstd, int device, addr stream) {
          check_sizes(rows, cols);
          py::gil_scoped_release nogil;
          lrp::cuda::layer_norm_forward(dtype, rows, cols, ptr<const void>(x), xs,
                                        ptr<const float>(w), ptr<const float>(b), eps,
                                        ptr<void>(y), ys, ptr<float>(mean), ptr<float>(rstd),
                                        device, ptr<void>(stream));
        },
        LRP_ARGS_LN_FWD, py::arg("device"), py::arg("stream"));
  m.def("layer_norm_backward_cuda",
        [](int dtype, int64_t rows, int64_t cols, addr g, int64_t gs, addr w, addr rstd, addr out,
           int64_t os, int device, addr stream) {
          check_sizes(rows, cols);
          py::gil_scoped_release nogil;
          lrp::cuda::layer_norm_backward(dtype, rows, cols, ptr<const void>(g), gs,
                                         ptr<const float>(w), ptr<const float>(rstd),
                                         ptr<void>(out), os, device, ptr<void>(stream));
        },
        LRP_ARGS_LN_BWD, py::arg("device"), py::arg("stream"));
  m.def("softmax_forward_cuda",
        [](int dtype, int64_t rows, int64_t cols, int64_t rpm, addr s, int64_t ss, addr mask,
           int64_t ms, float scale, addr p, int64_t ps, int device, addr stream) {
          check_sizes(rows, cols);
          py::gil_scoped_release nogil;
          lrp::cuda::softmax_forward(dtype, rows, cols, rpm, ptr<const void>(s), ss,
                                     ptr<const float>(mask), ms, scale, ptr<void>(p), ps, device,
                                     ptr<void>(stream));
        },
        LRP_ARGS_SM_FWD, py::arg("device"), py::arg("stream"));
  m.def("softmax_backward_cuda",
        [](int dtype, int64_t rows, int64_t cols, addr g, int64_t gs, addr p, int64_t ps,
           float factor, addr out, int64_t os, int device, addr stream) {
          check_sizes(rows, cols);
          py::gil_scoped_release nogil;
          lrp::cuda::softmax_backward(dtype, rows, cols, ptr<const void>(g), gs,
                                      ptr<const void>(p), ps, factor, ptr<void>(out), os, device,
                                      ptr<void>(stream));
        },
        LRP_ARGS_SM_BWD, py::arg("device"), py::arg("stream"));
  m.def("eps_ratio_cuda",
        [](int dtype, int64_t rows, int64_t cols, addr g, int64_t gs, addr z, int64_t zs,
           float eps, addr out, int64_t os, int device, addr stream) {
          check_sizes(rows, cols);
          py::gil_scoped_release nogil;
          lrp::cuda::eps_ratio(dtype, rows, cols, ptr<const void>(g), gs, ptr<const void>(z), zs,
                               eps, ptr<void>(out), os, device, ptr<void>(stream));
        },
        LRP_ARGS_EPS, py::arg("device"), py::arg("stream"));
  m.def("gelu_forward_cuda",
        [](int dtype, int approx, int64_t rows, int64_t cols, addr u, int64_t us, addr out,
           int64_t os, int device, addr stream) {
          check_sizes(rows, cols);
          py::gil_scoped_release nogil;
          lrp::cuda::gelu_forward(dtype, approx, rows, cols, ptr<const void>(u), us,
                                  ptr<void>(out), os, device, ptr<void>(stream));
        },
        LRP_ARGS_GELU_FWD, py::arg("device"), py::arg("stream"));
  m.def("gelu_backward_cuda",
        [](int dtype, int approx, int64_t rows, int64_t cols, addr g, int64_t gs, addr u,
           int64_t us, addr out, int64_t os, int device, addr stream) {
          check_sizes(rows, cols);
          py::gil_scoped_release nogil;
          lrp::cuda::gelu_backward(dtype, approx, rows, cols, ptr<const void>(g), gs,
                                   ptr<const void>(u), us, ptr<void>(out), os, device,
                                   ptr<void>(stream));
        },
        LRP_ARGS_GELU_BWD, py::arg("device"), py::arg("stream"));
  m.def("gelu_eps_ratio_cuda",
        [](int dtype, int approx, int64_t rows, int64_t cols, addr g, int64_t gs, addr u,
           int64_t us, float eps, addr out, int64_t os, int device, addr stream) {
          check_sizes(rows, cols);
          py::gil_scoped_release nogil;
          lrp::cuda::gelu_eps_ratio(dtype, approx, rows, cols, ptr<const void>(g), gs,
                                    ptr<const void>(u), us, eps, ptr<void>(out), os, device,
                                    ptr<void>(stream));
        },
        LRP_ARGS_GELU_EPS, py::arg("device"), py::arg("stream"));
  m.def("cast_cuda",
        [](int sd, int dd, int64_t n, addr src, addr dst, int device, addr stream) {
          check_sizes(1, n);
          py::gil_scoped_release nogil;
          lrp::cuda::cast(sd, dd, n, ptr<const void>(src), ptr<void>(dst), device,
                          ptr<void>(stream));
        },
        LRP_ARGS_CAST, py::arg("device"), py::arg("stream"));
#endif
}
