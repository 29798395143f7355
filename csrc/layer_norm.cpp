// LayerNorm forward and its LRP backward (identity rule on 1/sigma), CPU.
//
// Forward, per row x of length H:   mu = mean(x),  var = mean((x - mu)^2),  rstd = 1/sqrt(var + eps)
//                                    y  = (x - mu) * rstd * w + b          (mu and rstd saved, fp32)
// Backward with sigma held constant (Ali et al. ICML 2022; Achtibat et al. ICML 2024): the
// normalization is linear in x once 1/sigma is a constant, so the modified gradient is the plain
// gradient of that linear map:       g = w * grad_y,   grad_x = rstd * (g - mean(g)).
// Two passes over the row in the forward statistics (no one-pass variance: it cancels badly).
#include "common.h"
#include "kernels.h"

namespace lrp {
namespace LRP_ISA_NS {

template <class T>
static void layer_norm_forward_kernel(int64_t rows, int64_t cols, const T* x, int64_t x_stride,
                                      const float* weight, const float* bias, float eps, T* y,
                                      int64_t y_stride, float* mean, float* rstd) {
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * x_stride;
    T* yr = y + r * y_stride;
    const float mu = row_sum(xr, cols) / float(cols);
    const float sq = row_sq_dev(xr, cols, mu);
    const float rs = 1.0f / std::sqrt(sq / float(cols) + eps);
    if (weight != nullptr && bias != nullptr) {
      LRP_SIMD
      for (int64_t c = 0; c < cols; ++c) store(yr, c, (load(xr, c) - mu) * rs * weight[c] + bias[c]);
    } else if (weight != nullptr) {
      LRP_SIMD
      for (int64_t c = 0; c < cols; ++c) store(yr, c, (load(xr, c) - mu) * rs * weight[c]);
    } else if (bias != nullptr) {
      LRP_SIMD
      for (int64_t c = 0; c < cols; ++c) store(yr, c, (load(xr, c) - mu) * rs + bias[c]);
    } else {
      LRP_SIMD
      for (int64_t c = 0; c < cols; ++c) store(yr, c, (load(xr, c) - mu) * rs);
    }
    mean[r] = mu;
    rstd[r] = rs;
  }
}

template <class T>
static void layer_norm_backward_kernel(int64_t rows, int64_t cols, const T* grad_y,
                                       int64_t g_stride, const float* weight, const float* rstd,
                                       T* grad_x, int64_t out_stride) {
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const T* gr = grad_y + r * g_stride;
    T* outr = grad_x + r * out_stride;
    const float rs = rstd[r];
    if (weight != nullptr) {
      const float m = row_dot(gr, weight, cols) / float(cols);
      LRP_SIMD
      for (int64_t c = 0; c < cols; ++c) store(outr, c, (load(gr, c) * weight[c] - m) * rs);
    } else {
      const float m = row_sum(gr, cols) / float(cols);
      LRP_SIMD
      for (int64_t c = 0; c < cols; ++c) store(outr, c, (load(gr, c) - m) * rs);
    }
  }
}

void layer_norm_forward(int dtype, int64_t rows, int64_t cols, const void* x, int64_t x_stride,
                        const float* weight, const float* bias, float eps, void* y,
                        int64_t y_stride, float* mean, float* rstd) {
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    layer_norm_forward_kernel<T>(rows, cols, static_cast<const T*>(x), x_stride, weight, bias, eps,
                                 static_cast<T*>(y), y_stride, mean, rstd);
  });
}

void layer_norm_backward(int dtype, int64_t rows, int64_t cols, const void* grad_y,
                         int64_t g_stride, const float* weight, const float* rstd, void* grad_x,
                         int64_t out_stride) {
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    layer_norm_backward_kernel<T>(rows, cols, static_cast<const T*>(grad_y), g_stride, weight,
                                  rstd, static_cast<T*>(grad_x), out_stride);
  });
}

}  // namespace LRP_ISA_NS
}  // namespace lrp
