// The kernel API of lrp_kernels._C: plain functions on raw pointers, sizes and row strides.
//
// Tensors are row-major matrices [rows, cols] whose last dimension is contiguous; a row stride is
// counted in elements. `dtype` is a code of lrp::DType (float32, float16, bfloat16) and applies to
// every tensor argument typed `void*`; float* arguments are always float32. Every kernel computes
// in float32. The semantics are those of the host functions in lrp_kernels/backends/contract.py.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

// THE list of kernels: X(name, (parameters)) once per kernel, named <rule>_<what> after the file
// that defines it (kernels without a CUDA twin: LRP_CPU_KERNEL_LIST below). Everything else comes
// from it: the declarations below (per CPU instruction set,
// and in lrp::cuda with a trailing (device, stream)), the table of CPU kernels (cpu::Kernels,
// dispatch.cpp) and the Python bindings (python/bindings.cpp: `name` runs the CPU kernel,
// `name`_cuda the CUDA one; pointers cross as integer addresses, the parameter names become the
// keyword names). Adding a kernel is one line here plus its definitions in csrc/<rule>.cpp and
// csrc/<rule>.cu (a new file also goes into the source lists of CMakeLists.txt).
// Parameters are plain declarations separated by commas (no function pointers, no defaults);
// parameters named `rows`, `cols` or `n` are checked to be non-negative by the bindings.
#define LRP_KERNEL_LIST(X)                                                                      \
  /* linear.{cpp,cu}: the epsilon-rule factor of a linear layer's backward GEMM */               \
  X(linear_eps_ratio, (int dtype, int64_t rows, int64_t cols, const void* grad_z,                \
                       int64_t g_stride, const void* z, int64_t z_stride, float eps, void* out,  \
                       int64_t out_stride))                                                      \
  X(linear_gelu_eps_ratio, (int dtype, int approximate, int64_t rows, int64_t cols,              \
                            const void* grad_h, int64_t g_stride, const void* u,                 \
                            int64_t u_stride, float eps, void* out, int64_t out_stride))         \
  /* layer_norm.{cpp,cu} */                                                                      \
  X(layer_norm_forward, (int dtype, int64_t rows, int64_t cols, const void* x, int64_t x_stride, \
                         const float* weight, const float* bias, float eps, void* y,             \
                         int64_t y_stride, float* mean, float* rstd))                            \
  X(layer_norm_backward, (int dtype, int64_t rows, int64_t cols, const void* grad_y,             \
                          int64_t g_stride, const float* weight, const float* rstd, void* grad_x, \
                          int64_t out_stride))                                                   \
  /* rms_norm.{cpp,cu}: RMSNorm with 1/rms held constant */                                      \
  X(rms_norm_forward, (int dtype, int64_t rows, int64_t cols, const void* x, int64_t x_stride,   \
                       const float* weight, float eps, void* y, int64_t y_stride, float* rstd))  \
  X(rms_norm_backward, (int dtype, int64_t rows, int64_t cols, const void* grad_y,               \
                        int64_t g_stride, const float* weight, const float* rstd, void* grad_x,  \
                        int64_t out_stride))                                                     \
  /* gated_mlp.{cpp,cu}: act(a) * b of GeGLU / SwiGLU and its one-pass LRP backward */          \
  X(gated_mlp_forward, (int dtype, int fn, int64_t rows, int64_t cols, const void* a,            \
                        int64_t a_stride, const void* b, int64_t b_stride, void* out,            \
                        int64_t out_stride))                                                     \
  X(gated_mlp_backward, (int dtype, int fn, int64_t rows, int64_t cols, const void* grad_u,      \
                         int64_t g_stride, const void* a, int64_t a_stride, const void* b,       \
                         int64_t b_stride, float eps, void* out, int64_t out_stride))            \
  /* activation.{cpp,cu}: GELU */                                                                \
  X(activation_gelu_forward, (int dtype, int approximate, int64_t rows, int64_t cols,            \
                              const void* u, int64_t u_stride, void* out, int64_t out_stride))   \
  X(activation_gelu_backward, (int dtype, int approximate, int64_t rows, int64_t cols,           \
                               const void* grad_h, int64_t g_stride, const void* u,              \
                               int64_t u_stride, void* out, int64_t out_stride))                 \
  /* attention.{cpp,cu}: the masked attention softmax */                                         \
  X(attention_softmax_forward, (int dtype, int64_t rows, int64_t cols,                           \
                                int64_t rows_per_mask_row, const void* scores, int64_t s_stride, \
                                const float* mask, int64_t mask_stride, float scale,             \
                                void* probs, int64_t p_stride))                                  \
  X(attention_softmax_backward, (int dtype, int64_t rows, int64_t cols, const void* grad_p,      \
                                 int64_t g_stride, const void* probs, int64_t p_stride,          \
                                 float factor, void* grad_s, int64_t out_stride))                \
  /* cast.{cpp,cu}: float32/float16/bfloat16 conversions (tests) */                              \
  X(cast, (int src_dtype, int dst_dtype, int64_t n, const void* src, void* dst))

// The kernels that exist for the CPU only (no `_cuda` binding, no csrc/<rule>.cu counterpart): the
// CPU table and the Python bindings are generated from both lists, the CUDA declarations and
// bindings from LRP_KERNEL_LIST alone. A kernel moves to LRP_KERNEL_LIST when it gets a CUDA twin.
// Tensors [batch, heads, length, dim] are passed as a pointer and the strides (elements) of their
// first three dimensions (_sb, _sh, _sl); the last dimension is contiguous.
#define LRP_CPU_KERNEL_LIST(X)                                                                  \
  /* attention.cpp: blocked (flash-style) attention, forward and the three backward rules */    \
  X(attention_blocked_forward,                                                                   \
    (int dtype, int64_t batch, int64_t heads, int64_t kv_heads, int64_t length, int64_t dim,     \
     const void* q, int64_t q_sb, int64_t q_sh, int64_t q_sl, const void* k, int64_t k_sb,       \
     int64_t k_sh, int64_t k_sl, const void* v, int64_t v_sb, int64_t v_sh, int64_t v_sl,        \
     const float* mask, int64_t mask_stride, int64_t window, int causal, float scale, void* out, \
     int64_t o_sb, int64_t o_sh, int64_t o_sl, float* lse))                                      \
  X(attention_blocked_backward,                                                                  \
    (int dtype, int mode, int64_t batch, int64_t heads, int64_t kv_heads, int64_t length,       \
     int64_t dim, const void* q, int64_t q_sb, int64_t q_sh, int64_t q_sl, const void* k,        \
     int64_t k_sb, int64_t k_sh, int64_t k_sl, const void* v, int64_t v_sb, int64_t v_sh,        \
     int64_t v_sl, const void* grad_out, int64_t g_sb, int64_t g_sh, int64_t g_sl,               \
     const void* out, int64_t o_sb, int64_t o_sh, int64_t o_sl, const float* lse,                \
     const float* mask, int64_t mask_stride, int64_t window, int causal, float scale,            \
     float input_eps, void* grad_q, int64_t gq_sb, int64_t gq_sh, int64_t gq_sl, void* grad_k,   \
     int64_t gk_sb, int64_t gk_sh, int64_t gk_sl, void* grad_v, int64_t gv_sb, int64_t gv_sh,    \
     int64_t gv_sl))

// Every CPU kernel: both lists.
#define LRP_CPU_KERNELS(X) LRP_KERNEL_LIST(X) LRP_CPU_KERNEL_LIST(X)

// X callbacks of the declarations below.
#define LRP_UNPAREN(...) __VA_ARGS__
#define LRP_DECLARE_CPU_KERNEL(name, params) void name params;
#define LRP_DECLARE_CUDA_KERNEL(name, params) \
  void name(LRP_UNPAREN params, int device, void* stream);
#define LRP_KERNEL_POINTER(name, params) decltype(&base::name) name;

namespace lrp {

// dtype codes shared with lrp_kernels/backends/cpp/_glue.py
enum DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

// approximate codes of GELU
enum GeluApprox : int { kGeluErf = 0, kGeluTanh = 1 };

// activation codes of the gated MLP (GeGLU: the GELU codes; SwiGLU: SiLU)
enum GatedFn : int { kGatedGelu = kGeluErf, kGatedGeluTanh = kGeluTanh, kGatedSilu = 2 };

// The GELU guard of the CPU and CUDA kernels (exposed as _C.GELU_GUARD): where |u| is below it,
// gelu(u)/u is taken as its limit 1/2 (the gated MLP's act(a)/a too: GELU's and SiLU's limit).
constexpr float kGeluGuard = 1e-6f;

namespace base {
LRP_CPU_KERNELS(LRP_DECLARE_CPU_KERNEL)
}
#ifdef LRP_X86_ISAS
namespace avx2 {
LRP_CPU_KERNELS(LRP_DECLARE_CPU_KERNEL)
}
namespace avx512 {
LRP_CPU_KERNELS(LRP_DECLARE_CPU_KERNEL)
}
#endif

namespace cpu {

// The CPU kernels of one instruction set.
struct Kernels {
  const char* isa;
  LRP_CPU_KERNELS(LRP_KERNEL_POINTER)
};

// The kernels in use: the widest instruction set this CPU supports (or LRP_KERNELS_ISA).
const Kernels& kernels();
// Instruction sets compiled in and supported by this CPU, narrowest first.
std::vector<std::string> supported_isas();
// Switch the instruction set (one of supported_isas()); throws std::invalid_argument otherwise.
void set_isa(const std::string& name);
int num_threads();

}  // namespace cpu

#ifdef LRP_WITH_CUDA
namespace cuda {
LRP_KERNEL_LIST(LRP_DECLARE_CUDA_KERNEL)
}
#endif

}  // namespace lrp
