// The linear rule (epsilon-rule): the element-wise factor that feeds a linear layer's backward
// GEMM, CPU.
//
// epsilon-rule (Bach et al. 2015; Montavon et al. 2019) in the gradient x input form: for
// z = Wx + b the modified gradient is g_x = W^T (g_z * z / (z + eps * sign(z))), sign(0) = 1.
//   linear_eps_ratio:       out = g_z * z / (z + eps * sign(z));  eps == 0 copies g_z (the plain
//                           gradient).
//   linear_gelu_eps_ratio:  for the linear u = W x + b whose output enters a GELU h = gelu(u), the
//                           GELU's identity factor (activation.cpp) and this ratio in one pass:
//                           out = g_h * gelu(u)/u * u / (u + eps * sign(u)); eps == 0 is
//                           activation_gelu_backward.
#include "common.h"
#include "kernels.h"

namespace lrp {
namespace LRP_ISA_NS {

void linear_eps_ratio(int dtype, int64_t rows, int64_t cols, const void* grad_z, int64_t g_stride,
                      const void* z, int64_t z_stride, float eps, void* out, int64_t out_stride) {
  if (eps == 0.0f)
    map_rows(dtype, rows, cols, grad_z, g_stride, out, out_stride, [](float g) { return g; });
  else
    map_rows(dtype, rows, cols, grad_z, g_stride, z, z_stride, out, out_stride,
             [eps](float g, float zc) { return g * zc / stabilize(zc, eps); });
}

void linear_gelu_eps_ratio(int dtype, int approximate, int64_t rows, int64_t cols,
                           const void* grad_h, int64_t g_stride, const void* u, int64_t u_stride,
                           float eps, void* out, int64_t out_stride) {
  if (eps == 0.0f) {
    activation_gelu_backward(dtype, approximate, rows, cols, grad_h, g_stride, u, u_stride, out,
                             out_stride);
    return;
  }
  dispatch_gelu(approximate, [&](auto approx) {
    map_rows(dtype, rows, cols, grad_h, g_stride, u, u_stride, out, out_stride,
             [=](float g, float x) {
               return g * (gelu_factor(x, approx) * x / stabilize(x, eps));
             });
  });
}

}  // namespace LRP_ISA_NS
}  // namespace lrp
