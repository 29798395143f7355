// RMSNorm forward and its LRP backward (identity rule on 1/rms), CPU.
//
// Forward, per row x of length H (Zhang & Sennrich 2019; Llama / EuroBERT's RMSNorm):
//     rstd = 1/sqrt(mean(x^2) + eps),   y = w * T(x * rstd)        (rstd saved, fp32)
// where T(.) rounds to the input dtype, as the reference and transformers' RMSNorm do before the
// weight (the one intermediate rounding of the kernels; none for float32).
// Backward with rms held constant (the treatment of LayerNorm's sigma in Ali et al. ICML 2022 and
// Achtibat et al. ICML 2024): y = diag(w * rstd) x is linear, so grad_x = (grad_y * w) * rstd.
#include "common.h"
#include "kernels.h"

namespace lrp {
namespace LRP_ISA_NS {

template <class T>
static void rms_norm_forward_kernel(int64_t rows, int64_t cols, const T* x, int64_t x_stride,
                                    const float* weight, float eps, T* y, int64_t y_stride,
                                    float* rstd) {
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const T* __restrict xr = x + r * x_stride;
    T* __restrict yr = y + r * y_stride;
    const float rs = 1.0f / std::sqrt(row_sq_dev(xr, cols, 0.0f) / float(cols) + eps);
    if (weight != nullptr) {
      LRP_SIMD
      for (int64_t c = 0; c < cols; ++c) store(yr, c, weight[c] * rounded<T>(load(xr, c) * rs));
    } else {
      LRP_SIMD
      for (int64_t c = 0; c < cols; ++c) store(yr, c, load(xr, c) * rs);
    }
    rstd[r] = rs;
  }
}

template <class T>
static void rms_norm_backward_kernel(int64_t rows, int64_t cols, const T* grad_y,
                                     int64_t g_stride, const float* weight, const float* rstd,
                                     T* grad_x, int64_t out_stride) {
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const T* __restrict gr = grad_y + r * g_stride;
    T* __restrict outr = grad_x + r * out_stride;
    const float rs = rstd[r];
    if (weight != nullptr) {
      LRP_SIMD
      for (int64_t c = 0; c < cols; ++c) store(outr, c, load(gr, c) * weight[c] * rs);
    } else {
      LRP_SIMD
      for (int64_t c = 0; c < cols; ++c) store(outr, c, load(gr, c) * rs);
    }
  }
}

void rms_norm_forward(int dtype, int64_t rows, int64_t cols, const void* x, int64_t x_stride,
                      const float* weight, float eps, void* y, int64_t y_stride, float* rstd) {
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    rms_norm_forward_kernel<T>(rows, cols, static_cast<const T*>(x), x_stride, weight, eps,
                               static_cast<T*>(y), y_stride, rstd);
  });
}

void rms_norm_backward(int dtype, int64_t rows, int64_t cols, const void* grad_y,
                       int64_t g_stride, const float* weight, const float* rstd, void* grad_x,
                       int64_t out_stride) {
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    rms_norm_backward_kernel<T>(rows, cols, static_cast<const T*>(grad_y), g_stride, weight, rstd,
                                static_cast<T*>(grad_x), out_stride);
  });
}

}  // namespace LRP_ISA_NS
}  // namespace lrp
