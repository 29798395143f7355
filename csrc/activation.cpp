// The activation rule: GELU forward and its identity-rule backward, CPU.
//
// Forward:  gelu(u) = u * Phi(u) = 0.5 u (1 + erf(u / sqrt 2))                ("none")
//           gelu(u) = 0.5 u (1 + tanh(sqrt(2/pi) (u + 0.044715 u^3)))         ("tanh")
// Identity rule for element-wise non-linearities (Achtibat et al. ICML 2024; Arras et al. 2025):
// R_u = R_h, i.e. in gradient x input form  grad_u = grad_h * gelu(u) / u, where gelu(u)/u is
// computed directly (0.5 (1 + erf(u/sqrt 2)), or 1 / (1 + exp(-2y)) for tanh) and taken as its
// limit 1/2 where |u| < kGeluGuard (common.h: gelu_over_u, gelu_factor).
// The fusion of this factor with the epsilon-rule of the linear that produced u is
// linear_gelu_eps_ratio (linear.cpp).
#include "common.h"
#include "kernels.h"

namespace lrp {
namespace LRP_ISA_NS {

void activation_gelu_forward(int dtype, int approximate, int64_t rows, int64_t cols,
                             const void* u, int64_t u_stride, void* out, int64_t out_stride) {
  dispatch_gelu(approximate, [&](auto approx) {
    map_rows(dtype, rows, cols, u, u_stride, out, out_stride,
             [=](float x) { return x * gelu_over_u(x, approx); });
  });
}

void activation_gelu_backward(int dtype, int approximate, int64_t rows, int64_t cols,
                              const void* grad_h, int64_t g_stride, const void* u,
                              int64_t u_stride, void* out, int64_t out_stride) {
  dispatch_gelu(approximate, [&](auto approx) {
    map_rows(dtype, rows, cols, grad_h, g_stride, u, u_stride, out, out_stride,
             [=](float g, float x) { return g * gelu_factor(x, approx); });
  });
}

}  // namespace LRP_ISA_NS
}  // namespace lrp
