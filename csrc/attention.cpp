// The attention rule: the masked attention softmax forward and its AttnLRP backward, CPU.
//
// Forward, per row s of scores[B, H, Lq, :] with the additive key mask m = mask[b, :] (fp32):
//     x = s * scale + m,   p = exp(x - max(x)) / sum(exp(x - max(x))).
// A row whose keys are all masked with finfo(float32).min gets x = min everywhere (s*scale is far
// below half an ulp of min), hence the uniform distribution, as torch.softmax gives.
// Backward (Achtibat et al. ICML 2024, AttnLRP): the softmax keeps its plain gradient (first-order
// Taylor rule); the uniform-rule halvings of the surrounding bilinear products and the score scale
// are folded into one factor:  grad_s = factor * p * (grad_p - sum_k p_k grad_p_k).
// cp_lrp (Ali et al. ICML 2022) treats p as constant and needs no softmax backward.
#include <limits>
#include <vector>

#include "common.h"
#include "kernels.h"

namespace lrp {
namespace LRP_ISA_NS {

template <class T>
static void softmax_forward_kernel(int64_t rows, int64_t cols, int64_t rows_per_mask_row,
                                   const T* scores, int64_t s_stride, const float* mask,
                                   int64_t mask_stride, float scale, T* probs, int64_t p_stride) {
#pragma omp parallel if (rows * cols >= kParallelGrain)
  {
    std::vector<float> buffer(size_t(cols > 0 ? cols : 1));
    float* buf = buffer.data();
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const T* sr = scores + r * s_stride;
      T* pr = probs + r * p_stride;
      float mx = -std::numeric_limits<float>::infinity();
      if (mask != nullptr) {
        const float* m = mask + (r / rows_per_mask_row) * mask_stride;
        LRP_SIMD_MAX(mx)
        for (int64_t c = 0; c < cols; ++c) {
          const float v = load(sr, c) * scale + m[c];
          buf[c] = v;
          mx = v > mx ? v : mx;
        }
      } else {
        LRP_SIMD_MAX(mx)
        for (int64_t c = 0; c < cols; ++c) {
          const float v = load(sr, c) * scale;
          buf[c] = v;
          mx = v > mx ? v : mx;
        }
      }
      float sum = 0.0f;
      LRP_SIMD_SUM(sum)
      for (int64_t c = 0; c < cols; ++c) {
        const float e = fast_exp(buf[c] - mx);
        buf[c] = e;
        sum += e;
      }
      const float inv = 1.0f / sum;
      LRP_SIMD
      for (int64_t c = 0; c < cols; ++c) store(pr, c, buf[c] * inv);
    }
  }
}

template <class T>
static void softmax_backward_kernel(int64_t rows, int64_t cols, const T* grad_p, int64_t g_stride,
                                    const T* probs, int64_t p_stride, float factor, T* grad_s,
                                    int64_t out_stride) {
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const T* gr = grad_p + r * g_stride;
    const T* pr = probs + r * p_stride;
    T* outr = grad_s + r * out_stride;
    const float dot = row_dot(pr, gr, cols);
    LRP_SIMD
    for (int64_t c = 0; c < cols; ++c) {
      const float p = load(pr, c);
      store(outr, c, (p * load(gr, c) - p * dot) * factor);
    }
  }
}

void attention_softmax_forward(int dtype, int64_t rows, int64_t cols, int64_t rows_per_mask_row,
                               const void* scores, int64_t s_stride, const float* mask,
                               int64_t mask_stride, float scale, void* probs, int64_t p_stride) {
  if (mask != nullptr && rows_per_mask_row <= 0)
    throw std::invalid_argument("attention_softmax_forward: rows_per_mask_row must be positive");
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    softmax_forward_kernel<T>(rows, cols, rows_per_mask_row, static_cast<const T*>(scores),
                              s_stride, mask, mask_stride, scale, static_cast<T*>(probs), p_stride);
  });
}

void attention_softmax_backward(int dtype, int64_t rows, int64_t cols, const void* grad_p,
                                int64_t g_stride, const void* probs, int64_t p_stride, float factor,
                                void* grad_s, int64_t out_stride) {
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    softmax_backward_kernel<T>(rows, cols, static_cast<const T*>(grad_p), g_stride,
                               static_cast<const T*>(probs), p_stride, factor,
                               static_cast<T*>(grad_s), out_stride);
  });
}

}  // namespace LRP_ISA_NS
}  // namespace lrp
