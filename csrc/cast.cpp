// Conversions between float32, float16 and bfloat16 with the kernels' own helpers (common.h):
// exact widening, round-to-nearest-even narrowing. Exposed so that the tests can check the
// helpers exhaustively against torch's conversions.
#include "common.h"
#include "kernels.h"

namespace lrp {
namespace LRP_ISA_NS {

template <class S, class D>
static inline void cast_span(int64_t n, const S* __restrict src, D* __restrict dst) {
  LRP_SIMD
  for (int64_t i = 0; i < n; ++i) store(dst, i, load(src, i));
}

template <class S, class D>
static void cast_kernel(int64_t n, const S* src, D* dst) {
  for_each_chunk(1, n, [=](int64_t, int64_t c0, int64_t c1) {
    cast_span(c1 - c0, src + c0, dst + c0);
  });
}

void cast(int src_dtype, int dst_dtype, int64_t n, const void* src, void* dst) {
  dispatch_dtype(src_dtype, [&](auto src_tag) {
    using S = decltype(src_tag);
    dispatch_dtype(dst_dtype, [&](auto dst_tag) {
      using D = decltype(dst_tag);
      cast_kernel<S, D>(n, static_cast<const S*>(src), static_cast<D*>(dst));
    });
  });
}

}  // namespace LRP_ISA_NS
}  // namespace lrp
