// Conversions between float32, float16 and bfloat16 on the GPU (round to nearest even), the CUDA
// counterpart of cast.cpp, used by the tests.
#include "cuda_common.cuh"

namespace lrp {
namespace cuda_detail {

template <class S, class D>
__global__ void cast_kernel(int64_t n, const S* src, D* dst) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = from_float<D>(to_float(src[i]));
}

}  // namespace cuda_detail

namespace cuda {

void cast(int src_dtype, int dst_dtype, int64_t n, const void* src, void* dst, int device,
          void* stream) {
  using namespace cuda_detail;
  if (n == 0) return;
  on_device(device, src_dtype, [&](auto src_tag) {
    using S = typename decltype(src_tag)::type;
    dispatch_dtype(dst_dtype, [&](auto dst_tag) {
      using D = typename decltype(dst_tag)::type;
      cast_kernel<S, D><<<grid_blocks(n, 256), 256, 0, as_stream(stream)>>>(
          n, static_cast<const S*>(src), static_cast<D*>(dst));
      check(cudaGetLastError(), "cast launch");
    });
  });
}

}  // namespace cuda
}  // namespace lrp
