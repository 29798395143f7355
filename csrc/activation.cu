// The activation rule: GELU forward and its identity-rule backward, CUDA. Math: activation.cpp.
//
// gelu(u) = u * f(u) with f(u) = 0.5 (1 + erf(u/sqrt 2))
//                      or f(u) = 0.5 (1 + tanh(sqrt(2/pi)(u + 0.044715 u^3)));
// identity rule (Achtibat et al. ICML 2024): grad_u = grad_h * f(u), f = 1/2 where
// |u| < kGeluGuard.
// Its fusion with the epsilon-rule of the producing linear is linear_gelu_eps_ratio (linear.cu).
// Grid-stride element-wise kernels, 16-byte packs (cuda_common.cuh).
#include "cuda_common.cuh"

namespace lrp {
namespace cuda_detail {

struct GeluForwardOp {
  int approximate;
  __device__ __forceinline__ float operator()(float u, float) const {
    return u * gelu_over_u(u, approximate);
  }
};

struct GeluBackwardOp {
  int approximate;
  __device__ __forceinline__ float operator()(float g, float u) const {
    return g * gelu_factor(u, approximate);
  }
};

}  // namespace cuda_detail

namespace cuda {

void activation_gelu_forward(int dtype, int approximate, int64_t rows, int64_t cols,
                             const void* u, int64_t u_stride, void* out, int64_t out_stride,
                             int device, void* stream) {
  using namespace cuda_detail;
  check_gelu_approximate(approximate);
  launch_elementwise(dtype, rows, cols, u, u_stride, u, u_stride, out, out_stride,
                     GeluForwardOp{approximate}, device, stream);
}

void activation_gelu_backward(int dtype, int approximate, int64_t rows, int64_t cols,
                              const void* grad_h, int64_t g_stride, const void* u,
                              int64_t u_stride, void* out, int64_t out_stride, int device,
                              void* stream) {
  using namespace cuda_detail;
  check_gelu_approximate(approximate);
  launch_elementwise(dtype, rows, cols, grad_h, g_stride, u, u_stride, out, out_stride,
                     GeluBackwardOp{approximate}, device, stream);
}

}  // namespace cuda
}  // namespace lrp
