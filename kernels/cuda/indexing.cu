// CUDA indexing and shaping kernels (see indexing.h).
//
// Launch configuration: every kernel is a grid-stride loop with 64-bit indices over its
// output elements (256-thread blocks, grid capped by grid_for), the innermost axis
// fastest so neighbouring threads touch neighbouring addresses.
//
// Dropout: one thread per Philox counter (four elements), the counter base + i / 4 and
// word i % 4 exactly as kernels/cpu/indexing.cpp draws them, and the same float
// comparison, so the CUDA mask is the CPU mask bit for bit (a pure function of seed,
// base and i; no generator state on the device).
//
// Deterministic scatter-adds, no float atomics anywhere:
//   - embedding and index_select backward sort the (index, position) pairs by index with
//     CUB's radix sort (stable, so positions stay ascending within an index), then one
//     thread per (segment start, inner element) sums its segment in ascending position
//     order: the same terms in the same order as the CPU loop, so the sums are equal
//     bit for bit; rows no index names are zeroed by a memset first;
//   - gather backward runs one thread per (outer, inner) column, which owns its column of
//     grad_x: it zeroes it and adds grad_y over k in ascending order, as the CPU does
//     (columns are disjoint, so threads never share an address).
#include "kernels/cuda/indexing.h"

#include <cub/device/device_radix_sort.cuh>

#include <climits>

#include "kernels/cuda/common.cuh"
#include "kernels/philox.h"

namespace caption::kernels::cuda {

namespace {

// ---- embedding / index_select forward -------------------------------------------------

template <typename I>
__global__ void embedding_forward_kernel(const float* weight, const I* ids, float* out, int64_t dim,
                                         int64_t n) {
  for (int64_t idx = global_thread(); idx < n; idx += grid_threads()) {
    const int64_t row = idx / dim, e = idx - row * dim;
    out[idx] = weight[static_cast<int64_t>(ids[row]) * dim + e];
  }
}

// ---- sorted segment sums (embedding and index_select backward) -------------------------

// Where the pieces of the workspace live (each 256-byte aligned).
struct SortWorkspace {
  uint32_t* keys_in;
  uint32_t* keys_out;
  uint32_t* pos_in;
  uint32_t* pos_out;
  void* temp;
  size_t temp_bytes;
};

constexpr size_t kAlign = 256;
size_t align_up(size_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

int key_bits(int64_t key_range) {
  int bits = 1;
  while (bits < 32 && (int64_t{1} << bits) < key_range) ++bits;
  return bits;
}

size_t cub_temp_bytes(int64_t count, int64_t key_range) {
  size_t bytes = 0;
  CAPTION_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      nullptr, bytes, static_cast<const uint32_t*>(nullptr), static_cast<uint32_t*>(nullptr),
      static_cast<const uint32_t*>(nullptr), static_cast<uint32_t*>(nullptr),
      static_cast<int>(count), 0, key_bits(key_range)));
  return bytes;
}

SortWorkspace carve(void* workspace, size_t bytes, int64_t count, int64_t key_range) {
  const size_t array = align_up(sizeof(uint32_t) * static_cast<size_t>(count));
  auto* base = static_cast<unsigned char*>(workspace);
  SortWorkspace w;
  w.keys_in = reinterpret_cast<uint32_t*>(base);
  w.keys_out = reinterpret_cast<uint32_t*>(base + array);
  w.pos_in = reinterpret_cast<uint32_t*>(base + 2 * array);
  w.pos_out = reinterpret_cast<uint32_t*>(base + 3 * array);
  w.temp = base + 4 * array;
  w.temp_bytes = cub_temp_bytes(count, key_range);
  CAPTION_ASSERT(bytes >= 4 * array + w.temp_bytes, "index sort: workspace of ", bytes,
                 " bytes is too small for ", count, " indices");
  return w;
}

template <typename I>
__global__ void sort_inputs_kernel(const I* index, uint32_t* keys, uint32_t* pos, int64_t n) {
  for (int64_t k = global_thread(); k < n; k += grid_threads()) {
    keys[k] = static_cast<uint32_t>(index[k]);
    pos[k] = static_cast<uint32_t>(k);
  }
}

// grad[o, key, i] = sum over the segment of equal keys starting at j of
// grad_y[o, pos, i], for each segment start j; `skip_key` (padding) is left alone.
__global__ void segment_sum_kernel(const uint32_t* keys, const uint32_t* pos, const float* gy,
                                   float* gx, int64_t count, int64_t in_len, int64_t inner,
                                   int64_t skip_key, int64_t n) {
  for (int64_t idx = global_thread(); idx < n; idx += grid_threads()) {
    const int64_t i = idx % inner;
    const int64_t oj = idx / inner;
    const int64_t j = oj % count, o = oj / count;
    const uint32_t key = keys[j];
    if (j > 0 && keys[j - 1] == key) continue;  // not a segment start
    if (static_cast<int64_t>(key) == skip_key) continue;
    float acc = 0.f;
    for (int64_t k = j; k < count && keys[k] == key; ++k)
      acc += gy[(o * count + static_cast<int64_t>(pos[k])) * inner + i];
    gx[(o * in_len + static_cast<int64_t>(key)) * inner + i] = acc;
  }
}

template <typename I>
void sorted_scatter_sum(const I* index, const float* gy, float* gx, int64_t outer, int64_t in_len,
                        int64_t count, int64_t inner, int64_t skip_key, void* workspace,
                        size_t workspace_bytes, cudaStream_t stream) {
  const int64_t total = outer * in_len * inner;
  if (total == 0) return;
  CAPTION_CUDA_CHECK(cudaMemsetAsync(gx, 0, sizeof(float) * total, stream));
  if (count == 0 || outer * inner == 0) return;
  const SortWorkspace w = carve(workspace, workspace_bytes, count, in_len);
  sort_inputs_kernel<I><<<grid_for(count), kBlock, 0, stream>>>(index, w.keys_in, w.pos_in, count);
  CAPTION_CUDA_LAUNCH_CHECK("sort_inputs_kernel (index sort)");
  size_t temp_bytes = w.temp_bytes;
  CAPTION_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(w.temp, temp_bytes, w.keys_in, w.keys_out,
                                                     w.pos_in, w.pos_out, static_cast<int>(count),
                                                     0, key_bits(in_len), stream));
  CAPTION_CUDA_LAUNCH_CHECK("cub::DeviceRadixSort::SortPairs (index sort)");
  const int64_t n = outer * count * inner;
  segment_sum_kernel<<<grid_for(n), kBlock, 0, stream>>>(w.keys_out, w.pos_out, gy, gx, count,
                                                         in_len, inner, skip_key, n);
  CAPTION_CUDA_LAUNCH_CHECK("segment_sum_kernel (index scatter-add)");
}

// ---- dropout ----------------------------------------------------------------------------

__global__ void dropout_kernel(const float* x, float* y, int64_t n, float p, float scale,
                               uint64_t seed, uint64_t base, const int64_t* counter) {
  if (counter != nullptr) base += static_cast<uint64_t>(*counter);
  const int64_t blocks = (n + 3) / 4;
  for (int64_t t = global_thread(); t < blocks; t += grid_threads()) {
    const Philox4 r = philox4x32_10(base + static_cast<uint64_t>(t), seed);
    const int64_t i0 = t * 4;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int64_t i = i0 + k;
      if (i < n) y[i] = word_to_unit_float(r.v[k]) >= p ? x[i] * scale : 0.f;
    }
  }
}

// ---- moves ------------------------------------------------------------------------------

template <typename E>
__global__ void concat_copy_kernel(ConcatCopy direction, E* part, E* whole, int64_t len,
                                   int64_t total, int64_t offset, int64_t inner, int64_t n) {
  const int64_t run = len * inner;
  for (int64_t idx = global_thread(); idx < n; idx += grid_threads()) {
    const int64_t o = idx / run, r = idx - o * run;
    const int64_t w = o * total * inner + offset * inner + r;
    if (direction == ConcatCopy::IntoWhole)
      whole[w] = part[idx];
    else
      part[idx] = whole[w];
  }
}

// Up to kConcatBatch parts, found by a linear search over their first flat index.
struct ConcatTable {
  void* part[kConcatBatch];
  int64_t len[kConcatBatch], offset[kConcatBatch];
  int64_t first[kConcatBatch + 1];  // first flat index of each part, then the end
  int count;
};

template <typename E>
__global__ void concat_parts_kernel(ConcatCopy direction, ConcatTable t, E* whole, int64_t total,
                                    int64_t inner, int64_t n) {
  for (int64_t idx = global_thread(); idx < n; idx += grid_threads()) {
    int k = 0;
    while (k + 1 < t.count && idx >= t.first[k + 1]) ++k;
    const int64_t local = idx - t.first[k];
    const int64_t run = t.len[k] * inner;
    const int64_t o = local / run, r = local - o * run;
    const int64_t w = o * total * inner + t.offset[k] * inner + r;
    E* part = static_cast<E*>(t.part[k]);
    if (direction == ConcatCopy::IntoWhole)
      whole[w] = part[local];
    else
      part[local] = whole[w];
  }
}

template <typename E>
__global__ void slice_forward_kernel(const E* x, E* y, int64_t in_len, int64_t out_len,
                                     int64_t inner, int64_t start, int64_t step, int64_t n) {
  for (int64_t idx = global_thread(); idx < n; idx += grid_threads()) {
    const int64_t i = idx % inner;
    const int64_t oj = idx / inner;
    const int64_t j = oj % out_len, o = oj / out_len;
    y[idx] = x[(o * in_len + start + j * step) * inner + i];
  }
}

__global__ void slice_backward_kernel(const float* gy, float* gx, int64_t in_len, int64_t out_len,
                                      int64_t inner, int64_t start, int64_t step, int64_t n) {
  for (int64_t idx = global_thread(); idx < n; idx += grid_threads()) {
    const int64_t i = idx % inner;
    const int64_t orow = idx / inner;
    const int64_t r = orow % in_len, o = orow / in_len;
    const int64_t rel = r - start;
    float v = 0.f;
    if (rel >= 0 && rel % step == 0 && rel / step < out_len)
      v = gy[(o * out_len + rel / step) * inner + i];
    gx[idx] = v;
  }
}

template <typename E, typename I>
__global__ void index_select_kernel(const E* x, const I* index, E* y, int64_t in_len, int64_t count,
                                    int64_t inner, int64_t n) {
  for (int64_t idx = global_thread(); idx < n; idx += grid_threads()) {
    const int64_t i = idx % inner;
    const int64_t ok = idx / inner;
    const int64_t k = ok % count, o = ok / count;
    y[idx] = x[(o * in_len + static_cast<int64_t>(index[k])) * inner + i];
  }
}

template <typename E, typename I>
__global__ void gather_kernel(const E* x, const I* index, E* y, int64_t in_len, int64_t count,
                              int64_t inner, int64_t n) {
  for (int64_t idx = global_thread(); idx < n; idx += grid_threads()) {
    const int64_t i = idx % inner;
    const int64_t o = idx / inner / count;
    y[idx] = x[(o * in_len + static_cast<int64_t>(index[idx])) * inner + i];
  }
}

// One thread per (o, i) column of grad_x.
template <typename I>
__global__ void gather_backward_kernel(const I* index, const float* gy, float* gx, int64_t in_len,
                                       int64_t count, int64_t inner, int64_t columns) {
  for (int64_t col = global_thread(); col < columns; col += grid_threads()) {
    const int64_t o = col / inner, i = col - o * inner;
    float* dst = gx + o * in_len * inner + i;
    for (int64_t r = 0; r < in_len; ++r) dst[r * inner] = 0.f;
    const int64_t src0 = o * count * inner + i;
    for (int64_t k = 0; k < count; ++k) {
      const int64_t s = src0 + k * inner;
      dst[static_cast<int64_t>(index[s]) * inner] += gy[s];
    }
  }
}

// Calls f.template operator()<E>() with E the unsigned type of elem_size bytes.
template <typename F>
void by_elem_size(int elem_size, const char* what, F&& f) {
  CAPTION_ASSERT(elem_size == 4 || elem_size == 8, what, ": element size ", elem_size);
  if (elem_size == 4)
    f.template operator()<uint32_t>();
  else
    f.template operator()<uint64_t>();
}

}  // namespace

template <typename I>
void embedding_forward(const float* weight, const I* ids, float* out, int64_t count, int64_t dim,
                       cudaStream_t stream) {
  const int64_t n = count * dim;
  if (n == 0) return;
  embedding_forward_kernel<I><<<grid_for(n), kBlock, 0, stream>>>(weight, ids, out, dim, n);
  CAPTION_CUDA_LAUNCH_CHECK("embedding_forward_kernel");
}

size_t index_sort_workspace_bytes(int64_t count, int64_t key_range) {
  CAPTION_CHECK(count <= INT_MAX && key_range <= INT_MAX, "index scatter-add on CUDA: ", count,
                " indices over a range of ", key_range, " exceed the 32-bit sort");
  if (count == 0) return 0;
  return 4 * align_up(sizeof(uint32_t) * static_cast<size_t>(count)) +
         cub_temp_bytes(count, key_range);
}

template <typename I>
void embedding_backward(const I* ids, const float* grad_out, float* grad_weight, int64_t count,
                        int64_t vocab, int64_t dim, int64_t padding_idx, void* workspace,
                        size_t workspace_bytes, cudaStream_t stream) {
  sorted_scatter_sum<I>(ids, grad_out, grad_weight, 1, vocab, count, dim, padding_idx, workspace,
                        workspace_bytes, stream);
}

void dropout_apply(const float* x, float* y, int64_t n, float p, float scale, uint64_t seed,
                   uint64_t base, const int64_t* counter, cudaStream_t stream) {
  if (n == 0) return;
  dropout_kernel<<<grid_for((n + 3) / 4), kBlock, 0, stream>>>(x, y, n, p, scale, seed, base, counter);
  CAPTION_CUDA_LAUNCH_CHECK("dropout_kernel");
}

void concat_copy(ConcatCopy direction, void* part, void* whole, int64_t outer, int64_t len,
                 int64_t total, int64_t offset, int64_t inner, int elem_size, cudaStream_t stream) {
  const int64_t n = outer * len * inner;
  if (n == 0) return;
  by_elem_size(elem_size, "concat", [&]<typename E>() {
    concat_copy_kernel<E><<<grid_for(n), kBlock, 0, stream>>>(
        direction, static_cast<E*>(part), static_cast<E*>(whole), len, total, offset, inner, n);
    CAPTION_CUDA_LAUNCH_CHECK("concat_copy_kernel");
  });
}

void concat_copy_parts(ConcatCopy direction, void* const* parts, const int64_t* len,
                       const int64_t* offset, int count, void* whole, int64_t outer,
                       int64_t total, int64_t inner, int elem_size, cudaStream_t stream) {
  int k = 0;
  while (k < count) {
    ConcatTable t{};
    int64_t n = 0;
    for (; k < count && t.count < kConcatBatch; ++k) {
      const int64_t elems = outer * len[k] * inner;
      if (parts[k] == nullptr || elems == 0) continue;
      t.part[t.count] = parts[k];
      t.len[t.count] = len[k];
      t.offset[t.count] = offset[k];
      t.first[t.count] = n;
      n += elems;
      ++t.count;
    }
    if (t.count == 0) continue;
    t.first[t.count] = n;
    by_elem_size(elem_size, "concat", [&]<typename E>() {
      concat_parts_kernel<E><<<grid_for(n), kBlock, 0, stream>>>(direction, t, static_cast<E*>(whole),
                                                                 total, inner, n);
      CAPTION_CUDA_LAUNCH_CHECK("concat_parts_kernel");
    });
  }
}

void slice_forward(const void* x, void* y, int64_t outer, int64_t in_len, int64_t out_len,
                   int64_t inner, int64_t start, int64_t step, int elem_size, cudaStream_t stream) {
  const int64_t n = outer * out_len * inner;
  if (n == 0) return;
  by_elem_size(elem_size, "slice", [&]<typename E>() {
    slice_forward_kernel<E><<<grid_for(n), kBlock, 0, stream>>>(
        static_cast<const E*>(x), static_cast<E*>(y), in_len, out_len, inner, start, step, n);
    CAPTION_CUDA_LAUNCH_CHECK("slice_forward_kernel");
  });
}

void slice_backward(const float* grad_y, float* grad_x, int64_t outer, int64_t in_len,
                    int64_t out_len, int64_t inner, int64_t start, int64_t step,
                    cudaStream_t stream) {
  const int64_t n = outer * in_len * inner;
  if (n == 0) return;
  slice_backward_kernel<<<grid_for(n), kBlock, 0, stream>>>(grad_y, grad_x, in_len, out_len, inner,
                                                            start, step, n);
  CAPTION_CUDA_LAUNCH_CHECK("slice_backward_kernel");
}

template <typename I>
void index_select_forward(const void* x, const I* index, void* y, int64_t outer, int64_t in_len,
                          int64_t count, int64_t inner, int elem_size, cudaStream_t stream) {
  const int64_t n = outer * count * inner;
  if (n == 0) return;
  by_elem_size(elem_size, "index_select", [&]<typename E>() {
    index_select_kernel<E, I><<<grid_for(n), kBlock, 0, stream>>>(
        static_cast<const E*>(x), index, static_cast<E*>(y), in_len, count, inner, n);
    CAPTION_CUDA_LAUNCH_CHECK("index_select_kernel");
  });
}

template <typename I>
void index_select_backward(const I* index, const float* grad_y, float* grad_x, int64_t outer,
                           int64_t in_len, int64_t count, int64_t inner, void* workspace,
                           size_t workspace_bytes, cudaStream_t stream) {
  sorted_scatter_sum<I>(index, grad_y, grad_x, outer, in_len, count, inner, -1, workspace,
                        workspace_bytes, stream);
}

template <typename I>
void gather_forward(const void* x, const I* index, void* y, int64_t outer, int64_t in_len,
                    int64_t count, int64_t inner, int elem_size, cudaStream_t stream) {
  const int64_t n = outer * count * inner;
  if (n == 0) return;
  by_elem_size(elem_size, "gather", [&]<typename E>() {
    gather_kernel<E, I><<<grid_for(n), kBlock, 0, stream>>>(
        static_cast<const E*>(x), index, static_cast<E*>(y), in_len, count, inner, n);
    CAPTION_CUDA_LAUNCH_CHECK("gather_kernel");
  });
}

template <typename I>
void gather_backward(const I* index, const float* grad_y, float* grad_x, int64_t outer,
                     int64_t in_len, int64_t count, int64_t inner, cudaStream_t stream) {
  const int64_t columns = outer * inner;
  if (columns == 0 || in_len == 0) return;
  gather_backward_kernel<I><<<grid_for(columns), kBlock, 0, stream>>>(index, grad_y, grad_x, in_len,
                                                                      count, inner, columns);
  CAPTION_CUDA_LAUNCH_CHECK("gather_backward_kernel");
}

#define CAPTION_INDEXING_INSTANTIATE(I)                                                          \
  template void embedding_forward<I>(const float*, const I*, float*, int64_t, int64_t,           \
                                     cudaStream_t);                                              \
  template void embedding_backward<I>(const I*, const float*, float*, int64_t, int64_t, int64_t, \
                                      int64_t, void*, size_t, cudaStream_t);                     \
  template void index_select_forward<I>(const void*, const I*, void*, int64_t, int64_t, int64_t, \
                                        int64_t, int, cudaStream_t);                             \
  template void index_select_backward<I>(const I*, const float*, float*, int64_t, int64_t,       \
                                         int64_t, int64_t, void*, size_t, cudaStream_t);         \
  template void gather_forward<I>(const void*, const I*, void*, int64_t, int64_t, int64_t,       \
                                  int64_t, int, cudaStream_t);                                   \
  template void gather_backward<I>(const I*, const float*, float*, int64_t, int64_t, int64_t,    \
                                   int64_t, cudaStream_t);
CAPTION_INDEXING_INSTANTIATE(int32_t)
CAPTION_INDEXING_INSTANTIATE(int64_t)
#undef CAPTION_INDEXING_INSTANTIATE

}  // namespace caption::kernels::cuda
