// The epsilon-stabilizer ratio that feeds a linear layer's backward GEMM, CPU.
//
// epsilon-rule (Bach et al. 2015; Montavon et al. 2019) in the gradient x input form: for z = Wx + b
// the modified gradient is g_x = W^T (g_z * z / (z + eps * sign(z))), sign(0) = 1. This kernel
// computes the element-wise part  out = g_z * z / (z + eps * sign(z))  in one pass;
// eps == 0 copies g_z (the plain gradient).
#include "common.h"
#include "kernels.h"

namespace lrp {
namespace LRP_ISA_NS {

// One contiguous span; scalars by value and restrict pointers so that the loop vectorizes.
template <class T>
static inline void eps_ratio_span(int64_t n, const T* __restrict g, const T* __restrict z,
                                  float eps, T* __restrict out) {
  LRP_SIMD
  for (int64_t c = 0; c < n; ++c) {
    const float zc = load(z, c);
    store(out, c, load(g, c) * zc / stabilize(zc, eps));
  }
}

template <class T>
static inline void copy_span(int64_t n, const T* __restrict g, T* __restrict out) {
  LRP_SIMD
  for (int64_t c = 0; c < n; ++c) store(out, c, load(g, c));
}

template <class T>
static void eps_ratio_kernel(int64_t rows, int64_t cols, const T* grad_z, int64_t g_stride,
                             const T* z, int64_t z_stride, float eps, T* out, int64_t out_stride) {
  for_each_chunk(rows, cols, [=](int64_t r, int64_t c0, int64_t c1) {
    const T* gr = grad_z + r * g_stride + c0;
    T* outr = out + r * out_stride + c0;
    if (eps == 0.0f)
      copy_span(c1 - c0, gr, outr);
    else
      eps_ratio_span(c1 - c0, gr, z + r * z_stride + c0, eps, outr);
  });
}

void eps_ratio(int dtype, int64_t rows, int64_t cols, const void* grad_z, int64_t g_stride,
               const void* z, int64_t z_stride, float eps, void* out, int64_t out_stride) {
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    eps_ratio_kernel<T>(rows, cols, static_cast<const T*>(grad_z), g_stride,
                        static_cast<const T*>(z), z_stride, eps, static_cast<T*>(out), out_stride);
  });
}

}  // namespace LRP_ISA_NS
}  // namespace lrp
