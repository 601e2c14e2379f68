// Elementwise CPU kernels. Same-shape and scalar operands take flat loops that the
// compiler vectorises; general broadcasting walks the output with an odometer index.
#include "kernels/cpu/elementwise.h"

#include <cmath>
#include <cstring>

#include "kernels/cpu/fast_math.h"

namespace caption::kernels::cpu {

int64_t BroadcastLayout::numel() const {
  int64_t n = 1;
  for (int i = 0; i < rank; ++i) n *= shape[i];
  return n;
}

namespace {

template <typename T>
inline T apply(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
  }
  return T(0);
}

bool is_flat(const int64_t* stride, const BroadcastLayout& l) {
  int64_t expected = 1;
  for (int i = l.rank - 1; i >= 0; --i) {
    if (l.shape[i] != 1 && stride[i] != expected) return false;
    expected *= l.shape[i];
  }
  return true;
}
bool is_scalar(const int64_t* stride, const BroadcastLayout& l) {
  for (int i = 0; i < l.rank; ++i)
    if (l.shape[i] != 1 && stride[i] != 0) return false;
  return true;
}

// Calls f(out_index, a_index, b_index) for every output element in row-major order.
template <typename F>
void for_each_broadcast(const BroadcastLayout& l, F&& f) {
  const int64_t n = l.numel();
  if (n == 0) return;
  int64_t idx[kMaxRank] = {};
  int64_t ia = 0, ib = 0;
  const int last = l.rank - 1;
  if (l.rank == 0) {
    f(0, 0, 0);
    return;
  }
  const int64_t inner = l.shape[last], sa = l.a_stride[last], sb = l.b_stride[last];
  for (int64_t o = 0; o < n; o += inner) {
    for (int64_t j = 0; j < inner; ++j) f(o + j, ia + j * sa, ib + j * sb);
    // advance the odometer over the outer axes
    for (int d = last - 1; d >= 0; --d) {
      ++idx[d];
      ia += l.a_stride[d];
      ib += l.b_stride[d];
      if (idx[d] < l.shape[d]) break;
      ia -= l.a_stride[d] * l.shape[d];
      ib -= l.b_stride[d] * l.shape[d];
      idx[d] = 0;
    }
  }
}

}  // namespace

template <typename T>
void binary_forward(BinaryOp op, const T* a, const T* b, T* out, const BroadcastLayout& l) {
  const int64_t n = l.numel();
  const bool a_flat = is_flat(l.a_stride, l), b_flat = is_flat(l.b_stride, l);
  if (a_flat && b_flat) {
    switch (op) {
      case BinaryOp::Add: for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i]; return;
      case BinaryOp::Sub: for (int64_t i = 0; i < n; ++i) out[i] = a[i] - b[i]; return;
      case BinaryOp::Mul: for (int64_t i = 0; i < n; ++i) out[i] = a[i] * b[i]; return;
      case BinaryOp::Div: for (int64_t i = 0; i < n; ++i) out[i] = a[i] / b[i]; return;
    }
  }
  if (a_flat && is_scalar(l.b_stride, l)) {
    const T s = b[0];
    for (int64_t i = 0; i < n; ++i) out[i] = apply(op, a[i], s);
    return;
  }
  for_each_broadcast(l, [&](int64_t o, int64_t ia, int64_t ib) { out[o] = apply(op, a[ia], b[ib]); });
}

template <typename T>
void binary_backward(BinaryOp op, const T* a, const T* b, const T* g, T* ga, int64_t a_numel,
                     T* gb, int64_t b_numel, const BroadcastLayout& l) {
  if (ga) std::memset(ga, 0, sizeof(T) * a_numel);
  if (gb) std::memset(gb, 0, sizeof(T) * b_numel);
  for_each_broadcast(l, [&](int64_t o, int64_t ia, int64_t ib) {
    const T go = g[o];
    switch (op) {
      case BinaryOp::Add:
        if (ga) ga[ia] += go;
        if (gb) gb[ib] += go;
        break;
      case BinaryOp::Sub:
        if (ga) ga[ia] += go;
        if (gb) gb[ib] -= go;
        break;
      case BinaryOp::Mul:
        if (ga) ga[ia] += go * b[ib];
        if (gb) gb[ib] += go * a[ia];
        break;
      case BinaryOp::Div: {
        const T inv = T(1) / b[ib];
        if (ga) ga[ia] += go * inv;
        if (gb) gb[ib] -= go * a[ia] * inv * inv;
        break;
      }
    }
  });
}

template <typename T>
void unary_forward(UnaryOp op, const T* x, T* y, int64_t n) {
  switch (op) {
    case UnaryOp::Relu:
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] > T(0) ? x[i] : T(0);
      break;
    case UnaryOp::Tanh:
      for (int64_t i = 0; i < n; ++i) y[i] = vtanh(x[i]);
      break;
    case UnaryOp::Sigmoid:
      for (int64_t i = 0; i < n; ++i) y[i] = T(1) / (T(1) + vexp(-x[i]));
      break;
  }
}

template <typename T>
void unary_backward(UnaryOp op, const T* y, const T* gy, T* gx, int64_t n) {
  switch (op) {
    case UnaryOp::Relu:
      for (int64_t i = 0; i < n; ++i) gx[i] = y[i] > T(0) ? gy[i] : T(0);
      break;
    case UnaryOp::Tanh:
      for (int64_t i = 0; i < n; ++i) gx[i] = gy[i] * (T(1) - y[i] * y[i]);
      break;
    case UnaryOp::Sigmoid:
      for (int64_t i = 0; i < n; ++i) gx[i] = gy[i] * y[i] * (T(1) - y[i]);
      break;
  }
}

template <typename T>
void add_inplace(T* dst, const T* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}
template <typename T>
void scale_inplace(T* x, T s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

namespace {
template <typename E>
void strided_copy_typed(E* dst, const int64_t* ds, const E* src, const int64_t* ss,
                        const int64_t* shape, int rank) {
  if (rank == 0) {
    dst[0] = src[0];
    return;
  }
  int64_t n = 1;
  for (int i = 0; i < rank; ++i) n *= shape[i];
  if (n == 0) return;
  int64_t idx[kMaxRank] = {};
  int64_t di = 0, si = 0;
  const int last = rank - 1;
  const int64_t inner = shape[last], dsl = ds[last], ssl = ss[last];
  for (int64_t o = 0; o < n; o += inner) {
    if (dsl == 1 && ssl == 1) {
      std::memcpy(dst + di, src + si, sizeof(E) * inner);
    } else {
      for (int64_t j = 0; j < inner; ++j) dst[di + j * dsl] = src[si + j * ssl];
    }
    for (int d = last - 1; d >= 0; --d) {
      ++idx[d];
      di += ds[d];
      si += ss[d];
      if (idx[d] < shape[d]) break;
      di -= ds[d] * shape[d];
      si -= ss[d] * shape[d];
      idx[d] = 0;
    }
  }
}
}  // namespace

void strided_copy(void* dst, const int64_t* dst_strides, const void* src,
                  const int64_t* src_strides, const int64_t* shape, int rank, int elem_size) {
  if (elem_size == 2) {  // bfloat16
    strided_copy_typed(static_cast<uint16_t*>(dst), dst_strides,
                       static_cast<const uint16_t*>(src), src_strides, shape, rank);
  } else if (elem_size == 4) {
    strided_copy_typed(static_cast<uint32_t*>(dst), dst_strides,
                       static_cast<const uint32_t*>(src), src_strides, shape, rank);
  } else {
    strided_copy_typed(static_cast<uint64_t*>(dst), dst_strides,
                       static_cast<const uint64_t*>(src), src_strides, shape, rank);
  }
}

#define CAPTION_INSTANTIATE(T)                                                              \
  template void binary_forward<T>(BinaryOp, const T*, const T*, T*, const BroadcastLayout&); \
  template void binary_backward<T>(BinaryOp, const T*, const T*, const T*, T*, int64_t, T*,  \
                                   int64_t, const BroadcastLayout&);                        \
  template void unary_forward<T>(UnaryOp, const T*, T*, int64_t);                           \
  template void unary_backward<T>(UnaryOp, const T*, const T*, T*, int64_t);                \
  template void add_inplace<T>(T*, const T*, int64_t);                                      \
  template void scale_inplace<T>(T*, T, int64_t);
CAPTION_INSTANTIATE(float)
CAPTION_INSTANTIATE(double)
#undef CAPTION_INSTANTIATE

}  // namespace caption::kernels::cpu
