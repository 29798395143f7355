// GELU forward, its identity-rule backward, and that backward fused with the epsilon-stabilizer of
// the linear layer that produced the GELU input, CPU.
//
// Forward:  gelu(u) = u * Phi(u) = 0.5 u (1 + erf(u / sqrt 2))                ("none")
//           gelu(u) = 0.5 u (1 + tanh(sqrt(2/pi) (u + 0.044715 u^3)))         ("tanh")
// Identity rule for element-wise non-linearities (Achtibat et al. ICML 2024; Arras et al. 2025):
// R_u = R_h, i.e. in gradient x input form  grad_u = grad_h * gelu(u) / u, where gelu(u)/u is
// computed directly (0.5 (1 + erf(u/sqrt 2)), or 1 / (1 + exp(-2y)) for tanh) and taken as its
// limit 1/2 where |u| < 1e-6.
// Fused: grad_u = grad_h * gelu(u)/u * u / (u + eps sign(u)), sign(0) = 1 (epsilon-rule of the
// linear u = W x + b; Bach et al. 2015) -- one pass instead of two.
#include "common.h"
#include "kernels.h"

namespace lrp {
namespace LRP_ISA_NS {

// Contiguous spans; scalars by value and restrict pointers so that the loops vectorize.
template <class T, int Approx>
static inline void gelu_forward_span(int64_t n, const T* __restrict u, T* __restrict out) {
  LRP_SIMD
  for (int64_t c = 0; c < n; ++c) {
    const float x = load(u, c);
    store(out, c, x * gelu_over_u(x, Approx));
  }
}

template <class T, int Approx, bool WithEps>
static inline void gelu_backward_span(int64_t n, const T* __restrict g, const T* __restrict u,
                                      float eps, T* __restrict out) {
  LRP_SIMD
  for (int64_t c = 0; c < n; ++c) {
    const float x = load(u, c);
    float factor = gelu_factor(x, Approx);
    if (WithEps) factor = factor * x / stabilize(x, eps);
    store(out, c, load(g, c) * factor);
  }
}

template <class T>
static void gelu_forward_kernel(int approximate, int64_t rows, int64_t cols, const T* u,
                                int64_t u_stride, T* out, int64_t out_stride) {
  for_each_chunk(rows, cols, [=](int64_t r, int64_t c0, int64_t c1) {
    const T* ur = u + r * u_stride + c0;
    T* outr = out + r * out_stride + c0;
    if (approximate == kGeluTanh)
      gelu_forward_span<T, kGeluTanh>(c1 - c0, ur, outr);
    else
      gelu_forward_span<T, kGeluErf>(c1 - c0, ur, outr);
  });
}

template <class T, int Approx, bool WithEps>
static void gelu_backward_kernel(int64_t rows, int64_t cols, const T* grad_h, int64_t g_stride,
                                 const T* u, int64_t u_stride, float eps, T* out,
                                 int64_t out_stride) {
  for_each_chunk(rows, cols, [=](int64_t r, int64_t c0, int64_t c1) {
    gelu_backward_span<T, Approx, WithEps>(c1 - c0, grad_h + r * g_stride + c0,
                                           u + r * u_stride + c0, eps,
                                           out + r * out_stride + c0);
  });
}

template <class T, bool WithEps>
static void gelu_backward_dispatch(int approximate, int64_t rows, int64_t cols, const void* grad_h,
                                   int64_t g_stride, const void* u, int64_t u_stride, float eps,
                                   void* out, int64_t out_stride) {
  const T* g = static_cast<const T*>(grad_h);
  const T* x = static_cast<const T*>(u);
  T* o = static_cast<T*>(out);
  if (approximate == kGeluTanh)
    gelu_backward_kernel<T, kGeluTanh, WithEps>(rows, cols, g, g_stride, x, u_stride, eps, o,
                                                out_stride);
  else
    gelu_backward_kernel<T, kGeluErf, WithEps>(rows, cols, g, g_stride, x, u_stride, eps, o,
                                               out_stride);
}

static void check_approximate(int approximate) {
  if (approximate != kGeluErf && approximate != kGeluTanh)
    throw std::invalid_argument("gelu: unknown approximate code " + std::to_string(approximate));
}

void gelu_forward(int dtype, int approximate, int64_t rows, int64_t cols, const void* u,
                  int64_t u_stride, void* out, int64_t out_stride) {
  check_approximate(approximate);
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    gelu_forward_kernel<T>(approximate, rows, cols, static_cast<const T*>(u), u_stride,
                           static_cast<T*>(out), out_stride);
  });
}

void gelu_backward(int dtype, int approximate, int64_t rows, int64_t cols, const void* grad_h,
                   int64_t g_stride, const void* u, int64_t u_stride, void* out,
                   int64_t out_stride) {
  check_approximate(approximate);
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    gelu_backward_dispatch<T, false>(approximate, rows, cols, grad_h, g_stride, u, u_stride, 0.0f,
                                     out, out_stride);
  });
}

void gelu_eps_ratio(int dtype, int approximate, int64_t rows, int64_t cols, const void* grad_h,
                    int64_t g_stride, const void* u, int64_t u_stride, float eps, void* out,
                    int64_t out_stride) {
  check_approximate(approximate);
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    if (eps == 0.0f)
      gelu_backward_dispatch<T, false>(approximate, rows, cols, grad_h, g_stride, u, u_stride,
                                       eps, out, out_stride);
    else
      gelu_backward_dispatch<T, true>(approximate, rows, cols, grad_h, g_stride, u, u_stride, eps,
                                      out, out_stride);
  });
}

}  // namespace LRP_ISA_NS
}  // namespace lrp
