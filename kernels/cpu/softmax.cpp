// Softmax, log-softmax and cross-entropy kernels (see softmax.h for the semantics).
//
// Rows along the last axis (inner == 1, the common case: attention scores, vocabulary
// logits) run as three passes over one contiguous row: max, sum of exponentials,
// normalise. Other axes run the same passes with the inner positions as the fastest
// loop, so memory is still read in order. Sums accumulate in the element type in a
// fixed order, so results are reproducible run to run: along a row, in eight
// interleaved partial sums (exp_sum below), so that the exponentials (vexp: vectorised
// for float, kernels/cpu/fast_math.h) are not held up by one long chain of additions.
#include "kernels/cpu/softmax.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/fast_math.h"

namespace caption::kernels::cpu {

namespace {

template <typename T>
constexpr T kNegInf = -std::numeric_limits<T>::infinity();

// Whether flat element `e` of x takes part (mask null: every element does).
inline bool kept(const int32_t* mask, int64_t mask_numel, int64_t e) {
  return mask == nullptr || mask[e % mask_numel] != 0;
}

// sum over a of exp(x[a] - mx) for a row of n entries, each term also written to `out`
// when it is not null. Term a goes to partial sum a mod 8; the partial sums are combined
// pairwise in a fixed order.
template <typename T>
T exp_sum(const T* x, int64_t n, T mx, T* out) {
  constexpr int64_t kLanes = 8, kChunk = 256;
  T acc[kLanes] = {};
  T buf[kChunk];
  for (int64_t base = 0; base < n; base += kChunk) {
    const int64_t m = std::min(kChunk, n - base);
    T* e = out ? out + base : buf;
    for (int64_t a = 0; a < m; ++a) e[a] = vexp(x[base + a] - mx);
    int64_t a = 0;
    for (; a + kLanes <= m; a += kLanes)
      for (int64_t k = 0; k < kLanes; ++k) acc[k] += e[a + k];
    for (; a < m; ++a) acc[a % kLanes] += e[a];  // the last chunk's tail
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// The value an excluded entry gets.
template <typename T>
T excluded_value(SoftmaxKind kind) {
  return kind == SoftmaxKind::Softmax ? T(0) : kNegInf<T>;
}

// One row (inner == 1) of dim elements starting at flat index `first`.
template <typename T>
void softmax_row(SoftmaxKind kind, const T* x, const int32_t* mask, int64_t mask_numel,
                 int64_t first, T* y, int64_t dim) {
  T mx = kNegInf<T>;
  if (mask == nullptr) {
    for (int64_t a = 0; a < dim; ++a) mx = std::max(mx, x[a]);
  } else {
    for (int64_t a = 0; a < dim; ++a)
      if (kept(mask, mask_numel, first + a)) mx = std::max(mx, x[a]);
  }
  if (mx == kNegInf<T>) {  // nothing kept (or all kept entries -inf): a fully masked row
    std::fill_n(y, dim, excluded_value<T>(kind));
    return;
  }
  T sum = 0;
  if (kind == SoftmaxKind::Softmax) {
    if (mask == nullptr) {
      sum = exp_sum(x, dim, mx, y);
    } else {
      for (int64_t a = 0; a < dim; ++a) {
        const T e = kept(mask, mask_numel, first + a) ? vexp(x[a] - mx) : T(0);
        y[a] = e;
        sum += e;
      }
    }
    const T inv = T(1) / sum;
    for (int64_t a = 0; a < dim; ++a) y[a] *= inv;
  } else {
    if (mask == nullptr) {
      sum = exp_sum(x, dim, mx, static_cast<T*>(nullptr));
    } else {
      for (int64_t a = 0; a < dim; ++a)
        if (kept(mask, mask_numel, first + a)) sum += vexp(x[a] - mx);
    }
    const T log_sum = std::log(sum);
    for (int64_t a = 0; a < dim; ++a)
      y[a] = kept(mask, mask_numel, first + a) ? x[a] - mx - log_sum : kNegInf<T>;
  }
}

// One [dim, inner] block (inner > 1) starting at flat index `first`; mx and sum are
// scratch rows of `inner` elements.
template <typename T>
void softmax_block(SoftmaxKind kind, const T* x, const int32_t* mask, int64_t mask_numel,
                   int64_t first, T* y, int64_t dim, int64_t inner, T* mx, T* sum) {
  std::fill_n(mx, inner, kNegInf<T>);
  std::fill_n(sum, inner, T(0));
  for (int64_t a = 0; a < dim; ++a)
    for (int64_t i = 0; i < inner; ++i)
      if (kept(mask, mask_numel, first + a * inner + i)) mx[i] = std::max(mx[i], x[a * inner + i]);
  for (int64_t a = 0; a < dim; ++a)
    for (int64_t i = 0; i < inner; ++i) {
      const int64_t e = a * inner + i;
      const bool keep = mx[i] != kNegInf<T> && kept(mask, mask_numel, first + e);
      const T ex = keep ? vexp(x[e] - mx[i]) : T(0);
      sum[i] += ex;
      if (kind == SoftmaxKind::Softmax) y[e] = ex;
    }
  for (int64_t i = 0; i < inner; ++i) {
    // Softmax: turn sums into reciprocals; log-softmax: into max + log(sum).
    if (mx[i] == kNegInf<T>) continue;
    sum[i] = kind == SoftmaxKind::Softmax ? T(1) / sum[i] : std::log(sum[i]);
  }
  for (int64_t a = 0; a < dim; ++a)
    for (int64_t i = 0; i < inner; ++i) {
      const int64_t e = a * inner + i;
      if (mx[i] == kNegInf<T>) {
        y[e] = excluded_value<T>(kind);
      } else if (kind == SoftmaxKind::Softmax) {
        y[e] *= sum[i];
      } else {
        y[e] = kept(mask, mask_numel, first + e) ? x[e] - mx[i] - sum[i] : kNegInf<T>;
      }
    }
}

// Whether an output entry was excluded in the forward pass (it then passes no gradient).
template <typename T>
bool excluded(SoftmaxKind kind, T y) {
  return kind == SoftmaxKind::Softmax ? y == T(0) : y == kNegInf<T>;
}

}  // namespace

template <typename T>
void softmax_forward(SoftmaxKind kind, const T* x, const int32_t* mask, int64_t mask_numel, T* y,
                     int64_t outer, int64_t dim, int64_t inner) {
  if (dim == 0) return;
  const int64_t block = dim * inner;
  if (inner == 1) {
    for (int64_t o = 0; o < outer; ++o)
      softmax_row(kind, x + o * dim, mask, mask_numel, o * dim, y + o * dim, dim);
    return;
  }
  std::vector<T> scratch(2 * static_cast<size_t>(inner));
  for (int64_t o = 0; o < outer; ++o)
    softmax_block(kind, x + o * block, mask, mask_numel, o * block, y + o * block, dim, inner,
                  scratch.data(), scratch.data() + inner);
}

template <typename T>
void softmax_backward(SoftmaxKind kind, const T* y, const T* gy, T* gx, int64_t outer,
                      int64_t dim, int64_t inner) {
  if (dim == 0) return;
  // Softmax: s = sum(gy * y) over kept entries; log-softmax: s = sum(gy) over kept
  // entries. Excluded entries are skipped rather than multiplied by zero, so a NaN or
  // infinite upstream gradient there cannot leak into the row.
  std::vector<T> s(static_cast<size_t>(inner));
  const int64_t block = dim * inner;
  for (int64_t o = 0; o < outer; ++o) {
    const T* yb = y + o * block;
    const T* gb = gy + o * block;
    T* xb = gx + o * block;
    std::fill(s.begin(), s.end(), T(0));
    for (int64_t a = 0; a < dim; ++a)
      for (int64_t i = 0; i < inner; ++i) {
        const int64_t e = a * inner + i;
        if (excluded(kind, yb[e])) continue;
        s[i] += kind == SoftmaxKind::Softmax ? gb[e] * yb[e] : gb[e];
      }
    for (int64_t a = 0; a < dim; ++a)
      for (int64_t i = 0; i < inner; ++i) {
        const int64_t e = a * inner + i;
        if (excluded(kind, yb[e]))
          xb[e] = T(0);
        else if (kind == SoftmaxKind::Softmax)
          xb[e] = yb[e] * (gb[e] - s[i]);
        else
          xb[e] = gb[e] - vexp(yb[e]) * s[i];
      }
  }
}

template <typename T, typename I>
void cross_entropy_forward(const T* logits, const I* targets, T* loss, T* lse, int64_t rows,
                           int64_t classes, int64_t ignore_index, T scale) {
  // The total is accumulated in double: it sums up to rows terms of similar size.
  double total = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = static_cast<int64_t>(targets[r]);
    if (t == ignore_index) {
      lse[r] = T(0);
      continue;
    }
    const T* row = logits + r * classes;
    T mx = kNegInf<T>;
    for (int64_t c = 0; c < classes; ++c) mx = std::max(mx, row[c]);
    const T l = mx + std::log(exp_sum(row, classes, mx, static_cast<T*>(nullptr)));
    lse[r] = l;
    total += static_cast<double>(l - row[t]);
  }
  loss[0] = static_cast<T>(total) * scale;
}

template <typename T, typename I>
void cross_entropy_backward(const T* logits, const I* targets, const T* lse, T grad_scale,
                            T* grad_logits, int64_t rows, int64_t classes, int64_t ignore_index) {
  for (int64_t r = 0; r < rows; ++r) {
    T* g = grad_logits + r * classes;
    const int64_t t = static_cast<int64_t>(targets[r]);
    if (t == ignore_index) {
      std::fill_n(g, classes, T(0));
      continue;
    }
    const T* row = logits + r * classes;
    const T l = lse[r];
    for (int64_t c = 0; c < classes; ++c) g[c] = grad_scale * vexp(row[c] - l);
    g[t] -= grad_scale;
  }
}

#define CAPTION_SOFTMAX_INSTANTIATE(T)                                                          \
  template void softmax_forward<T>(SoftmaxKind, const T*, const int32_t*, int64_t, T*, int64_t, \
                                   int64_t, int64_t);                                           \
  template void softmax_backward<T>(SoftmaxKind, const T*, const T*, T*, int64_t, int64_t,      \
                                    int64_t);
#define CAPTION_CROSS_ENTROPY_INSTANTIATE(T, I)                                                  \
  template void cross_entropy_forward<T, I>(const T*, const I*, T*, T*, int64_t, int64_t,       \
                                            int64_t, T);                                        \
  template void cross_entropy_backward<T, I>(const T*, const I*, const T*, T, T*, int64_t,      \
                                             int64_t, int64_t);

CAPTION_SOFTMAX_INSTANTIATE(float)
CAPTION_SOFTMAX_INSTANTIATE(double)
CAPTION_CROSS_ENTROPY_INSTANTIATE(float, int32_t)
CAPTION_CROSS_ENTROPY_INSTANTIATE(float, int64_t)
CAPTION_CROSS_ENTROPY_INSTANTIATE(double, int32_t)
CAPTION_CROSS_ENTROPY_INSTANTIATE(double, int64_t)

#undef CAPTION_SOFTMAX_INSTANTIATE
#undef CAPTION_CROSS_ENTROPY_INSTANTIATE

}  // namespace caption::kernels::cpu
