// CUDA elementwise kernels: binary ops with broadcasting (forward and backward),
// activations, strided copies and the bias row fill.
//
// Layouts are coalesced on the host first (kernels/broadcast.h), so a same-shape or
// scalar operand is rank 1 and the per-element index decode costs no division; the
// general case decodes the output index with 64-bit divisions per axis.
//
// Broadcast backward is deterministic, without atomics: each gradient element is summed
// over its broadcast positions by a fixed set of threads in a fixed order. Three
// mappings, chosen from the shapes alone:
//   - tiled: one thread column per gradient element (coalesced when the fastest output
//     axis is one the operand varies along), the reduced positions split over 1 or 8
//     thread rows, combined through shared memory by row 0 in row order;
//   - warp per element: when the fastest output axis is reduced (the 32 lanes read
//     consecutive positions), for many gradient elements;
//   - block per element: few gradient elements with many positions each (e.g. a scalar
//     operand of a large tensor).
#include "kernels/cuda/elementwise.h"

#include "kernels/broadcast.h"
#include "kernels/cuda/common.cuh"

namespace caption::kernels::cuda {

namespace {

__device__ __forceinline__ float apply(BinaryOp op, float a, float b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
  }
  return 0.f;
}

__global__ void binary_forward_kernel(BinaryOp op, const float* a, const float* b, float* out,
                                      BroadcastLayout l, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    int64_t ia, ib;
    decode2(l.rank, l.shape, l.a_stride, l.b_stride, i, ia, ib);
    out[i] = apply(op, a[ia], b[ib]);
  }
}

// What one operand's gradient needs: the op, which side, and the operand pointers.
struct GradSide {
  BinaryOp op;
  Operand side;
  const float* other;  // the other operand (read for Mul and Div)
  const float* self;   // this operand (read for Div's b)
};

// The term one output position contributes to a gradient element, before the final
// sign: Sub and Div accumulate the b gradient with a minus sign, applied once at the end
// (exact: negation commutes with rounding). Same arithmetic, term by term, as the CPU.
__device__ __forceinline__ float grad_term(const GradSide& s, float g, int64_t other_off,
                                           float inv_self) {
  switch (s.op) {
    case BinaryOp::Add:
    case BinaryOp::Sub: return g;
    case BinaryOp::Mul: return g * s.other[other_off];
    case BinaryOp::Div:
      if (s.side == Operand::A) return g * (1.f / s.other[other_off]);
      return g * s.other[other_off] * inv_self * inv_self;
  }
  return 0.f;
}

__device__ __forceinline__ float grad_sign(const GradSide& s) {
  return s.side == Operand::B && (s.op == BinaryOp::Sub || s.op == BinaryOp::Div) ? -1.f : 1.f;
}

__device__ __forceinline__ float inv_self_of(const GradSide& s, int64_t e) {
  return s.side == Operand::B && s.op == BinaryOp::Div ? 1.f / s.self[e] : 0.f;
}

// blockDim = (bx, ry): x over gradient elements, y over reduced positions.
__global__ void grad_tiled_kernel(GradSide s, const float* g, float* grad, GradReduceLayout l) {
  extern __shared__ float partial[];  // [ry][bx]
  const int tx = threadIdx.x, ty = threadIdx.y, bx = blockDim.x, ry = blockDim.y;
  const float sign = grad_sign(s);
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * bx; base < l.numel;
       base += static_cast<int64_t>(gridDim.x) * bx) {
    const int64_t e = base + tx;
    float acc = 0.f;
    if (e < l.numel) {
      int64_t out0, other0;
      kept_offsets(l, e, out0, other0);
      const float inv = inv_self_of(s, e);
      for (int64_t r = ty; r < l.red_count; r += ry) {
        int64_t out1, other1;
        reduced_offsets(l, r, out1, other1);
        acc += grad_term(s, g[out0 + out1], other0 + other1, inv);
      }
    }
    if (ry == 1) {
      if (e < l.numel) grad[e] = sign * acc;
      continue;
    }
    partial[ty * bx + tx] = acc;
    __syncthreads();
    if (ty == 0 && e < l.numel) {
      float total = partial[tx];
      for (int y = 1; y < ry; ++y) total += partial[y * bx + tx];
      grad[e] = sign * total;
    }
    __syncthreads();
  }
}

// GROUP consecutive threads (a warp, or the whole 256-thread block) per gradient element.
template <int GROUP>
__global__ void grad_group_kernel(GradSide s, const float* g, float* grad, GradReduceLayout l) {
  constexpr int kPerBlock = kBlock / GROUP;
  __shared__ float warp_totals[kBlock / 32];
  const int lane = threadIdx.x % GROUP;
  const float sign = grad_sign(s);
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * kPerBlock; base < l.numel;
       base += static_cast<int64_t>(gridDim.x) * kPerBlock) {
    const int64_t e = base + threadIdx.x / GROUP;
    float acc = 0.f;
    if (e < l.numel) {
      int64_t out0, other0;
      kept_offsets(l, e, out0, other0);
      const float inv = inv_self_of(s, e);
      for (int64_t r = lane; r < l.red_count; r += GROUP) {
        int64_t out1, other1;
        reduced_offsets(l, r, out1, other1);
        acc += grad_term(s, g[out0 + out1], other0 + other1, inv);
      }
    }
    acc = warp_sum(acc);
    if constexpr (GROUP == 32) {
      if (lane == 0 && e < l.numel) grad[e] = sign * acc;
    } else {
      if ((threadIdx.x & 31) == 0) warp_totals[threadIdx.x >> 5] = acc;
      __syncthreads();
      if (threadIdx.x == 0 && e < l.numel) {
        float total = warp_totals[0];
        for (int w = 1; w < kBlock / 32; ++w) total += warp_totals[w];
        grad[e] = sign * total;
      }
      __syncthreads();
    }
  }
}

void launch_grad(const GradSide& s, const float* g, float* grad, const GradReduceLayout& l,
                 cudaStream_t stream) {
  if (l.numel == 0) return;
  if (l.red_count == 0) {  // the output is empty: nothing flows back
    CAPTION_CUDA_CHECK(cudaMemsetAsync(grad, 0, sizeof(float) * l.numel, stream));
    return;
  }
  const bool many_positions = l.red_count >= 4096 && l.numel < 1024;
  if ((l.innermost_reduced && l.red_count >= 32) || many_positions) {
    if (l.numel >= 1024 && !many_positions) {
      grad_group_kernel<32><<<grid_for(l.numel, kBlock / 32), kBlock, 0, stream>>>(s, g, grad, l);
      CAPTION_CUDA_LAUNCH_CHECK("grad_group_kernel<32> (broadcast backward)");
    } else {
      grad_group_kernel<kBlock><<<grid_for(l.numel, 1), kBlock, 0, stream>>>(s, g, grad, l);
      CAPTION_CUDA_LAUNCH_CHECK("grad_group_kernel<256> (broadcast backward)");
    }
    return;
  }
  const int ry = l.red_count >= 64 ? 8 : 1;
  const dim3 block(kBlock / ry, ry);
  const size_t smem = ry > 1 ? sizeof(float) * kBlock : 0;
  grad_tiled_kernel<<<grid_for(l.numel, kBlock / ry), block, smem, stream>>>(s, g, grad, l);
  CAPTION_CUDA_LAUNCH_CHECK("grad_tiled_kernel (broadcast backward)");
}

__global__ void unary_forward_kernel(UnaryOp op, const float* x, float* y, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const float v = x[i];
    switch (op) {
      case UnaryOp::Relu: y[i] = v > 0.f ? v : 0.f; break;
      case UnaryOp::Tanh: y[i] = tanhf(v); break;
      case UnaryOp::Sigmoid: y[i] = 1.f / (1.f + expf(-v)); break;
    }
  }
}

__global__ void unary_backward_kernel(UnaryOp op, const float* y, const float* gy, float* gx,
                                      int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const float v = y[i];
    switch (op) {
      case UnaryOp::Relu: gx[i] = v > 0.f ? gy[i] : 0.f; break;
      case UnaryOp::Tanh: gx[i] = gy[i] * (1.f - v * v); break;
      case UnaryOp::Sigmoid: gx[i] = gy[i] * v * (1.f - v); break;
    }
  }
}

// The layout's a side is the source, b the destination.
template <typename E>
__global__ void strided_copy_kernel(E* dst, const E* src, BroadcastLayout l, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    int64_t is, id;
    decode2(l.rank, l.shape, l.a_stride, l.b_stride, i, is, id);
    dst[id] = src[is];
  }
}

__global__ void fill_rows_kernel(const float* row, float* y, int64_t cols, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) y[i] = row[i % cols];
}

template <typename E>
__global__ void fill_value_kernel(E* y, int64_t n, E value) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) y[i] = value;
}

}  // namespace

void fill_value(void* y, int64_t n, int elem_size, uint64_t bits, cudaStream_t stream) {
  if (n == 0) return;
  if (elem_size == 8) {
    fill_value_kernel<uint64_t><<<grid_for(n), kBlock, 0, stream>>>(static_cast<uint64_t*>(y), n, bits);
  } else {
    fill_value_kernel<uint32_t>
        <<<grid_for(n), kBlock, 0, stream>>>(static_cast<uint32_t*>(y), n, static_cast<uint32_t>(bits));
  }
  CAPTION_CUDA_LAUNCH_CHECK("fill_value_kernel");
}

void binary_forward(BinaryOp op, const float* a, const float* b, float* out,
                    const BroadcastLayout& layout, cudaStream_t stream) {
  const BroadcastLayout l = coalesce(layout);
  const int64_t n = layout.numel();
  if (n == 0) return;
  binary_forward_kernel<<<grid_for(n), kBlock, 0, stream>>>(op, a, b, out, l, n);
  CAPTION_CUDA_LAUNCH_CHECK("binary_forward_kernel");
}

void binary_backward(BinaryOp op, const float* a, const float* b, const float* grad_out,
                     float* grad_a, int64_t a_numel, float* grad_b, int64_t b_numel,
                     const BroadcastLayout& layout, cudaStream_t stream) {
  const BroadcastLayout l = coalesce(layout);
  if (grad_a) {
    const GradReduceLayout gl = grad_reduce_layout(l, Operand::A);
    CAPTION_ASSERT(gl.numel == a_numel, "broadcast backward: layout gives ", gl.numel,
                   " elements for a of ", a_numel);
    launch_grad(GradSide{op, Operand::A, b, a}, grad_out, grad_a, gl, stream);
  }
  if (grad_b) {
    const GradReduceLayout gl = grad_reduce_layout(l, Operand::B);
    CAPTION_ASSERT(gl.numel == b_numel, "broadcast backward: layout gives ", gl.numel,
                   " elements for b of ", b_numel);
    launch_grad(GradSide{op, Operand::B, a, b}, grad_out, grad_b, gl, stream);
  }
}

void unary_forward(UnaryOp op, const float* x, float* y, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  unary_forward_kernel<<<grid_for(n), kBlock, 0, stream>>>(op, x, y, n);
  CAPTION_CUDA_LAUNCH_CHECK("unary_forward_kernel");
}

void unary_backward(UnaryOp op, const float* y, const float* grad_y, float* grad_x, int64_t n,
                    cudaStream_t stream) {
  if (n == 0) return;
  unary_backward_kernel<<<grid_for(n), kBlock, 0, stream>>>(op, y, grad_y, grad_x, n);
  CAPTION_CUDA_LAUNCH_CHECK("unary_backward_kernel");
}

void strided_copy(void* dst, const int64_t* dst_strides, const void* src,
                  const int64_t* src_strides, const int64_t* shape, int rank, int elem_size,
                  cudaStream_t stream) {
  CAPTION_ASSERT(rank >= 0 && rank <= kMaxRank, "strided_copy: rank ", rank);
  CAPTION_ASSERT(elem_size == 2 || elem_size == 4 || elem_size == 8, "strided_copy: element size ",
                 elem_size);
  BroadcastLayout raw;
  raw.rank = rank;
  for (int i = 0; i < rank; ++i) {
    raw.shape[i] = shape[i];
    raw.a_stride[i] = src_strides[i];
    raw.b_stride[i] = dst_strides[i];
  }
  const int64_t n = raw.numel();
  if (n == 0) return;
  const BroadcastLayout l = coalesce(raw);
  if (elem_size == 2) {  // bfloat16
    strided_copy_kernel<uint16_t><<<grid_for(n), kBlock, 0, stream>>>(
        static_cast<uint16_t*>(dst), static_cast<const uint16_t*>(src), l, n);
  } else if (elem_size == 4) {
    strided_copy_kernel<uint32_t><<<grid_for(n), kBlock, 0, stream>>>(
        static_cast<uint32_t*>(dst), static_cast<const uint32_t*>(src), l, n);
  } else {
    strided_copy_kernel<uint64_t><<<grid_for(n), kBlock, 0, stream>>>(
        static_cast<uint64_t*>(dst), static_cast<const uint64_t*>(src), l, n);
  }
  CAPTION_CUDA_LAUNCH_CHECK("strided_copy_kernel");
}

void fill_rows(const float* row, float* y, int64_t rows, int64_t cols, cudaStream_t stream) {
  const int64_t n = rows * cols;
  if (n == 0) return;
  fill_rows_kernel<<<grid_for(n), kBlock, 0, stream>>>(row, y, cols, n);
  CAPTION_CUDA_LAUNCH_CHECK("fill_rows_kernel");
}

}  // namespace caption::kernels::cuda
