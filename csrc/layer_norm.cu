// LayerNorm forward and its LRP backward (identity rule on 1/sigma), CUDA. Math: layer_norm.cpp.
//
// Forward:  mu = mean(x), var = mean((x - mu)^2), rstd = 1/sqrt(var + eps), y = (x - mu) rstd w + b.
// Backward with sigma held constant (Ali et al. ICML 2022; Achtibat et al. ICML 2024):
//           g = w * grad_y,  grad_x = rstd * (g - mean(g)).
// One block per row (launch_rows); the row is read in 16-byte packs; block reductions in float32.
#include "cuda_common.cuh"

namespace lrp {
namespace cuda_detail {

template <class T, bool Vec>
__global__ void layer_norm_forward_kernel(int64_t cols, const T* x, int64_t x_stride,
                                          const float* weight, const float* bias, float eps, T* y,
                                          int64_t y_stride, float* mean, float* rstd) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const T* xr = x + r * x_stride;
  T* yr = y + r * y_stride;
  float sum = 0.0f;
  row_foreach<T, Vec>(xr, cols, [&](int64_t, float v) { sum += v; });
  const float mu = block_reduce(sum, scratch, SumOp{}, 0.0f) / float(cols);
  float sq = 0.0f;
  row_foreach<T, Vec>(xr, cols, [&](int64_t, float v) { sq += (v - mu) * (v - mu); });
  const float rs = 1.0f / sqrtf(block_reduce(sq, scratch, SumOp{}, 0.0f) / float(cols) + eps);
  row_map<T, Vec>(yr, xr, xr, cols, [&](int64_t c, float v, float) {
    float o = (v - mu) * rs;
    if (weight != nullptr) o = o * weight[c];
    if (bias != nullptr) o = o + bias[c];
    return o;
  });
  if (threadIdx.x == 0) {
    mean[r] = mu;
    rstd[r] = rs;
  }
}

template <class T, bool Vec>
__global__ void layer_norm_backward_kernel(int64_t cols, const T* grad_y, int64_t g_stride,
                                           const float* weight, const float* rstd, T* grad_x,
                                           int64_t out_stride) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const T* gr = grad_y + r * g_stride;
  T* outr = grad_x + r * out_stride;
  float sum = 0.0f;
  row_foreach<T, Vec>(gr, cols, [&](int64_t c, float v) {
    sum += weight != nullptr ? v * weight[c] : v;
  });
  const float m = block_reduce(sum, scratch, SumOp{}, 0.0f) / float(cols);
  const float rs = rstd[r];
  row_map<T, Vec>(outr, gr, gr, cols, [&](int64_t c, float v, float) {
    return ((weight != nullptr ? v * weight[c] : v) - m) * rs;
  });
}

}  // namespace cuda_detail

namespace cuda {

void layer_norm_forward(int dtype, int64_t rows, int64_t cols, const void* x, int64_t x_stride,
                        const float* weight, const float* bias, float eps, void* y,
                        int64_t y_stride, float* mean, float* rstd, int device, void* stream) {
  cuda_detail::launch_rows(
      "layer_norm_forward", dtype, rows, cols, {x, y}, {x_stride, y_stride},
      LRP_PICK(cuda_detail::layer_norm_forward_kernel),
      device, stream, cols, x, x_stride, weight, bias, eps, y, y_stride, mean, rstd);
}

void layer_norm_backward(int dtype, int64_t rows, int64_t cols, const void* grad_y,
                         int64_t g_stride, const float* weight, const float* rstd, void* grad_x,
                         int64_t out_stride, int device, void* stream) {
  cuda_detail::launch_rows(
      "layer_norm_backward", dtype, rows, cols, {grad_y, grad_x}, {g_stride, out_stride},
      LRP_PICK(cuda_detail::layer_norm_backward_kernel),
      device, stream, cols, grad_y, g_stride, weight, rstd, grad_x, out_stride);
}

}  // namespace cuda
}  // namespace lrp
