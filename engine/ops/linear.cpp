// Matmul and linear: shapes resolved here, products by OpenBLAS on the CPU.
#include "engine/ops/linear.h"

#include <algorithm>

#include "engine/autocast.h"
#include "engine/dispatch.h"
#include "engine/op_node.h"
#include "engine/op_table.h"

namespace caption {

namespace kc = kernels::cpu;

namespace {

Trans flip(Trans t) { return t == Trans::Yes ? Trans::No : Trans::Yes; }

void matmul_cpu_forward(const OpCall& c) {
  const auto& p = c.get<MatmulParams>();
  kc::Bf16Products bf16_scope(p.bf16);
  dispatch_floating(c.in[0].dtype(), "matmul", [&]<typename T>() {
    const T* A = c.in[0].data<T>();
    const T* B = c.in[1].data<T>();
    T* C = c.out[0].data<T>();
    const int64_t lda = p.ta == Trans::Yes ? p.M : p.K, ldb = p.tb == Trans::Yes ? p.K : p.N;
    for (int64_t i = 0; i < p.batch; ++i)
      kc::gemm<T>(p.ta, p.tb, p.M, p.N, p.K, T(1), A + (p.a_batched ? i * p.M * p.K : 0), lda,
                  B + (p.b_batched ? i * p.K * p.N : 0), ldb, T(0), C + i * p.M * p.N, p.N);
  });
}

// Backward: in = {a, b, grad_c}, out = {grad_a, grad_b}. A shared (2-D) operand sums its
// gradient over the batch.
void matmul_cpu_backward(const OpCall& c) {
  const auto& p = c.get<MatmulParams>();
  kc::Bf16Products bf16_scope(p.bf16);
  dispatch_floating(c.in[0].dtype(), "matmul backward", [&]<typename T>() {
    const T* A = c.in[0].data<T>();
    const T* B = c.in[1].data<T>();
    const T* G = c.in[2].data<T>();
    T* dA = data_or_null<T>(c.out[0]);
    T* dB = data_or_null<T>(c.out[1]);
    const int64_t lda = p.ta == Trans::Yes ? p.M : p.K, ldb = p.tb == Trans::Yes ? p.K : p.N;
    for (int64_t i = 0; i < p.batch; ++i) {
      const T* Ai = A + (p.a_batched ? i * p.M * p.K : 0);
      const T* Bi = B + (p.b_batched ? i * p.K * p.N : 0);
      const T* Gi = G + i * p.M * p.N;
      if (dA) {
        T* dAi = dA + (p.a_batched ? i * p.M * p.K : 0);
        const T beta = (!p.a_batched && i > 0) ? T(1) : T(0);
        if (p.ta == Trans::No)  // dA[M,K] = G[M,N] op(B)^T
          kc::gemm<T>(Trans::No, flip(p.tb), p.M, p.K, p.N, T(1), Gi, p.N, Bi, ldb, beta, dAi, p.K);
        else  // dA[K,M] = op(B)[K,N] G^T
          kc::gemm<T>(p.tb, Trans::Yes, p.K, p.M, p.N, T(1), Bi, ldb, Gi, p.N, beta, dAi, p.M);
      }
      if (dB) {
        T* dBi = dB + (p.b_batched ? i * p.K * p.N : 0);
        const T beta = (!p.b_batched && i > 0) ? T(1) : T(0);
        if (p.tb == Trans::No)  // dB[K,N] = op(A)^T G
          kc::gemm<T>(flip(p.ta), Trans::No, p.K, p.N, p.M, T(1), Ai, lda, Gi, p.N, beta, dBi, p.N);
        else  // dB[N,K] = G^T op(A)
          kc::gemm<T>(Trans::Yes, p.ta, p.N, p.K, p.M, T(1), Gi, p.N, Ai, lda, beta, dBi, p.K);
      }
    }
    // With batch 0 a shared operand's gradient is zero but was never written.
    if (p.batch == 0) {
      if (dA) std::fill_n(dA, c.out[0].numel(), T(0));
      if (dB) std::fill_n(dB, c.out[1].numel(), T(0));
    }
  });
}

void linear_cpu_forward(const OpCall& c) {
  const auto& p = c.get<LinearParams>();
  kc::Bf16Products bf16_scope(p.bf16);
  dispatch_floating(c.in[0].dtype(), "linear", [&]<typename T>() {
    T* y = c.out[0].data<T>();
    const T* b = data_or_null<T>(c.in[2]);
    if (b) {
      for (int64_t r = 0; r < p.rows; ++r) std::copy_n(b, p.out, y + r * p.out);
    }
    kc::gemm<T>(Trans::No, Trans::Yes, p.rows, p.out, p.in, T(1), c.in[0].data<T>(), p.in,
                c.in[1].data<T>(), p.in, b ? T(1) : T(0), y, p.out);
  });
}

// Backward: in = {x, weight, grad_y}, out = {grad_x, grad_weight, grad_bias}.
void linear_cpu_backward(const OpCall& c) {
  const auto& p = c.get<LinearParams>();
  kc::Bf16Products bf16_scope(p.bf16);
  dispatch_floating(c.in[0].dtype(), "linear backward", [&]<typename T>() {
    const T* x = c.in[0].data<T>();
    const T* w = c.in[1].data<T>();
    const T* g = c.in[2].data<T>();
    if (T* dx = data_or_null<T>(c.out[0]))
      kc::gemm<T>(Trans::No, Trans::No, p.rows, p.in, p.out, T(1), g, p.out, w, p.in, T(0), dx, p.in);
    if (T* dw = data_or_null<T>(c.out[1]))
      kc::gemm<T>(Trans::Yes, Trans::No, p.out, p.in, p.rows, T(1), g, p.out, x, p.in, T(0), dw, p.in);
    if (T* db = data_or_null<T>(c.out[2])) {
      std::fill_n(db, p.out, T(0));
      for (int64_t r = 0; r < p.rows; ++r)
        for (int64_t o = 0; o < p.out; ++o) db[o] += g[r * p.out + o];
    }
  });
}

[[maybe_unused]] const bool registered = [] {
  register_kernels(OpId::Matmul, DeviceType::CPU, matmul_cpu_forward, matmul_cpu_backward);
  register_kernels(OpId::Linear, DeviceType::CPU, linear_cpu_forward, linear_cpu_backward);
  return true;
}();

}  // namespace

Tensor matmul(const Tensor& a_in, const Tensor& b_in, MatmulOptions o) {
  CAPTION_CHECK(a_in.dim() >= 2 && b_in.dim() >= 2, "matmul: operands must have at least 2 axes (",
                a_in.describe(), ", ", b_in.describe(), ")");
  CAPTION_CHECK(a_in.device() == b_in.device() && a_in.dtype() == b_in.dtype(),
                "matmul: operands differ in device or dtype (", a_in.describe(), ", ",
                b_in.describe(), ")");
  const Tensor a = a_in.contiguous(), b = b_in.contiguous();
  MatmulParams p;
  p.bf16 = autocast_enabled() && a.dtype() == DType::F32;
  p.ta = o.a;
  p.tb = o.b;
  const int64_t ar = a.dim(), br = b.dim();
  p.M = p.ta == Trans::Yes ? a.shape()[ar - 1] : a.shape()[ar - 2];
  p.K = p.ta == Trans::Yes ? a.shape()[ar - 2] : a.shape()[ar - 1];
  const int64_t bk = p.tb == Trans::Yes ? b.shape()[br - 1] : b.shape()[br - 2];
  p.N = p.tb == Trans::Yes ? b.shape()[br - 2] : b.shape()[br - 1];
  CAPTION_CHECK(p.K == bk, "matmul: inner sizes differ (", a.describe(), " x ", b.describe(), ")");
  Shape a_batch(a.shape().begin(), a.shape().end() - 2), b_batch(b.shape().begin(), b.shape().end() - 2);
  Shape batch_shape;
  if (!a_batch.empty() && !b_batch.empty()) {
    CAPTION_CHECK(a_batch == b_batch, "matmul: batch axes differ (", a.describe(), " x ",
                  b.describe(), ")");
    batch_shape = a_batch;
  } else {
    batch_shape = a_batch.empty() ? b_batch : a_batch;
  }
  p.a_batched = !a_batch.empty();
  p.b_batched = !b_batch.empty();
  p.batch = shape_numel(batch_shape);
  Shape out_shape = batch_shape;
  out_shape.push_back(p.M);
  out_shape.push_back(p.N);
  Tensor out = Tensor::empty(out_shape, a.dtype(), a.device());
  std::vector<Tensor> in{a, b}, outs{out};
  run_forward(OpId::Matmul, a.device(), OpCall{in, outs, &p});
  record_op(OpId::Matmul, p, in, in, outs);
  return out;
}

Tensor linear(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in) {
  CAPTION_CHECK(w_in.dim() == 2, "linear: weight must be [out, in], got ", w_in.describe());
  CAPTION_CHECK(x_in.dim() >= 1 && x_in.shape().back() == w_in.shape()[1], "linear: input ",
                x_in.describe(), " does not end in ", w_in.shape()[1], " features (weight ",
                w_in.describe(), ")");
  CAPTION_CHECK(!b_in.defined() || (b_in.dim() == 1 && b_in.shape()[0] == w_in.shape()[0]),
                "linear: bias ", b_in.describe(), " does not match weight ", w_in.describe());
  CAPTION_CHECK(x_in.device() == w_in.device() && x_in.dtype() == w_in.dtype(),
                "linear: input ", x_in.describe(), " and weight ", w_in.describe(),
                " differ in device or dtype");
  const Tensor x = x_in.contiguous(), w = w_in.contiguous();
  const Tensor b = b_in.defined() ? b_in.contiguous() : Tensor();
  LinearParams p;
  p.bf16 = autocast_enabled() && x.dtype() == DType::F32;
  p.in = w.shape()[1];
  p.out = w.shape()[0];
  p.rows = p.in > 0 ? x.numel() / p.in : shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));
  Shape out_shape = x.shape();
  out_shape.back() = p.out;
  Tensor y = Tensor::empty(out_shape, x.dtype(), x.device());
  std::vector<Tensor> in{x, w, b}, outs{y};
  run_forward(OpId::Linear, x.device(), OpCall{in, outs, &p});
  record_op(OpId::Linear, p, in, {x, w}, outs);
  return y;
}

}  // namespace caption
