// CPU kernels of sum and mean over axes. The input is viewed as [outer, reduced, inner]
// blocks after the op layer has moved the reduced axes together, so one kernel covers
// every choice of axes.
#pragma once

#include <cstdint>

namespace caption::kernels::cpu {

// out[o, i] = scale * sum_r x[o, r, i]  for x of shape [outer, reduce, inner].
template <typename T>
void reduce_sum(const T* x, T* out, int64_t outer, int64_t reduce, int64_t inner, T scale);
// grad_x[o, r, i] = scale * grad_out[o, i]
template <typename T>
void reduce_sum_backward(const T* grad_out, T* grad_x, int64_t outer, int64_t reduce,
                         int64_t inner, T scale);

// values[r] = max_c x[r, c], indices[r] = its first c (a NaN is the maximum).
template <typename T>
void max_last(const T* x, T* values, int64_t* indices, int64_t rows, int64_t cols);

// Beam search's choice: the `take` best of the K x V one-token extensions, scored
// base[k] + log_probs[k, v] in double, best first; equal scores by the lower flat index
// k * V + v, and a NaN score counts as the best (the first NaN), as max_last: with one
// hypothesis and take 1 this is greedy's choice. Writes indices[take] (flat), values[take]
// (the chosen log-probabilities) and, when not null, scores[take] (their double scores,
// the next step's base). take <= K * V.
template <typename T>
void top_extensions(const T* log_probs, const double* base, int64_t K, int64_t V, int64_t take,
                    int64_t* indices, T* values, double* scores = nullptr);

// The order top_extensions ranks by: whether score a at flat index ia comes before b.
inline bool extension_before(double a, int64_t ia, double b, int64_t ib) {
  const bool na = a != a, nb = b != b;
  if (na || nb) return na && (!nb || ia < ib);
  return a > b || (a == b && ia < ib);
}

}  // namespace caption::kernels::cpu
