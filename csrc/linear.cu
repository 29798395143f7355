// The linear rule (epsilon-rule) factor feeding a linear layer's backward GEMM, CUDA. Math:
// linear.cpp.
//
// linear_eps_ratio:      out = g_z * z / (z + eps * sign(z)), sign(0) = 1 (Bach et al. 2015);
//                        eps == 0 copies g_z.
// linear_gelu_eps_ratio: out = g_h * gelu(u)/u * u / (u + eps * sign(u)) for the linear whose
//                        output u enters a GELU (identity factor: activation.cu); eps == 0 is
//                        activation_gelu_backward.
// Grid-stride element-wise kernels with 16-byte packs (cuda_common.cuh).
#include "cuda_common.cuh"

namespace lrp {
namespace cuda_detail {

struct EpsRatioOp {
  float eps;
  __device__ __forceinline__ float operator()(float g, float z) const {
    return eps == 0.0f ? g : g * z / stabilize(z, eps);
  }
};

struct GeluEpsRatioOp {
  int approximate;
  float eps;  // 0: the GELU identity factor alone
  __device__ __forceinline__ float operator()(float g, float u) const {
    float factor = gelu_factor(u, approximate);
    if (eps != 0.0f) factor = factor * u / stabilize(u, eps);
    return g * factor;
  }
};

}  // namespace cuda_detail

namespace cuda {

void linear_eps_ratio(int dtype, int64_t rows, int64_t cols, const void* grad_z, int64_t g_stride,
                      const void* z, int64_t z_stride, float eps, void* out, int64_t out_stride,
                      int device, void* stream) {
  using namespace cuda_detail;
  launch_elementwise(dtype, rows, cols, grad_z, g_stride, z, z_stride, out, out_stride,
                     EpsRatioOp{eps}, device, stream);
}

void linear_gelu_eps_ratio(int dtype, int approximate, int64_t rows, int64_t cols,
                           const void* grad_h, int64_t g_stride, const void* u, int64_t u_stride,
                           float eps, void* out, int64_t out_stride, int device, void* stream) {
  using namespace cuda_detail;
  check_gelu_approximate(approximate);
  launch_elementwise(dtype, rows, cols, grad_h, g_stride, u, u_stride, out, out_stride,
                     GeluEpsRatioOp{approximate, eps}, device, stream);
}

}  // namespace cuda
}  // namespace lrp
