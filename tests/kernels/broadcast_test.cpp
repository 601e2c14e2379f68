// The index maps of kernels/broadcast.h, which the CUDA elementwise kernels run on the
// device, checked here on the CPU against brute force and against the CPU kernels:
// forward offsets of every output element, the gradient map (every output position
// summed into exactly one gradient element, in row-major order), gradients computed
// through the map equal to kernels::cpu::binary_backward (bit for bit for sums), and strided
// copies through coalesced layouts.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/broadcast.h"
#include "kernels/cpu/elementwise.h"

namespace caption::kernels {
namespace {

using Dims = std::vector<int64_t>;

Dims broadcast(const Dims& a, const Dims& b) {
  const size_t r = std::max(a.size(), b.size());
  Dims out(r);
  for (size_t i = 0; i < r; ++i) {
    const int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    const int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    out[i] = da == 1 ? db : da;
  }
  return out;
}

BroadcastLayout layout(const Dims& a, const Dims& b, const Dims& out) {
  return make_broadcast_layout(a.data(), static_cast<int>(a.size()), b.data(),
                               static_cast<int>(b.size()), out.data(),
                               static_cast<int>(out.size()));
}

int64_t numel(const Dims& d) {
  int64_t n = 1;
  for (int64_t v : d) n *= v;
  return n;
}

// The element of operand `x` (contiguous, right-aligned) that output index o reads.
int64_t brute_offset(const Dims& x, const Dims& out, int64_t o) {
  int64_t off = 0, stride = 1;
  for (int i = static_cast<int>(out.size()) - 1; i >= 0; --i) {
    const int64_t c = o % out[i];
    o /= out[i];
    const int ix = i - static_cast<int>(out.size() - x.size());
    if (ix < 0) continue;
    if (x[ix] != 1) off += c * stride;
    stride *= x[ix];
  }
  return off;
}

// Random broadcast-compatible pairs of rank <= 5 with sizes 1..4.
std::vector<std::pair<Dims, Dims>> random_pairs(int count) {
  std::mt19937 gen(1234);
  std::uniform_int_distribution<int> rank(0, 5), size(1, 4), coin(0, 2);
  std::vector<std::pair<Dims, Dims>> pairs;
  for (int k = 0; k < count; ++k) {
    const int r = rank(gen);
    Dims out(r);
    for (auto& v : out) v = size(gen);
    Dims a = out, b = out;
    for (int i = 0; i < r; ++i) {
      if (coin(gen) == 0) a[i] = 1;
      else if (coin(gen) == 0) b[i] = 1;
    }
    // drop some leading axes of one operand
    const int drop = std::uniform_int_distribution<int>(0, r)(gen);
    if (coin(gen) == 0) a.erase(a.begin(), a.begin() + drop);
    else b.erase(b.begin(), b.begin() + drop);
    pairs.emplace_back(a, b);
  }
  // Fixed awkward ones: same shape, scalar, bias row, column, both broadcast, empty.
  pairs.push_back({{3, 7}, {3, 7}});
  pairs.push_back({{5}, {}});
  pairs.push_back({{}, {2, 3}});
  pairs.push_back({{4, 6}, {6}});
  pairs.push_back({{6, 5}, {6, 1}});
  pairs.push_back({{4, 1, 3}, {1, 5, 1}});
  pairs.push_back({{2, 3, 1, 5}, {3, 4, 1}});
  pairs.push_back({{3, 1}, {1, 0}});
  return pairs;
}

TEST(Broadcast, LayoutStrides) {
  const BroadcastLayout l = layout({5, 1, 13}, {13}, {5, 1, 13});
  EXPECT_EQ(l.rank, 3);
  EXPECT_EQ(l.a_stride[0], 13);
  EXPECT_EQ(l.a_stride[1], 0);
  EXPECT_EQ(l.a_stride[2], 1);
  EXPECT_EQ(l.b_stride[0], 0);
  EXPECT_EQ(l.b_stride[1], 0);
  EXPECT_EQ(l.b_stride[2], 1);
}

TEST(Broadcast, CoalesceMergesWhatItCan) {
  EXPECT_EQ(coalesce(layout({3, 7}, {3, 7}, {3, 7})).rank, 1);   // same shape: flat
  EXPECT_EQ(coalesce(layout({2, 3, 4}, {}, {2, 3, 4})).rank, 1);  // scalar operand
  EXPECT_EQ(coalesce(layout({1, 1}, {1}, {1, 1})).rank, 0);      // one element
  const BroadcastLayout bias = coalesce(layout({8, 4, 6}, {6}, {8, 4, 6}));
  ASSERT_EQ(bias.rank, 2);  // [32, 6]: rows of a, b repeated
  EXPECT_EQ(bias.shape[0], 32);
  EXPECT_EQ(bias.b_stride[0], 0);
  const BroadcastLayout empty = coalesce(layout({3, 1}, {1, 0}, {3, 0}));
  EXPECT_EQ(empty.numel(), 0);
}

TEST(Broadcast, ForwardOffsetsMatchBruteForce) {
  for (const auto& [a, b] : random_pairs(300)) {
    const Dims out = broadcast(a, b);
    const BroadcastLayout raw = layout(a, b, out);
    for (const BroadcastLayout& l : {raw, coalesce(raw)}) {
      for (int64_t o = 0; o < numel(out); ++o) {
        int64_t ia, ib;
        decode2(l.rank, l.shape, l.a_stride, l.b_stride, o, ia, ib);
        ASSERT_EQ(ia, brute_offset(a, out, o)) << "a at output " << o;
        ASSERT_EQ(ib, brute_offset(b, out, o)) << "b at output " << o;
      }
    }
  }
}

TEST(Broadcast, GradientMapCoversEachOutputOnceInRowMajorOrder) {
  for (const auto& [a, b] : random_pairs(300)) {
    const Dims out = broadcast(a, b);
    const BroadcastLayout l = coalesce(layout(a, b, out));
    for (Operand side : {Operand::A, Operand::B}) {
      const Dims& self = side == Operand::A ? a : b;
      const Dims& other = side == Operand::A ? b : a;
      const GradReduceLayout g = grad_reduce_layout(l, side);
      ASSERT_EQ(g.numel, numel(self));
      if (numel(out) == 0) continue;
      ASSERT_EQ(g.numel * g.red_count, numel(out));
      std::vector<int> seen(numel(out), 0);
      for (int64_t e = 0; e < g.numel; ++e) {
        int64_t o0, x0;
        kept_offsets(g, e, o0, x0);
        int64_t last = -1;
        for (int64_t r = 0; r < g.red_count; ++r) {
          int64_t o1, x1;
          reduced_offsets(g, r, o1, x1);
          const int64_t o = o0 + o1;
          ASSERT_GE(o, 0);
          ASSERT_LT(o, numel(out));
          ASSERT_GT(o, last) << "positions of element " << e << " not in row-major order";
          last = o;
          ++seen[o];
          ASSERT_EQ(brute_offset(self, out, o), e);
          ASSERT_EQ(brute_offset(other, out, o), x0 + x1);
        }
      }
      for (int v : seen) ASSERT_EQ(v, 1);
    }
  }
}

// The device arithmetic of kernels/cuda/elementwise.cu, run on the host over the map.
std::vector<float> grad_through_map(cpu::BinaryOp op, Operand side, const std::vector<float>& a,
                                    const std::vector<float>& b, const std::vector<float>& g,
                                    const BroadcastLayout& l) {
  const GradReduceLayout m = grad_reduce_layout(coalesce(l), side);
  const std::vector<float>& other = side == Operand::A ? b : a;
  const std::vector<float>& self = side == Operand::A ? a : b;
  const bool negate = side == Operand::B && (op == cpu::BinaryOp::Sub || op == cpu::BinaryOp::Div);
  std::vector<float> grad(m.numel);
  for (int64_t e = 0; e < m.numel; ++e) {
    int64_t o0, x0;
    kept_offsets(m, e, o0, x0);
    const float inv = side == Operand::B && op == cpu::BinaryOp::Div ? 1.f / self[e] : 0.f;
    float acc = 0.f;
    for (int64_t r = 0; r < m.red_count; ++r) {
      int64_t o1, x1;
      reduced_offsets(m, r, o1, x1);
      const float go = g[o0 + o1];
      const float ov = other[x0 + x1];
      switch (op) {
        case cpu::BinaryOp::Add:
        case cpu::BinaryOp::Sub: acc += go; break;
        case cpu::BinaryOp::Mul: acc += go * ov; break;
        case cpu::BinaryOp::Div:
          acc += side == Operand::A ? go * (1.f / ov) : go * ov * inv * inv;
          break;
      }
    }
    grad[e] = negate ? -acc : acc;
  }
  return grad;
}

TEST(Broadcast, GradientsThroughTheMapEqualTheCpuKernel) {
  std::mt19937 gen(99);
  std::uniform_real_distribution<float> u(0.5f, 1.5f);
  for (const auto& [a_dims, b_dims] : random_pairs(150)) {
    const Dims out = broadcast(a_dims, b_dims);
    const BroadcastLayout l = layout(a_dims, b_dims, out);
    std::vector<float> a(numel(a_dims)), b(numel(b_dims)), g(numel(out));
    for (auto& v : a) v = u(gen);
    for (auto& v : b) v = u(gen);
    for (auto& v : g) v = u(gen) - 1.f;
    for (cpu::BinaryOp op : {cpu::BinaryOp::Add, cpu::BinaryOp::Sub, cpu::BinaryOp::Mul,
                             cpu::BinaryOp::Div}) {
      std::vector<float> ga(a.size()), gb(b.size());
      cpu::binary_backward<float>(op, a.data(), b.data(), g.data(), ga.data(),
                                  static_cast<int64_t>(a.size()), gb.data(),
                                  static_cast<int64_t>(b.size()), l);
      const std::vector<float> ma = grad_through_map(op, Operand::A, a, b, g, l);
      const std::vector<float> mb = grad_through_map(op, Operand::B, a, b, g, l);
      if (op == cpu::BinaryOp::Add || op == cpu::BinaryOp::Sub) {
        // Sums only: the same terms in the same order give the same bits.
        EXPECT_EQ(ma, ga);
        EXPECT_EQ(mb, gb);
      } else {
        // Products: the library is built with -march=native and may fuse a multiply-add
        // (as nvcc does on the device) where this test does not, so allow a few ulps.
        ASSERT_EQ(ma.size(), ga.size());
        ASSERT_EQ(mb.size(), gb.size());
        for (size_t i = 0; i < ga.size(); ++i) EXPECT_NEAR(ma[i], ga[i], 1e-6f * (1 + std::abs(ga[i])));
        for (size_t i = 0; i < gb.size(); ++i) EXPECT_NEAR(mb[i], gb[i], 1e-6f * (1 + std::abs(gb[i])));
      }
    }
  }
}

TEST(Broadcast, StridedCopyThroughCoalescedLayout) {
  // dst[2, 0, 1]-permuted copy of a [3, 5, 4] tensor, and a narrowed transposed [3, 6] view.
  struct Case {
    Dims shape, src_strides, dst_strides;
    int64_t src_offset;
  };
  const std::vector<Case> cases{
      {{4, 3, 5}, {1, 20, 4}, {15, 5, 1}, 0},
      {{3, 6}, {1, 7}, {6, 1}, 2},
      {{2, 3, 4}, {12, 4, 1}, {12, 4, 1}, 0},  // contiguous: coalesces to rank 1
      {{}, {}, {}, 5},
  };
  for (const Case& c : cases) {
    std::vector<float> src(64);
    for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<float>(i);
    const int rank = static_cast<int>(c.shape.size());
    std::vector<float> want(numel(c.shape) + 1, -1.f), got(numel(c.shape) + 1, -1.f);
    cpu::strided_copy(want.data(), c.dst_strides.data(), src.data() + c.src_offset,
                      c.src_strides.data(), c.shape.data(), rank, 4);
    BroadcastLayout raw;
    raw.rank = rank;
    for (int i = 0; i < rank; ++i) {
      raw.shape[i] = c.shape[i];
      raw.a_stride[i] = c.src_strides[i];
      raw.b_stride[i] = c.dst_strides[i];
    }
    const BroadcastLayout l = coalesce(raw);
    for (int64_t i = 0; i < numel(c.shape); ++i) {
      int64_t is, id;
      decode2(l.rank, l.shape, l.a_stride, l.b_stride, i, is, id);
      got[id] = src[c.src_offset + is];
    }
    EXPECT_EQ(got, want);
  }
  BroadcastLayout contiguous;
  contiguous.rank = 3;
  const int64_t shape[] = {2, 3, 4}, strides[] = {12, 4, 1};
  for (int i = 0; i < 3; ++i) {
    contiguous.shape[i] = shape[i];
    contiguous.a_stride[i] = contiguous.b_stride[i] = strides[i];
  }
  EXPECT_EQ(coalesce(contiguous).rank, 1);
}

}  // namespace
}  // namespace caption::kernels
