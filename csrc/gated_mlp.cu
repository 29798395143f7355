// The gated MLP rule: u = act(a) * b (GeGLU / SwiGLU) and its one-pass LRP backward, CUDA. Math:
// gated_mlp.cpp.
//
// Forward:  u = T(act(a)) * b, act(a) = a * f(a), f = Phi (GELU, erf or tanh form) or sigmoid (SiLU).
// Backward, into row r of `out` = [s_a | s_b] (2 * cols columns):
//   eps > 0:  s_a = g/2 * b * |act(a)| / (|a| + eps),   s_b = g/2 * act(a) * |b| / (|b| + eps);
//   eps = 0:  s_a = g/2 * b * f(a)  (f = 1/2 where |a| < kGeluGuard),   s_b = g/2 * act(a).
// Grid-stride element-wise kernels with 16-byte packs (cuda_common.cuh).
#include "cuda_common.cuh"

namespace lrp {
namespace cuda_detail {

// act(a)/a of activation code fn, unguarded.
__device__ __forceinline__ float act_over_a(float a, int fn) {
  return fn == kGatedSilu ? 1.0f / (1.0f + expf(-a)) : gelu_over_u(a, fn);
}

template <class T>
struct GatedForwardOp {
  int fn;
  __device__ __forceinline__ float operator()(float a, float b) const {
    return rounded<T>(a * act_over_a(a, fn)) * b;
  }
};

struct GatedBackwardOp {
  int fn;
  float eps;
  __device__ __forceinline__ void operator()(float g, float a, float b, float& s_a,
                                             float& s_b) const {
    const float half = 0.5f * g;
    const float f = act_over_a(a, fn);
    const float act = a * f;
    if (eps != 0.0f) {
      s_a = b * fabsf(act) / (fabsf(a) + eps) * half;
      s_b = act * fabsf(b) / (fabsf(b) + eps) * half;
    } else {
      s_a = b * (fabsf(a) < kGeluGuard ? 0.5f : f) * half;
      s_b = act * half;
    }
  }
};

template <class T, bool Vec>
__global__ void gated_backward_kernel(int64_t rows, int64_t cols, const T* g, int64_t g_stride,
                                      const T* a, int64_t a_stride, const T* b, int64_t b_stride,
                                      T* out, int64_t out_stride, GatedBackwardOp op) {
  for_each_item<T, Vec>(rows, cols, [&](int64_t r, int64_t c, auto width) {
    constexpr int W = decltype(width)::value;
    float vg[W], va[W], vb[W], sa[W], sb[W];
    load_n(g + r * g_stride + c, vg);
    load_n(a + r * a_stride + c, va);
    load_n(b + r * b_stride + c, vb);
#pragma unroll
    for (int k = 0; k < W; ++k) op(vg[k], va[k], vb[k], sa[k], sb[k]);
    T* s = out + r * out_stride + c;
    store_n(s, sa);
    store_n(s + cols, sb);
  });
}

inline void check_gated_fn(int fn) {
  if (fn != kGatedGelu && fn != kGatedGeluTanh && fn != kGatedSilu)
    throw std::invalid_argument("gated_mlp: unknown activation code " + std::to_string(fn));
}

}  // namespace cuda_detail

namespace cuda {

void gated_mlp_forward(int dtype, int fn, int64_t rows, int64_t cols, const void* a,
                       int64_t a_stride, const void* b, int64_t b_stride, void* out,
                       int64_t out_stride, int device, void* stream) {
  using namespace cuda_detail;
  check_gated_fn(fn);
  if (rows == 0 || cols == 0) return;
  on_device(device, dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch_elementwise_as<T>(rows, cols, static_cast<const T*>(a), a_stride,
                             static_cast<const T*>(b), b_stride, static_cast<T*>(out), out_stride,
                             GatedForwardOp<T>{fn}, as_stream(stream));
  });
}

void gated_mlp_backward(int dtype, int fn, int64_t rows, int64_t cols, const void* grad_u,
                        int64_t g_stride, const void* a, int64_t a_stride, const void* b,
                        int64_t b_stride, float eps, void* out, int64_t out_stride, int device,
                        void* stream) {
  using namespace cuda_detail;
  check_gated_fn(fn);
  if (rows == 0 || cols == 0) return;
  on_device(device, dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    // s_b starts `cols` after s_a: packs need cols to be a whole number of them too
    launch_items<T>(
        rows, cols, {grad_u, a, b, out}, {g_stride, a_stride, b_stride, out_stride, cols},
        LRP_PICK(gated_backward_kernel), as_stream(stream),
        rows, cols, grad_u, g_stride, a, a_stride, b, b_stride, out, out_stride,
        GatedBackwardOp{fn, eps});
  });
}

}  // namespace cuda
}  // namespace lrp
