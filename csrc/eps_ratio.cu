// The epsilon-stabilizer ratio feeding a linear layer's backward GEMM, CUDA. Math: eps_ratio.cpp.
//
// out = g_z * z / (z + eps * sign(z)), sign(0) = 1 (epsilon-rule, Bach et al. 2015); eps == 0
// copies g_z. Grid-stride element-wise kernel with 16-byte packs.
#include "cuda_common.cuh"

namespace lrp {
namespace cuda_detail {

struct EpsRatioOp {
  float eps;
  __device__ __forceinline__ float operator()(float g, float z) const {
    return eps == 0.0f ? g : g * z / (z + (z >= 0.0f ? eps : -eps));
  }
};

}  // namespace cuda_detail

namespace cuda {

void eps_ratio(int dtype, int64_t rows, int64_t cols, const void* grad_z, int64_t g_stride,
               const void* z, int64_t z_stride, float eps, void* out, int64_t out_stride,
               int device, void* stream) {
  using namespace cuda_detail;
  if (rows == 0 || cols == 0) return;
  DeviceGuard guard(device);
  dispatch_dtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch_elementwise<T>(rows, cols, static_cast<const T*>(grad_z), g_stride,
                          static_cast<const T*>(z), z_stride, static_cast<T*>(out), out_stride,
                          EpsRatioOp{eps}, as_stream(stream));
  });
}

}  // namespace cuda
}  // namespace lrp
