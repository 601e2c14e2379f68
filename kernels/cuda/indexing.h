// CUDA kernels of the indexing and shaping ops (embedding, dropout, concat, slice,
// index_select, gather), mirroring kernels/cpu/indexing.h: the same [outer, axis, inner]
// layouts, the same Philox mask for dropout, the same index order for the sums of the
// backward scatters. Work is queued on `stream`; sizes of zero launch nothing.
//
// Element moves (concat, slice, index_select and gather forward, concat and slice
// backward) work on raw elements of `elem_size` bytes (4 or 8), so they serve float32
// as well as int32/int64 tensors (token ids in beam search). Arithmetic is float32.
// Index tensors are int32 or int64 (I), already range-checked by the op layer.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace caption::kernels::cuda {

// ---- embedding ------------------------------------------------------------------------
// weight [vocab, dim], ids [count] -> out [count, dim].
template <typename I>
void embedding_forward(const float* weight, const I* ids, float* out, int64_t count, int64_t dim,
                       cudaStream_t stream);

// Bytes of device workspace that embedding_backward and index_select_backward need for
// `count` indices (the sorted keys and positions and the radix sort's own storage).
size_t index_sort_workspace_bytes(int64_t count, int64_t key_range);

// grad_weight [vocab, dim] = sum over n with ids[n] == v of grad_out[n, :], summed in
// ascending n as on the CPU; row padding_idx (>= 0) and rows no id names are zero.
// `workspace` holds index_sort_workspace_bytes(count, vocab) bytes.
template <typename I>
void embedding_backward(const I* ids, const float* grad_out, float* grad_weight, int64_t count,
                        int64_t vocab, int64_t dim, int64_t padding_idx, void* workspace,
                        size_t workspace_bytes, cudaStream_t stream);

// ---- dropout --------------------------------------------------------------------------
// Element i kept iff word_to_unit_float(philox_word(seed, base, i)) >= p; kept elements
// times `scale`, others 0. The backward is the same map applied to grad_y. counter: null,
// or a device int64 added to base when the kernel runs (a graph's replays read it anew).
void dropout_apply(const float* x, float* y, int64_t n, float p, float scale, uint64_t seed,
                   uint64_t base, const int64_t* counter, cudaStream_t stream);

// ---- concat ---------------------------------------------------------------------------
// Copies src [outer, len, inner] into dst [outer, total, inner] at axis offset `offset`
// (forward, one call per input), or back (backward): direction by ConcatCopy.
enum class ConcatCopy { IntoWhole, FromWhole };
void concat_copy(ConcatCopy direction, void* part, void* whole, int64_t outer, int64_t len,
                 int64_t total, int64_t offset, int64_t inner, int elem_size, cudaStream_t stream);

// The same for many parts at once: one kernel per kConcatBatch parts (the decoder's
// backward concatenates 20 steps' gradients and inputs, and a step's gradient blocks,
// where a kernel per part made launches the cost). parts[k] null: skipped (a gradient
// nobody wants); len[k] and offset[k] along the axis.
inline constexpr int kConcatBatch = 16;
void concat_copy_parts(ConcatCopy direction, void* const* parts, const int64_t* len,
                       const int64_t* offset, int count, void* whole, int64_t outer,
                       int64_t total, int64_t inner, int elem_size, cudaStream_t stream);

// ---- slice ----------------------------------------------------------------------------
// x [outer, in_len, inner] -> y [outer, out_len, inner], y[o, j] = x[o, start + j * step].
void slice_forward(const void* x, void* y, int64_t outer, int64_t in_len, int64_t out_len,
                   int64_t inner, int64_t start, int64_t step, int elem_size, cudaStream_t stream);
// grad_x: grad_y at the sliced positions, zero elsewhere (each element written once).
void slice_backward(const float* grad_y, float* grad_x, int64_t outer, int64_t in_len,
                    int64_t out_len, int64_t inner, int64_t start, int64_t step,
                    cudaStream_t stream);

// ---- index_select ---------------------------------------------------------------------
// y[o, k, i] = x[o, index[k], i]; x [outer, in_len, inner], index [count].
template <typename I>
void index_select_forward(const void* x, const I* index, void* y, int64_t outer, int64_t in_len,
                          int64_t count, int64_t inner, int elem_size, cudaStream_t stream);
// grad_x[o, r, i] = sum over k with index[k] == r of grad_y[o, k, i], in ascending k.
// `workspace` holds index_sort_workspace_bytes(count, in_len) bytes.
template <typename I>
void index_select_backward(const I* index, const float* grad_y, float* grad_x, int64_t outer,
                           int64_t in_len, int64_t count, int64_t inner, void* workspace,
                           size_t workspace_bytes, cudaStream_t stream);

// ---- gather ---------------------------------------------------------------------------
// y[o, k, i] = x[o, index[o, k, i], i]; x [outer, in_len, inner], index, y [outer, count, inner].
template <typename I>
void gather_forward(const void* x, const I* index, void* y, int64_t outer, int64_t in_len,
                    int64_t count, int64_t inner, int elem_size, cudaStream_t stream);
// grad_x[o, r, i] = sum over k with index[o, k, i] == r of grad_y[o, k, i], in ascending k.
template <typename I>
void gather_backward(const I* index, const float* grad_y, float* grad_x, int64_t outer,
                     int64_t in_len, int64_t count, int64_t inner, cudaStream_t stream);

}  // namespace caption::kernels::cuda
