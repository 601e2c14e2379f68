// Sum/mean kernels. Accumulation is in the element type, in input order, so float32
// results are reproducible run to run.
#include "kernels/cpu/reduce.h"

#include <vector>

#include <numeric>

#include <algorithm>

#include <cstring>

namespace caption::kernels::cpu {

template <typename T>
void reduce_sum(const T* x, T* out, int64_t outer, int64_t reduce, int64_t inner, T scale) {
  for (int64_t o = 0; o < outer; ++o) {
    T* dst = out + o * inner;
    if (inner == 1) {
      T acc = 0;
      const T* src = x + o * reduce;
      for (int64_t r = 0; r < reduce; ++r) acc += src[r];
      dst[0] = acc * scale;
      continue;
    }
    std::memset(dst, 0, sizeof(T) * inner);
    for (int64_t r = 0; r < reduce; ++r) {
      const T* src = x + (o * reduce + r) * inner;
      for (int64_t i = 0; i < inner; ++i) dst[i] += src[i];
    }
    for (int64_t i = 0; i < inner; ++i) dst[i] *= scale;
  }
}

template <typename T>
void reduce_sum_backward(const T* g, T* gx, int64_t outer, int64_t reduce, int64_t inner, T scale) {
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t r = 0; r < reduce; ++r) {
      T* dst = gx + (o * reduce + r) * inner;
      const T* src = g + o * inner;
      for (int64_t i = 0; i < inner; ++i) dst[i] = src[i] * scale;
    }
}

template <typename T>
void max_last(const T* x, T* values, int64_t* indices, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = x + r * cols;
    int64_t best = 0;
    for (int64_t c = 1; c < cols && row[best] == row[best]; ++c)
      if (row[c] > row[best] || row[c] != row[c]) best = c;
    values[r] = row[best];
    indices[r] = best;
  }
}

template <typename T>
void top_extensions(const T* log_probs, const double* base, int64_t K, int64_t V, int64_t take,
                    int64_t* indices, T* values, double* scores) {
  const int64_t n = K * V;
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  auto score = [&](int64_t i) { return base[i / V] + static_cast<double>(log_probs[i]); };
  std::partial_sort(order.begin(), order.begin() + take, order.end(), [&](int64_t a, int64_t b) {
    return extension_before(score(a), a, score(b), b);
  });
  for (int64_t j = 0; j < take; ++j) {
    indices[j] = order[j];
    values[j] = log_probs[order[j]];
    if (scores) scores[j] = score(order[j]);
  }
}

template void top_extensions<float>(const float*, const double*, int64_t, int64_t, int64_t,
                                    int64_t*, float*, double*);
template void top_extensions<double>(const double*, const double*, int64_t, int64_t, int64_t,
                                     int64_t*, double*, double*);
template void max_last<float>(const float*, float*, int64_t*, int64_t, int64_t);
template void max_last<double>(const double*, double*, int64_t*, int64_t, int64_t);
template void reduce_sum<float>(const float*, float*, int64_t, int64_t, int64_t, float);
template void reduce_sum<double>(const double*, double*, int64_t, int64_t, int64_t, double);
template void reduce_sum_backward<float>(const float*, float*, int64_t, int64_t, int64_t, float);
template void reduce_sum_backward<double>(const double*, double*, int64_t, int64_t, int64_t, double);

}  // namespace caption::kernels::cpu
