// CUDA adapters and table registration of matmul and linear (same MatmulParams and
// LinearParams as engine/ops/linear.cpp), products by cuBLAS (kernels/cuda/blas.h).
//
// Precision of cuBLAS products: engine/cuda/precision.h's one switch (full float32
// unless CAPTION_TF32=1), applied by cublas_handle() before every call.
//
// Batches: a batched product runs as one strided-batched gemm, a shared (2-D) operand
// with stride 0. When the shared operand is b and a is not transposed, the batch is
// folded into the rows instead (one gemm over [batch * M, K]), for the forward, for
// grad_a, and for grad_b = a_flat^T grad_flat, which sums over the batch inside the
// product. A shared operand whose gradient cannot be folded (a shared, or a transposed)
// gets its per-batch gradients into a temporary [batch, ...] buffer, summed over the
// batch by the deterministic reduction kernel. Linear's bias is pre-broadcast into y
// and accumulated with beta = 1 (as on the CPU); its gradient is the column sums of
// grad_y by the reduction kernel. No atomics anywhere: results are run-to-run identical.
#include <cstdlib>
#include <cstring>

#include "engine/cuda/check.h"
#include "engine/cuda/adapter.h"
#include "engine/cuda/blas_handle.h"
#include "engine/cuda/context.h"
#include "engine/cuda/precision.h"
#include "engine/op_table.h"
#include "engine/ops/linear.h"
#include "kernels/cuda/blas.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/reduce.h"

namespace caption {

namespace {

using cuda::require_f32;

namespace kcu = kernels::cuda;

Trans flip(Trans t) { return t == Trans::Yes ? Trans::No : Trans::Yes; }

// dst[rows * cols] = sum over the batch of tmp[batch, rows * cols].
void sum_batches(const Tensor& tmp, float* dst, int64_t batch, int64_t n, Device d) {
  kcu::reduce_sum(tmp.data<float>(), dst, 1, batch, n, 1.f, cuda::stream(d));
}

void matmul_cuda_forward(const OpCall& c) {
  const auto& p = c.get<MatmulParams>();
  require_f32(c.in[0], "matmul");
  require_f32(c.in[1], "matmul");
  const Device dev = c.in[0].device();
  cuda::Bf16ProductScope bf16_scope(p.bf16, dev);
  cublasHandle_t h = cuda::cublas_handle(dev);
  const float* A = c.in[0].data<float>();
  const float* B = c.in[1].data<float>();
  float* C = c.out[0].data<float>();
  const int64_t lda = p.ta == Trans::Yes ? p.M : p.K, ldb = p.tb == Trans::Yes ? p.K : p.N;
  if (p.batch == 1 || (!p.a_batched && !p.b_batched)) {
    kcu::gemm(h, p.ta, p.tb, p.M, p.N, p.K, 1.f, A, lda, B, ldb, 0.f, C, p.N);
  } else if (!p.b_batched && p.ta == Trans::No) {  // fold the batch into the rows
    kcu::gemm(h, Trans::No, p.tb, p.batch * p.M, p.N, p.K, 1.f, A, p.K, B, ldb, 0.f, C, p.N);
  } else {
    kcu::gemm_strided_batched(h, p.ta, p.tb, p.M, p.N, p.K, 1.f, A, lda,
                              p.a_batched ? p.M * p.K : 0, B, ldb, p.b_batched ? p.K * p.N : 0,
                              0.f, C, p.N, p.M * p.N, p.batch);
  }
}

// Backward: in = {a, b, grad_c}, out = {grad_a, grad_b}.
void matmul_cuda_backward(const OpCall& c) {
  const auto& p = c.get<MatmulParams>();
  require_f32(c.in[2], "matmul backward");
  const Device dev = c.in[2].device();
  cuda::Bf16ProductScope bf16_scope(p.bf16, dev);
  cublasHandle_t h = cuda::cublas_handle(dev);
  const float* A = c.in[0].data<float>();
  const float* B = c.in[1].data<float>();
  const float* G = c.in[2].data<float>();
  float* dA = c.out[0].defined() ? c.out[0].data<float>() : nullptr;
  float* dB = c.out.size() > 1 && c.out[1].defined() ? c.out[1].data<float>() : nullptr;
  const int64_t lda = p.ta == Trans::Yes ? p.M : p.K, ldb = p.tb == Trans::Yes ? p.K : p.N;
  const int64_t sA = p.a_batched ? p.M * p.K : 0, sB = p.b_batched ? p.K * p.N : 0;
  const int64_t sG = p.M * p.N;
  const bool single = p.batch == 1 || (!p.a_batched && !p.b_batched);
  cudaStream_t stream = cuda::stream(dev);

  if (dA) {
    if (p.batch == 0) {  // a shared a gets zero; a batched one is empty
      if (c.out[0].numel() > 0)
        CAPTION_CUDA_CHECK(cudaMemsetAsync(dA, 0, c.out[0].nbytes(), stream));
    } else if (p.ta == Trans::No && (single || (p.a_batched && !p.b_batched))) {
      // dA[M, K] = G[M, N] op(B)^T, the batch folded into the rows when B is shared.
      const int64_t rows = single ? p.M : p.batch * p.M;
      kcu::gemm(h, Trans::No, flip(p.tb), rows, p.K, p.N, 1.f, G, p.N, B, ldb, 0.f, dA, p.K);
    } else if (single || p.a_batched) {
      if (p.ta == Trans::No)  // dA_i[M, K] = G_i op(B_i)^T
        kcu::gemm_strided_batched(h, Trans::No, flip(p.tb), p.M, p.K, p.N, 1.f, G, p.N, sG, B,
                                  ldb, sB, 0.f, dA, p.K, p.M * p.K, p.batch);
      else  // dA_i[K, M] = op(B_i) G_i^T
        kcu::gemm_strided_batched(h, p.tb, Trans::Yes, p.K, p.M, p.N, 1.f, B, ldb, sB, G, p.N,
                                  sG, 0.f, dA, p.M, p.K * p.M, p.batch);
    } else {  // shared a, batched b: per-batch gradients, then summed over the batch
      Tensor tmp = Tensor::empty({p.batch, p.M * p.K}, DType::F32, dev);
      float* T = tmp.data<float>();
      if (p.ta == Trans::No)
        kcu::gemm_strided_batched(h, Trans::No, flip(p.tb), p.M, p.K, p.N, 1.f, G, p.N, sG, B,
                                  ldb, sB, 0.f, T, p.K, p.M * p.K, p.batch);
      else
        kcu::gemm_strided_batched(h, p.tb, Trans::Yes, p.K, p.M, p.N, 1.f, B, ldb, sB, G, p.N,
                                  sG, 0.f, T, p.M, p.K * p.M, p.batch);
      sum_batches(tmp, dA, p.batch, p.M * p.K, dev);
    }
  }

  if (dB) {
    if (p.batch == 0) {
      if (c.out[1].numel() > 0)
        CAPTION_CUDA_CHECK(cudaMemsetAsync(dB, 0, c.out[1].nbytes(), stream));
    } else if (single || p.b_batched) {
      if (p.tb == Trans::No)  // dB_i[K, N] = op(A_i)^T G_i
        kcu::gemm_strided_batched(h, flip(p.ta), Trans::No, p.K, p.N, p.M, 1.f, A, lda, sA, G,
                                  p.N, sG, 0.f, dB, p.N, p.K * p.N, p.batch);
      else  // dB_i[N, K] = G_i^T op(A_i)
        kcu::gemm_strided_batched(h, Trans::Yes, p.ta, p.N, p.K, p.M, 1.f, G, p.N, sG, A, lda,
                                  sA, 0.f, dB, p.K, p.N * p.K, p.batch);
    } else if (p.ta == Trans::No) {
      // Shared b, batched a: the batch folds into the contraction (a_flat [batch*M, K]).
      const int64_t rows = p.batch * p.M;
      if (p.tb == Trans::No)  // dB[K, N] = A_flat^T G_flat
        kcu::gemm(h, Trans::Yes, Trans::No, p.K, p.N, rows, 1.f, A, p.K, G, p.N, 0.f, dB, p.N);
      else  // dB[N, K] = G_flat^T A_flat
        kcu::gemm(h, Trans::Yes, Trans::No, p.N, p.K, rows, 1.f, G, p.N, A, p.K, 0.f, dB, p.K);
    } else {  // shared b, batched transposed a
      Tensor tmp = Tensor::empty({p.batch, p.K * p.N}, DType::F32, dev);
      float* T = tmp.data<float>();
      if (p.tb == Trans::No)
        kcu::gemm_strided_batched(h, flip(p.ta), Trans::No, p.K, p.N, p.M, 1.f, A, lda, sA, G,
                                  p.N, sG, 0.f, T, p.N, p.K * p.N, p.batch);
      else
        kcu::gemm_strided_batched(h, Trans::Yes, p.ta, p.N, p.K, p.M, 1.f, G, p.N, sG, A, lda,
                                  sA, 0.f, T, p.K, p.N * p.K, p.batch);
      sum_batches(tmp, dB, p.batch, p.K * p.N, dev);
    }
  }
}

// Forward: in = {x [rows, in], weight [out, in], bias [out] or undefined}, out = {y}.
void linear_cuda_forward(const OpCall& c) {
  const auto& p = c.get<LinearParams>();
  require_f32(c.in[0], "linear");
  require_f32(c.in[1], "linear");
  const Device dev = c.in[0].device();
  cuda::Bf16ProductScope bf16_scope(p.bf16, dev);
  cublasHandle_t h = cuda::cublas_handle(dev);
  float* y = c.out[0].data<float>();
  const bool bias = c.in.size() > 2 && c.in[2].defined();
  if (bias) {
    require_f32(c.in[2], "linear");
    kcu::fill_rows(c.in[2].data<float>(), y, p.rows, p.out, cuda::stream(dev));
  }
  kcu::gemm(h, Trans::No, Trans::Yes, p.rows, p.out, p.in, 1.f, c.in[0].data<float>(), p.in,
            c.in[1].data<float>(), p.in, bias ? 1.f : 0.f, y, p.out);
}

// Backward: in = {x, weight, grad_y}, out = {grad_x, grad_weight, grad_bias}.
void linear_cuda_backward(const OpCall& c) {
  const auto& p = c.get<LinearParams>();
  require_f32(c.in[2], "linear backward");
  const Device dev = c.in[2].device();
  cuda::Bf16ProductScope bf16_scope(p.bf16, dev);
  cublasHandle_t h = cuda::cublas_handle(dev);
  const float* x = c.in[0].data<float>();
  const float* w = c.in[1].data<float>();
  const float* g = c.in[2].data<float>();
  if (c.out.size() > 0 && c.out[0].defined())  // dx[rows, in] = g[rows, out] W[out, in]
    kcu::gemm(h, Trans::No, Trans::No, p.rows, p.in, p.out, 1.f, g, p.out, w, p.in, 0.f,
              c.out[0].data<float>(), p.in);
  if (c.out.size() > 1 && c.out[1].defined())  // dW[out, in] = g^T x
    kcu::gemm(h, Trans::Yes, Trans::No, p.out, p.in, p.rows, 1.f, g, p.out, x, p.in, 0.f,
              c.out[1].data<float>(), p.in);
  if (c.out.size() > 2 && c.out[2].defined())  // db[out] = column sums of g
    kcu::reduce_sum(g, c.out[2].data<float>(), 1, p.rows, p.out, 1.f, cuda::stream(dev));
}

[[maybe_unused]] const bool registered = [] {
  register_kernels(OpId::Matmul, DeviceType::CUDA, matmul_cuda_forward, matmul_cuda_backward);
  register_kernels(OpId::Linear, DeviceType::CUDA, linear_cuda_forward, linear_cuda_backward);
  return true;
}();

}  // namespace

}  // namespace caption
