// GELU forward, identity-rule backward and its fusion with the epsilon-stabilizer, CUDA.
// Math: gelu.cpp.
//
// gelu(u) = u * f(u) with f(u) = 0.5 (1 + erf(u/sqrt 2)) or 0.5 (1 + tanh(sqrt(2/pi)(u + 0.044715 u^3)));
// identity rule (Achtibat et al. ICML 2024): grad_u = grad_h * f(u), f = 1/2 where |u| < 1e-6;
// fused with the epsilon-rule of the producing linear (Bach et al. 2015):
// grad_u = grad_h * f(u) * u / (u + eps sign(u)). Grid-stride element-wise kernels, 16-byte packs.
#include "cuda_common.cuh"

namespace lrp {
namespace cuda_detail {

constexpr float kGuard = 1e-6f;

__device__ __forceinline__ float gelu_over_u(float u, int approximate) {
  if (approximate == kGeluTanh)
    return 0.5f * (1.0f + tanhf(0.7978845608028654f * (u + 0.044715f * u * u * u)));
  return 0.5f * (1.0f + erff(u * 0.7071067811865476f));
}

struct GeluForwardOp {
  int approximate;
  __device__ __forceinline__ float operator()(float u, float) const {
    return u * gelu_over_u(u, approximate);
  }
};

struct GeluBackwardOp {
  int approximate;
  float eps;  // 0: identity rule only
  __device__ __forceinline__ float operator()(float g, float u) const {
    float factor = fabsf(u) < kGuard ? 0.5f : gelu_over_u(u, approximate);
    if (eps != 0.0f) factor = factor * u / (u + (u >= 0.0f ? eps : -eps));
    return g * factor;
  }
};

void check_approximate(int approximate) {
  if (approximate != kGeluErf && approximate != kGeluTanh)
    throw std::invalid_argument("gelu: unknown approximate code " + std::to_string(approximate));
}

}  // namespace cuda_detail

namespace cuda {

void gelu_forward(int dtype, int approximate, int64_t rows, int64_t cols, const void* u,
                  int64_t u_stride, void* out, int64_t out_stride, int device, void* stream) {
  using namespace cuda_detail;
  check_approximate(approximate);
  if (rows == 0 || cols == 0) return;
  DeviceGuard guard(device);
  dispatch_dtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* ut = static_cast<const T*>(u);
    launch_elementwise<T>(rows, cols, ut, u_stride, ut, u_stride, static_cast<T*>(out),
                          out_stride, GeluForwardOp{approximate}, as_stream(stream));
  });
}

void gelu_backward(int dtype, int approximate, int64_t rows, int64_t cols, const void* grad_h,
                   int64_t g_stride, const void* u, int64_t u_stride, void* out,
                   int64_t out_stride, int device, void* stream) {
  using namespace cuda_detail;
  check_approximate(approximate);
  if (rows == 0 || cols == 0) return;
  DeviceGuard guard(device);
  dispatch_dtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch_elementwise<T>(rows, cols, static_cast<const T*>(grad_h), g_stride,
                          static_cast<const T*>(u), u_stride, static_cast<T*>(out), out_stride,
                          GeluBackwardOp{approximate, 0.0f}, as_stream(stream));
  });
}

void gelu_eps_ratio(int dtype, int approximate, int64_t rows, int64_t cols, const void* grad_h,
                    int64_t g_stride, const void* u, int64_t u_stride, float eps, void* out,
                    int64_t out_stride, int device, void* stream) {
  using namespace cuda_detail;
  check_approximate(approximate);
  if (rows == 0 || cols == 0) return;
  DeviceGuard guard(device);
  dispatch_dtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch_elementwise<T>(rows, cols, static_cast<const T*>(grad_h), g_stride,
                          static_cast<const T*>(u), u_stride, static_cast<T*>(out), out_stride,
                          GeluBackwardOp{approximate, eps}, as_stream(stream));
  });
}

}  // namespace cuda
}  // namespace lrp
