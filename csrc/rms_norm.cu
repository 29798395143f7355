// RMSNorm forward and its LRP backward (identity rule on 1/rms), CUDA. Math: rms_norm.cpp.
//
// Forward:  rstd = 1/sqrt(mean(x^2) + eps),  y = w * T(x * rstd)  (T: rounded to the input dtype).
// Backward with rms held constant: grad_x = (grad_y * w) * rstd.
// One block per row (launch_rows); the row is read in 16-byte packs; block reduction in float32.
#include "cuda_common.cuh"

namespace lrp {
namespace cuda_detail {

template <class T, bool Vec>
__global__ void rms_norm_forward_kernel(int64_t cols, const T* x, int64_t x_stride,
                                        const float* weight, float eps, T* y, int64_t y_stride,
                                        float* rstd) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const T* xr = x + r * x_stride;
  float sq = 0.0f;
  row_foreach<T, Vec>(xr, cols, [&](int64_t, float v) { sq += v * v; });
  const float rs = 1.0f / sqrtf(block_reduce(sq, scratch, SumOp{}, 0.0f) / float(cols) + eps);
  row_map<T, Vec>(y + r * y_stride, xr, xr, cols, [&](int64_t c, float v, float) {
    return weight != nullptr ? weight[c] * rounded<T>(v * rs) : v * rs;
  });
  if (threadIdx.x == 0) rstd[r] = rs;
}

template <class T, bool Vec>
__global__ void rms_norm_backward_kernel(int64_t cols, const T* grad_y, int64_t g_stride,
                                         const float* weight, const float* rstd, T* grad_x,
                                         int64_t out_stride) {
  const int64_t r = blockIdx.x;
  const float rs = rstd[r];
  const T* gr = grad_y + r * g_stride;
  row_map<T, Vec>(grad_x + r * out_stride, gr, gr, cols, [&](int64_t c, float g, float) {
    return (weight != nullptr ? g * weight[c] : g) * rs;
  });
}

}  // namespace cuda_detail

namespace cuda {

void rms_norm_forward(int dtype, int64_t rows, int64_t cols, const void* x, int64_t x_stride,
                      const float* weight, float eps, void* y, int64_t y_stride, float* rstd,
                      int device, void* stream) {
  cuda_detail::launch_rows(
      "rms_norm_forward", dtype, rows, cols, {x, y}, {x_stride, y_stride},
      LRP_PICK(cuda_detail::rms_norm_forward_kernel),
      device, stream, cols, x, x_stride, weight, eps, y, y_stride, rstd);
}

void rms_norm_backward(int dtype, int64_t rows, int64_t cols, const void* grad_y,
                       int64_t g_stride, const float* weight, const float* rstd, void* grad_x,
                       int64_t out_stride, int device, void* stream) {
  cuda_detail::launch_rows(
      "rms_norm_backward", dtype, rows, cols, {grad_y, grad_x}, {g_stride, out_stride},
      LRP_PICK(cuda_detail::rms_norm_backward_kernel),
      device, stream, cols, grad_y, g_stride, weight, rstd, grad_x, out_stride);
}

}  // namespace cuda
}  // namespace lrp
