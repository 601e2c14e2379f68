// Fused LSTM cell on CUDA (see lstm.h).
//
// Launch configuration: the pointwise kernels run one thread per (b, j) of [B, H]
// (grid-stride, 64-bit indices); the four gate chunks of a row are H apart, so each of
// the four loads and stores is coalesced across j. Sigmoid is 1 / (1 + exp(-v)) and the
// expressions follow the CPU kernel term by term (expf/tanhf differ from the CPU's libm
// by an ulp or two). The bias gradient is the deterministic column sum of dgates
// (kernels/cuda/reduce.h), computed once and copied for the second bias, as on the CPU;
// products are cuBLAS with the handle's math mode. No atomics: run-to-run identical.
#include "kernels/cuda/lstm.h"

#include "kernels/cuda/blas.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/reduce.h"

namespace caption::kernels::cuda {

namespace {

__device__ __forceinline__ float sigmoidf(float v) { return 1.f / (1.f + expf(-v)); }

// One (b, j): the four gates from their pre-activations pre(q) (q = j, H + j, ...),
// stored activated in the row's gates gr, then c' and h'.
template <typename Pre>
__device__ __forceinline__ void activate_cell(Pre pre, const float* c, float* gr, float* h_out,
                                              float* c_out, int64_t H, int64_t j, int64_t k) {
  const float i = sigmoidf(pre(j));
  const float f = sigmoidf(pre(H + j));
  const float g = tanhf(pre(2 * H + j));
  const float o = sigmoidf(pre(3 * H + j));
  gr[j] = i;
  gr[H + j] = f;
  gr[2 * H + j] = g;
  gr[3 * H + j] = o;
  const float cn = f * c[k] + i * g;
  c_out[k] = cn;
  h_out[k] = o * tanhf(cn);
}

// pre: the pre-activations (null: gates holds them), b_ih/b_hh: biases to add (null:
// none, the LstmGates form).
__global__ void lstm_pointwise_forward_kernel(const float* pre, const float* b_ih,
                                              const float* b_hh, const float* c, float* gates,
                                              float* h_out, float* c_out, int64_t H, int64_t n) {
  for (int64_t k = global_thread(); k < n; k += grid_threads()) {
    const int64_t b = k / H, j = k - b * H;
    float* gr = gates + b * 4 * H;
    const float* src = pre ? pre + b * 4 * H : gr;
    auto bias = [&](int64_t q) { return b_ih ? b_ih[q] + b_hh[q] : 0.f; };
    activate_cell([&](int64_t q) { return src[q] + bias(q); }, c, gr, h_out, c_out, H, j, k);
  }
}

// The LstmGates form with its pre-activations in parts: each gate's value is the parts'
// sum, left to right, as add(add(p0, p1), p2) forms it.
__global__ void lstm_parts_forward_kernel(cpu::GateParts<float> pre, const float* c, float* gates,
                                          float* h_out, float* c_out, int64_t H, int64_t n) {
  for (int64_t k = global_thread(); k < n; k += grid_threads()) {
    const int64_t b = k / H, j = k - b * H;
    float* gr = gates + b * 4 * H;
    auto sum = [&](int64_t q) {
      float v = pre.part[0][b * pre.ld[0] + q];
      for (int p = 1; p < pre.count; ++p) v += pre.part[p][b * pre.ld[p] + q];
      return v;
    };
    activate_cell(sum, c, gr, h_out, c_out, H, j, k);
  }
}

// dgates2 and dgates3 (may be null) receive copies of dgates: the gradients of the
// parts of a summed pre-activation.
__global__ void lstm_pointwise_backward_kernel(const float* gates, const float* c,
                                               const float* c_out, const float* grad_h,
                                               const float* grad_c, float* dgates, float* dc,
                                               int64_t H, int64_t n, float* dgates2,
                                               float* dgates3) {
  for (int64_t k = global_thread(); k < n; k += grid_threads()) {
    const int64_t b = k / H, j = k - b * H;
    const float* gr = gates + b * 4 * H;
    float* dg = dgates + b * 4 * H;
    const float i = gr[j], f = gr[H + j], g = gr[2 * H + j], o = gr[3 * H + j];
    const float tc = tanhf(c_out[k]);
    // c' feeds h' and is an output itself: its total gradient is the sum of both.
    const float dcn = grad_c[k] + grad_h[k] * o * (1.f - tc * tc);
    const float di = dcn * g * i * (1.f - i), df = dcn * c[k] * f * (1.f - f);
    const float dgg = dcn * i * (1.f - g * g), d_o = grad_h[k] * tc * o * (1.f - o);
    dg[j] = di;
    dg[H + j] = df;
    dg[2 * H + j] = dgg;
    dg[3 * H + j] = d_o;
    auto copy_to = [&](float* more) {
      if (!more) return;
      float* m = more + b * 4 * H;
      m[j] = di;
      m[H + j] = df;
      m[2 * H + j] = dgg;
      m[3 * H + j] = d_o;
    };
    copy_to(dgates2);
    copy_to(dgates3);
    if (dc) dc[k] = dcn * f;
  }
}

cudaStream_t stream_of(cublasHandle_t handle) {
  cudaStream_t stream = nullptr;
  CAPTION_CUBLAS_CHECK(cublasGetStream(handle, &stream));
  return stream;
}

}  // namespace

void lstm_cell_forward(cublasHandle_t handle, const float* x, const float* h, const float* c,
                       const float* w_ih, const float* w_hh, const float* b_ih, const float* b_hh,
                       float* h_out, float* c_out, float* gates, int64_t B, int64_t I, int64_t H) {
  const int64_t G = 4 * H;
  // gates = x W_ih^T + h W_hh^T (gemm honours beta when I or H is 0).
  gemm(handle, Trans::No, Trans::Yes, B, G, I, 1.f, x, I, w_ih, I, 0.f, gates, G);
  gemm(handle, Trans::No, Trans::Yes, B, G, H, 1.f, h, H, w_hh, H, 1.f, gates, G);
  const int64_t n = B * H;
  if (n == 0) return;
  lstm_pointwise_forward_kernel<<<grid_for(n), kBlock, 0, stream_of(handle)>>>(
      nullptr, b_ih, b_hh, c, gates, h_out, c_out, H, n);
  CAPTION_CUDA_LAUNCH_CHECK("lstm_pointwise_forward_kernel");
}

void lstm_cell_backward(cublasHandle_t handle, const float* x, const float* h, const float* c,
                        const float* w_ih, const float* w_hh, const float* gates,
                        const float* c_out, const float* grad_h, const float* grad_c, float* dx,
                        float* dh, float* dc, float* dw_ih, float* dw_hh, float* db_ih,
                        float* db_hh, float* dgates, int64_t B, int64_t I, int64_t H) {
  const int64_t G = 4 * H;
  cudaStream_t stream = stream_of(handle);
  const int64_t n = B * H;
  if (n > 0) {
    lstm_pointwise_backward_kernel<<<grid_for(n), kBlock, 0, stream>>>(
        gates, c, c_out, grad_h, grad_c, dgates, dc, H, n, nullptr, nullptr);
    CAPTION_CUDA_LAUNCH_CHECK("lstm_pointwise_backward_kernel");
  }
  if (dx) gemm(handle, Trans::No, Trans::No, B, I, G, 1.f, dgates, G, w_ih, I, 0.f, dx, I);
  if (dh) gemm(handle, Trans::No, Trans::No, B, H, G, 1.f, dgates, G, w_hh, H, 0.f, dh, H);
  if (dw_ih) gemm(handle, Trans::Yes, Trans::No, G, I, B, 1.f, dgates, G, x, I, 0.f, dw_ih, I);
  if (dw_hh) gemm(handle, Trans::Yes, Trans::No, G, H, B, 1.f, dgates, G, h, H, 0.f, dw_hh, H);
  // Both biases enter the gates the same way, so they share one gradient.
  if (db_ih || db_hh) {
    float* db = db_ih ? db_ih : db_hh;
    reduce_sum(dgates, db, 1, B, G, 1.f, stream);  // zeros when B == 0
    if (db_ih && db_hh && G > 0)
      CAPTION_CUDA_CHECK(
          cudaMemcpyAsync(db_hh, db_ih, sizeof(float) * G, cudaMemcpyDeviceToDevice, stream));
  }
}

void lstm_gates_forward(const cpu::GateParts<float>& pre, const float* c, float* h_out,
                        float* c_out, float* gates, int64_t B, int64_t H, cudaStream_t stream) {
  const int64_t n = B * H;
  if (n == 0) return;
  lstm_parts_forward_kernel<<<grid_for(n), kBlock, 0, stream>>>(pre, c, gates, h_out, c_out, H, n);
  CAPTION_CUDA_LAUNCH_CHECK("lstm_parts_forward_kernel");
}

void lstm_gates_backward(const float* c, const float* gates, const float* c_out,
                         const float* grad_h, const float* grad_c, float* dpre,
                         float* const dpre_more[2], float* dc, int64_t B, int64_t H,
                         cudaStream_t stream) {
  const int64_t n = B * H;
  if (n == 0) return;
  lstm_pointwise_backward_kernel<<<grid_for(n), kBlock, 0, stream>>>(
      gates, c, c_out, grad_h, grad_c, dpre, dc, H, n, dpre_more[0], dpre_more[1]);
  CAPTION_CUDA_LAUNCH_CHECK("lstm_pointwise_backward_kernel (gates)");
}

}  // namespace caption::kernels::cuda
