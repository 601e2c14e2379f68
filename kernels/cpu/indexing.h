// CPU kernels of the indexing and shaping ops: embedding, dropout, concat, slice,
// index_select and gather. Raw pointers and sizes; the CUDA kernels take the same.
//
// Layouts: every op sees its tensors as [outer, axis, inner] blocks around the axis it
// works on. Integer ids / indices (I = int32_t or int64_t) have been range-checked by the
// op layer. Forward kernels that only move elements (concat, slice, index_select, gather)
// are instantiated for every dtype (float, double, int32_t, int64_t); backward kernels
// for float and double. Backward kernels that accumulate (embedding, index_select,
// gather: an index may repeat) zero their output first and then add in index order, so
// results are deterministic (the CUDA side must not use unordered atomics for them).
#pragma once

#include <cstdint>

namespace caption::kernels::cpu {

// ---- embedding: out[n, :] = weight[ids[n], :] ------------------------------------------
// weight [vocab, dim], ids [count], out [count, dim].
template <typename T, typename I>
void embedding_forward(const T* weight, const I* ids, T* out, int64_t count, int64_t dim);
// grad_weight [vocab, dim] = sum over n with ids[n] == v of grad_out[n, :]; the row
// padding_idx (if >= 0) stays zero.
template <typename T, typename I>
void embedding_backward(const I* ids, const T* grad_out, T* grad_weight, int64_t count,
                        int64_t vocab, int64_t dim, int64_t padding_idx);

// ---- dropout ----------------------------------------------------------------------------
// Element i is kept iff word_to_unit_float(philox_word(seed, base, i)) >= p (compared in
// float), and scaled by `scale` (1 / (1 - p)); dropped elements are 0. The backward
// regenerates the same mask from (seed, base): no mask is stored.
template <typename T>
void dropout_forward(const T* x, T* y, int64_t n, float p, T scale, uint64_t seed, uint64_t base);
template <typename T>
void dropout_backward(const T* grad_y, T* grad_x, int64_t n, float p, T scale, uint64_t seed,
                      uint64_t base);

// ---- concat along an axis ---------------------------------------------------------------
// inputs[k] [outer, sizes[k], inner] -> out [outer, sum(sizes), inner].
template <typename T>
void concat_forward(const T* const* inputs, const int64_t* sizes, int64_t count, T* out,
                    int64_t outer, int64_t inner);
// grads[k] (null: not needed) [outer, sizes[k], inner] from grad_out.
template <typename T>
void concat_backward(const T* grad_out, T* const* grads, const int64_t* sizes, int64_t count,
                     int64_t outer, int64_t inner);

// ---- slice: y[o, j, i] = x[o, start + j * step, i] ---------------------------------------
// x [outer, in_len, inner], y [outer, out_len, inner].
template <typename T>
void slice_forward(const T* x, T* y, int64_t outer, int64_t in_len, int64_t out_len,
                   int64_t inner, int64_t start, int64_t step);
// grad_x: zeros except the sliced positions, which receive grad_y.
template <typename T>
void slice_backward(const T* grad_y, T* grad_x, int64_t outer, int64_t in_len, int64_t out_len,
                    int64_t inner, int64_t start, int64_t step);

// ---- index_select: y[o, k, i] = x[o, index[k], i] ----------------------------------------
// x [outer, in_len, inner], index [count], y [outer, count, inner].
template <typename T, typename I>
void index_select_forward(const T* x, const I* index, T* y, int64_t outer, int64_t in_len,
                          int64_t count, int64_t inner);
template <typename T, typename I>
void index_select_backward(const I* index, const T* grad_y, T* grad_x, int64_t outer,
                           int64_t in_len, int64_t count, int64_t inner);

// ---- gather: y[o, k, i] = x[o, index[o, k, i], i] ----------------------------------------
// x [outer, in_len, inner], index and y [outer, count, inner].
template <typename T, typename I>
void gather_forward(const T* x, const I* index, T* y, int64_t outer, int64_t in_len,
                    int64_t count, int64_t inner);
template <typename T, typename I>
void gather_backward(const I* index, const T* grad_y, T* grad_x, int64_t outer, int64_t in_len,
                     int64_t count, int64_t inner);

}  // namespace caption::kernels::cpu
