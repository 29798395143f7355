// The gated MLP rule: u = act(a) * b of GeGLU (act = GELU) / SwiGLU (act = SiLU) and its LRP
// backward in one element-wise pass, CPU.
//
// Forward:  u = T(act(a)) * b, act(a) = a * f(a) with f(a) = act(a)/a: Phi(a) (GELU, erf or tanh
//           form: common.h gelu_over_u) or sigmoid(a) (SiLU); T(.) rounds to the input dtype, as
//           torch does between the activation and the product.
// Backward (Achtibat et al. ICML 2024: identity rule on act, uniform rule on the product; the
// epsilon-rule of the linears that made a and b, Bach et al. 2015), the input s = [s_a | s_b] of
// their backward GEMM, row r of `out` holding s_a in its first `cols` columns, s_b in the next:
//   eps > 0:  s_a = g/2 * b * |act(a)| / (|a| + eps),   s_b = g/2 * act(a) * |b| / (|b| + eps)
//             (f > 0, so act(a)/a * a/(a + eps sign a) = |act(a)|/(|a| + eps));
//   eps = 0:  s_a = g/2 * b * f(a)  (f = 1/2 where |a| < kGeluGuard),   s_b = g/2 * act(a).
#include "common.h"
#include "kernels.h"

namespace lrp {
namespace LRP_ISA_NS {
namespace {

// act(a)/a of activation code Fn, unguarded.
template <int Fn>
inline float act_over_a(float a) {
  if (Fn == kGatedSilu) return 1.0f / (1.0f + fast_exp(-a));
  return gelu_over_u(a, Fn);
}

// One contiguous span of n elements of each operand (restrict pointers: the loops vectorize).
template <int Fn, class T>
void backward_span(int64_t n, const T* __restrict g, const T* __restrict a,
                   const T* __restrict b, float eps, T* __restrict s_a, T* __restrict s_b) {
  if (eps != 0.0f) {
    LRP_SIMD
    for (int64_t c = 0; c < n; ++c) {
      const float av = load(a, c), bv = load(b, c), half = 0.5f * load(g, c);
      const float act = av * act_over_a<Fn>(av);
      store(s_a, c, bv * std::fabs(act) / (std::fabs(av) + eps) * half);
      store(s_b, c, act * std::fabs(bv) / (std::fabs(bv) + eps) * half);
    }
  } else {
    LRP_SIMD
    for (int64_t c = 0; c < n; ++c) {
      const float av = load(a, c), bv = load(b, c), half = 0.5f * load(g, c);
      const float f = act_over_a<Fn>(av);
      store(s_a, c, bv * (std::fabs(av) < kGeluGuard ? 0.5f : f) * half);
      store(s_b, c, av * f * half);
    }
  }
}

// Call f(T{}, std::integral_constant<int, Fn>{}): T the element type of `dtype`, Fn the code.
template <class F>
void dispatch(int dtype, int fn, F&& f) {
  dispatch_code<kGatedGelu, kGatedGeluTanh, kGatedSilu>(
      fn, "gated_mlp: unknown activation code ",
      [&](auto code) { dispatch_dtype(dtype, [&](auto tag) { f(tag, code); }); });
}

}  // namespace

void gated_mlp_forward(int dtype, int fn, int64_t rows, int64_t cols, const void* a,
                       int64_t a_stride, const void* b, int64_t b_stride, void* out,
                       int64_t out_stride) {
  dispatch(dtype, fn, [&](auto tag, auto code) {
    using T = decltype(tag);
    constexpr int Fn = decltype(code)::value;
    map_rows_as(rows, cols, static_cast<const T*>(a), a_stride, static_cast<const T*>(b), b_stride,
                static_cast<T*>(out), out_stride,
                [](float av, float bv) { return rounded<T>(av * act_over_a<Fn>(av)) * bv; });
  });
}

void gated_mlp_backward(int dtype, int fn, int64_t rows, int64_t cols, const void* grad_u,
                        int64_t g_stride, const void* a, int64_t a_stride, const void* b,
                        int64_t b_stride, float eps, void* out, int64_t out_stride) {
  dispatch(dtype, fn, [&](auto tag, auto code) {
    using T = decltype(tag);
    constexpr int Fn = decltype(code)::value;
    const T* gt = static_cast<const T*>(grad_u);
    const T* at = static_cast<const T*>(a);
    const T* bt = static_cast<const T*>(b);
    T* ot = static_cast<T*>(out);
    for_each_chunk(rows, cols, [=](int64_t r, int64_t c0, int64_t c1) {
      T* s_a = ot + r * out_stride + c0;
      backward_span<Fn>(c1 - c0, gt + r * g_stride + c0, at + r * a_stride + c0,
                        bt + r * b_stride + c0, eps, s_a, s_a + cols);
    });
  });
}

}  // namespace LRP_ISA_NS
}  // namespace lrp
