// Shared helpers of the CUDA kernels: dtype dispatch, 16-byte packs, block reductions, error
// checks, the device guard, the launchers of one-block-per-row and element-wise kernels, and the
// element-wise math of the linear and activation rules. Kernels compute in float32; every global
// access of a row goes through 16-byte packs (4 floats or 8 halves) when the row pointers, strides
// and length allow it, otherwise element by element.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels.h"

namespace lrp {
namespace cuda_detail {

template <class T>
struct Tag {
  using type = T;
};

template <class F>
inline void dispatch_dtype(int dtype, F&& f) {
  switch (dtype) {
    case kFloat32:
      f(Tag<float>{});
      break;
    case kFloat16:
      f(Tag<__half>{});
      break;
    case kBFloat16:
      f(Tag<__nv_bfloat16>{});
      break;
    default:
      throw std::invalid_argument("lrp_kernels._C: unknown dtype code " + std::to_string(dtype));
  }
}

inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("lrp_kernels CUDA ") + what + ": " +
                             cudaGetErrorString(err));
}

// Makes `device` current for the launch and restores the previous device afterwards.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    check(cudaGetDevice(&previous_), "cudaGetDevice");
    if (previous_ != device) check(cudaSetDevice(device), "cudaSetDevice");
    device_ = device;
  }
  ~DeviceGuard() {
    if (previous_ != device_) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
  int device_ = 0;
};

inline cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

// Make `device` current and call f(Tag<T>{}), T the element type of the dtype code.
template <class F>
inline void on_device(int device, int dtype, F&& f) {
  DeviceGuard guard(device);
  dispatch_dtype(dtype, f);
}

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// 16 bytes of T: one vectorized global load or store.
template <class T>
struct alignas(16) Pack {
  static constexpr int N = 16 / sizeof(T);
  T v[N];
};

template <class T>
__device__ __forceinline__ void load_pack(const T* p, float (&out)[Pack<T>::N]) {
  const Pack<T> pk = *reinterpret_cast<const Pack<T>*>(p);
#pragma unroll
  for (int i = 0; i < Pack<T>::N; ++i) out[i] = to_float(pk.v[i]);
}

template <class T>
__device__ __forceinline__ void store_pack(T* p, const float (&in)[Pack<T>::N]) {
  Pack<T> pk;
#pragma unroll
  for (int i = 0; i < Pack<T>::N; ++i) pk.v[i] = from_float<T>(in[i]);
  *reinterpret_cast<Pack<T>*>(p) = pk;
}

// N elements from p as floats / to p from floats: one 16-byte pack when N is Pack<T>::N (> 1),
// else element by element.
template <int N, class T>
__device__ __forceinline__ void load_n(const T* p, float (&out)[N]) {
  if constexpr (N > 1 && N == Pack<T>::N) {
    load_pack(p, out);
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) out[i] = to_float(p[i]);
  }
}

template <int N, class T>
__device__ __forceinline__ void store_n(T* p, const float (&in)[N]) {
  if constexpr (N > 1 && N == Pack<T>::N) {
    store_pack(p, in);
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) p[i] = from_float<T>(in[i]);
  }
}

// v rounded to T and back (the identity for float): where the reference rounds an intermediate
// value to the input dtype, the kernels round it too.
template <class T>
__device__ __forceinline__ float rounded(float v) {
  return to_float(from_float<T>(v));
}

// Whether rows of `cols` elements at these pointers and strides can be read in 16-byte packs.
template <class T>
inline bool packable(int64_t cols, std::initializer_list<const void*> ptrs,
                     std::initializer_list<int64_t> strides) {
  constexpr int64_t n = Pack<T>::N;
  if (cols % n != 0) return false;
  for (const void* p : ptrs)
    if (p != nullptr && reinterpret_cast<std::uintptr_t>(p) % 16 != 0) return false;
  for (int64_t s : strides)
    if (s % n != 0) return false;
  return true;
}

// Call f(c, x) for every element x (as float) of a row that this thread owns, in 16-byte packs
// when Vec; thread t owns packs t, t + blockDim.x, ...
template <class T, bool Vec, class F>
__device__ __forceinline__ void row_foreach(const T* row, int64_t cols, F&& f) {
  if (Vec) {
    constexpr int N = Pack<T>::N;
    for (int64_t c = int64_t(threadIdx.x) * N; c < cols; c += int64_t(blockDim.x) * N) {
      float v[N];
      load_pack(row + c, v);
#pragma unroll
      for (int i = 0; i < N; ++i) f(c + i, v[i]);
    }
  } else {
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) f(c, to_float(row[c]));
  }
}

// out[c] = f(c, a[c], b[c]) over a row, same ownership as row_foreach.
template <class T, bool Vec, class F>
__device__ __forceinline__ void row_map(T* out, const T* a, const T* b, int64_t cols, F&& f) {
  if (Vec) {
    constexpr int N = Pack<T>::N;
    for (int64_t c = int64_t(threadIdx.x) * N; c < cols; c += int64_t(blockDim.x) * N) {
      float va[N], vb[N], vo[N];
      load_pack(a + c, va);
      load_pack(b + c, vb);
#pragma unroll
      for (int i = 0; i < N; ++i) vo[i] = f(c + i, va[i], vb[i]);
      store_pack(out + c, vo);
    }
  } else {
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      out[c] = from_float<T>(f(c, to_float(a[c]), to_float(b[c])));
  }
}

struct SumOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return a + b; }
};
struct MaxOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// Reduce v over the block; every thread gets the result. `scratch` holds 32 floats.
template <class Op>
__device__ __forceinline__ float block_reduce(float v, float* scratch, Op op, float identity) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const int warps = (blockDim.x + 31) >> 5;
    v = lane < warps ? scratch[lane] : identity;
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1)
      v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
    if (lane == 0) scratch[0] = v;
  }
  __syncthreads();
  const float result = scratch[0];
  __syncthreads();  // scratch may be reused by the next reduction
  return result;
}

// Threads of a one-block-per-row kernel: enough for one pack per thread, a multiple of 32, at
// most 512 (longer rows loop).
template <class T>
inline int row_threads(int64_t cols) {
  const int64_t packs = (cols + Pack<T>::N - 1) / Pack<T>::N;
  int64_t t = (packs + 31) / 32 * 32;
  if (t < 32) t = 32;
  if (t > 512) t = 512;
  return int(t);
}

// Launch `kernel` with each argument converted to the kernel's parameter type (a void pointer of
// the kernel API to the T pointer of the instance).
template <class... Params, class... Args>
inline void launch_converted(void (*kernel)(Params...), unsigned blocks, int threads, void* stream,
                             Args... args) {
  kernel<<<blocks, threads, 0, as_stream(stream)>>>(static_cast<Params>(args)...);
}

// The kernel instance a launch picks: element type T; rows read in 16-byte packs (Vec) or not.
template <class T, bool Vec>
struct Instance {
  using type = T;
  static constexpr bool vec = Vec;
};

// The `pick` of launch_rows / launch_items for a kernel template kernel<T, Vec>.
#define LRP_PICK(kernel)                                \
  [](auto instance) {                                   \
    using I = decltype(instance);                       \
    return kernel<typename I::type, I::vec>;            \
  }

// A one-block-per-row kernel over `rows` rows of `cols` elements on `device` (nothing when rows
// is 0): pick(Instance<T, Vec>{}) returns the kernel instance, T the element type of the dtype
// code and Vec whether the rows at `row_ptrs` with `strides` can be read in 16-byte packs; it runs
// with row_threads<T>(cols) threads a block and `args`.
template <class Pick, class... Args>
inline void launch_rows(const char* what, int dtype, int64_t rows, int64_t cols,
                        std::initializer_list<const void*> row_ptrs,
                        std::initializer_list<int64_t> strides, Pick pick, int device,
                        void* stream, Args... args) {
  if (rows == 0) return;
  on_device(device, dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (packable<T>(cols, row_ptrs, strides))
      launch_converted(pick(Instance<T, true>{}), unsigned(rows), row_threads<T>(cols), stream,
                       args...);
    else
      launch_converted(pick(Instance<T, false>{}), unsigned(rows), row_threads<T>(cols), stream,
                       args...);
    check(cudaGetLastError(), (std::string(what) + " launch").c_str());
  });
}

// A grid-stride loop over the items of a rows x cols matrix: with Vec, each row's cols / N packs
// of N = Pack<T>::N elements, then its tail element by element; without, every element. Calls
// f(r, c, std::integral_constant<int, W>{}) for the W elements of row r from column c.
template <class T, bool Vec, class F>
__device__ __forceinline__ void for_each_item(int64_t rows, int64_t cols, F&& f) {
  constexpr int N = Vec ? Pack<T>::N : 1;
  const int64_t packs = cols / N;
  const int64_t per_row = packs + (cols - packs * N);
  const int64_t total = rows * per_row;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / per_row;
    const int64_t j = i - r * per_row;
    if (j < packs)
      f(r, j * N, std::integral_constant<int, N>{});
    else
      f(r, packs * N + (j - packs), std::integral_constant<int, 1>{});
  }
}

// Element-wise kernel over a rows x cols matrix: out = op(a, b) (b unused by unary ops).
template <class T, bool Vec, class Op>
__global__ void elementwise_kernel(int64_t rows, int64_t cols, const T* a, int64_t a_stride,
                                   const T* b, int64_t b_stride, T* out, int64_t out_stride,
                                   Op op) {
  for_each_item<T, Vec>(rows, cols, [&](int64_t r, int64_t c, auto width) {
    constexpr int W = decltype(width)::value;
    float va[W], vb[W], vo[W];
    load_n(a + r * a_stride + c, va);
    load_n(b + r * b_stride + c, vb);
#pragma unroll
    for (int k = 0; k < W; ++k) vo[k] = op(va[k], vb[k]);
    store_n(out + r * out_stride + c, vo);
  });
}

// Blocks of a grid-stride kernel over `items` items: one item per thread, at most 65536 blocks.
inline unsigned grid_blocks(int64_t items, int threads) {
  const int64_t blocks = (items + threads - 1) / threads;
  return unsigned(blocks < 65536 ? blocks : 65536);
}

// Launch kernel<T, Vec> over the items of a rows x cols matrix (for_each_item), Vec when the
// pointers and `strides` allow 16-byte packs: pick(Instance<T, Vec>{}) returns the instance.
template <class T, class Pick, class... Args>
inline void launch_items(int64_t rows, int64_t cols, std::initializer_list<const void*> ptrs,
                         std::initializer_list<int64_t> strides, Pick pick, cudaStream_t stream,
                         Args... args) {
  constexpr int64_t n = Pack<T>::N;
  const bool vec = packable<T>(n, ptrs, strides);
  const int64_t items = rows * (vec ? cols / n + cols % n : cols);
  const int threads = 256;
  const unsigned blocks = grid_blocks(items, threads);
  if (vec)
    launch_converted(pick(Instance<T, true>{}), blocks, threads, stream, args...);
  else
    launch_converted(pick(Instance<T, false>{}), blocks, threads, stream, args...);
  check(cudaGetLastError(), "element-wise kernel launch");
}

// Launch elementwise_kernel; packs are used when the row starts are 16-byte aligned.
template <class T, class Op>
inline void launch_elementwise_as(int64_t rows, int64_t cols, const T* a, int64_t a_stride,
                                  const T* b, int64_t b_stride, T* out, int64_t out_stride, Op op,
                                  cudaStream_t stream) {
  const bool one_row = rows == 1;  // its stride is never used, so it does not decide the packing
  launch_items<T>(
      rows, cols, {a, b, out},
      {one_row ? 0 : a_stride, one_row ? 0 : b_stride, one_row ? 0 : out_stride},
      [](auto i) { return elementwise_kernel<T, decltype(i)::vec, Op>; }, stream, rows, cols, a,
      a_stride, b, b_stride, out, out_stride, op);
}

// An element-wise kernel on `device`: out = op(a, b) over rows x cols matrices of the element type
// of `dtype` (op maps floats to a float; a unary op ignores b, pass a twice).
template <class Op>
inline void launch_elementwise(int dtype, int64_t rows, int64_t cols, const void* a,
                               int64_t a_stride, const void* b, int64_t b_stride, void* out,
                               int64_t out_stride, Op op, int device, void* stream) {
  if (rows == 0 || cols == 0) return;
  on_device(device, dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch_elementwise_as<T>(rows, cols, static_cast<const T*>(a), a_stride,
                             static_cast<const T*>(b), b_stride, static_cast<T*>(out), out_stride,
                             op, as_stream(stream));
  });
}

// ---- shared math of the element-wise rules (linear.cu, activation.cu); CPU: common.h ----

// z + eps * sign(z), sign(0) = 1: the stabilizer of the epsilon-rule.
__device__ __forceinline__ float stabilize(float z, float eps) {
  return z + (z >= 0.0f ? eps : -eps);
}

// gelu(u)/u: 0.5 (1 + erf(u/sqrt 2)) or 0.5 (1 + tanh(sqrt(2/pi)(u + 0.044715 u^3))).
__device__ __forceinline__ float gelu_over_u(float u, int approximate) {
  if (approximate == kGeluTanh)
    return 0.5f * (1.0f + tanhf(0.7978845608028654f * (u + 0.044715f * u * u * u)));
  return 0.5f * (1.0f + erff(u * 0.7071067811865476f));
}

// gelu(u)/u with the identity-rule guard: 1/2 where |u| < kGeluGuard (kernels.h).
__device__ __forceinline__ float gelu_factor(float u, int approximate) {
  return fabsf(u) < kGeluGuard ? 0.5f : gelu_over_u(u, approximate);
}

inline void check_gelu_approximate(int approximate) {
  if (approximate != kGeluErf && approximate != kGeluTanh)
    throw std::invalid_argument("gelu: unknown approximate code " + std::to_string(approximate));
}

}  // namespace cuda_detail
}  // namespace lrp
