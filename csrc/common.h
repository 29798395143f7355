// Shared helpers of the CPU kernels: dtype codes, float16/bfloat16 conversions, vectorizable exp
// and erf, and the per-ISA namespace every CPU kernel file is compiled into.
//
// No torch headers: the kernels see raw pointers, sizes and row strides (in elements). Every kernel
// loads its inputs into float32, computes in float32 and rounds once when it stores.
//
// Each CPU kernel file is compiled several times (see CMakeLists.txt), once per instruction set,
// with LRP_ISA_NS naming the namespace (base, avx2, avx512); dispatch.cpp picks one at run time.
// The helpers below are branch-free so that GCC/Clang vectorize the loops that call them.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef LRP_ISA_NS
#define LRP_ISA_NS base
#endif

// `omp simd` (honoured with -fopenmp or -fopenmp-simd) tells the compiler that the loop has no
// loop-carried dependence, so it vectorizes despite possible pointer aliasing, and lets it
// reassociate the float reductions.
#define LRP_PRAGMA(x) _Pragma(#x)
#define LRP_SIMD LRP_PRAGMA(omp simd)
#define LRP_SIMD_SUM(var) LRP_PRAGMA(omp simd reduction(+ : var))
#define LRP_SIMD_MAX(var) LRP_PRAGMA(omp simd reduction(max : var))

namespace lrp {
// Unnamed: every helper has internal linkage, so each instruction set's object file keeps its own
// compiled copy. (An inline function with external linkage that the compiler does not inline --
// the row reductions -- is one weak symbol in every object, and the linker keeps one of them for
// all instruction sets: the base copy in the AVX kernels, or an AVX-512 copy in the base ones.)
namespace {

struct half_t {
  uint16_t bits;
};
struct bfloat16_t {
  uint16_t bits;
};

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// IEEE binary16 -> binary32, exact (subnormals, inf and NaN included).
inline float half_to_float(uint16_t h) {
  const uint32_t shifted_exp = 0x7c00u << 13;
  uint32_t o = (uint32_t(h) & 0x7fffu) << 13;
  const uint32_t exp = shifted_exp & o;
  o += uint32_t(127 - 15) << 23;
  const uint32_t inf_nan = o + (uint32_t(128 - 16) << 23);
  // subnormal: renormalize through a float subtraction
  const float sub = bits_float(o + (1u << 23)) - bits_float(113u << 23);
  o = exp == shifted_exp ? inf_nan : (exp == 0 ? float_bits(sub) : o);
  return bits_float(o | ((uint32_t(h) & 0x8000u) << 16));
}

// binary32 -> binary16, round to nearest even; overflow to inf, NaN stays NaN.
inline uint16_t float_to_half(float f) {
  uint32_t x = float_bits(f);
  const uint32_t sign = x & 0x80000000u;
  x ^= sign;
  // too large for a finite half (>= 65536 before rounding) or inf/NaN
  const uint32_t big = x > 0x7f800000u ? 0x7e00u : 0x7c00u;
  // result is a half subnormal or zero: align the mantissa by a float addition
  const uint32_t denorm_magic = uint32_t((127 - 15) + (23 - 10) + 1) << 23;
  const uint32_t small = float_bits(bits_float(x) + bits_float(denorm_magic)) - denorm_magic;
  // normal result: rebias the exponent and round to nearest even
  const uint32_t mant_odd = (x >> 13) & 1u;
  const uint32_t normal = (x + (uint32_t(15 - 127) << 23) + 0xfffu + mant_odd) >> 13;
  const uint32_t o = x >= 0x47800000u ? big : (x < 0x38800000u ? small : normal);
  return uint16_t(o | (sign >> 16));
}

inline float bf16_to_float(uint16_t h) { return bits_float(uint32_t(h) << 16); }

// binary32 -> bfloat16, round to nearest even; NaN stays NaN.
inline uint16_t float_to_bf16(float f) {
  const uint32_t u = float_bits(f);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  return uint16_t((u & 0x7fffffffu) > 0x7f800000u ? ((u >> 16) | 0x40u) : rounded);
}

inline float load(const float* p, int64_t i) { return p[i]; }
inline float load(const half_t* p, int64_t i) { return half_to_float(p[i].bits); }
inline float load(const bfloat16_t* p, int64_t i) { return bf16_to_float(p[i].bits); }
inline void store(float* p, int64_t i, float v) { p[i] = v; }
inline void store(half_t* p, int64_t i, float v) { p[i].bits = float_to_half(v); }
inline void store(bfloat16_t* p, int64_t i, float v) { p[i].bits = float_to_bf16(v); }

// v rounded to T and back to float (the identity for float): where the reference rounds an
// intermediate value to the input dtype, the kernels round it too.
template <class T>
inline float rounded(float v) {
  T t;
  store(&t, 0, v);
  return load(&t, 0);
}

// exp(x) in float32, ~1 ulp on the range where the result is a normal float (Cephes expf);
// 0 below -87.33 (no subnormal results), clamped at the top; NaN stays NaN.
inline float fast_exp(float x) {
  const float log2e = 1.44269504088896341f;
  const float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
  float xc = x > 88.3762626647949f ? 88.3762626647949f : x;
  xc = xc < -87.33654f ? -87.33654f : xc;
  // round to nearest through the 1.5 * 2^23 trick (vectorizes without SSE4.1)
  const float n = (xc * log2e + 12582912.0f) - 12582912.0f;
  float r = xc - n * ln2_hi;
  r = r - n * ln2_lo;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // 2^n split in two factors so that n = 128 (top of the range) stays representable
  const int32_t ni = int32_t(n);
  const int32_t n1 = ni >> 1;
  const float s1 = bits_float(uint32_t(n1 + 127) << 23);
  const float s2 = bits_float(uint32_t(ni - n1 + 127) << 23);
  const float v = p * s1 * s2;
  return x < -87.33654f ? 0.0f : v;
}

// erf(x) in float32: rational approximation on [-4, 4] (the one Eigen and XLA use), max abs error
// a few ulp; |erf(x)| rounds to 1 outside.
inline float fast_erf(float x) {
  float xc = x > 4.0f ? 4.0f : x;
  xc = xc < -4.0f ? -4.0f : xc;
  const float x2 = xc * xc;
  float a = -2.72614225801306e-10f;
  a = a * x2 + 2.77068142495902e-08f;
  a = a * x2 + -2.10102402082508e-06f;
  a = a * x2 + -5.69250639462346e-05f;
  a = a * x2 + -7.34990630326855e-04f;
  a = a * x2 + -2.95459980854025e-03f;
  a = a * x2 + -1.60960333262415e-02f;
  float b = -1.45660718464996e-05f;
  b = b * x2 + -2.13374055278905e-04f;
  b = b * x2 + -1.68282697438203e-03f;
  b = b * x2 + -7.37332916720468e-03f;
  b = b * x2 + -1.42647390514189e-02f;
  return xc * a / b;
}

// gelu(u)/u: 0.5*(1 + erf(u/sqrt 2)) or, for tanh, 0.5*(1 + tanh(y)) = 1/(1 + exp(-2y)) with
// y = sqrt(2/pi)*(u + 0.044715 u^3).
inline float gelu_over_u(float u, int approx) {
  if (approx == kGeluTanh) {
    const float y = 0.7978845608028654f * (u + 0.044715f * u * u * u);
    return 1.0f / (1.0f + fast_exp(-2.0f * y));
  }
  return 0.5f * (1.0f + fast_erf(u * 0.7071067811865476f));
}

// gelu(u)/u with the identity-rule guard: 1/2 where |u| < kGeluGuard (kernels.h).
inline float gelu_factor(float u, int approx) {
  const float f = gelu_over_u(u, approx);
  return std::fabs(u) < kGeluGuard ? 0.5f : f;
}

// sign with sign(0) = 1: the one stabilizer convention of the project.
inline float stabilize(float z, float eps) { return z + (z >= 0.0f ? eps : -eps); }

inline int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// Below this many elements a kernel runs on one thread: the fork/join costs more than it saves.
constexpr int64_t kParallelGrain = 32768;

// Row reductions with kLanes independent partial sums: one accumulator chain per vector register
// instead of one in total, so the adds pipeline (a single chain is bound by the add latency).
constexpr int kLanes = 64;

template <class T>
inline float row_sum(const T* __restrict x, int64_t n) {
  float acc[kLanes] = {};
  int64_t c = 0;
  for (; c + kLanes <= n; c += kLanes) {
    LRP_SIMD
    for (int j = 0; j < kLanes; ++j) acc[j] += load(x, c + j);
  }
  float s = 0.0f;
  for (; c < n; ++c) s += load(x, c);
  LRP_SIMD_SUM(s)
  for (int j = 0; j < kLanes; ++j) s += acc[j];
  return s;
}

// sum (x - mu)^2
template <class T>
inline float row_sq_dev(const T* __restrict x, int64_t n, float mu) {
  float acc[kLanes] = {};
  int64_t c = 0;
  for (; c + kLanes <= n; c += kLanes) {
    LRP_SIMD
    for (int j = 0; j < kLanes; ++j) {
      const float d = load(x, c + j) - mu;
      acc[j] += d * d;
    }
  }
  float s = 0.0f;
  for (; c < n; ++c) {
    const float d = load(x, c) - mu;
    s += d * d;
  }
  LRP_SIMD_SUM(s)
  for (int j = 0; j < kLanes; ++j) s += acc[j];
  return s;
}

// sum a * b
template <class A, class B>
inline float row_dot(const A* __restrict a, const B* __restrict b, int64_t n) {
  float acc[kLanes] = {};
  int64_t c = 0;
  for (; c + kLanes <= n; c += kLanes) {
    LRP_SIMD
    for (int j = 0; j < kLanes; ++j) acc[j] += load(a, c + j) * load(b, c + j);
  }
  float s = 0.0f;
  for (; c < n; ++c) s += load(a, c) * load(b, c);
  LRP_SIMD_SUM(s)
  for (int j = 0; j < kLanes; ++j) s += acc[j];
  return s;
}

// Call f(T{}) with T the element type of a dtype code.
template <class F>
inline void dispatch_dtype(int dtype, F&& f) {
  switch (dtype) {
    case kFloat32:
      f(float{});
      break;
    case kFloat16:
      f(half_t{});
      break;
    case kBFloat16:
      f(bfloat16_t{});
      break;
    default:
      throw std::invalid_argument("lrp_kernels._C: unknown dtype code " + std::to_string(dtype));
  }
}

// Run body(r, c0, c1) over a rows x cols matrix in chunks of at most kChunk columns, in parallel.
// Element-wise kernels use it so that one long row (a flattened contiguous tensor) and many short
// rows split across threads alike.
template <class F>
inline void for_each_chunk(int64_t rows, int64_t cols, F&& body) {
  constexpr int64_t kChunk = 4096;
  const int64_t per_row = (cols + kChunk - 1) / kChunk;
  const int64_t tasks = rows * per_row;
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelGrain)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t r = t / per_row;
    const int64_t c0 = (t % per_row) * kChunk;
    const int64_t c1 = c0 + kChunk < cols ? c0 + kChunk : cols;
    body(r, c0, c1);
  }
}


// Call f(std::integral_constant<int, code>{}) for the one of Codes equal to `code`, so that the
// loops see it as a constant; throws std::invalid_argument(what + code) for any other code.
template <int... Codes, class F>
inline void dispatch_code(int code, const char* what, F&& f) {
  const bool found =
      ((code == Codes ? (f(std::integral_constant<int, Codes>{}), true) : false) || ...);
  if (!found) throw std::invalid_argument(what + std::to_string(code));
}

// The GELU approximate code as a constant (dispatch_code).
template <class F>
inline void dispatch_gelu(int approximate, F&& f) {
  dispatch_code<kGeluErf, kGeluTanh>(approximate, "gelu: unknown approximate code ", f);
}

// out[c] = op(a[c]) and out[c] = op(a[c], b[c]) over one contiguous span; restrict pointers so
// that the loops vectorize.
template <class T, class Op>
inline void map_span(int64_t n, const T* __restrict a, T* __restrict out, Op op) {
  LRP_SIMD
  for (int64_t c = 0; c < n; ++c) store(out, c, op(load(a, c)));
}

template <class T, class Op>
inline void map_span(int64_t n, const T* __restrict a, const T* __restrict b, T* __restrict out,
                     Op op) {
  LRP_SIMD
  for (int64_t c = 0; c < n; ++c) store(out, c, op(load(a, c), load(b, c)));
}

// Element-wise kernels: out = op(a) or op(a, b) over rows x cols matrices of the element type of
// `dtype` (op maps floats to a float), in parallel chunks.
template <class Op>
inline void map_rows(int dtype, int64_t rows, int64_t cols, const void* a, int64_t a_stride,
                     void* out, int64_t out_stride, Op op) {
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* at = static_cast<const T*>(a);
    T* ot = static_cast<T*>(out);
    for_each_chunk(rows, cols, [=](int64_t r, int64_t c0, int64_t c1) {
      map_span(c1 - c0, at + r * a_stride + c0, ot + r * out_stride + c0, op);
    });
  });
}

template <class T, class Op>
inline void map_rows_as(int64_t rows, int64_t cols, const T* a, int64_t a_stride, const T* b,
                        int64_t b_stride, T* out, int64_t out_stride, Op op) {
  for_each_chunk(rows, cols, [=](int64_t r, int64_t c0, int64_t c1) {
    map_span(c1 - c0, a + r * a_stride + c0, b + r * b_stride + c0, out + r * out_stride + c0, op);
  });
}

template <class Op>
inline void map_rows(int dtype, int64_t rows, int64_t cols, const void* a, int64_t a_stride,
                     const void* b, int64_t b_stride, void* out, int64_t out_stride, Op op) {
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    map_rows_as(rows, cols, static_cast<const T*>(a), a_stride, static_cast<const T*>(b), b_stride,
                static_cast<T*>(out), out_stride, op);
  });
}

}  // namespace
}  // namespace lrp
