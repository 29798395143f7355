// The attention rule: the masked attention softmax forward and its AttnLRP backward, CUDA.
// Math: attention.cpp.
//
// Forward:  x = s * scale + mask[b, :],  p = exp(x - max x) / sum exp(x - max x)
//           (rows fully masked with finfo(float32).min come out uniform, as with torch.softmax).
// Backward (Achtibat et al. ICML 2024): grad_s = factor * p * (grad_p - sum_k p_k grad_p_k).
// One block per row of Lk keys (launch_rows), 16-byte packs, float32 block reductions; the row is
// re-read from L1/L2 in each pass instead of being staged in shared memory.
#include <math_constants.h>

#include "cuda_common.cuh"

namespace lrp {
namespace cuda_detail {

template <class T, bool Vec>
__global__ void softmax_forward_kernel(int64_t cols, int64_t rows_per_mask_row, const T* scores,
                                       int64_t s_stride, const float* mask, int64_t mask_stride,
                                       float scale, T* probs, int64_t p_stride) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const T* sr = scores + r * s_stride;
  T* pr = probs + r * p_stride;
  const float* m = mask != nullptr ? mask + (r / rows_per_mask_row) * mask_stride : nullptr;
  float mx = -CUDART_INF_F;
  row_foreach<T, Vec>(sr, cols, [&](int64_t c, float v) {
    const float x = m != nullptr ? v * scale + m[c] : v * scale;
    mx = fmaxf(mx, x);
  });
  mx = block_reduce(mx, scratch, MaxOp{}, -CUDART_INF_F);
  float sum = 0.0f;
  row_foreach<T, Vec>(sr, cols, [&](int64_t c, float v) {
    const float x = m != nullptr ? v * scale + m[c] : v * scale;
    sum += expf(x - mx);
  });
  const float inv = 1.0f / block_reduce(sum, scratch, SumOp{}, 0.0f);
  row_map<T, Vec>(pr, sr, sr, cols, [&](int64_t c, float v, float) {
    const float x = m != nullptr ? v * scale + m[c] : v * scale;
    return expf(x - mx) * inv;
  });
}

template <class T, bool Vec>
__global__ void softmax_backward_kernel(int64_t cols, const T* grad_p, int64_t g_stride,
                                        const T* probs, int64_t p_stride, float factor, T* grad_s,
                                        int64_t out_stride) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const T* gr = grad_p + r * g_stride;
  const T* pr = probs + r * p_stride;
  T* outr = grad_s + r * out_stride;
  float dot = 0.0f;
  if (Vec) {
    constexpr int N = Pack<T>::N;
    for (int64_t c = int64_t(threadIdx.x) * N; c < cols; c += int64_t(blockDim.x) * N) {
      float g[N], p[N];
      load_pack(gr + c, g);
      load_pack(pr + c, p);
#pragma unroll
      for (int i = 0; i < N; ++i) dot += p[i] * g[i];
    }
  } else {
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) dot += to_float(pr[c]) * to_float(gr[c]);
  }
  dot = block_reduce(dot, scratch, SumOp{}, 0.0f);
  row_map<T, Vec>(outr, gr, pr, cols,
                  [&](int64_t, float g, float p) { return (p * g - p * dot) * factor; });
}

}  // namespace cuda_detail

namespace cuda {

void attention_softmax_forward(int dtype, int64_t rows, int64_t cols, int64_t rows_per_mask_row,
                               const void* scores, int64_t s_stride, const float* mask,
                               int64_t mask_stride, float scale, void* probs, int64_t p_stride,
                               int device, void* stream) {
  if (mask != nullptr && rows_per_mask_row <= 0)
    throw std::invalid_argument("attention_softmax_forward: rows_per_mask_row must be positive");
  cuda_detail::launch_rows(
      "attention_softmax_forward", dtype, rows, cols, {scores, probs}, {s_stride, p_stride},
      LRP_PICK(cuda_detail::softmax_forward_kernel),
      device, stream, cols, rows_per_mask_row, scores, s_stride, mask, mask_stride, scale, probs,
      p_stride);
}

void attention_softmax_backward(int dtype, int64_t rows, int64_t cols, const void* grad_p,
                                int64_t g_stride, const void* probs, int64_t p_stride, float factor,
                                void* grad_s, int64_t out_stride, int device, void* stream) {
  cuda_detail::launch_rows(
      "attention_softmax_backward", dtype, rows, cols, {grad_p, probs, grad_s},
      {g_stride, p_stride, out_stride},
      LRP_PICK(cuda_detail::softmax_backward_kernel),
      device, stream, cols, grad_p, g_stride, probs, p_stride, factor, grad_s, out_stride);
}

}  // namespace cuda
}  // namespace lrp
