// CUDA adapters and table registration of conv2d: the same Conv2dParams, saved tensors
// ({x, w}) and OpCall contract as engine/ops/conv.cpp, arithmetic by cuDNN 9.
//
// Decisions (bench/NOTES.md has the measurements as they come):
// - cuDNN's legacy convolution API (cudnnConvolutionForward / BackwardData /
//   BackwardFilter), deprecated in cuDNN 9 but complete: it is one call per direction
//   with algorithm choice, workspace queries and determinism reported per algorithm.
//   The graph API earns its verbosity where it fuses (convolution + bias + activation
//   epilogues through runtime-compiled engines); that is the next step for the encoder,
//   once a GPU run has measured what the plain calls leave on the table.
// - NCHW float32, the engine's layout everywhere; the CPU reference and every other op
//   read NCHW. Under autocast the convolution itself runs in NHWC bfloat16 (x, w and
//   grad_y converted and transposed on the way in, y, grad_x and grad_w transposed and
//   widened on the way out, by kernels/cuda/convert.cu's tiled transposes): cuDNN's
//   tensor-core kernels want NHWC, and on an H100 NCHW bfloat16 ran 1.5x slower than
//   float32 in the forward and 4.8x slower when fine-tuning (bench/NOTES.md).
//   CAPTION_CONV_BF16_LAYOUT=nchw keeps the bfloat16 convolution in NCHW (for comparison).
// - Algorithms: by cuDNN's heuristics (the _v7 queries, no trial runs), or, with
//   CAPTION_CUDNN_BENCHMARK=1, by measurement (cudnnFind*, once per geometry: what
//   torch.backends.cudnn.benchmark does). Deterministic algorithms only, unless
//   CAPTION_DETERMINISTIC=0: the engine promises bit-identical runs (no atomics), and
//   some backward-filter and backward-data algorithms sum in a varying order. Workspace
//   at most CAPTION_CUDNN_WORKSPACE_MB (default 1024) MiB, from the caching allocator, so
//   a steady training step calls no cudaMalloc.
// - Math: full float32 (CUDNN_FMA_MATH), or TF32 tensor cores with CAPTION_TF32=1 (the
//   engine's one precision switch, engine/cuda/precision.h). Under autocast (params.bf16)
//   the convolution runs in bfloat16 on tensor cores (float32 compute): x, w and grad_y
//   are converted to bfloat16 copies, y, grad_x and grad_w come out in bfloat16 and are
//   widened to float32; the bias and its gradient stay float32. The CPU twin
//   (engine/ops/conv.cpp) rounds the same operands and outputs.
// - Bias: added by cudnnAddTensor; its gradient is the engine's deterministic reduction
//   (sum over each output plane, then over the batch), not cudnnConvolutionBackwardBias.
// - The inference epilogue (residual, ReLU: Conv2dEpilogue) runs the add and relu ops'
//   kernels in place over y, two passes: float32 NCHW inference on a GPU is not the
//   encoder's fast path (autocast's NHWC one is), so exact agreement with the separate
//   ops was worth more than a third kernel.
// - The NHWC op (engine/ops/nhwc.h, conv_nhwc): operands and result already NHWC
//   bfloat16, no conversion; bias, residual and ReLU by one epilogue kernel afterwards
//   (kernels/cuda/nhwc.cu). It shares the plans of autocast's NHWC convolutions.
// Each geometry's descriptors and chosen algorithms form a plan, built on first use and
// kept for the process (a few hundred bytes each; ResNet-50 has about 20 geometries).
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>

#include "engine/cuda/adapter.h"
#include "engine/cuda/check.h"
#include "engine/cuda/context.h"
#include "engine/cuda/precision.h"
#include "engine/op_table.h"
#include "engine/ops/conv.h"
#include "engine/ops/nhwc.h"
#include "kernels/broadcast.h"
#include "kernels/cuda/blas.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/nhwc.h"
#include "kernels/cuda/reduce.h"

namespace caption {

namespace {

using cuda::require_f32;

struct Policy {
  bool benchmark = false;      // CAPTION_CUDNN_BENCHMARK=1
  bool deterministic = true;   // CAPTION_DETERMINISTIC=0 turns it off
  size_t workspace_limit = size_t{1024} << 20;
  bool bf16_nhwc = true;       // CAPTION_CONV_BF16_LAYOUT=nchw turns it off
};

const Policy& policy() {
  static const Policy p = [] {
    Policy r;
    const char* b = std::getenv("CAPTION_CUDNN_BENCHMARK");
    r.benchmark = b != nullptr && std::strcmp(b, "1") == 0;
    const char* d = std::getenv("CAPTION_DETERMINISTIC");
    r.deterministic = !(d != nullptr && std::strcmp(d, "0") == 0);
    if (const char* w = std::getenv("CAPTION_CUDNN_WORKSPACE_MB")) {
      char* end = nullptr;
      const long long mb = std::strtoll(w, &end, 10);
      CAPTION_CHECK(end != w && *end == '\0' && mb >= 0 && mb <= (1 << 20),
                    "CAPTION_CUDNN_WORKSPACE_MB='", w, "' is not a size in MiB (0 to 1048576)");
      r.workspace_limit = static_cast<size_t>(mb) << 20;
    }
    if (const char* l = std::getenv("CAPTION_CONV_BF16_LAYOUT")) {
      CAPTION_CHECK(std::strcmp(l, "nhwc") == 0 || std::strcmp(l, "nchw") == 0,
                    "CAPTION_CONV_BF16_LAYOUT='", l, "' is neither nhwc nor nchw");
      r.bf16_nhwc = std::strcmp(l, "nhwc") == 0;
    }
    log_info(str("cuDNN ", cudnnGetVersion(), " convolutions: algorithms by ",
                 r.benchmark ? "measurement (CAPTION_CUDNN_BENCHMARK=1)" : "heuristics",
                 ", ", r.deterministic ? "deterministic only" : "any (CAPTION_DETERMINISTIC=0)",
                 ", workspace <= ", r.workspace_limit >> 20, " MiB, ",
                 cuda::tf32_enabled() ? "TF32" : "full float32", " math; under autocast bfloat16 in ",
                 r.bf16_nhwc ? "NHWC" : "NCHW (CAPTION_CONV_BF16_LAYOUT=nchw)"));
    return r;
  }();
  return p;
}

// Whether this convolution runs in NHWC: the NHWC op always, autocast's bfloat16 conv2d
// under the default layout policy.
bool nhwc(const Conv2dParams& p) { return p.nhwc || (p.bf16 && policy().bf16_nhwc); }

int as_int(int64_t v, const char* what, const Conv2dParams& p) {
  CAPTION_CHECK(v >= 0 && v <= INT32_MAX, "conv2d on CUDA: ", what, " ", v,
                " exceeds cuDNN's 32-bit sizes (batch ", p.batch, ", ", p.in_channels, "x",
                p.in_h, "x", p.in_w, " -> ", p.out_channels, "x", p.out_h, "x", p.out_w, ")");
  return static_cast<int>(v);
}

using Key = std::tuple<int, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                       int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool, bool>;

Key key_of(const Conv2dParams& p, int device) {
  return {device,      p.batch,    p.in_channels, p.in_h,     p.in_w,
          p.out_channels, p.kernel_h, p.kernel_w, p.stride_h, p.stride_w,
          p.pad_h,     p.pad_w,    p.dilation_h, p.dilation_w, p.bf16, nhwc(p)};
}

// One direction's chosen algorithm, the math type to run it with and its workspace.
template <typename Algo>
struct Choice {
  Algo algo{};
  cudnnMathType_t math{};
  size_t bytes = 0;
  bool chosen = false;
};

// Descriptors and chosen algorithms of one geometry. The backward algorithms are chosen
// at the first backward (an inference-only process never pays for them).
struct Plan {
  // x, y, w in the computation's type (float32, or bfloat16 under autocast); y32 is y in
  // float32 (the bias is added there).
  cudnnTensorDescriptor_t x = nullptr, y = nullptr, y32 = nullptr, bias = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  Choice<cudnnConvolutionFwdAlgo_t> forward;
  Choice<cudnnConvolutionBwdDataAlgo_t> backward_data;
  Choice<cudnnConvolutionBwdFilterAlgo_t> backward_filter;
};

std::string describe(const Conv2dParams& p) {
  return str("[", p.batch, ", ", p.in_channels, ", ", p.in_h, ", ", p.in_w, "] * [",
             p.out_channels, ", ", p.in_channels, ", ", p.kernel_h, ", ", p.kernel_w,
             "] stride (", p.stride_h, ", ", p.stride_w, ") padding (", p.pad_h, ", ", p.pad_w,
             ") dilation (", p.dilation_h, ", ", p.dilation_w, ")");
}

Plan make_plan(const Conv2dParams& p) {
  Plan plan;
  const int B = as_int(p.batch, "batch", p), C = as_int(p.in_channels, "channels", p);
  const int O = as_int(p.out_channels, "output channels", p);
  as_int(p.batch * p.in_channels * p.in_h * p.in_w, "input elements", p);
  as_int(p.batch * p.out_channels * p.out_h * p.out_w, "output elements", p);
  CAPTION_CUDNN_CHECK(cudnnCreateTensorDescriptor(&plan.x));
  CAPTION_CUDNN_CHECK(cudnnCreateTensorDescriptor(&plan.y));
  CAPTION_CUDNN_CHECK(cudnnCreateTensorDescriptor(&plan.bias));
  CAPTION_CUDNN_CHECK(cudnnCreateTensorDescriptor(&plan.y32));
  const cudnnDataType_t dt = p.bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
  // x, y and w in the computation's layout: NHWC (filters KRSC) for bfloat16 by default.
  const cudnnTensorFormat_t fmt = nhwc(p) ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
  CAPTION_CUDNN_CHECK(cudnnCreateFilterDescriptor(&plan.w));
  CAPTION_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&plan.conv));
  CAPTION_CUDNN_CHECK(cudnnSetTensor4dDescriptor(plan.x, fmt, dt, B, C,
                                                 as_int(p.in_h, "height", p),
                                                 as_int(p.in_w, "width", p)));
  CAPTION_CUDNN_CHECK(cudnnSetTensor4dDescriptor(plan.y, fmt, dt, B, O,
                                                 as_int(p.out_h, "output height", p),
                                                 as_int(p.out_w, "output width", p)));
  CAPTION_CUDNN_CHECK(cudnnSetTensor4dDescriptor(plan.y32, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, B,
                                                 O, as_int(p.out_h, "output height", p),
                                                 as_int(p.out_w, "output width", p)));
  CAPTION_CUDNN_CHECK(
      cudnnSetTensor4dDescriptor(plan.bias, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, O, 1, 1));
  CAPTION_CUDNN_CHECK(cudnnSetFilter4dDescriptor(plan.w, dt, fmt, O, C,
                                                 as_int(p.kernel_h, "kernel height", p),
                                                 as_int(p.kernel_w, "kernel width", p)));
  CAPTION_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(
      plan.conv, as_int(p.pad_h, "padding", p), as_int(p.pad_w, "padding", p),
      as_int(p.stride_h, "stride", p), as_int(p.stride_w, "stride", p),
      as_int(p.dilation_h, "dilation", p), as_int(p.dilation_w, "dilation", p),
      CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  CAPTION_CUDNN_CHECK(cudnnSetConvolutionMathType(
      plan.conv, p.bf16 || cuda::tf32_enabled() ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
  // cuDNN's own output size must be ours (a mismatch would be a bug in one of them).
  int n = 0, c = 0, h = 0, w = 0;
  CAPTION_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(plan.conv, plan.x, plan.w, &n, &c, &h, &w));
  CAPTION_CHECK(n == B && c == O && h == p.out_h && w == p.out_w, "conv2d on CUDA: cuDNN computes an "
                "output of [", n, ", ", c, ", ", h, ", ", w, "] for ", describe(p), ", the engine [",
                B, ", ", O, ", ", p.out_h, ", ", p.out_w, "]");
  return plan;
}

// The first acceptable result (results come best first): it ran or can run, fits the
// workspace limit, is deterministic when required, and does not use TF32 when full
// float32 was asked for.
template <typename Perf>
const Perf* pick(const Perf* perf, int count, bool bf16) {
  const Policy& pol = policy();
  for (int i = 0; i < count; ++i) {
    const Perf& r = perf[i];
    if (r.status != CUDNN_STATUS_SUCCESS || r.memory > pol.workspace_limit) continue;
    if (pol.deterministic && r.determinism != CUDNN_DETERMINISTIC) continue;
    if (!bf16 && !cuda::tf32_enabled() && r.mathType != CUDNN_FMA_MATH &&
        r.mathType != CUDNN_DEFAULT_MATH)
      continue;
    return &r;
  }
  return nullptr;
}

// The math type to run a chosen algorithm with: its own under TF32; otherwise FMA math
// always (cuDNN may report an algorithm as "default math", which on Ampere and later
// would let it use TF32).
template <typename Perf>
cudnnMathType_t math_of(const Perf& r, bool bf16) {
  return bf16 || cuda::tf32_enabled() ? r.mathType : CUDNN_FMA_MATH;
}

[[noreturn]] void no_algorithm(const char* direction, const Conv2dParams& p) {
  const Policy& pol = policy();
  throw Error(str("conv2d on CUDA: cuDNN offers no ", direction, " algorithm for ", describe(p),
                  pol.deterministic ? " that is deterministic" : "", " within the ",
                  pol.workspace_limit >> 20, " MiB workspace limit (CAPTION_CUDNN_WORKSPACE_MB",
                  pol.deterministic ? ", CAPTION_DETERMINISTIC=0" : "", ")"));
}

std::mutex plans_mutex;
std::map<Key, std::unique_ptr<Plan>>& plans() {
  static auto* m = new std::map<Key, std::unique_ptr<Plan>>();  // kept for the process
  return *m;
}

Plan& plan_for(const Conv2dParams& p, Device dev) {
  std::lock_guard lock(plans_mutex);
  auto& slot = plans()[key_of(p, dev.index)];
  if (!slot) slot = std::make_unique<Plan>(make_plan(p));
  return *slot;
}

constexpr int kMaxAlgos = 16;

// Asks cuDNN for its ranked algorithms (query(measure, perf, &count): measured with
// CAPTION_CUDNN_BENCHMARK=1, else heuristics) and keeps the first acceptable one.
template <typename Perf, typename Algo, typename Query>
void choose(Choice<Algo>& choice, const char* direction, const Conv2dParams& p, Query query) {
  Perf perf[kMaxAlgos];
  int count = 0;
  CAPTION_CUDNN_CHECK(query(policy().benchmark, perf, &count));
  const Perf* r = pick(perf, count, p.bf16);
  if (!r) no_algorithm(direction, p);
  choice = {r->algo, math_of(*r, p.bf16), r->memory, true};
}

void choose_forward(Plan& plan, const Conv2dParams& p, cudnnHandle_t h) {
  choose<cudnnConvolutionFwdAlgoPerf_t>(
      plan.forward, "forward", p, [&](bool measure, cudnnConvolutionFwdAlgoPerf_t* perf, int* n) {
        return measure ? cudnnFindConvolutionForwardAlgorithm(h, plan.x, plan.w, plan.conv, plan.y,
                                                              kMaxAlgos, n, perf)
                       : cudnnGetConvolutionForwardAlgorithm_v7(h, plan.x, plan.w, plan.conv,
                                                                plan.y, kMaxAlgos, n, perf);
      });
}

void choose_backward_data(Plan& plan, const Conv2dParams& p, cudnnHandle_t h) {
  choose<cudnnConvolutionBwdDataAlgoPerf_t>(
      plan.backward_data, "backward-data", p,
      [&](bool measure, cudnnConvolutionBwdDataAlgoPerf_t* perf, int* n) {
        return measure ? cudnnFindConvolutionBackwardDataAlgorithm(h, plan.w, plan.y, plan.conv,
                                                                   plan.x, kMaxAlgos, n, perf)
                       : cudnnGetConvolutionBackwardDataAlgorithm_v7(h, plan.w, plan.y, plan.conv,
                                                                     plan.x, kMaxAlgos, n, perf);
      });
}

void choose_backward_filter(Plan& plan, const Conv2dParams& p, cudnnHandle_t h) {
  choose<cudnnConvolutionBwdFilterAlgoPerf_t>(
      plan.backward_filter, "backward-filter", p,
      [&](bool measure, cudnnConvolutionBwdFilterAlgoPerf_t* perf, int* n) {
        return measure ? cudnnFindConvolutionBackwardFilterAlgorithm(h, plan.x, plan.y, plan.conv,
                                                                     plan.w, kMaxAlgos, n, perf)
                       : cudnnGetConvolutionBackwardFilterAlgorithm_v7(
                             h, plan.x, plan.y, plan.conv, plan.w, kMaxAlgos, n, perf);
      });
}

// A workspace of `bytes` from the caching allocator (undefined when none is needed).
Tensor workspace(size_t bytes, Device dev) {
  if (bytes == 0) return Tensor();
  return Tensor::empty({static_cast<int64_t>((bytes + 3) / 4)}, DType::F32, dev);
}
void* ptr_or_null(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }

// Autocast's operands and results: a bfloat16 buffer of n values (from the caching
// allocator), a bfloat16 copy of a float32 tensor, and the widening back.
Tensor bf16_buffer(int64_t n, Device dev) {
  return Tensor::empty({(n + 1) / 2}, DType::F32, dev);
}
uint16_t* bf16_data(const Tensor& t) { return static_cast<uint16_t*>(t.raw_data()); }
// A bfloat16 copy of an NCHW float32 tensor (or KCRS filter) in the convolution's layout.
Tensor to_bf16(const Tensor& t, bool nhwc) {
  Tensor out = bf16_buffer(t.numel(), t.device());
  const cudaStream_t s = cuda::stream(t.device());
  if (t.numel() == 0) return out;
  if (nhwc) {
    kernels::cuda::nchw_to_nhwc_bf16(t.data<float>(), t.size(0), t.size(1), t.numel() / (t.size(0) * t.size(1)),
                                     bf16_data(out), s);
  } else {
    kernels::cuda::convert_to_bf16(t.data<float>(), 1, t.numel(), t.numel(), 1, 0, bf16_data(out), s);
  }
  return out;
}
// The float32 NCHW (KCRS) values of a bfloat16 result in the convolution's layout.
void widen(const Tensor& src16, const Tensor& dst, bool nhwc) {
  const cudaStream_t s = cuda::stream(dst.device());
  if (dst.numel() == 0) return;
  if (nhwc) {
    kernels::cuda::nhwc_bf16_to_nchw(bf16_data(src16), dst.size(0), dst.size(1),
                                     dst.numel() / (dst.size(0) * dst.size(1)), dst.data<float>(), s);
  } else {
    kernels::cuda::convert_from_bf16(bf16_data(src16), dst.numel(), dst.data<float>(), s);
  }
}

// Forward: in = {x, weight, bias (may be undefined)}, out = {y}.
// A forward call's handle, plan (algorithm chosen, math type set) and workspace.
struct ForwardCall {
  cudnnHandle_t h;
  Plan& plan;
  Tensor ws;
};
ForwardCall prepare_forward(const Conv2dParams& p, Device dev) {
  cudnnHandle_t h = cuda::context(dev).cudnn;
  Plan& plan = plan_for(p, dev);
  if (!plan.forward.chosen) choose_forward(plan, p, h);
  CAPTION_CUDNN_CHECK(cudnnSetConvolutionMathType(plan.conv, plan.forward.math));
  return {h, plan, workspace(plan.forward.bytes, dev)};
}

void conv2d_cuda_forward(const OpCall& c) {
  const auto& p = c.get<Conv2dParams>();
  require_f32(c.in[0], "conv2d");
  require_f32(c.in[1], "conv2d");
  const Device dev = c.in[0].device();
  auto [h, plan, ws] = prepare_forward(p, dev);
  const float one = 1.f, zero = 0.f;
  if (p.bf16) {
    const bool l = nhwc(p);
    const Tensor x16 = to_bf16(c.in[0], l), w16 = to_bf16(c.in[1], l);
    const Tensor y16 = bf16_buffer(c.out[0].numel(), dev);
    CAPTION_CUDNN_CHECK(cudnnConvolutionForward(h, &one, plan.x, x16.raw_data(), plan.w,
                                                w16.raw_data(), plan.conv, plan.forward.algo,
                                                ptr_or_null(ws), plan.forward.bytes, &zero, plan.y,
                                                y16.raw_data()));
    widen(y16, c.out[0], l);
  } else {
    CAPTION_CUDNN_CHECK(cudnnConvolutionForward(h, &one, plan.x, c.in[0].data<float>(), plan.w,
                                                c.in[1].data<float>(), plan.conv, plan.forward.algo,
                                                ptr_or_null(ws), plan.forward.bytes, &zero, plan.y,
                                                c.out[0].data<float>()));
  }
  if (c.in[2].defined()) {
    require_f32(c.in[2], "conv2d");
    CAPTION_CUDNN_CHECK(cudnnAddTensor(h, &one, plan.bias, c.in[2].data<float>(), &one, plan.y32,
                                       c.out[0].data<float>()));
  }
  // The inference epilogue (engine/ops/conv.h): the residual added by the add op's kernel,
  // then ReLU by relu's, both in place over y, so the results are those ops' to the bit.
  float* y = c.out[0].data<float>();
  const int64_t n = c.out[0].numel();
  if (c.in.size() > 3 && c.in[3].defined()) {
    require_f32(c.in[3], "conv2d");
    const Shape& s = c.out[0].shape();  // the residual's too (conv2d checks)
    const int rank = static_cast<int>(s.size());
    kernels::cuda::binary_forward(
        kernels::cpu::BinaryOp::Add, y, c.in[3].data<float>(), y,
        kernels::make_broadcast_layout(s.data(), rank, s.data(), rank, s.data(), rank),
        cuda::stream(dev));
  }
  if (p.relu)
    kernels::cuda::unary_forward(kernels::cpu::UnaryOp::Relu, y, y, n, cuda::stream(dev));
}

// cuDNN's backward-data and backward-filter calls on operands already in the plan's type
// and layout (dx = conv^T(w, dy), dw = conv^T(x, dy)), choosing the algorithm at first use.
void backward_data(Plan& plan, const Conv2dParams& p, cudnnHandle_t h, Device dev, const void* w,
                   const void* gy, void* dx) {
  const float one = 1.f, zero = 0.f;
  if (!plan.backward_data.chosen) choose_backward_data(plan, p, h);
  CAPTION_CUDNN_CHECK(cudnnSetConvolutionMathType(plan.conv, plan.backward_data.math));
  const Tensor ws = workspace(plan.backward_data.bytes, dev);
  CAPTION_CUDNN_CHECK(cudnnConvolutionBackwardData(h, &one, plan.w, w, plan.y, gy, plan.conv,
                                                   plan.backward_data.algo, ptr_or_null(ws),
                                                   plan.backward_data.bytes, &zero, plan.x, dx));
}

void backward_filter(Plan& plan, const Conv2dParams& p, cudnnHandle_t h, Device dev,
                     const void* x, const void* gy, void* dw) {
  const float one = 1.f, zero = 0.f;
  if (!plan.backward_filter.chosen) choose_backward_filter(plan, p, h);
  CAPTION_CUDNN_CHECK(cudnnSetConvolutionMathType(plan.conv, plan.backward_filter.math));
  const Tensor ws = workspace(plan.backward_filter.bytes, dev);
  CAPTION_CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, &one, plan.x, x, plan.y, gy, plan.conv,
                                                     plan.backward_filter.algo, ptr_or_null(ws),
                                                     plan.backward_filter.bytes, &zero, plan.w, dw));
}

// Backward: in = {x, weight, grad_y}, out = {grad_x, grad_weight, grad_bias}.
void conv2d_cuda_backward(const OpCall& c) {
  const auto& p = c.get<Conv2dParams>();
  require_f32(c.in[2], "conv2d backward");
  const Device dev = c.in[2].device();
  cudnnHandle_t h = cuda::context(dev).cudnn;
  Plan& plan = plan_for(p, dev);
  const float* gy = c.in[2].data<float>();
  const bool want_dx = c.out[0].defined(), want_dw = c.out.size() > 1 && c.out[1].defined();
  // Under autocast: bfloat16 copies of the operands, results widened afterwards.
  const bool l = nhwc(p);
  const Tensor gy16 = p.bf16 && (want_dx || want_dw) ? to_bf16(c.in[2], l) : Tensor();
  const void* gy_op = p.bf16 ? gy16.raw_data() : static_cast<const void*>(gy);
  if (want_dx) {
    const Tensor w16 = p.bf16 ? to_bf16(c.in[1], l) : Tensor();
    const Tensor dx16 = p.bf16 ? bf16_buffer(c.out[0].numel(), dev) : Tensor();
    backward_data(plan, p, h, dev, p.bf16 ? w16.raw_data() : c.in[1].raw_data(), gy_op,
                  p.bf16 ? dx16.raw_data() : c.out[0].raw_data());
    if (p.bf16) widen(dx16, c.out[0], l);
  }
  if (want_dw) {
    const Tensor x16 = p.bf16 ? to_bf16(c.in[0], l) : Tensor();
    const Tensor dw16 = p.bf16 ? bf16_buffer(c.out[1].numel(), dev) : Tensor();
    backward_filter(plan, p, h, dev, p.bf16 ? x16.raw_data() : c.in[0].raw_data(), gy_op,
                    p.bf16 ? dw16.raw_data() : c.out[1].raw_data());
    if (p.bf16) widen(dw16, c.out[1], l);
  }
  if (c.out.size() > 2 && c.out[2].defined()) {
    // grad_bias[o] = sum over b and the output plane of grad_y[b, o, :]: first each
    // plane's sum [B*O], then the sum over the batch [O]; fixed order, no atomics.
    const cudaStream_t s = cuda::stream(dev);
    const int64_t planes = p.batch * p.out_channels;
    Tensor per_plane = Tensor::empty({planes}, DType::F32, dev);
    kernels::cuda::reduce_sum(gy, per_plane.data<float>(), planes, p.out_plane(), 1, 1.f, s);
    kernels::cuda::reduce_sum(per_plane.data<float>(), c.out[2].data<float>(), 1, p.batch,
                              p.out_channels, 1.f, s);
  }
}

// The NHWC op (engine/ops/nhwc.h): in = {x [B, H, W, C], w [O, kh, kw, C] (bfloat16),
// bias [O] float32 (may be undefined), residual [B, Ho, Wo, O] bfloat16 (may be
// undefined)}, out = {y [B, Ho, Wo, O] bfloat16}. cuDNN writes the product in bfloat16,
// then one pass adds the bias and the residual and applies ReLU in place.
void conv_nhwc_cuda_forward(const OpCall& c) {
  const auto& op = c.get<ConvNhwcParams>();
  const Conv2dParams& p = op.g;
  CAPTION_CHECK(p.nhwc && p.bf16, "conv_nhwc on CUDA: geometry not marked NHWC bfloat16");
  const Device dev = c.in[0].device();
  auto [h, plan, ws] = prepare_forward(p, dev);
  const float one = 1.f, zero = 0.f;
  uint16_t* y = c.out[0].data<uint16_t>();
  CAPTION_CUDNN_CHECK(cudnnConvolutionForward(h, &one, plan.x, c.in[0].raw_data(), plan.w,
                                              c.in[1].raw_data(), plan.conv, plan.forward.algo,
                                              ptr_or_null(ws), plan.forward.bytes, &zero, plan.y,
                                              y));
  kernels::cuda::conv_nhwc_epilogue(
      y, c.in[2].defined() ? c.in[2].data<float>() : nullptr,
      c.in[3].defined() ? c.in[3].data<uint16_t>() : nullptr, p.batch * p.out_plane(),
      p.out_channels, op.relu, cuda::stream(dev));
}

// Backward of the NHWC op (recorded only without an epilogue): in = {x, w, grad_y}, all
// bfloat16 NHWC as the plan describes them, out = {grad_x, grad_w, grad_bias,
// grad_residual} (the last two undefined), written by cuDNN in bfloat16 directly.
void conv_nhwc_cuda_backward(const OpCall& c) {
  const Conv2dParams& p = c.get<ConvNhwcParams>().g;
  CAPTION_CHECK(p.nhwc && p.bf16, "conv_nhwc on CUDA: geometry not marked NHWC bfloat16");
  const Device dev = c.in[2].device();
  cudnnHandle_t h = cuda::context(dev).cudnn;
  Plan& plan = plan_for(p, dev);
  if (c.out[0].defined())
    backward_data(plan, p, h, dev, c.in[1].raw_data(), c.in[2].raw_data(), c.out[0].raw_data());
  if (c.out[1].defined())
    backward_filter(plan, p, h, dev, c.in[0].raw_data(), c.in[2].raw_data(), c.out[1].raw_data());
}

[[maybe_unused]] const bool registered = [] {
  register_kernels(OpId::Conv2d, DeviceType::CUDA, conv2d_cuda_forward, conv2d_cuda_backward);
  register_kernels(OpId::ConvNhwc, DeviceType::CUDA, conv_nhwc_cuda_forward, conv_nhwc_cuda_backward);
  return true;
}();

}  // namespace

}  // namespace caption
