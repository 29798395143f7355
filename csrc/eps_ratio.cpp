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

template <class T>
static void eps_ratio_kernel(int64_t rows, int64_t cols, const T* grad_z, int64_t g_stride,
                             const T* z, int64_t z_stride, float eps, T* out, int64_t out_stride) {
  for_each_chunk(rows, cols, [&](int64_t r, int64_t c0, int64_t c1) {
    const T* gr = grad_z + r * g_stride;
    const T* zr = z + r * z_stride;
    T* outr = out + r * out_stride;
    if (eps == 0.0f) {
      LRP_SIMD
      for (int64_t c = c0; c < c1; ++c) store(outr, c, load(gr, c));
    } else {
      LRP_SIMD
      for (int64_t c = c0; c < c1; ++c) {
        const float zc = load(zr, c);
        store(outr, c, load(gr, c) * zc / stabilize(zc, eps));
      }
    }
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
