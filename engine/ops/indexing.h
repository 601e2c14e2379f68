// Indexing and shaping ops: embedding, dropout, concat, slice, index_select, gather.
// Semantics are PyTorch's unless a comment says otherwise. Each returns a new contiguous
// tensor (the view versions are Tensor::narrow / select).
//
// Index tensors (ids, index) are int64 or int32, are never differentiated, and are
// range-checked on the host before any kernel runs (for CUDA tensors: one small copy),
// so a bad index is refused with its value and position. Concat, slice, index_select
// and gather also move integer tensors (e.g. token ids during beam search); their
// gradients exist for float tensors only.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

#include "engine/random.h"
#include "engine/tensor.h"

namespace caption {

// While one lives on this thread, index tensors on a device are not range-checked on the
// host: the check copies them to the host, a synchronisation that a CUDA graph capture
// forbids. Whoever opens it vouches for the indices (the decoder's graphs check token
// ids on the host before copying them into the graph's input). Host tensors are always
// checked (no copy is involved).
class DeviceIndexChecksOff {
 public:
  DeviceIndexChecksOff();
  ~DeviceIndexChecksOff();
  DeviceIndexChecksOff(const DeviceIndexChecksOff&) = delete;
  DeviceIndexChecksOff& operator=(const DeviceIndexChecksOff&) = delete;

 private:
  bool previous_;
};

// Whether index tensors on a device are range-checked on the host on this thread now.
bool device_index_checks();

// ---- embedding --------------------------------------------------------------------------

struct EmbeddingParams {
  int64_t count = 0;         // number of ids
  int64_t vocab = 0, dim = 0;
  int64_t padding_idx = -1;  // normalised to [0, vocab); -1: none
};

// weight [V, E], ids [...] -> [..., E]. The gradient into weight sums the rows of
// repeated ids (in id order, deterministic); the padding_idx row (negative values count
// from V, as in PyTorch) receives no gradient. The forward still reads that row.
Tensor embedding(const Tensor& weight, const Tensor& ids,
                 std::optional<int64_t> padding_idx = std::nullopt);

// ---- dropout ----------------------------------------------------------------------------

enum class DropoutMode { Train, Eval };

// Everything the CPU and CUDA kernels need to draw the same mask: element i is kept iff
// word_to_unit_float(philox_word(seed, base, i)) >= p (float comparison). The backward
// regenerates the mask from (seed, base) instead of storing it.
//
// With a device counter attached to the generator (engine/random.h) on x's device, the
// op has a second input, the counter (int64 [1]), and the stream starts at
// counter + base instead (base then relative to the counter's origin); the backward
// saves it and reads it again. Kernels: forward in = {x} or {x, counter}; backward
// in = {grad_y} or {counter, grad_y}.
struct DropoutParams {
  int64_t numel = 0;
  float p = 0;
  double scale = 1.0;  // 1 / (1 - p)
  uint64_t seed = 0, base = 0;
  bool counter = false;  // the start is counter + base
};

// Eval, or p == 0: returns x itself (no copy, no recorded op). Train: draws numel words
// from gen (gen.reserve(numel)); kept elements are scaled by 1 / (1 - p). p must be in
// [0, 1).
Tensor dropout(const Tensor& x, double p, Generator& gen, DropoutMode mode);

// ---- concat -----------------------------------------------------------------------------

struct ConcatParams {
  int64_t outer = 1, inner = 1;
  std::vector<int64_t> sizes;  // each input's length along the axis
};

// All inputs of one rank, dtype and device, with equal sizes except along `axis`.
Tensor concat(const std::vector<Tensor>& xs, int64_t axis);

// ---- slice ------------------------------------------------------------------------------

struct SliceParams {
  int64_t outer = 1, in_len = 0, out_len = 0, inner = 1;
  int64_t start = 0, step = 1;
};

inline constexpr int64_t kSliceToEnd = std::numeric_limits<int64_t>::max();

// x[..., start:end:step, ...] along `axis`, with Python's rules for start and end
// (negative values count from the end; both are clamped to [0, size], so an empty range
// gives an empty tensor). step must be positive. A new contiguous tensor; the gradient
// is zero outside the slice.
Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t end = kSliceToEnd,
             int64_t step = 1);

// ---- index_select and gather --------------------------------------------------------------

// x [outer, in_len, inner] around the axis; index with `count` entries along it.
struct IndexParams {
  int64_t outer = 1, in_len = 0, count = 0, inner = 1;
};

// torch.index_select: index [K] (values in [0, x.size(axis)), repeats allowed) -> x with
// axis size K. The gradient accumulates over repeated indices.
Tensor index_select(const Tensor& x, int64_t axis, const Tensor& index);

// torch.gather: index of x's rank with index.size(d) <= x.size(d) for d != axis; out has
// index's shape, out[..., k, ...] = x[..., index[..., k, ...], ...] along axis. The
// gradient scatter-adds (repeats accumulate).
Tensor gather(const Tensor& x, int64_t axis, const Tensor& index);

}  // namespace caption
