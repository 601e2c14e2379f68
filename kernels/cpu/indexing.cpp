// Indexing and shaping kernels (see indexing.h). Copies of contiguous runs use
// std::copy_n (memmove for these trivially copyable types); accumulation runs in index
// order.
#include "kernels/cpu/indexing.h"

#include <algorithm>

#include "kernels/philox.h"

namespace caption::kernels::cpu {

template <typename T, typename I>
void embedding_forward(const T* weight, const I* ids, T* out, int64_t count, int64_t dim) {
  for (int64_t n = 0; n < count; ++n)
    std::copy_n(weight + static_cast<int64_t>(ids[n]) * dim, dim, out + n * dim);
}

template <typename T, typename I>
void embedding_backward(const I* ids, const T* grad_out, T* grad_weight, int64_t count,
                        int64_t vocab, int64_t dim, int64_t padding_idx) {
  std::fill_n(grad_weight, vocab * dim, T(0));
  for (int64_t n = 0; n < count; ++n) {
    const int64_t id = static_cast<int64_t>(ids[n]);
    if (id == padding_idx) continue;
    T* dst = grad_weight + id * dim;
    const T* src = grad_out + n * dim;
    for (int64_t e = 0; e < dim; ++e) dst[e] += src[e];
  }
}

namespace {

// Calls f(i, keep) for every element, drawing one Philox block per four elements
// (element i uses word i % 4 of counter base + i / 4, as philox_word does).
template <typename F>
void for_each_keep(int64_t n, float p, uint64_t seed, uint64_t base, F&& f) {
  for (int64_t i0 = 0; i0 < n; i0 += 4) {
    const Philox4 r = philox4x32_10(base + static_cast<uint64_t>(i0) / 4, seed);
    const int64_t end = std::min<int64_t>(i0 + 4, n);
    for (int64_t i = i0; i < end; ++i) f(i, word_to_unit_float(r.v[i - i0]) >= p);
  }
}

}  // namespace

template <typename T>
void dropout_forward(const T* x, T* y, int64_t n, float p, T scale, uint64_t seed, uint64_t base) {
  for_each_keep(n, p, seed, base, [&](int64_t i, bool keep) { y[i] = keep ? x[i] * scale : T(0); });
}

template <typename T>
void dropout_backward(const T* gy, T* gx, int64_t n, float p, T scale, uint64_t seed,
                      uint64_t base) {
  for_each_keep(n, p, seed, base, [&](int64_t i, bool keep) { gx[i] = keep ? gy[i] * scale : T(0); });
}

template <typename T>
void concat_forward(const T* const* inputs, const int64_t* sizes, int64_t count, T* out,
                    int64_t outer, int64_t inner) {
  int64_t total = 0;
  for (int64_t k = 0; k < count; ++k) total += sizes[k];
  for (int64_t o = 0; o < outer; ++o) {
    T* dst = out + o * total * inner;
    for (int64_t k = 0; k < count; ++k) {
      const int64_t run = sizes[k] * inner;
      std::copy_n(inputs[k] + o * run, run, dst);
      dst += run;
    }
  }
}

template <typename T>
void concat_backward(const T* grad_out, T* const* grads, const int64_t* sizes, int64_t count,
                     int64_t outer, int64_t inner) {
  int64_t total = 0;
  for (int64_t k = 0; k < count; ++k) total += sizes[k];
  for (int64_t o = 0; o < outer; ++o) {
    const T* src = grad_out + o * total * inner;
    for (int64_t k = 0; k < count; ++k) {
      const int64_t run = sizes[k] * inner;
      if (grads[k] != nullptr) std::copy_n(src, run, grads[k] + o * run);
      src += run;
    }
  }
}

template <typename T>
void slice_forward(const T* x, T* y, int64_t outer, int64_t in_len, int64_t out_len,
                   int64_t inner, int64_t start, int64_t step) {
  for (int64_t o = 0; o < outer; ++o) {
    const T* src = x + (o * in_len + start) * inner;
    T* dst = y + o * out_len * inner;
    if (step == 1) {
      std::copy_n(src, out_len * inner, dst);
      continue;
    }
    for (int64_t j = 0; j < out_len; ++j) std::copy_n(src + j * step * inner, inner, dst + j * inner);
  }
}

template <typename T>
void slice_backward(const T* gy, T* gx, int64_t outer, int64_t in_len, int64_t out_len,
                    int64_t inner, int64_t start, int64_t step) {
  std::fill_n(gx, outer * in_len * inner, T(0));
  for (int64_t o = 0; o < outer; ++o) {
    const T* src = gy + o * out_len * inner;
    T* dst = gx + (o * in_len + start) * inner;
    for (int64_t j = 0; j < out_len; ++j) std::copy_n(src + j * inner, inner, dst + j * step * inner);
  }
}

template <typename T, typename I>
void index_select_forward(const T* x, const I* index, T* y, int64_t outer, int64_t in_len,
                          int64_t count, int64_t inner) {
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t k = 0; k < count; ++k)
      std::copy_n(x + (o * in_len + static_cast<int64_t>(index[k])) * inner, inner,
                  y + (o * count + k) * inner);
}

template <typename T, typename I>
void index_select_backward(const I* index, const T* gy, T* gx, int64_t outer, int64_t in_len,
                           int64_t count, int64_t inner) {
  std::fill_n(gx, outer * in_len * inner, T(0));
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t k = 0; k < count; ++k) {
      T* dst = gx + (o * in_len + static_cast<int64_t>(index[k])) * inner;
      const T* src = gy + (o * count + k) * inner;
      for (int64_t i = 0; i < inner; ++i) dst[i] += src[i];
    }
}

template <typename T, typename I>
void gather_forward(const T* x, const I* index, T* y, int64_t outer, int64_t in_len,
                    int64_t count, int64_t inner) {
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t k = 0; k < count; ++k) {
      const int64_t row = (o * count + k) * inner;
      for (int64_t i = 0; i < inner; ++i)
        y[row + i] = x[(o * in_len + static_cast<int64_t>(index[row + i])) * inner + i];
    }
}

template <typename T, typename I>
void gather_backward(const I* index, const T* gy, T* gx, int64_t outer, int64_t in_len,
                     int64_t count, int64_t inner) {
  std::fill_n(gx, outer * in_len * inner, T(0));
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t k = 0; k < count; ++k) {
      const int64_t row = (o * count + k) * inner;
      for (int64_t i = 0; i < inner; ++i)
        gx[(o * in_len + static_cast<int64_t>(index[row + i])) * inner + i] += gy[row + i];
    }
}

// ---- instantiations ------------------------------------------------------------------------

#define CAPTION_MOVE_INSTANTIATE(T)                                                             \
  template void concat_forward<T>(const T* const*, const int64_t*, int64_t, T*, int64_t,       \
                                  int64_t);                                                    \
  template void slice_forward<T>(const T*, T*, int64_t, int64_t, int64_t, int64_t, int64_t,    \
                                 int64_t);                                                     \
  template void index_select_forward<T, int32_t>(const T*, const int32_t*, T*, int64_t,        \
                                                 int64_t, int64_t, int64_t);                   \
  template void index_select_forward<T, int64_t>(const T*, const int64_t*, T*, int64_t,        \
                                                 int64_t, int64_t, int64_t);                   \
  template void gather_forward<T, int32_t>(const T*, const int32_t*, T*, int64_t, int64_t,     \
                                           int64_t, int64_t);                                  \
  template void gather_forward<T, int64_t>(const T*, const int64_t*, T*, int64_t, int64_t,     \
                                           int64_t, int64_t);

#define CAPTION_INDEX_GRAD_INSTANTIATE(T, I)                                                    \
  template void embedding_forward<T, I>(const T*, const I*, T*, int64_t, int64_t);             \
  template void embedding_backward<T, I>(const I*, const T*, T*, int64_t, int64_t, int64_t,    \
                                         int64_t);                                             \
  template void index_select_backward<T, I>(const I*, const T*, T*, int64_t, int64_t,          \
                                            int64_t, int64_t);                                 \
  template void gather_backward<T, I>(const I*, const T*, T*, int64_t, int64_t, int64_t,       \
                                      int64_t);

#define CAPTION_GRAD_INSTANTIATE(T)                                                             \
  template void dropout_forward<T>(const T*, T*, int64_t, float, T, uint64_t, uint64_t);       \
  template void dropout_backward<T>(const T*, T*, int64_t, float, T, uint64_t, uint64_t);      \
  template void concat_backward<T>(const T*, T* const*, const int64_t*, int64_t, int64_t,      \
                                   int64_t);                                                   \
  template void slice_backward<T>(const T*, T*, int64_t, int64_t, int64_t, int64_t, int64_t,   \
                                  int64_t);                                                    \
  CAPTION_INDEX_GRAD_INSTANTIATE(T, int32_t)                                                    \
  CAPTION_INDEX_GRAD_INSTANTIATE(T, int64_t)

CAPTION_MOVE_INSTANTIATE(float)
CAPTION_MOVE_INSTANTIATE(double)
CAPTION_MOVE_INSTANTIATE(int32_t)
CAPTION_MOVE_INSTANTIATE(int64_t)
CAPTION_GRAD_INSTANTIATE(float)
CAPTION_GRAD_INSTANTIATE(double)

#undef CAPTION_MOVE_INSTANTIATE
#undef CAPTION_INDEX_GRAD_INSTANTIATE
#undef CAPTION_GRAD_INSTANTIATE

}  // namespace caption::kernels::cpu
