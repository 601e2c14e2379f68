// Index arithmetic of broadcasting and strided copies, shared by host and device code
// (CAPTION_HD is __host__ __device__ under nvcc, nothing elsewhere), so that the index
// maps the CUDA kernels run are unit-tested on the CPU (tests/kernels/broadcast_test.cpp).
//
// - coalesce(): drops size-1 axes and merges neighbouring axes whose strides allow it
//   for both operands, so that a same-shape op becomes rank 1, a bias broadcast
//   [N, C] + [C] rank 2, and kernels spend few 64-bit divisions per element.
// - decode2(): an output (row-major) index to the element offsets of two operands.
// - GradReduceLayout: the gradient of one operand of a broadcast binary op, as a map
//   from its elements (kept axes) and the positions summed into each (reduced axes) to
//   offsets in the output gradient and in the other operand. Summing in row-major order
//   of the reduced axes is the order the CPU kernel accumulates in.
#pragma once

#include <cstdint>

#include "kernels/cpu/elementwise.h"
#include "kernels/host_device.h"


namespace caption::kernels {

using cpu::BroadcastLayout;
using cpu::kMaxRank;

// Offsets of output index `idx` (row-major over shape[0..rank)) in two operands with
// strides s0 and s1. Axis 0 takes what is left of idx, so rank 1 costs no division.
CAPTION_HD inline void decode2(int rank, const int64_t* shape, const int64_t* s0,
                               const int64_t* s1, int64_t idx, int64_t& o0, int64_t& o1) {
  int64_t a = 0, b = 0;
  for (int d = rank - 1; d > 0; --d) {
    const int64_t c = idx % shape[d];
    idx /= shape[d];
    a += c * s0[d];
    b += c * s1[d];
  }
  if (rank > 0) {
    a += idx * s0[0];
    b += idx * s1[0];
  }
  o0 = a;
  o1 = b;
}

// The layout of a binary op between contiguous operands of shapes a and b (NumPy
// broadcasting; `out` is their broadcast shape, rank <= kMaxRank): an operand's stride
// is 0 along the axes it is broadcast along (or has size 1 on). Host only.
inline BroadcastLayout make_broadcast_layout(const int64_t* a, int a_rank, const int64_t* b,
                                             int b_rank, const int64_t* out, int out_rank) {
  BroadcastLayout l;
  l.rank = out_rank;
  int64_t sa = 1, sb = 1;
  for (int i = out_rank - 1; i >= 0; --i) {
    l.shape[i] = out[i];
    const int ia = i - (out_rank - a_rank), ib = i - (out_rank - b_rank);
    l.a_stride[i] = ia >= 0 && a[ia] != 1 ? sa : 0;
    l.b_stride[i] = ib >= 0 && b[ib] != 1 ? sb : 0;
    if (ia >= 0) sa *= a[ia];
    if (ib >= 0) sb *= b[ib];
  }
  return l;
}

// The same layout with size-1 axes dropped and mergeable neighbours merged (axis i-1
// absorbs axis i when, for both operands, stride[i-1] == stride[i] * shape[i]). The
// element order (row-major over the output) is unchanged. A layout with no elements is
// returned as is.
inline BroadcastLayout coalesce(const BroadcastLayout& l) {
  BroadcastLayout r;
  r.rank = 0;
  for (int i = 0; i < l.rank; ++i)
    if (l.shape[i] == 0) return l;
  for (int i = 0; i < l.rank; ++i) {
    if (l.shape[i] == 1) continue;
    if (r.rank > 0) {
      const int p = r.rank - 1;
      if (r.a_stride[p] == l.a_stride[i] * l.shape[i] &&
          r.b_stride[p] == l.b_stride[i] * l.shape[i]) {
        r.shape[p] *= l.shape[i];
        r.a_stride[p] = l.a_stride[i];
        r.b_stride[p] = l.b_stride[i];
        continue;
      }
    }
    r.shape[r.rank] = l.shape[i];
    r.a_stride[r.rank] = l.a_stride[i];
    r.b_stride[r.rank] = l.b_stride[i];
    ++r.rank;
  }
  return r;
}

enum class Operand { A, B };

struct GradReduceLayout {
  // Axes along which the operand varies: its elements in row-major order.
  int kept_rank = 0;
  int64_t kept_size[kMaxRank] = {};
  int64_t kept_out[kMaxRank] = {};    // stride in the output gradient
  int64_t kept_other[kMaxRank] = {};  // stride in the other operand
  // Axes along which it is broadcast: summed over.
  int red_rank = 0;
  int64_t red_size[kMaxRank] = {};
  int64_t red_out[kMaxRank] = {};
  int64_t red_other[kMaxRank] = {};
  int64_t numel = 1;      // elements of the operand (= of its gradient)
  int64_t red_count = 1;  // output positions summed into each
  bool innermost_reduced = false;  // the output's fastest axis is a reduced one
};

// The gradient map of operand `which` of a layout (coalesce() it first, or not).
inline GradReduceLayout grad_reduce_layout(const BroadcastLayout& l, Operand which) {
  GradReduceLayout g;
  int64_t out_stride[kMaxRank];
  int64_t s = 1;
  for (int i = l.rank - 1; i >= 0; --i) {
    out_stride[i] = s;
    s *= l.shape[i];
  }
  const int64_t* self = which == Operand::A ? l.a_stride : l.b_stride;
  const int64_t* other = which == Operand::A ? l.b_stride : l.a_stride;
  for (int i = 0; i < l.rank; ++i) {
    if (l.shape[i] == 1) continue;
    if (self[i] == 0) {
      g.red_size[g.red_rank] = l.shape[i];
      g.red_out[g.red_rank] = out_stride[i];
      g.red_other[g.red_rank] = other[i];
      ++g.red_rank;
      g.red_count *= l.shape[i];
      g.innermost_reduced = true;
    } else {
      g.kept_size[g.kept_rank] = l.shape[i];
      g.kept_out[g.kept_rank] = out_stride[i];
      g.kept_other[g.kept_rank] = other[i];
      ++g.kept_rank;
      g.numel *= l.shape[i];
      g.innermost_reduced = false;
    }
  }
  return g;
}

// Offsets in the output gradient and the other operand of gradient element `e`, and of
// reduced position `r` (add the two).
CAPTION_HD inline void kept_offsets(const GradReduceLayout& g, int64_t e, int64_t& out,
                                    int64_t& other) {
  decode2(g.kept_rank, g.kept_size, g.kept_out, g.kept_other, e, out, other);
}
CAPTION_HD inline void reduced_offsets(const GradReduceLayout& g, int64_t r, int64_t& out,
                                       int64_t& other) {
  decode2(g.red_rank, g.red_size, g.red_out, g.red_other, r, out, other);
}

}  // namespace caption::kernels
