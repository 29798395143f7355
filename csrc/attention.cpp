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
//
// Below them, the blocked (flash-style) attention: the whole op, forward and backward, without a
// [L, L] tensor anywhere (see the comment that opens its section).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common.h"
#include "kernels.h"

namespace lrp {
namespace LRP_ISA_NS {

// x[i] <- exp(x[i] - shift) over n floats; returns their sum (a softmax row's, or a key block's).
static inline float exp_shifted_sum(float* x, int64_t n, float shift) {
  float sum = 0.0f;
  LRP_SIMD_SUM(sum)
  for (int64_t i = 0; i < n; ++i) {
    const float e = fast_exp(x[i] - shift);
    x[i] = e;
    sum += e;
  }
  return sum;
}

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
      const float inv = 1.0f / exp_shifted_sum(buf, cols, mx);
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


// ---------------------------------------------------------------------------- blocked attention
//
// attention_blocked_forward / _backward: the whole attention op of lrp_kernels/ops/attention.py,
// FlashAttention style (Dao et al. 2022; Dao 2023), with no [L, L] tensor anywhere. q [B, H, L, D],
// k and v [B, H_kv, L, D] (query head h reads K/V head h / (H / H_kv)), any strides with a
// contiguous last dimension.
//
// Forward, per (batch, head, block of kBlockQ queries), streaming the key blocks it reads:
//     S = scale · Q Kᵀ (masked entries -inf),  online softmax (running max m, running sum l),
//     O = Σ exp(S − m) V / l,  lse = m + log l  (float32 [B, H, L], saved for the backward).
// Backward, per (batch, K/V head, key block) — so that g_K and g_V of a block are one thread's
// sums over every query head of its group and every query block, without atomics — recomputing
//     P = exp(S − lse),  g_V += Pᵀ g_O,  g_P = g_O Vᵀ,  g_S = P ⊙ (g_P − Δ) with Δ_i = g_O,i · O_i,
//     g_Q += g_S K · scale,  g_K += g_Sᵀ Q · scale,
// g_Q accumulated in float32 per K/V head group (or per chunk of key blocks, then summed, when
// there are fewer (batch, K/V head) pairs than threads). Modes (ops/attention.py): grad the plain
// gradient; attnlrp g_Q, g_K × ¼ and g_V × ½; cp_lrp g_V = Pᵀ g_O only (P constant). input_eps > 0
// multiplies each gradient by x/(x + ε·sign x) of its input (the rule of the projection that made it).
//
// Which keys a query reads (the contract's rules, backends/contract.py) is an index rule per row,
// never a mask tensor: a key is padding where mask[b, j] <= finfo(float32).min / 2.
//   causal:          j <= i, with a window also i − j <= w; a real row reads real keys only, a
//                    padded row every key of its band.
//   not causal:      a real row reads the real keys with |i − j| <= w (every real key without a
//                    window); a padded row every real key; in a sequence without a real key every
//                    row is uniform over all L keys (logit 0 each), as softmax gives the all-equal
//                    scores finfo.min of the reference.
// Each row reads keys in [lo, hi) (its band, clipped to the first and last real key when it reads
// real keys only); a query block visits the key blocks that meet the union of its rows' ranges, and
// tiles inside every row's range without padding skip the per-element test. Float32 math; inputs
// are loaded in their dtype and packed (head dim padded to a multiple of kDimAlign with zeros),
// outputs rounded once when stored.
namespace {

constexpr int64_t kBlockQ = 64;   // query rows per block
constexpr int64_t kBlockK = 64;   // keys per block
constexpr int64_t kDimAlign = 16; // the packed head dim is a multiple of this

// The register tile of the small matrix products: rows x columns of float32 accumulators, sized
// per instruction set (16, 12 and 8 vector registers).
#if defined(__AVX512F__)
constexpr int kTileRows = 4, kTileCols = 64;
#elif defined(__AVX2__)
constexpr int kTileRows = 3, kTileCols = 32;
#else
constexpr int kTileRows = 2, kTileCols = 16;
#endif

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kPosInf = std::numeric_limits<float>::infinity();
constexpr float kHalfMin = -std::numeric_limits<float>::max() / 2;

// GCC 12 reports "iteration 2^62 invokes undefined behavior" for the loops below once they are
// inlined with constant block sizes (a bound it derives for pointer arithmetic on paths that never
// run: depth and rows are at most a block here); the loops are well defined.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Waggressive-loop-optimizations"
#endif

// C[r][c] (+)= Σ_d A(r, d) · B[d][c] for r < R, c < W, with A(r, d) = a[r·ars + d·acs] (a transposed
// operand is a stride swap), B's rows at b + d·bs and C's rows at c + r·cs.
template <int R, int W>
inline void gemm_tile(int64_t depth, const float* __restrict a, int64_t ars, int64_t acs,
                      const float* __restrict b, int64_t bs, float* __restrict c, int64_t cs,
                      bool accumulate) {
  float acc[R][W];
  for (int r = 0; r < R; ++r) {
    LRP_SIMD
    for (int j = 0; j < W; ++j) acc[r][j] = accumulate ? c[r * cs + j] : 0.0f;
  }
  for (int64_t d = 0; d < depth; ++d) {
    const float* __restrict bd = b + d * bs;
    for (int r = 0; r < R; ++r) {
      const float x = a[r * ars + d * acs];
      LRP_SIMD
      for (int j = 0; j < W; ++j) acc[r][j] += x * bd[j];
    }
  }
  for (int r = 0; r < R; ++r) {
    LRP_SIMD
    for (int j = 0; j < W; ++j) c[r * cs + j] = acc[r][j];
  }
}

template <int W>
inline void gemm_rows(int64_t rows, int64_t depth, const float* a, int64_t ars, int64_t acs,
                      const float* b, int64_t bs, float* c, int64_t cs, bool accumulate) {
  int64_t r = 0;
  for (; r + kTileRows <= rows; r += kTileRows)
    gemm_tile<kTileRows, W>(depth, a + r * ars, ars, acs, b, bs, c + r * cs, cs, accumulate);
  for (; r < rows; ++r)  // at most kTileRows - 1 rows
    gemm_tile<1, W>(depth, a + r * ars, ars, acs, b, bs, c + r * cs, cs, accumulate);
}

// C[rows x cols] (+)= A[rows x depth] · B[depth x cols], cols a multiple of kDimAlign.
inline void gemm(int64_t rows, int64_t cols, int64_t depth, const float* a, int64_t ars, int64_t acs,
                 const float* b, int64_t bs, float* c, int64_t cs, bool accumulate) {
  int64_t c0 = 0;
  for (; c0 + kTileCols <= cols; c0 += kTileCols)
    gemm_rows<kTileCols>(rows, depth, a, ars, acs, b + c0, bs, c + c0, cs, accumulate);
  for (; c0 < cols; c0 += kDimAlign)
    gemm_rows<kDimAlign>(rows, depth, a, ars, acs, b + c0, bs, c + c0, cs, accumulate);
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// A [B, H, L, D] tensor: pointer and the strides of its first three dimensions.
template <class T>
struct Heads {
  T* p;
  int64_t sb, sh, sl;
  T* row(int64_t b, int64_t h, int64_t i) const { return p + b * sb + h * sh + i * sl; }
};

// The sizes of one call and the packed sizes (length padded to whole blocks, dim to kDimAlign).
struct Dims {
  int64_t batch, heads, kv_heads, length, dim, group, lp, dp, nq, nk;
  Dims(int64_t b, int64_t h, int64_t hkv, int64_t l, int64_t d)
      : batch(b), heads(h), kv_heads(hkv), length(l), dim(d), group(h / hkv),
        lp(round_up(l, kBlockK)), dp(round_up(d, kDimAlign)), nq((l + kBlockQ - 1) / kBlockQ),
        nk(round_up(l, kBlockK) / kBlockK) {}
};

// Which keys each row reads (see the comment at the top of this section).
struct RowRule {
  int32_t lo, hi;    // keys in [lo, hi)
  uint8_t keyed;     // real keys only
  uint8_t uniform;   // logit 0 for every key (a sequence without a real key, not causal)
};

struct Plan {
  int64_t length;
  std::vector<RowRule> rows;          // [B, L]
  std::vector<uint8_t> key_ok;        // [B, L + kBlockK]: 1 at real keys (0 past L)
  std::vector<int32_t> padded_before; // [B, L + 1]: padding keys among 0 … j − 1
  // per (batch, query block): the union [lo, hi) of its rows' ranges, the intersection
  // [max_lo, min_hi), whether a row reads real keys only, whether the rows are uniform
  std::vector<int32_t> lo, hi, max_lo, min_hi;
  std::vector<uint8_t> keyed, uniform;

  const uint8_t* keys(int64_t b) const { return key_ok.data() + b * (length + kBlockK); }

  // Whether every entry of the tile (query block qb, keys [j0, j0 + kBlockK)) is read.
  bool full(int64_t b, int64_t qb, int64_t nq, int64_t j0) const {
    const int64_t x = b * nq + qb, j1 = j0 + kBlockK;
    if (j1 > length || uniform[x] || max_lo[x] > j0 || min_hi[x] < j1) return false;
    return !keyed[x] || padded_before[b * (length + 1) + j1] == padded_before[b * (length + 1) + j0];
  }

  bool meets(int64_t b, int64_t qb, int64_t nq, int64_t j0) const {
    const int64_t x = b * nq + qb;
    return lo[x] < j0 + kBlockK && hi[x] > j0;
  }
};

Plan make_plan(const Dims& n, const float* mask, int64_t mask_stride, int64_t window, bool causal) {
  const int64_t L = n.length;
  Plan plan;
  plan.length = L;
  plan.rows.resize(size_t(n.batch * L));
  plan.key_ok.assign(size_t(n.batch * (L + kBlockK)), 0);
  plan.padded_before.assign(size_t(n.batch * (L + 1)), 0);
  const size_t blocks = size_t(n.batch * n.nq);
  plan.lo.resize(blocks);
  plan.hi.resize(blocks);
  plan.max_lo.resize(blocks);
  plan.min_hi.resize(blocks);
  plan.keyed.resize(blocks);
  plan.uniform.resize(blocks);
  const bool windowed = window >= 0;
  for (int64_t b = 0; b < n.batch; ++b) {
    uint8_t* ok = plan.key_ok.data() + b * (L + kBlockK);
    int32_t* before = plan.padded_before.data() + b * (L + 1);
    int64_t first = -1, last = -1;
    for (int64_t j = 0; j < L; ++j) {
      ok[j] = mask == nullptr || mask[b * mask_stride + j] > kHalfMin;
      before[j + 1] = before[j] + (ok[j] ? 0 : 1);
      if (ok[j]) {
        if (first < 0) first = j;
        last = j;
      }
    }
    for (int64_t i = 0; i < L; ++i) {
      RowRule r{0, int32_t(L), 1, 0};
      if (causal) {
        r.lo = int32_t(windowed ? std::max<int64_t>(0, i - window) : 0);
        r.hi = int32_t(i + 1);
        r.keyed = ok[i];
        if (r.keyed) r.lo = std::max<int32_t>(r.lo, int32_t(first));
      } else if (first < 0) {
        r.keyed = 0;
        r.uniform = 1;
      } else if (!ok[i] || !windowed) {
        r.lo = int32_t(first);
        r.hi = int32_t(last + 1);
      } else {
        r.lo = int32_t(std::max(i - window, first));
        r.hi = int32_t(std::min(i + window + 1, last + 1));
      }
      plan.rows[size_t(b * L + i)] = r;
    }
    for (int64_t qb = 0; qb < n.nq; ++qb) {
      const int64_t x = b * n.nq + qb;
      int32_t lo = int32_t(L), hi = 0, max_lo = 0, min_hi = int32_t(L);
      uint8_t keyed = 0, uniform = 0;
      for (int64_t i = qb * kBlockQ; i < std::min(L, (qb + 1) * kBlockQ); ++i) {
        const RowRule& r = plan.rows[size_t(b * L + i)];
        lo = std::min(lo, r.lo);
        hi = std::max(hi, r.hi);
        max_lo = std::max(max_lo, r.lo);
        min_hi = std::min(min_hi, r.hi);
        keyed |= r.keyed;
        uniform |= r.uniform;
      }
      plan.lo[size_t(x)] = lo;
      plan.hi[size_t(x)] = hi;
      plan.max_lo[size_t(x)] = max_lo;
      plan.min_hi[size_t(x)] = min_hi;
      plan.keyed[size_t(x)] = keyed;
      plan.uniform[size_t(x)] = uniform;
    }
  }
  return plan;
}

// Sets the entries of the tile s [kBlockQ x kBlockK] (rows i0 …, keys j0 …) that row i does not
// read to -inf, and every entry of a uniform row to 0; rows past the sequence read nothing.
inline void mask_tile(const Plan& plan, int64_t b, int64_t i0, int64_t j0, float* s) {
  const int64_t L = plan.length;
  const uint8_t* ok = plan.keys(b) + j0;
  for (int64_t r = 0; r < kBlockQ; ++r) {
    float* sr = s + r * kBlockK;
    if (i0 + r >= L) {
      for (int64_t j = 0; j < kBlockK; ++j) sr[j] = kNegInf;
      continue;
    }
    const RowRule rule = plan.rows[size_t(b * L + i0 + r)];
    const int64_t lo = rule.lo - j0, hi = rule.hi - j0;
    const int keyed = rule.keyed, uniform = rule.uniform;
    LRP_SIMD
    for (int64_t j = 0; j < kBlockK; ++j) {
      const int read = (j >= lo) & (j < hi) & ((1 - keyed) | int(ok[j]));
      sr[j] = uniform ? (j + j0 < L ? 0.0f : kNegInf) : (read ? sr[j] : kNegInf);
    }
  }
}

// dst[i·dp + d] = scale · src(b, h, i, d) for i < L, d < D; 0 elsewhere in [lp x dp].
template <class T>
void pack_rows(const Heads<const T>& src, int64_t b, int64_t h, const Dims& n, float scale, float* dst) {
  for (int64_t i = 0; i < n.lp; ++i) {
    float* row = dst + i * n.dp;
    if (i < n.length) {
      const T* s = src.row(b, h, i);
      LRP_SIMD
      for (int64_t d = 0; d < n.dim; ++d) row[d] = load(s, d) * scale;
      for (int64_t d = n.dim; d < n.dp; ++d) row[d] = 0.0f;
    } else {
      for (int64_t d = 0; d < n.dp; ++d) row[d] = 0.0f;
    }
  }
}

// The transposed head, zero-padded, one [dp x kBlockK] block after the other (contiguous, so that
// the products read it at a short stride): src(b, h, i, d) at dst[(i / kBlockK)·dp·kBlockK +
// d·kBlockK + i % kBlockK]; key block j0 starts at transposed_block(dst, j0, n).
template <class T>
void pack_cols(const Heads<const T>& src, int64_t b, int64_t h, const Dims& n, float* dst) {
  std::fill(dst, dst + n.dp * n.lp, 0.0f);
  for (int64_t i = 0; i < n.length; ++i) {
    const T* s = src.row(b, h, i);
    float* col = dst + (i / kBlockK) * n.dp * kBlockK + i % kBlockK;
    for (int64_t d = 0; d < n.dim; ++d) col[d * kBlockK] = load(s, d);
  }
}

inline const float* transposed_block(const float* packed, int64_t j0, const Dims& n) {
  return packed + j0 * n.dp;
}

template <class T>
void blocked_forward(const Dims& n, Heads<const T> q, Heads<const T> k, Heads<const T> v,
                     const Plan& plan, float scale, Heads<T> out, float* lse) {
  const int64_t head_size = n.lp * n.dp;
  std::vector<float> kt(size_t(n.batch * n.kv_heads * head_size));
  std::vector<float> vp(kt.size());
#pragma omp parallel for schedule(static)
  for (int64_t x = 0; x < n.batch * n.kv_heads; ++x) {
    pack_cols(k, x / n.kv_heads, x % n.kv_heads, n, kt.data() + x * head_size);
    pack_rows(v, x / n.kv_heads, x % n.kv_heads, n, 1.0f, vp.data() + x * head_size);
  }
#pragma omp parallel
  {
    std::vector<float> scratch(size_t(2 * kBlockQ * n.dp + kBlockQ * kBlockK + 3 * kBlockQ));
    float* qs = scratch.data();
    float* o = qs + kBlockQ * n.dp;
    float* s = o + kBlockQ * n.dp;
    float* m = s + kBlockQ * kBlockK;
    float* l = m + kBlockQ;
    float* alpha = l + kBlockQ;
#pragma omp for schedule(dynamic)
    for (int64_t item = 0; item < n.batch * n.heads * n.nq; ++item) {
      const int64_t qb = item % n.nq, h = (item / n.nq) % n.heads, b = item / (n.nq * n.heads);
      const int64_t kv = b * n.kv_heads + h / n.group;
      const int64_t i0 = qb * kBlockQ, rows = std::min(kBlockQ, n.length - i0);
      std::fill(qs, qs + kBlockQ * n.dp, 0.0f);
      std::fill(o, o + kBlockQ * n.dp, 0.0f);
      for (int64_t r = 0; r < kBlockQ; ++r) {
        m[r] = kNegInf;
        l[r] = 0.0f;
      }
      for (int64_t r = 0; r < rows; ++r) {
        float* row = qs + r * n.dp;
        const T* src = q.row(b, h, i0 + r);
        LRP_SIMD
        for (int64_t d = 0; d < n.dim; ++d) row[d] = load(src, d) * scale;
      }
      const int64_t x = b * n.nq + qb;
      const float* kth = kt.data() + kv * head_size;
      const float* vh = vp.data() + kv * head_size;
      for (int64_t j0 = plan.lo[size_t(x)] / kBlockK * kBlockK; j0 < plan.hi[size_t(x)]; j0 += kBlockK) {
        gemm(kBlockQ, kBlockK, n.dp, qs, n.dp, 1, transposed_block(kth, j0, n), kBlockK, s, kBlockK, false);
        if (!plan.full(b, qb, n.nq, j0)) mask_tile(plan, b, i0, j0, s);
        for (int64_t r = 0; r < kBlockQ; ++r) {
          float* sr = s + r * kBlockK;
          float mx = kNegInf;
          LRP_SIMD_MAX(mx)
          for (int64_t j = 0; j < kBlockK; ++j) mx = sr[j] > mx ? sr[j] : mx;
          const float m_new = mx > m[r] ? mx : m[r];
          if (m_new == kNegInf) {  // nothing read yet
            alpha[r] = 1.0f;
            for (int64_t j = 0; j < kBlockK; ++j) sr[j] = 0.0f;
            continue;
          }
          alpha[r] = fast_exp(m[r] - m_new);
          l[r] = l[r] * alpha[r] + exp_shifted_sum(sr, kBlockK, m_new);
          m[r] = m_new;
          float* orow = o + r * n.dp;
          const float a = alpha[r];
          LRP_SIMD
          for (int64_t d = 0; d < n.dp; ++d) orow[d] *= a;
        }
        gemm(kBlockQ, n.dp, kBlockK, s, kBlockK, 1, vh + j0 * n.dp, n.dp, o, n.dp, true);
      }
      for (int64_t r = 0; r < rows; ++r) {
        const float inv = 1.0f / l[r];
        T* dst = out.row(b, h, i0 + r);
        const float* orow = o + r * n.dp;
        LRP_SIMD
        for (int64_t d = 0; d < n.dim; ++d) store(dst, d, orow[d] * inv);
        lse[(b * n.heads + h) * n.length + i0 + r] = m[r] + std::log(l[r]);
      }
    }
  }
}

// g · x/(x + ε·sign x) (sign 0 = 1), or g when ε = 0.
inline float with_ratio(float g, float x, float eps) {
  return eps > 0.0f ? g * (x / stabilize(x, eps)) : g;
}

// Stores rows [i0, i0 + rows) of a float32 [.. x dp] accumulator times `factor` (and the ε-ratio
// of the input x) into the head (b, h) of dst.
template <class T>
void store_rows(const float* acc, int64_t i0, int64_t rows, const Dims& n, float factor, float eps,
                const Heads<const T>& x, const Heads<T>& dst, int64_t b, int64_t h) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* a = acc + r * n.dp;
    const T* xr = x.row(b, h, i0 + r);
    T* out = dst.row(b, h, i0 + r);
    LRP_SIMD
    for (int64_t d = 0; d < n.dim; ++d) store(out, d, with_ratio(a[d] * factor, load(xr, d), eps));
  }
}

enum Mode : int { kModeGrad = 0, kModeAttnLRP = 1, kModeCPLRP = 2 };

template <class T>
struct BackwardArgs {
  Heads<const T> q, k, v, g, o;
  const float* lse;
  Heads<T> gq, gk, gv;
};

template <class T>
void blocked_backward(const Dims& n, int mode, const BackwardArgs<T>& a, const Plan& plan, float scale,
                      float eps) {
  const bool cp = mode == kModeCPLRP;
  const float qk_factor = mode == kModeAttnLRP ? 0.25f : 1.0f, v_factor = mode == kModeAttnLRP ? 0.5f : 1.0f;
  const int64_t head_size = n.lp * n.dp, bh = n.batch * n.heads, bkv = n.batch * n.kv_heads;
  // packed operands: Q·scale and g_O per query head; Kᵀ (and K, Vᵀ) per K/V head; lse and Δ per row
  std::vector<float> qs(size_t(bh * head_size)), go(qs.size()), kt(size_t(bkv * head_size));
  std::vector<float> kp(cp ? 0 : kt.size()), vt(cp ? 0 : kt.size());
  std::vector<float> lse(size_t(bh * n.lp)), delta(cp ? 0 : lse.size());
#pragma omp parallel for schedule(static)
  for (int64_t x = 0; x < bh; ++x) {
    const int64_t b = x / n.heads, h = x % n.heads;
    pack_rows(a.q, b, h, n, scale, qs.data() + x * head_size);
    pack_rows(a.g, b, h, n, 1.0f, go.data() + x * head_size);
    for (int64_t i = 0; i < n.lp; ++i) {  // rows past L: lse = +inf, so P = 0 there
      lse[size_t(x * n.lp + i)] = i < n.length ? a.lse[x * n.length + i] : kPosInf;
      if (!cp) delta[size_t(x * n.lp + i)] = i < n.length ? row_dot(a.g.row(b, h, i), a.o.row(b, h, i), n.dim) : 0.0f;
    }
  }
#pragma omp parallel for schedule(static)
  for (int64_t x = 0; x < bkv; ++x) {
    const int64_t b = x / n.kv_heads, h = x % n.kv_heads;
    pack_cols(a.k, b, h, n, kt.data() + x * head_size);
    if (!cp) {
      pack_rows(a.k, b, h, n, 1.0f, kp.data() + x * head_size);
      pack_cols(a.v, b, h, n, vt.data() + x * head_size);
    }
  }
  // key blocks of one (batch, K/V head) in `chunks` parts when there are fewer pairs than threads;
  // each part accumulates g_Q of the group's query heads in its own float32 copy
  const int64_t threads = max_threads();
  const int64_t chunks = bkv >= threads ? 1 : std::min<int64_t>({n.nk, (threads + bkv - 1) / bkv, 8});
  std::vector<float> dq(cp ? 0 : size_t(chunks * bh * head_size), 0.0f);
#pragma omp parallel
  {
    std::vector<float> scratch(size_t(2 * kBlockQ * kBlockK + 2 * kBlockK * n.dp));
    float* p = scratch.data();
    float* ds = p + kBlockQ * kBlockK;
    float* dk = ds + kBlockQ * kBlockK;
    float* dv = dk + kBlockK * n.dp;
#pragma omp for schedule(dynamic)
    for (int64_t item = 0; item < bkv * chunks; ++item) {
      const int64_t c = item % chunks, x = item / chunks, b = x / n.kv_heads, hkv = x % n.kv_heads;
      const float* kth = kt.data() + x * head_size;
      for (int64_t kb = c * n.nk / chunks; kb < (c + 1) * n.nk / chunks; ++kb) {
        const int64_t j0 = kb * kBlockK;
        std::fill(dk, dk + kBlockK * n.dp, 0.0f);
        std::fill(dv, dv + kBlockK * n.dp, 0.0f);
        for (int64_t h = hkv * n.group; h < (hkv + 1) * n.group; ++h) {
          const int64_t xq = b * n.heads + h;
          const float* qh = qs.data() + xq * head_size;
          const float* gh = go.data() + xq * head_size;
          for (int64_t qb = 0; qb < n.nq; ++qb) {
            if (!plan.meets(b, qb, n.nq, j0)) continue;
            const int64_t i0 = qb * kBlockQ;
            gemm(kBlockQ, kBlockK, n.dp, qh + i0 * n.dp, n.dp, 1, transposed_block(kth, j0, n), kBlockK, p,
                 kBlockK, false);
            if (!plan.full(b, qb, n.nq, j0)) mask_tile(plan, b, i0, j0, p);
            const float* lr = lse.data() + xq * n.lp + i0;
            for (int64_t r = 0; r < kBlockQ; ++r) {
              float* pr = p + r * kBlockK;
              const float shift = lr[r];
              LRP_SIMD
              for (int64_t j = 0; j < kBlockK; ++j) pr[j] = fast_exp(pr[j] - shift);
            }
            gemm(kBlockK, n.dp, kBlockQ, p, 1, kBlockK, gh + i0 * n.dp, n.dp, dv, n.dp, true);  // Pᵀ g_O
            if (cp) continue;
            gemm(kBlockQ, kBlockK, n.dp, gh + i0 * n.dp, n.dp, 1, transposed_block(vt.data() + x * head_size, j0, n),
                 kBlockK, ds, kBlockK, false);  // g_P = g_O Vᵀ
            const float* dr = delta.data() + xq * n.lp + i0;
            for (int64_t r = 0; r < kBlockQ; ++r) {
              float* dsr = ds + r * kBlockK;
              const float* pr = p + r * kBlockK;
              const float dlt = dr[r];
              LRP_SIMD
              for (int64_t j = 0; j < kBlockK; ++j) dsr[j] = pr[j] * (dsr[j] - dlt);
            }
            float* dqh = dq.data() + (c * bh + xq) * head_size;
            gemm(kBlockQ, n.dp, kBlockK, ds, kBlockK, 1, kp.data() + x * head_size + j0 * n.dp, n.dp,
                 dqh + i0 * n.dp, n.dp, true);  // g_S K
            gemm(kBlockK, n.dp, kBlockQ, ds, 1, kBlockK, qh + i0 * n.dp, n.dp, dk, n.dp, true);  // g_Sᵀ Q·scale
          }
        }
        const int64_t rows = std::min(kBlockK, n.length - j0);
        store_rows(dv, j0, rows, n, v_factor, eps, a.v, a.gv, b, hkv);
        if (!cp) store_rows(dk, j0, rows, n, qk_factor, eps, a.k, a.gk, b, hkv);
      }
    }
  }
  if (cp) return;
#pragma omp parallel for schedule(static)
  for (int64_t x = 0; x < bh; ++x) {
    float* first = dq.data() + x * head_size;
    for (int64_t c = 1; c < chunks; ++c) {
      const float* part = dq.data() + (c * bh + x) * head_size;
      LRP_SIMD
      for (int64_t e = 0; e < head_size; ++e) first[e] += part[e];
    }
    store_rows(first, 0, n.length, n, qk_factor * scale, eps, a.q, a.gq, x / n.heads, x % n.heads);
  }
}

void check_blocked(const char* name, int64_t batch, int64_t heads, int64_t kv_heads, int64_t length,
                   int64_t dim, int64_t window) {
  if (batch < 0 || length < 0 || dim <= 0 || heads <= 0 || kv_heads <= 0 || heads % kv_heads != 0 ||
      window < -1 || length > std::numeric_limits<int32_t>::max() - kBlockK)
    throw std::invalid_argument(std::string(name) +
                                ": needs batch, length >= 0, dim > 0, heads a positive multiple of "
                                "kv_heads and window >= -1 (-1: none)");
}

}  // namespace

void attention_blocked_forward(int dtype, int64_t batch, int64_t heads, int64_t kv_heads, int64_t length,
                               int64_t dim, const void* q, int64_t q_sb, int64_t q_sh, int64_t q_sl,
                               const void* k, int64_t k_sb, int64_t k_sh, int64_t k_sl, const void* v,
                               int64_t v_sb, int64_t v_sh, int64_t v_sl, const float* mask,
                               int64_t mask_stride, int64_t window, int causal, float scale, void* out,
                               int64_t o_sb, int64_t o_sh, int64_t o_sl, float* lse) {
  check_blocked("attention_blocked_forward", batch, heads, kv_heads, length, dim, window);
  if (batch == 0 || length == 0) return;
  const Dims n(batch, heads, kv_heads, length, dim);
  const Plan plan = make_plan(n, mask, mask_stride, window, causal != 0);
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    blocked_forward<T>(n, {static_cast<const T*>(q), q_sb, q_sh, q_sl}, {static_cast<const T*>(k), k_sb, k_sh, k_sl},
                       {static_cast<const T*>(v), v_sb, v_sh, v_sl}, plan, scale,
                       {static_cast<T*>(out), o_sb, o_sh, o_sl}, lse);
  });
}

void attention_blocked_backward(int dtype, int mode, int64_t batch, int64_t heads, int64_t kv_heads,
                                int64_t length, int64_t dim, const void* q, int64_t q_sb, int64_t q_sh,
                                int64_t q_sl, const void* k, int64_t k_sb, int64_t k_sh, int64_t k_sl,
                                const void* v, int64_t v_sb, int64_t v_sh, int64_t v_sl,
                                const void* grad_out, int64_t g_sb, int64_t g_sh, int64_t g_sl,
                                const void* out, int64_t o_sb, int64_t o_sh, int64_t o_sl, const float* lse,
                                const float* mask, int64_t mask_stride, int64_t window, int causal,
                                float scale, float input_eps, void* grad_q, int64_t gq_sb, int64_t gq_sh,
                                int64_t gq_sl, void* grad_k, int64_t gk_sb, int64_t gk_sh, int64_t gk_sl,
                                void* grad_v, int64_t gv_sb, int64_t gv_sh, int64_t gv_sl) {
  check_blocked("attention_blocked_backward", batch, heads, kv_heads, length, dim, window);
  if (mode != kModeGrad && mode != kModeAttnLRP && mode != kModeCPLRP)
    throw std::invalid_argument("attention_blocked_backward: unknown mode code " + std::to_string(mode));
  if (input_eps < 0.0f) throw std::invalid_argument("attention_blocked_backward: input_eps must be >= 0");
  if (batch == 0 || length == 0) return;
  const Dims n(batch, heads, kv_heads, length, dim);
  const Plan plan = make_plan(n, mask, mask_stride, window, causal != 0);
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    BackwardArgs<T> args{{static_cast<const T*>(q), q_sb, q_sh, q_sl},
                         {static_cast<const T*>(k), k_sb, k_sh, k_sl},
                         {static_cast<const T*>(v), v_sb, v_sh, v_sl},
                         {static_cast<const T*>(grad_out), g_sb, g_sh, g_sl},
                         {static_cast<const T*>(out), o_sb, o_sh, o_sl},
                         lse,
                         {static_cast<T*>(grad_q), gq_sb, gq_sh, gq_sl},
                         {static_cast<T*>(grad_k), gk_sb, gk_sh, gk_sl},
                         {static_cast<T*>(grad_v), gv_sb, gv_sh, gv_sl}};
    blocked_backward<T>(n, mode, args, plan, scale, input_eps);
  });
}

}  // namespace LRP_ISA_NS
}  // namespace lrp
