// cuDNN 9 emulated on the host (include/cudnn.h says what is covered).
//
// Memory: "device" pointers are host pointers and are dereferenced directly; a compute
// call has finished when it returns, except while its handle's stream is capturing a
// graph: it is then recorded (with copies of its scalars and descriptor fields) and run
// at each replay, as cuDNN's kernels would be.
//
// Arithmetic: one convolution engine for all algorithms, im2col + OpenBLAS sgemm per image,
// float32 throughout, with the same shapes as kernels/cpu/conv.cpp:
//   forward          y_b [O, N]  = W [O, K] * col(x_b) [K, N]
//   backward data    col [K, N]  = W^T [K, O] * dy_b [O, N], then dx_b = col2im(col)
//   backward filter  dW [O, K] += dy_b [O, N] * col(x_b)^T [N, K]   (over the batch)
// where K = C*kh*kw and N = Ho*Wo. A pointwise convolution (1x1, stride 1, no padding)
// skips im2col: the image is its own column matrix. The algorithms differ only in where
// the column buffer lives: in the caller's workspace (the algorithms that report a
// workspace, which the compute calls check is present and large enough) or in memory of
// the emulator's own (those that report none). Results are therefore identical across
// algorithms and runs (OpenBLAS splits a product over M and N, never over K).
//
// bfloat16 (uint16 storage, the upper half of a float32): operands are widened to float32,
// products accumulate in float32, and each result is rounded to nearest-even once, after
// alpha and beta are applied (NaN stays NaN), as cuDNN's bfloat16 convolutions with float32
// compute do. alpha and beta point to floats for both data types. With beta == 0 the
// destination is not read (it may hold NaN).
//
// CUDNN_CONVOLUTION (true convolution) runs as a cross-correlation with the filter
// flipped in both spatial dimensions; its filter gradient is flipped back.
#include <cblas.h>
#include <cudnn.h>

#include "emu_internal.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <new>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

// ---- descriptors -----------------------------------------------------------------------

struct cudnnContext {
  cudaStream_t stream = nullptr;  // recorded for cudnnGetStream, otherwise unused
};

struct cudnnTensorStruct {
  bool set = false;  // false until cudnnSetTensor4dDescriptor succeeds
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  cudnnTensorFormat_t format = CUDNN_TENSOR_NCHW;  // packed NCHW, or packed NHWC
  int n = 0, c = 0, h = 0, w = 0;
};

struct cudnnFilterStruct {
  bool set = false;
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  cudnnTensorFormat_t format = CUDNN_TENSOR_NCHW;  // packed KCRS, or packed KRSC (NHWC)
  int k = 0, c = 0, h = 0, w = 0;
};

struct cudnnConvolutionStruct {
  bool set = false;  // false until cudnnSetConvolution2dDescriptor succeeds
  int pad_h = 0, pad_w = 0, stride_h = 1, stride_w = 1, dilation_h = 1, dilation_w = 1;
  cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  cudnnDataType_t compute = CUDNN_DATA_FLOAT;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;  // cuDNN's default
};

namespace {

// ---- errors ----------------------------------------------------------------------------

// The message cudnnGetLastErrorString returns: per thread, like cuDNN's.
thread_local std::string last_error;

// Records "fn: what..." as this thread's last error and returns status.
template <typename... Args>
cudnnStatus_t fail(cudnnStatus_t status, const char* fn, const Args&... what) {
  std::ostringstream os;
  os << fn << ": ";
  (os << ... << what);
  last_error = os.str();
  return status;
}

// Runs body() and turns an allocation failure (the emulator's scratch memory, a thread
// start) into cuDNN's status instead of letting an exception cross the C interface.
template <typename Body>
cudnnStatus_t guarded(const char* fn, Body body) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return fail(CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED, fn,
                "out of host memory for the emulator's scratch buffers");
  } catch (const std::exception& e) {
    return fail(CUDNN_STATUS_INTERNAL_ERROR, fn, e.what());
  }
}

// A compute call's body as stream work, as cuDNN's kernels are: run now (its status
// returned), or, while the handle's stream is capturing, recorded into the graph and run
// at each replay. The body must then own copies of everything it reads (scalars,
// descriptor fields, pointers: the callers below copy them before building it); a
// failure during a replay has no caller to return to and aborts with its message.
template <typename Body>
cudnnStatus_t run_on_stream(const char* fn, cudnnHandle_t handle, Body body) {
  if (!caption_emu::stream_capturing(handle->stream)) {
    caption_emu::run_pending_transfers();
    return guarded(fn, body);
  }
  caption_emu::enqueue(handle->stream, [fn, body]() mutable {
    if (guarded(fn, body) != CUDNN_STATUS_SUCCESS) {
      std::fprintf(stderr, "cuda emulator: %s failed while a graph replayed it\n", fn);
      std::abort();
    }
  });
  return CUDNN_STATUS_SUCCESS;
}

const char* type_name(cudnnDataType_t t) {
  switch (t) {
    case CUDNN_DATA_FLOAT: return "CUDNN_DATA_FLOAT";
    case CUDNN_DATA_DOUBLE: return "CUDNN_DATA_DOUBLE";
    case CUDNN_DATA_HALF: return "CUDNN_DATA_HALF";
    case CUDNN_DATA_BFLOAT16: return "CUDNN_DATA_BFLOAT16";
    default: return "a data type other than CUDNN_DATA_FLOAT and CUDNN_DATA_BFLOAT16";
  }
}

// Validates a tensor or filter element type: a cudnnDataType_t at all (BAD_PARAM, as
// cuDNN), and one the emulation computes with (NOT_SUPPORTED).
cudnnStatus_t check_type(const char* fn, cudnnDataType_t t) {
  if (static_cast<int>(t) < CUDNN_DATA_FLOAT || static_cast<int>(t) > CUDNN_DATA_COMPLEX_FP64)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "dataType ", static_cast<int>(t),
                " is not a cudnnDataType_t");
  if (t != CUDNN_DATA_FLOAT && t != CUDNN_DATA_BFLOAT16)
    return fail(CUDNN_STATUS_NOT_SUPPORTED, fn, "dataType ", static_cast<int>(t),
                " is not supported by the host emulation (CUDNN_DATA_FLOAT and "
                "CUDNN_DATA_BFLOAT16 only)");
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t check_format(const char* fn, cudnnTensorFormat_t f) {
  if (f == CUDNN_TENSOR_NCHW || f == CUDNN_TENSOR_NHWC) return CUDNN_STATUS_SUCCESS;
  if (f == CUDNN_TENSOR_NCHW_VECT_C)
    return fail(CUDNN_STATUS_NOT_SUPPORTED, fn,
                "format CUDNN_TENSOR_NCHW_VECT_C is not supported by the host emulation "
                "(CUDNN_TENSOR_NCHW and CUDNN_TENSOR_NHWC only)");
  return fail(CUDNN_STATUS_BAD_PARAM, fn, "format ", static_cast<int>(f),
              " is not a cudnnTensorFormat_t");
}

// Validates the four sizes of a tensor or filter: positive, at most 2^31 - 1 elements in
// all (cuDNN's limit for these descriptors, NOT_SUPPORTED beyond).
cudnnStatus_t check_dims(const char* fn, int n, int c, int h, int w) {
  if (n <= 0 || c <= 0 || h <= 0 || w <= 0)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "dimensions [", n, ", ", c, ", ", h, ", ", w,
                "] must all be positive");
  const int64_t total = int64_t{n} * c * h * w;
  if (total > INT32_MAX)
    return fail(CUDNN_STATUS_NOT_SUPPORTED, fn, "dimensions [", n, ", ", c, ", ", h, ", ", w,
                "] hold ", total, " elements, beyond the limit of 2^31 - 1");
  return CUDNN_STATUS_SUCCESS;
}

std::string shape(int n, int c, int h, int w) {
  std::ostringstream os;
  os << "[" << n << ", " << c << ", " << h << ", " << w << "]";
  return os.str();
}
std::string shape(const cudnnTensorStruct& t) { return shape(t.n, t.c, t.h, t.w); }
std::string shape(const cudnnFilterStruct& f) { return shape(f.k, f.c, f.h, f.w); }

cudnnStatus_t check_tensor(const char* fn, const char* name, const cudnnTensorStruct* t) {
  if (t == nullptr) return fail(CUDNN_STATUS_BAD_PARAM, fn, name, " is NULL");
  if (!t->set)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, name,
                " was created but never set (cudnnSetTensor4dDescriptor)");
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t check_filter(const char* fn, const char* name, const cudnnFilterStruct* f) {
  if (f == nullptr) return fail(CUDNN_STATUS_BAD_PARAM, fn, name, " is NULL");
  if (!f->set)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, name,
                " was created but never set (cudnnSetFilter4dDescriptor)");
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t check_conv(const char* fn, const cudnnConvolutionStruct* c) {
  if (c == nullptr) return fail(CUDNN_STATUS_BAD_PARAM, fn, "convDesc is NULL");
  if (!c->set)
    return fail(CUDNN_STATUS_BAD_PARAM, fn,
                "convDesc was created but never set (cudnnSetConvolution2dDescriptor)");
  return CUDNN_STATUS_SUCCESS;
}

#define CUDNN_EMU_TRY(stmt)                                      \
  do {                                                           \
    const cudnnStatus_t cudnn_emu_status_ = (stmt);              \
    if (cudnn_emu_status_ != CUDNN_STATUS_SUCCESS) return cudnn_emu_status_; \
  } while (0)

// ---- geometry --------------------------------------------------------------------------

// One convolution's sizes, resolved from its descriptors.
struct Geometry {
  int64_t batch = 0, in_c = 0, in_h = 0, in_w = 0;
  int64_t out_c = 0, kernel_h = 0, kernel_w = 0;
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1;
  int64_t out_h = 0, out_w = 0;
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  bool flip = false;  // CUDNN_CONVOLUTION: the filter is applied flipped

  int64_t patch() const { return in_c * kernel_h * kernel_w; }  // gemm K
  int64_t plane() const { return out_h * out_w; }               // gemm N
  int64_t in_image() const { return in_c * in_h * in_w; }
  int64_t out_image() const { return out_c * plane(); }
  bool pointwise() const {
    return kernel_h == 1 && kernel_w == 1 && stride_h == 1 && stride_w == 1 && pad_h == 0 &&
           pad_w == 0;
  }
  // The column buffer of one image, in bytes (float32): the workspace of the algorithms
  // that keep it in the caller's workspace; none for a pointwise convolution.
  size_t col_bytes() const {
    return pointwise() ? 0 : static_cast<size_t>(patch() * plane()) * sizeof(float);
  }
  double flops() const { return 2.0 * batch * out_c * patch() * plane(); }
};

size_t element_bytes(cudnnDataType_t t);

// The emulator's memcheck: the image, filter and output tensors, at the sizes their
// descriptors give, must lie inside device memory (a descriptor bigger than its buffer
// would make cuDNN read or write past it on a GPU).
cudnnStatus_t check_extents(const char* fn, const Geometry& g, const void* image,
                            const char* image_name, const void* filter, const char* filter_name,
                            const void* output, const char* output_name) {
  const size_t e = element_bytes(g.type);
  const struct {
    const void* p;
    size_t bytes;
    const char* name;
  } operands[] = {{image, static_cast<size_t>(g.batch * g.in_image()) * e, image_name},
                  {filter, static_cast<size_t>(g.out_c * g.patch()) * e, filter_name},
                  {output, static_cast<size_t>(g.batch * g.out_image()) * e, output_name}};
  for (const auto& o : operands)
    if (o.bytes > 0 && !caption_emu::device_range_once_allocated(o.p, o.bytes))
      return fail(CUDNN_STATUS_BAD_PARAM, fn,
                  std::string(o.name) + " is not inside device memory for the size its descriptor gives (" +
                      std::to_string(o.bytes) + " bytes)");
  return CUDNN_STATUS_SUCCESS;
}

// cuDNN's output size, 1 + (in + 2 pad - ((k - 1) dilation + 1)) / stride, or 0 when the
// dilated filter does not fit in the padded input.
int64_t out_size(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dilation) {
  const int64_t span = in + 2 * pad - ((k - 1) * dilation + 1);
  return span < 0 ? 0 : 1 + span / stride;
}

// The geometry of x (*) w under conv, before any output descriptor is looked at.
cudnnStatus_t resolve_input(const char* fn, const cudnnConvolutionStruct* conv,
                            const cudnnTensorStruct* x, const char* x_name,
                            const cudnnFilterStruct* w, const char* w_name, Geometry* g) {
  CUDNN_EMU_TRY(check_conv(fn, conv));
  CUDNN_EMU_TRY(check_tensor(fn, x_name, x));
  CUDNN_EMU_TRY(check_filter(fn, w_name, w));
  if (x->type != w->type)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, x_name, " is ", type_name(x->type), " but ", w_name,
                " is ", type_name(w->type));
  if (x->c != w->c)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, x_name, " ", shape(*x), " has ", x->c,
                " channels but ", w_name, " ", shape(*w), " expects ", w->c,
                " (one group: channels must match)");
  g->batch = x->n;
  g->in_c = x->c;
  g->in_h = x->h;
  g->in_w = x->w;
  g->out_c = w->k;
  g->kernel_h = w->h;
  g->kernel_w = w->w;
  g->stride_h = conv->stride_h;
  g->stride_w = conv->stride_w;
  g->pad_h = conv->pad_h;
  g->pad_w = conv->pad_w;
  g->dilation_h = conv->dilation_h;
  g->dilation_w = conv->dilation_w;
  g->out_h = out_size(g->in_h, g->kernel_h, g->stride_h, g->pad_h, g->dilation_h);
  g->out_w = out_size(g->in_w, g->kernel_w, g->stride_w, g->pad_w, g->dilation_w);
  g->type = x->type;
  g->flip = conv->mode == CUDNN_CONVOLUTION;
  if (g->out_h <= 0 || g->out_w <= 0)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "the ", w->h, "x", w->w, " filter of ", w_name,
                " dilated by ", conv->dilation_h, "x", conv->dilation_w, " does not fit in the ",
                x->h, "x", x->w, " input of ", x_name, " padded by ", conv->pad_h, "x",
                conv->pad_w);
  return CUDNN_STATUS_SUCCESS;
}

// Names of the descriptors of one direction, for messages.
struct Names {
  const char *x, *w, *y;
};
constexpr Names kForwardNames{"xDesc", "wDesc", "yDesc"};
constexpr Names kBackwardDataNames{"dxDesc", "wDesc", "dyDesc"};
constexpr Names kBackwardFilterNames{"xDesc", "dwDesc", "dyDesc"};

// The geometry of a convolution whose descriptors must all agree: the output descriptor
// y must be exactly what x (*) w under conv gives, in the same data type.
cudnnStatus_t resolve(const char* fn, const Names& names, const cudnnTensorStruct* x,
                      const cudnnFilterStruct* w, const cudnnConvolutionStruct* conv,
                      const cudnnTensorStruct* y, Geometry* g) {
  CUDNN_EMU_TRY(resolve_input(fn, conv, x, names.x, w, names.w, g));
  CUDNN_EMU_TRY(check_tensor(fn, names.y, y));
  if (y->type != g->type)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, names.y, " is ", type_name(y->type), " but ",
                names.x, " is ", type_name(g->type));
  if (y->n != g->batch || y->c != g->out_c || y->h != g->out_h || y->w != g->out_w)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, names.y, " is ", shape(*y), " but ", names.x, " ",
                shape(*x), " (*) ", names.w, " ", shape(*w), " with padding ", g->pad_h, "x",
                g->pad_w, ", stride ", g->stride_h, "x", g->stride_w, ", dilation ",
                g->dilation_h, "x", g->dilation_w, " gives ",
                shape(x->n, w->k, static_cast<int>(g->out_h), static_cast<int>(g->out_w)));
  return CUDNN_STATUS_SUCCESS;
}

// ---- algorithms ------------------------------------------------------------------------

// One algorithm of a direction as the emulation reports it. `speed` orders the list (the
// heuristics' ranking) and scales the modelled time Find reports.
struct Algo {
  int algo;
  bool implemented;  // false: reported with CUDNN_STATUS_NOT_SUPPORTED, refused when run
  bool workspace;    // keeps the column buffer in the caller's workspace
  cudnnDeterminism_t determinism;
  double speed;
};

// Best first, as cuDNN ranks them; the unimplemented ones last, as cuDNN lists those it
// cannot run for a geometry. Forward algorithms are all deterministic, as in cuDNN; ALGO_0
// of the backward directions is reported non-deterministic, as cuDNN's is (its atomics),
// though the emulation computes it in a fixed order.
const std::vector<Algo>& forward_algos() {
  static const std::vector<Algo> algos = {
      {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, true, true, CUDNN_DETERMINISTIC, 1.0},
      {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, true, false, CUDNN_DETERMINISTIC, 0.85},
      {CUDNN_CONVOLUTION_FWD_ALGO_GEMM, true, true, CUDNN_DETERMINISTIC, 0.7},
      {CUDNN_CONVOLUTION_FWD_ALGO_DIRECT, false, false, CUDNN_DETERMINISTIC, 0},
      {CUDNN_CONVOLUTION_FWD_ALGO_FFT, false, false, CUDNN_DETERMINISTIC, 0},
      {CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING, false, false, CUDNN_DETERMINISTIC, 0},
      {CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD, false, false, CUDNN_DETERMINISTIC, 0},
      {CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED, false, false, CUDNN_DETERMINISTIC, 0},
  };
  return algos;
}

const std::vector<Algo>& backward_data_algos() {
  static const std::vector<Algo> algos = {
      {CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, true, false, CUDNN_NON_DETERMINISTIC, 1.0},
      {CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, true, true, CUDNN_DETERMINISTIC, 0.9},
      {CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT, false, false, CUDNN_DETERMINISTIC, 0},
      {CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING, false, false, CUDNN_DETERMINISTIC, 0},
      {CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD, false, false, CUDNN_DETERMINISTIC, 0},
      {CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED, false, false, CUDNN_DETERMINISTIC, 0},
  };
  return algos;
}

const std::vector<Algo>& backward_filter_algos() {
  static const std::vector<Algo> algos = {
      {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, true, false, CUDNN_NON_DETERMINISTIC, 1.0},
      {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, true, true, CUDNN_DETERMINISTIC, 0.9},
      {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT, false, false, CUDNN_DETERMINISTIC, 0},
      {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3, false, false, CUDNN_NON_DETERMINISTIC, 0},
      {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD, false, false, CUDNN_DETERMINISTIC, 0},
      {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED, false, false, CUDNN_DETERMINISTIC, 0},
      {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING, false, false, CUDNN_DETERMINISTIC, 0},
  };
  return algos;
}

const Algo* find_algo(const std::vector<Algo>& algos, int algo) {
  for (const Algo& a : algos)
    if (a.algo == algo) return &a;
  return nullptr;
}

size_t workspace_of(const Algo& a, const Geometry& g) {
  return a.implemented && a.workspace ? g.col_bytes() : 0;
}

// The math type reported with each result: FMA when FMA was asked for; tensor-core math
// for bfloat16 data otherwise (what cuDNN reports for its bfloat16 kernels); else the
// descriptor's own. The emulation computes in full float32 whatever the math type.
cudnnMathType_t reported_math(const Geometry& g, cudnnMathType_t asked) {
  if (asked == CUDNN_FMA_MATH) return CUDNN_FMA_MATH;
  if (g.type == CUDNN_DATA_BFLOAT16) return CUDNN_TENSOR_OP_MATH;
  return asked;
}

// Fills perf with the first requested results of a direction's list. The heuristics
// (measured = false) report time -1 (no measurement); Find (measured = true) reports a
// modelled time in milliseconds (the flops at a nominal 20 GFLOP/s scaled by the
// algorithm's speed), which keeps the ranking, and so the choice, the same from run to run.
template <typename Perf, typename AlgoEnum>
cudnnStatus_t report(const char* fn, cudnnHandle_t handle, const std::vector<Algo>& algos,
                     const Geometry& g, cudnnMathType_t math, bool measured, int requested,
                     int* returned, Perf* perf) {
  if (handle == nullptr) return fail(CUDNN_STATUS_BAD_PARAM, fn, "handle is NULL");
  if (requested <= 0)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "requestedAlgoCount is ", requested,
                ", it must be positive");
  if (returned == nullptr || perf == nullptr)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "returnedAlgoCount or perfResults is NULL");
  const int count = std::min(requested, static_cast<int>(algos.size()));
  for (int i = 0; i < count; ++i) {
    const Algo& a = algos[static_cast<size_t>(i)];
    Perf r{};
    r.algo = static_cast<AlgoEnum>(a.algo);
    r.status = a.implemented ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_NOT_SUPPORTED;
    r.time = measured && a.implemented ? static_cast<float>(g.flops() / (20e9 * a.speed) * 1e3)
                                       : -1.f;
    r.memory = workspace_of(a, g);
    r.determinism = a.determinism;
    r.mathType = reported_math(g, math);
    perf[i] = r;
  }
  *returned = count;
  return CUDNN_STATUS_SUCCESS;
}

// Validates the algorithm and workspace of a compute call; *col is where its column
// buffer goes: the caller's workspace, or nullptr for the emulator's own.
cudnnStatus_t check_algo(const char* fn, const std::vector<Algo>& algos, int algo,
                         const Geometry& g, void* workspace, size_t workspace_bytes, float** col) {
  const Algo* a = find_algo(algos, algo);
  if (a == nullptr) return fail(CUDNN_STATUS_BAD_PARAM, fn, "algo ", algo, " is out of range");
  if (!a->implemented)
    return fail(CUDNN_STATUS_NOT_SUPPORTED, fn, "algo ", algo,
                " is not implemented by the host emulation (the algorithm queries list those "
                "that are, with CUDNN_STATUS_SUCCESS)");
  const size_t need = workspace_of(*a, g);
  if (workspace_bytes < need)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "algo ", algo, " needs a workspace of ", need,
                " bytes, workSpaceSizeInBytes is ", workspace_bytes);
  if (need > 0 && workspace == nullptr)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "algo ", algo, " needs a workspace of ", need,
                " bytes, workSpace is NULL");
  if (need > 0 && reinterpret_cast<uintptr_t>(workspace) % alignof(float) != 0)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "workSpace is not aligned to ", alignof(float),
                " bytes");
  *col = need > 0 ? static_cast<float*>(workspace) : nullptr;
  return CUDNN_STATUS_SUCCESS;
}

// The body of the three Get*WorkspaceSize calls.
cudnnStatus_t workspace_size(const char* fn, cudnnHandle_t handle, const std::vector<Algo>& algos,
                             int algo, const Geometry& g, size_t* size_in_bytes) {
  if (handle == nullptr || size_in_bytes == nullptr)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "handle or sizeInBytes is NULL");
  const Algo* a = find_algo(algos, algo);
  if (a == nullptr) return fail(CUDNN_STATUS_BAD_PARAM, fn, "algo ", algo, " is out of range");
  if (!a->implemented)
    return fail(CUDNN_STATUS_NOT_SUPPORTED, fn, "algo ", algo,
                " is not implemented by the host emulation");
  *size_in_bytes = workspace_of(*a, g);
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t check_pointers(const char* fn, cudnnHandle_t handle, const void* alpha,
                             const void* beta, const void* a, const void* b, const void* c) {
  if (handle == nullptr) return fail(CUDNN_STATUS_BAD_PARAM, fn, "handle is NULL");
  if (alpha == nullptr || beta == nullptr)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "alpha or beta is NULL");
  if (a == nullptr || b == nullptr || c == nullptr)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "a data pointer is NULL");
  return CUDNN_STATUS_SUCCESS;
}

// ---- element types ---------------------------------------------------------------------

size_t element_bytes(cudnnDataType_t t) { return t == CUDNN_DATA_BFLOAT16 ? 2 : 4; }

float bf16_to_float(uint16_t bits) {
  const uint32_t u = static_cast<uint32_t>(bits) << 16;
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// Round to nearest, ties to even; NaN stays a (quiet) NaN; overflow rounds to infinity.
uint16_t float_to_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float load(cudnnDataType_t t, const void* p, int64_t i) {
  return t == CUDNN_DATA_FLOAT ? static_cast<const float*>(p)[i]
                               : bf16_to_float(static_cast<const uint16_t*>(p)[i]);
}

// dst[offset + i] = value[i] + beta * dst[offset + i] for i < n, stored in type t
// (rounded once for bfloat16); dst is not read when beta == 0.
void store(cudnnDataType_t t, const float* value, float beta, void* dst, int64_t offset,
           int64_t n) {
  if (t == CUDNN_DATA_FLOAT) {
    float* d = static_cast<float*>(dst) + offset;
    if (beta == 0.f) {
      std::copy_n(value, n, d);
    } else {
      for (int64_t i = 0; i < n; ++i) d[i] = value[i] + beta * d[i];
    }
  } else {
    uint16_t* d = static_cast<uint16_t*>(dst) + offset;
    if (beta == 0.f) {
      for (int64_t i = 0; i < n; ++i) d[i] = float_to_bf16(value[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) d[i] = float_to_bf16(value[i] + beta * bf16_to_float(d[i]));
    }
  }
}

// ---- scratch memory --------------------------------------------------------------------

// The emulator's own buffers, per thread, kept between calls (no allocation in a steady
// loop): col for the algorithms without workspace, and float32 copies of bfloat16
// operands and results.
struct Scratch {
  std::vector<float> col, image, filter, out;
};
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}
float* grow(std::vector<float>& v, int64_t n) {
  if (v.size() < static_cast<size_t>(n)) v.resize(static_cast<size_t>(n));
  return v.data();
}

// Elements [offset, offset + n) of p as float32: p itself for float32 data, else a
// widened copy in buf.
const float* as_float(cudnnDataType_t t, const void* p, int64_t offset, int64_t n,
                      std::vector<float>& buf) {
  if (t == CUDNN_DATA_FLOAT) return static_cast<const float*>(p) + offset;
  const uint16_t* s = static_cast<const uint16_t*>(p) + offset;
  float* d = grow(buf, n);
  for (int64_t i = 0; i < n; ++i) d[i] = bf16_to_float(s[i]);
  return d;
}

// The filter [O, C*kh*kw] as the gemms read it: w itself for float32 cross-correlation,
// else a float32 copy, spatially flipped for CUDNN_CONVOLUTION (each (o, c) block of
// kh*kw taps reversed).
const float* filter_operand(const Geometry& g, const void* w, std::vector<float>& buf) {
  const int64_t n = g.out_c * g.patch();
  if (!g.flip) return as_float(g.type, w, 0, n, buf);
  const int64_t taps = g.kernel_h * g.kernel_w;
  float* d = grow(buf, n);
  for (int64_t blk = 0; blk < n; blk += taps)
    for (int64_t t = 0; t < taps; ++t) d[blk + t] = load(g.type, w, blk + taps - 1 - t);
  return d;
}

// ---- im2col / col2im -------------------------------------------------------------------

// Output positions o in [0, out) whose input position o*stride - pad + offset lies in
// [0, in): a contiguous range [lo, hi), empty when lo == hi.
struct Range {
  int64_t lo, hi;
};
Range valid_range(int64_t out, int64_t in, int64_t stride, int64_t pad, int64_t offset) {
  const int64_t first = pad - offset;           // o*stride >= first
  const int64_t last = in - 1 + pad - offset;   // o*stride <= last
  const int64_t lo = first <= 0 ? 0 : (first + stride - 1) / stride;
  const int64_t hi = last < 0 ? 0 : last / stride + 1;
  const int64_t l = std::min(lo, out);
  return {l, std::clamp(hi, l, out)};
}

// Runs fn(c_begin, c_end) over [0, channels), split between the machine's cores when the
// work (elements touched) repays starting threads. Channels are independent in im2col and
// col2im alike, so the split is race-free and the result does not depend on it.
template <typename Fn>
void over_channels(int64_t channels, int64_t elements, Fn fn) {
  constexpr int64_t kMinElementsPerThread = int64_t{1} << 18;
  const int64_t cores = std::max<int64_t>(1, std::thread::hardware_concurrency());
  const int64_t threads =
      std::min({cores, channels, std::max<int64_t>(1, elements / kMinElementsPerThread)});
  if (threads <= 1) {
    fn(int64_t{0}, channels);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(threads - 1));
  const int64_t per = (channels + threads - 1) / threads;
  for (int64_t t = 1; t < threads; ++t) {
    const int64_t b = std::min(channels, t * per), e = std::min(channels, b + per);
    pool.emplace_back([=] { fn(b, e); });
  }
  fn(int64_t{0}, std::min(channels, per));
  for (std::thread& th : pool) th.join();
}

// col [C*kh*kw, Ho*Wo] of one image x [C, H, W]: row (c, ki, kj) holds the input pixel
// each output position reads through that tap, zero where it falls in the padding.
void im2col(const Geometry& g, const float* x, float* col) {
  const int64_t H = g.in_h, W = g.in_w, Ho = g.out_h, Wo = g.out_w, N = Ho * Wo;
  const int64_t sh = g.stride_h, sw = g.stride_w;
  over_channels(g.in_c, g.patch() * N, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const float* xc = x + c * H * W;
      for (int64_t ki = 0; ki < g.kernel_h; ++ki) {
        const Range rows = valid_range(Ho, H, sh, g.pad_h, ki * g.dilation_h);
        for (int64_t kj = 0; kj < g.kernel_w; ++kj) {
          float* dst = col + ((c * g.kernel_h + ki) * g.kernel_w + kj) * N;
          const Range cols = valid_range(Wo, W, sw, g.pad_w, kj * g.dilation_w);
          const int64_t iw0 = cols.lo * sw - g.pad_w + kj * g.dilation_w;
          const int64_t n = cols.hi - cols.lo;
          std::fill_n(dst, rows.lo * Wo, 0.f);
          for (int64_t oh = rows.lo; oh < rows.hi; ++oh) {
            float* d = dst + oh * Wo;
            const float* s = xc + (oh * sh - g.pad_h + ki * g.dilation_h) * W + iw0;
            std::fill_n(d, cols.lo, 0.f);
            if (sw == 1) {
              std::copy_n(s, n, d + cols.lo);
            } else {
              for (int64_t k = 0; k < n; ++k) d[cols.lo + k] = s[k * sw];
            }
            std::fill_n(d + cols.hi, Wo - cols.hi, 0.f);
          }
          std::fill_n(dst + rows.hi * Wo, (Ho - rows.hi) * Wo, 0.f);
        }
      }
    }
  });
}

// The adjoint of im2col: x [C, H, W] (written, not accumulated into) = the sum of col's
// entries over every (tap, output position) that reads each pixel, taps in a fixed order.
void col2im(const Geometry& g, const float* col, float* x) {
  const int64_t H = g.in_h, W = g.in_w, Ho = g.out_h, Wo = g.out_w, N = Ho * Wo;
  const int64_t sh = g.stride_h, sw = g.stride_w;
  over_channels(g.in_c, g.patch() * N, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      float* xc = x + c * H * W;
      std::fill_n(xc, H * W, 0.f);
      for (int64_t ki = 0; ki < g.kernel_h; ++ki) {
        const Range rows = valid_range(Ho, H, sh, g.pad_h, ki * g.dilation_h);
        for (int64_t kj = 0; kj < g.kernel_w; ++kj) {
          const float* src = col + ((c * g.kernel_h + ki) * g.kernel_w + kj) * N;
          const Range cols = valid_range(Wo, W, sw, g.pad_w, kj * g.dilation_w);
          const int64_t iw0 = cols.lo * sw - g.pad_w + kj * g.dilation_w;
          const int64_t n = cols.hi - cols.lo;
          for (int64_t oh = rows.lo; oh < rows.hi; ++oh) {
            const float* s = src + oh * Wo + cols.lo;
            float* d = xc + (oh * sh - g.pad_h + ki * g.dilation_h) * W + iw0;
            if (sw == 1) {
              for (int64_t k = 0; k < n; ++k) d[k] += s[k];
            } else {
              for (int64_t k = 0; k < n; ++k) d[k * sw] += s[k];
            }
          }
        }
      }
    }
  });
}

// Row-major C [M, N] = alpha * op(A) op(B) + beta * C (C not read when beta == 0, as BLAS
// specifies).
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, static_cast<blasint>(M),
              static_cast<blasint>(N), static_cast<blasint>(K), alpha, A,
              static_cast<blasint>(lda), B, static_cast<blasint>(ldb), beta, C,
              static_cast<blasint>(ldc));
}

// ---- layouts ---------------------------------------------------------------------------

// The computations below read and write packed NCHW (filters KCRS). An operand whose
// descriptor says NHWC (KRSC) is transposed into an NCHW copy of the same element type
// first, and an NHWC result is computed into such a copy (holding the old values when
// beta reads them) and transposed back.
struct Layouts {
  bool x = false, w = false, y = false;  // NHWC
  bool any() const { return x || w || y; }
};

// Packed [n][c][plane] <-> [n][plane][c], elements of `bytes` bytes.
void transpose_layout(const void* src, void* dst, int64_t n, int64_t c, int64_t plane,
                      size_t bytes, bool to_nchw) {
  const auto* s = static_cast<const unsigned char*>(src);
  auto* d = static_cast<unsigned char*>(dst);
  for (int64_t b = 0; b < n; ++b)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t p = 0; p < plane; ++p) {
        const int64_t nchw = (b * c + ch) * plane + p, nhwc = (b * plane + p) * c + ch;
        std::memcpy(d + (to_nchw ? nchw : nhwc) * bytes, s + (to_nchw ? nhwc : nchw) * bytes, bytes);
      }
}

// The three operands' packed shapes as [n][c][plane]: image, filter (KCRS), output.
struct Shape3 {
  int64_t n, c, plane;
};
Shape3 image_of(const Geometry& g) { return {g.batch, g.in_c, g.in_h * g.in_w}; }
Shape3 filter_of(const Geometry& g) { return {g.out_c, g.in_c, g.kernel_h * g.kernel_w}; }
Shape3 output_of(const Geometry& g) { return {g.batch, g.out_c, g.plane()}; }

// An NCHW view of one input operand: the pointer itself, or a transposed copy in `buf`.
const void* as_nchw(bool nhwc, const void* p, Shape3 s, size_t bytes, std::vector<unsigned char>& buf) {
  if (!nhwc) return p;
  buf.resize(static_cast<size_t>(s.n * s.c * s.plane) * bytes);
  transpose_layout(p, buf.data(), s.n, s.c, s.plane, bytes, true);
  return buf.data();
}

// The NCHW destination of a result: the caller's memory, or for NHWC a copy (holding the
// old values when beta reads them) that finish() transposes back.
class NchwOutput {
 public:
  NchwOutput(bool nhwc, void* dst, Shape3 s, size_t bytes, bool read_old)
      : nhwc_(nhwc), dst_(dst), s_(s), bytes_(bytes) {
    if (!nhwc_) return;
    if (read_old) {
      as_nchw(true, dst, s, bytes, buf_);
    } else {
      buf_.resize(static_cast<size_t>(s.n * s.c * s.plane) * bytes);
    }
  }
  void* data() { return nhwc_ ? static_cast<void*>(buf_.data()) : dst_; }
  void finish() {
    if (nhwc_) transpose_layout(buf_.data(), dst_, s_.n, s_.c, s_.plane, bytes_, false);
  }

 private:
  bool nhwc_;
  void* dst_;
  Shape3 s_;
  size_t bytes_;
  std::vector<unsigned char> buf_;
};

bool nhwc(const cudnnTensorStruct* t) { return t->format == CUDNN_TENSOR_NHWC; }
bool nhwc(const cudnnFilterStruct* f) { return f->format == CUDNN_TENSOR_NHWC; }

// ---- the three directions --------------------------------------------------------------

// y = alpha * (x (*) w) + beta * y. col: the column buffer (the caller's workspace), or
// nullptr to use the emulator's own.
void run_forward(const Geometry& g, float alpha, const void* x, const void* w, float beta,
                 void* y, float* col) {
  Scratch& s = scratch();
  const int64_t O = g.out_c, K = g.patch(), N = g.plane();
  if (!col && !g.pointwise()) col = grow(s.col, K * N);
  const float* wf = filter_operand(g, w, s.filter);
  for (int64_t b = 0; b < g.batch; ++b) {
    const float* xb = as_float(g.type, x, b * g.in_image(), g.in_image(), s.image);
    const float* cb = xb;
    if (!g.pointwise()) {
      im2col(g, xb, col);
      cb = col;
    }
    if (g.type == CUDNN_DATA_FLOAT) {
      float* yb = static_cast<float*>(y) + b * O * N;
      sgemm(false, false, O, N, K, alpha, wf, K, cb, N, beta, yb, N);
    } else {
      float* acc = grow(s.out, O * N);
      sgemm(false, false, O, N, K, alpha, wf, K, cb, N, 0.f, acc, N);
      store(g.type, acc, beta, y, b * O * N, O * N);
    }
  }
}

// dx = alpha * (the gradient of x (*) w with respect to x, for dy) + beta * dx.
void run_backward_data(const Geometry& g, float alpha, const void* w, const void* dy, float beta,
                       void* dx, float* col) {
  Scratch& s = scratch();
  const int64_t O = g.out_c, K = g.patch(), N = g.plane(), X = g.in_image();
  if (!col && !g.pointwise()) col = grow(s.col, K * N);
  const float* wf = filter_operand(g, w, s.filter);
  const bool in_place = g.type == CUDNN_DATA_FLOAT;
  for (int64_t b = 0; b < g.batch; ++b) {
    const float* dyb = as_float(g.type, dy, b * O * N, O * N, s.out);
    if (g.pointwise()) {  // K == C and N == H*W: dx_b is the product itself
      if (in_place) {
        sgemm(true, false, K, N, O, alpha, wf, K, dyb, N, beta, static_cast<float*>(dx) + b * X,
              N);
      } else {
        float* acc = grow(s.image, X);
        sgemm(true, false, K, N, O, alpha, wf, K, dyb, N, 0.f, acc, N);
        store(g.type, acc, beta, dx, b * X, X);
      }
      continue;
    }
    sgemm(true, false, K, N, O, alpha, wf, K, dyb, N, 0.f, col, N);
    if (in_place && beta == 0.f) {
      col2im(g, col, static_cast<float*>(dx) + b * X);
    } else {
      float* img = grow(s.image, X);
      col2im(g, col, img);
      store(g.type, img, beta, dx, b * X, X);
    }
  }
}

// dw = alpha * (the gradient of x (*) w with respect to w, for dy, summed over the batch)
// + beta * dw.
void run_backward_filter(const Geometry& g, float alpha, const void* x, const void* dy,
                         float beta, void* dw, float* col) {
  Scratch& s = scratch();
  const int64_t O = g.out_c, K = g.patch(), N = g.plane();
  if (!col && !g.pointwise()) col = grow(s.col, K * N);
  // float32 cross-correlation accumulates in dw itself; otherwise in a float32 buffer
  // that is flipped and rounded into dw at the end.
  const bool in_place = g.type == CUDNN_DATA_FLOAT && !g.flip;
  float* acc = in_place ? static_cast<float*>(dw) : grow(s.filter, O * K);
  for (int64_t b = 0; b < g.batch; ++b) {
    const float* xb = as_float(g.type, x, b * g.in_image(), g.in_image(), s.image);
    const float* cb = xb;
    if (!g.pointwise()) {
      im2col(g, xb, col);
      cb = col;
    }
    const float* dyb = as_float(g.type, dy, b * O * N, O * N, s.out);
    const float beta_b = b > 0 ? 1.f : in_place ? beta : 0.f;
    sgemm(false, true, O, K, N, alpha, dyb, N, cb, N, beta_b, acc, K);
  }
  if (in_place) return;
  if (g.flip) {
    const int64_t taps = g.kernel_h * g.kernel_w;
    for (int64_t blk = 0; blk < O * K; blk += taps) std::reverse(acc + blk, acc + blk + taps);
  }
  store(g.type, acc, beta, dw, 0, O * K);
}

}  // namespace

// ---- the API ---------------------------------------------------------------------------

extern "C" {

size_t CUDNNWINAPI cudnnGetVersion(void) { return CUDNN_VERSION; }

const char* CUDNNWINAPI cudnnGetErrorString(cudnnStatus_t status) {
  switch (status) {
#define CUDNN_EMU_NAME(s) \
  case s:                 \
    return #s;
    CUDNN_EMU_NAME(CUDNN_STATUS_SUCCESS)
    CUDNN_EMU_NAME(CUDNN_STATUS_NOT_INITIALIZED)
    CUDNN_EMU_NAME(CUDNN_STATUS_SUBLIBRARY_VERSION_MISMATCH)
    CUDNN_EMU_NAME(CUDNN_STATUS_SERIALIZATION_VERSION_MISMATCH)
    CUDNN_EMU_NAME(CUDNN_STATUS_DEPRECATED)
    CUDNN_EMU_NAME(CUDNN_STATUS_LICENSE_ERROR)
    CUDNN_EMU_NAME(CUDNN_STATUS_RUNTIME_IN_PROGRESS)
    CUDNN_EMU_NAME(CUDNN_STATUS_RUNTIME_FP_OVERFLOW)
    CUDNN_EMU_NAME(CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED)
    CUDNN_EMU_NAME(CUDNN_STATUS_BAD_PARAM)
    CUDNN_EMU_NAME(CUDNN_STATUS_BAD_PARAM_NULL_POINTER)
    CUDNN_EMU_NAME(CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER)
    CUDNN_EMU_NAME(CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED)
    CUDNN_EMU_NAME(CUDNN_STATUS_BAD_PARAM_OUT_OF_BOUND)
    CUDNN_EMU_NAME(CUDNN_STATUS_BAD_PARAM_SIZE_INSUFFICIENT)
    CUDNN_EMU_NAME(CUDNN_STATUS_BAD_PARAM_STREAM_MISMATCH)
    CUDNN_EMU_NAME(CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH)
    CUDNN_EMU_NAME(CUDNN_STATUS_BAD_PARAM_DUPLICATED_ENTRIES)
    CUDNN_EMU_NAME(CUDNN_STATUS_BAD_PARAM_ATTRIBUTE_TYPE)
    CUDNN_EMU_NAME(CUDNN_STATUS_BAD_PARAM_CUDA_GRAPH_MISMATCH)
    CUDNN_EMU_NAME(CUDNN_STATUS_BAD_PARAM_DESCRIPTOR_TYPE)
    CUDNN_EMU_NAME(CUDNN_STATUS_NOT_SUPPORTED)
    CUDNN_EMU_NAME(CUDNN_STATUS_NOT_SUPPORTED_GRAPH_PATTERN)
    CUDNN_EMU_NAME(CUDNN_STATUS_NOT_SUPPORTED_SHAPE)
    CUDNN_EMU_NAME(CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE)
    CUDNN_EMU_NAME(CUDNN_STATUS_NOT_SUPPORTED_LAYOUT)
    CUDNN_EMU_NAME(CUDNN_STATUS_NOT_SUPPORTED_INCOMPATIBLE_CUDA_DRIVER)
    CUDNN_EMU_NAME(CUDNN_STATUS_NOT_SUPPORTED_INCOMPATIBLE_CUDART)
    CUDNN_EMU_NAME(CUDNN_STATUS_NOT_SUPPORTED_ARCH_MISMATCH)
    CUDNN_EMU_NAME(CUDNN_STATUS_NOT_SUPPORTED_RUNTIME_PREREQUISITE_MISSING)
    CUDNN_EMU_NAME(CUDNN_STATUS_NOT_SUPPORTED_SUBLIBRARY_UNAVAILABLE)
    CUDNN_EMU_NAME(CUDNN_STATUS_NOT_SUPPORTED_SHARED_MEMORY_INSUFFICIENT)
    CUDNN_EMU_NAME(CUDNN_STATUS_NOT_SUPPORTED_PADDING)
    CUDNN_EMU_NAME(CUDNN_STATUS_NOT_SUPPORTED_BAD_LAUNCH_PARAM)
    CUDNN_EMU_NAME(CUDNN_STATUS_NOT_SUPPORTED_CUDA_GRAPH_NATIVE_API)
    CUDNN_EMU_NAME(CUDNN_STATUS_NOT_SUPPORTED_INVALID_DYNAMIC_SHAPE)
    CUDNN_EMU_NAME(CUDNN_STATUS_INTERNAL_ERROR)
    CUDNN_EMU_NAME(CUDNN_STATUS_INTERNAL_ERROR_COMPILATION_FAILED)
    CUDNN_EMU_NAME(CUDNN_STATUS_INTERNAL_ERROR_UNEXPECTED_VALUE)
    CUDNN_EMU_NAME(CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED)
    CUDNN_EMU_NAME(CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED)
    CUDNN_EMU_NAME(CUDNN_STATUS_INTERNAL_ERROR_BAD_LAUNCH_PARAM)
    CUDNN_EMU_NAME(CUDNN_STATUS_INTERNAL_ERROR_TEXTURE_CREATION_FAILED)
    CUDNN_EMU_NAME(CUDNN_STATUS_EXECUTION_FAILED)
    CUDNN_EMU_NAME(CUDNN_STATUS_EXECUTION_FAILED_CUDA_DRIVER)
    CUDNN_EMU_NAME(CUDNN_STATUS_EXECUTION_FAILED_CUBLAS)
    CUDNN_EMU_NAME(CUDNN_STATUS_EXECUTION_FAILED_CUDART)
    CUDNN_EMU_NAME(CUDNN_STATUS_EXECUTION_FAILED_CURAND)
    CUDNN_EMU_NAME(CUDNN_STATUS_INVALID_VALUE)
#undef CUDNN_EMU_NAME
  }
  return "CUDNN_UNKNOWN_STATUS_FOUND";
}

void CUDNNWINAPI cudnnGetLastErrorString(char* message, size_t max_size) {
  if (message == nullptr || max_size == 0) return;
  const size_t n = std::min(last_error.size(), max_size - 1);
  std::memcpy(message, last_error.data(), n);
  message[n] = '\0';
  last_error.clear();
}

cudnnStatus_t CUDNNWINAPI cudnnCreate(cudnnHandle_t* handle) {
  if (handle == nullptr) return fail(CUDNN_STATUS_BAD_PARAM, "cudnnCreate", "handle is NULL");
  return guarded("cudnnCreate", [&] {
    *handle = new cudnnContext();
    return CUDNN_STATUS_SUCCESS;
  });
}

cudnnStatus_t CUDNNWINAPI cudnnDestroy(cudnnHandle_t handle) {
  if (handle == nullptr) return fail(CUDNN_STATUS_BAD_PARAM, "cudnnDestroy", "handle is NULL");
  delete handle;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnSetStream(cudnnHandle_t handle, cudaStream_t streamId) {
  if (handle == nullptr) return fail(CUDNN_STATUS_BAD_PARAM, "cudnnSetStream", "handle is NULL");
  handle->stream = streamId;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnGetStream(cudnnHandle_t handle, cudaStream_t* streamId) {
  if (handle == nullptr || streamId == nullptr)
    return fail(CUDNN_STATUS_BAD_PARAM, "cudnnGetStream", "handle or streamId is NULL");
  *streamId = handle->stream;
  return CUDNN_STATUS_SUCCESS;
}

// ---- tensors and filters ----

cudnnStatus_t CUDNNWINAPI cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t* tensorDesc) {
  static constexpr const char* fn = "cudnnCreateTensorDescriptor";
  if (tensorDesc == nullptr) return fail(CUDNN_STATUS_BAD_PARAM, fn, "tensorDesc is NULL");
  return guarded(fn, [&] {
    *tensorDesc = new cudnnTensorStruct();
    return CUDNN_STATUS_SUCCESS;
  });
}

cudnnStatus_t CUDNNWINAPI cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t tensorDesc,
                                                     cudnnTensorFormat_t format,
                                                     cudnnDataType_t dataType, int n, int c,
                                                     int h, int w) {
  static constexpr const char* fn = "cudnnSetTensor4dDescriptor";
  if (tensorDesc == nullptr) return fail(CUDNN_STATUS_BAD_PARAM, fn, "tensorDesc is NULL");
  CUDNN_EMU_TRY(check_format(fn, format));
  CUDNN_EMU_TRY(check_type(fn, dataType));
  CUDNN_EMU_TRY(check_dims(fn, n, c, h, w));
  tensorDesc->set = true;
  tensorDesc->type = dataType;
  tensorDesc->format = format;
  tensorDesc->n = n;
  tensorDesc->c = c;
  tensorDesc->h = h;
  tensorDesc->w = w;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnGetTensor4dDescriptor(const cudnnTensorDescriptor_t tensorDesc,
                                                     cudnnDataType_t* dataType, int* n, int* c,
                                                     int* h, int* w, int* nStride, int* cStride,
                                                     int* hStride, int* wStride) {
  static constexpr const char* fn = "cudnnGetTensor4dDescriptor";
  CUDNN_EMU_TRY(check_tensor(fn, "tensorDesc", tensorDesc));
  if (!dataType || !n || !c || !h || !w || !nStride || !cStride || !hStride || !wStride)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "an output pointer is NULL");
  const cudnnTensorStruct& t = *tensorDesc;
  *dataType = t.type;
  *n = t.n;
  *c = t.c;
  *h = t.h;
  *w = t.w;
  if (t.format == CUDNN_TENSOR_NHWC) {
    *cStride = 1;
    *wStride = t.c;
    *hStride = t.w * t.c;
  } else {
    *wStride = 1;
    *hStride = t.w;
    *cStride = t.h * t.w;
  }
  *nStride = t.c * t.h * t.w;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t tensorDesc) {
  delete tensorDesc;  // NULL is a no-op, as in cuDNN
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t* filterDesc) {
  static constexpr const char* fn = "cudnnCreateFilterDescriptor";
  if (filterDesc == nullptr) return fail(CUDNN_STATUS_BAD_PARAM, fn, "filterDesc is NULL");
  return guarded(fn, [&] {
    *filterDesc = new cudnnFilterStruct();
    return CUDNN_STATUS_SUCCESS;
  });
}

cudnnStatus_t CUDNNWINAPI cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t filterDesc,
                                                     cudnnDataType_t dataType,
                                                     cudnnTensorFormat_t format, int k, int c,
                                                     int h, int w) {
  static constexpr const char* fn = "cudnnSetFilter4dDescriptor";
  if (filterDesc == nullptr) return fail(CUDNN_STATUS_BAD_PARAM, fn, "filterDesc is NULL");
  CUDNN_EMU_TRY(check_type(fn, dataType));
  CUDNN_EMU_TRY(check_format(fn, format));
  CUDNN_EMU_TRY(check_dims(fn, k, c, h, w));
  filterDesc->set = true;
  filterDesc->type = dataType;
  filterDesc->format = format;
  filterDesc->k = k;
  filterDesc->c = c;
  filterDesc->h = h;
  filterDesc->w = w;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnGetFilter4dDescriptor(const cudnnFilterDescriptor_t filterDesc,
                                                     cudnnDataType_t* dataType,
                                                     cudnnTensorFormat_t* format, int* k, int* c,
                                                     int* h, int* w) {
  static constexpr const char* fn = "cudnnGetFilter4dDescriptor";
  CUDNN_EMU_TRY(check_filter(fn, "filterDesc", filterDesc));
  if (!dataType || !format || !k || !c || !h || !w)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "an output pointer is NULL");
  *dataType = filterDesc->type;
  *format = filterDesc->format;
  *k = filterDesc->k;
  *c = filterDesc->c;
  *h = filterDesc->h;
  *w = filterDesc->w;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t filterDesc) {
  delete filterDesc;
  return CUDNN_STATUS_SUCCESS;
}

// C = alpha * A + beta * C; each dimension of A equals C's or is 1 (broadcast), e.g. a
// bias [1, C, 1, 1] over [N, C, H, W].
cudnnStatus_t CUDNNWINAPI cudnnAddTensor(cudnnHandle_t handle, const void* alpha,
                                         const cudnnTensorDescriptor_t aDesc, const void* A,
                                         const void* beta, const cudnnTensorDescriptor_t cDesc,
                                         void* C) {
  static constexpr const char* fn = "cudnnAddTensor";
  CUDNN_EMU_TRY(check_tensor(fn, "aDesc", aDesc));
  CUDNN_EMU_TRY(check_tensor(fn, "cDesc", cDesc));
  CUDNN_EMU_TRY(check_pointers(fn, handle, alpha, beta, A, C, C));
  const cudnnTensorStruct &a = *aDesc, &c = *cDesc;
  if (a.format != CUDNN_TENSOR_NCHW || c.format != CUDNN_TENSOR_NCHW)
    return fail(CUDNN_STATUS_NOT_SUPPORTED, fn,
                "NHWC descriptors are not supported here by the host emulation");
  if (a.type != c.type)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "aDesc is ", type_name(a.type), " but cDesc is ",
                type_name(c.type));
  const int ad[4] = {a.n, a.c, a.h, a.w}, cd[4] = {c.n, c.c, c.h, c.w};
  for (int i = 0; i < 4; ++i)
    if (ad[i] != cd[i] && ad[i] != 1)
      return fail(CUDNN_STATUS_BAD_PARAM, fn, "aDesc ", shape(a), " does not broadcast to cDesc ",
                  shape(c), " (each dimension must match or be 1)");
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  // A's strides, 0 along broadcast dimensions.
  const int64_t sw = a.w == 1 ? 0 : 1, sh = a.h == 1 ? 0 : int64_t{a.w};
  const int64_t sc = a.c == 1 ? 0 : int64_t{a.h} * a.w, sn = a.n == 1 ? 0 : int64_t{a.c} * a.h * a.w;
  return run_on_stream(fn, handle, [=, a = a, c = c] {
    std::vector<float> row(static_cast<size_t>(c.w));
    int64_t ci = 0;
    for (int64_t n = 0; n < c.n; ++n)
      for (int64_t ch = 0; ch < c.c; ++ch)
        for (int64_t h = 0; h < c.h; ++h, ci += c.w) {
          const int64_t ai = n * sn + ch * sc + h * sh;
          for (int64_t w = 0; w < c.w; ++w)
            row[static_cast<size_t>(w)] = al * load(a.type, A, ai + w * sw);
          store(c.type, row.data(), be, C, ci, c.w);
        }
    return CUDNN_STATUS_SUCCESS;
  });
}

// ---- convolution descriptors ----

cudnnStatus_t CUDNNWINAPI
cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t* convDesc) {
  static constexpr const char* fn = "cudnnCreateConvolutionDescriptor";
  if (convDesc == nullptr) return fail(CUDNN_STATUS_BAD_PARAM, fn, "convDesc is NULL");
  return guarded(fn, [&] {
    *convDesc = new cudnnConvolutionStruct();
    return CUDNN_STATUS_SUCCESS;
  });
}

cudnnStatus_t CUDNNWINAPI cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t convDesc) {
  delete convDesc;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t convDesc,
                                                      cudnnMathType_t mathType) {
  static constexpr const char* fn = "cudnnSetConvolutionMathType";
  if (convDesc == nullptr) return fail(CUDNN_STATUS_BAD_PARAM, fn, "convDesc is NULL");
  if (mathType != CUDNN_DEFAULT_MATH && mathType != CUDNN_TENSOR_OP_MATH &&
      mathType != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION && mathType != CUDNN_FMA_MATH)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "mathType ", static_cast<int>(mathType),
                " is not a cudnnMathType_t");
  convDesc->math = mathType;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnGetConvolutionMathType(cudnnConvolutionDescriptor_t convDesc,
                                                      cudnnMathType_t* mathType) {
  if (convDesc == nullptr || mathType == nullptr)
    return fail(CUDNN_STATUS_BAD_PARAM, "cudnnGetConvolutionMathType",
                "convDesc or mathType is NULL");
  *mathType = convDesc->math;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnSetConvolutionGroupCount(cudnnConvolutionDescriptor_t convDesc,
                                                        int groupCount) {
  static constexpr const char* fn = "cudnnSetConvolutionGroupCount";
  if (convDesc == nullptr) return fail(CUDNN_STATUS_BAD_PARAM, fn, "convDesc is NULL");
  if (groupCount < 1)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "groupCount is ", groupCount, ", it must be >= 1");
  if (groupCount != 1)
    return fail(CUDNN_STATUS_NOT_SUPPORTED, fn, "groupCount ", groupCount,
                ": the host emulation implements ungrouped convolutions only");
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnGetConvolutionGroupCount(cudnnConvolutionDescriptor_t convDesc,
                                                        int* groupCount) {
  if (convDesc == nullptr || groupCount == nullptr)
    return fail(CUDNN_STATUS_BAD_PARAM, "cudnnGetConvolutionGroupCount",
                "convDesc or groupCount is NULL");
  *groupCount = 1;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t convDesc,
                                                          int pad_h, int pad_w, int u, int v,
                                                          int dilation_h, int dilation_w,
                                                          cudnnConvolutionMode_t mode,
                                                          cudnnDataType_t computeType) {
  static constexpr const char* fn = "cudnnSetConvolution2dDescriptor";
  if (convDesc == nullptr) return fail(CUDNN_STATUS_BAD_PARAM, fn, "convDesc is NULL");
  if (pad_h < 0 || pad_w < 0)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "padding ", pad_h, "x", pad_w, " is negative");
  if (u <= 0 || v <= 0)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "stride ", u, "x", v, " must be positive");
  if (dilation_h <= 0 || dilation_w <= 0)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "dilation ", dilation_h, "x", dilation_w,
                " must be positive");
  if (mode != CUDNN_CONVOLUTION && mode != CUDNN_CROSS_CORRELATION)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "mode ", static_cast<int>(mode),
                " is not a cudnnConvolutionMode_t");
  CUDNN_EMU_TRY(check_type(fn, computeType));
  if (computeType != CUDNN_DATA_FLOAT)
    return fail(CUDNN_STATUS_NOT_SUPPORTED, fn, "computeType ", type_name(computeType),
                ": the host emulation computes in CUDNN_DATA_FLOAT only");
  convDesc->set = true;
  convDesc->pad_h = pad_h;
  convDesc->pad_w = pad_w;
  convDesc->stride_h = u;
  convDesc->stride_w = v;
  convDesc->dilation_h = dilation_h;
  convDesc->dilation_w = dilation_w;
  convDesc->mode = mode;
  convDesc->compute = computeType;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnGetConvolution2dDescriptor(
    const cudnnConvolutionDescriptor_t convDesc, int* pad_h, int* pad_w, int* u, int* v,
    int* dilation_h, int* dilation_w, cudnnConvolutionMode_t* mode,
    cudnnDataType_t* computeType) {
  static constexpr const char* fn = "cudnnGetConvolution2dDescriptor";
  CUDNN_EMU_TRY(check_conv(fn, convDesc));
  if (!pad_h || !pad_w || !u || !v || !dilation_h || !dilation_w || !mode || !computeType)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "an output pointer is NULL");
  *pad_h = convDesc->pad_h;
  *pad_w = convDesc->pad_w;
  *u = convDesc->stride_h;
  *v = convDesc->stride_w;
  *dilation_h = convDesc->dilation_h;
  *dilation_w = convDesc->dilation_w;
  *mode = convDesc->mode;
  *computeType = convDesc->compute;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnGetConvolution2dForwardOutputDim(
    const cudnnConvolutionDescriptor_t convDesc, const cudnnTensorDescriptor_t inputTensorDesc,
    const cudnnFilterDescriptor_t filterDesc, int* n, int* c, int* h, int* w) {
  static constexpr const char* fn = "cudnnGetConvolution2dForwardOutputDim";
  Geometry g;
  CUDNN_EMU_TRY(resolve_input(fn, convDesc, inputTensorDesc, "inputTensorDesc", filterDesc,
                              "filterDesc", &g));
  if (!n || !c || !h || !w) return fail(CUDNN_STATUS_BAD_PARAM, fn, "an output pointer is NULL");
  *n = static_cast<int>(g.batch);
  *c = static_cast<int>(g.out_c);
  *h = static_cast<int>(g.out_h);
  *w = static_cast<int>(g.out_w);
  return CUDNN_STATUS_SUCCESS;
}

// ---- forward ----

cudnnStatus_t CUDNNWINAPI cudnnGetConvolutionForwardAlgorithm_v7(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t srcDesc,
    const cudnnFilterDescriptor_t filterDesc, const cudnnConvolutionDescriptor_t convDesc,
    const cudnnTensorDescriptor_t destDesc, const int requestedAlgoCount, int* returnedAlgoCount,
    cudnnConvolutionFwdAlgoPerf_t* perfResults) {
  static constexpr const char* fn = "cudnnGetConvolutionForwardAlgorithm_v7";
  Geometry g;
  CUDNN_EMU_TRY(resolve(fn, kForwardNames, srcDesc, filterDesc, convDesc, destDesc, &g));
  return report<cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t>(
      fn, handle, forward_algos(), g, convDesc->math, false, requestedAlgoCount,
      returnedAlgoCount, perfResults);
}

cudnnStatus_t CUDNNWINAPI cudnnFindConvolutionForwardAlgorithm(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc, const cudnnFilterDescriptor_t wDesc,
    const cudnnConvolutionDescriptor_t convDesc, const cudnnTensorDescriptor_t yDesc,
    const int requestedAlgoCount, int* returnedAlgoCount,
    cudnnConvolutionFwdAlgoPerf_t* perfResults) {
  static constexpr const char* fn = "cudnnFindConvolutionForwardAlgorithm";
  Geometry g;
  CUDNN_EMU_TRY(resolve(fn, kForwardNames, xDesc, wDesc, convDesc, yDesc, &g));
  return report<cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t>(
      fn, handle, forward_algos(), g, convDesc->math, true, requestedAlgoCount,
      returnedAlgoCount, perfResults);
}

cudnnStatus_t CUDNNWINAPI cudnnGetConvolutionForwardWorkspaceSize(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc, const cudnnFilterDescriptor_t wDesc,
    const cudnnConvolutionDescriptor_t convDesc, const cudnnTensorDescriptor_t yDesc,
    cudnnConvolutionFwdAlgo_t algo, size_t* sizeInBytes) {
  static constexpr const char* fn = "cudnnGetConvolutionForwardWorkspaceSize";
  Geometry g;
  CUDNN_EMU_TRY(resolve(fn, kForwardNames, xDesc, wDesc, convDesc, yDesc, &g));
  return workspace_size(fn, handle, forward_algos(), algo, g, sizeInBytes);
}

cudnnStatus_t CUDNNWINAPI cudnnConvolutionForward(
    cudnnHandle_t handle, const void* alpha, const cudnnTensorDescriptor_t xDesc, const void* x,
    const cudnnFilterDescriptor_t wDesc, const void* w, const cudnnConvolutionDescriptor_t convDesc,
    cudnnConvolutionFwdAlgo_t algo, void* workSpace, size_t workSpaceSizeInBytes,
    const void* beta, const cudnnTensorDescriptor_t yDesc, void* y) {
  static constexpr const char* fn = "cudnnConvolutionForward";
  Geometry g;
  CUDNN_EMU_TRY(resolve(fn, kForwardNames, xDesc, wDesc, convDesc, yDesc, &g));
  CUDNN_EMU_TRY(check_pointers(fn, handle, alpha, beta, x, w, y));
  CUDNN_EMU_TRY(check_extents(fn, g, x, "x", w, "w", y, "y"));
  float* col = nullptr;
  CUDNN_EMU_TRY(check_algo(fn, forward_algos(), algo, g, workSpace, workSpaceSizeInBytes, &col));
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  const bool x_nhwc = nhwc(xDesc), w_nhwc = nhwc(wDesc), y_nhwc = nhwc(yDesc);
  return run_on_stream(fn, handle, [=] {
    const size_t e = element_bytes(g.type);
    std::vector<unsigned char> xb, wb;
    const void* xn = as_nchw(x_nhwc, x, image_of(g), e, xb);
    const void* wn = as_nchw(w_nhwc, w, filter_of(g), e, wb);
    NchwOutput yn(y_nhwc, y, output_of(g), e, be != 0.f);
    run_forward(g, al, xn, wn, be, yn.data(), col);
    yn.finish();
    return CUDNN_STATUS_SUCCESS;
  });
}

// ---- backward data ----

cudnnStatus_t CUDNNWINAPI cudnnGetConvolutionBackwardDataAlgorithm_v7(
    cudnnHandle_t handle, const cudnnFilterDescriptor_t filterDesc,
    const cudnnTensorDescriptor_t diffDesc, const cudnnConvolutionDescriptor_t convDesc,
    const cudnnTensorDescriptor_t gradDesc, const int requestedAlgoCount, int* returnedAlgoCount,
    cudnnConvolutionBwdDataAlgoPerf_t* perfResults) {
  static constexpr const char* fn = "cudnnGetConvolutionBackwardDataAlgorithm_v7";
  Geometry g;
  CUDNN_EMU_TRY(resolve(fn, kBackwardDataNames, gradDesc, filterDesc, convDesc, diffDesc, &g));
  return report<cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t>(
      fn, handle, backward_data_algos(), g, convDesc->math, false, requestedAlgoCount,
      returnedAlgoCount, perfResults);
}

cudnnStatus_t CUDNNWINAPI cudnnFindConvolutionBackwardDataAlgorithm(
    cudnnHandle_t handle, const cudnnFilterDescriptor_t wDesc, const cudnnTensorDescriptor_t dyDesc,
    const cudnnConvolutionDescriptor_t convDesc, const cudnnTensorDescriptor_t dxDesc,
    const int requestedAlgoCount, int* returnedAlgoCount,
    cudnnConvolutionBwdDataAlgoPerf_t* perfResults) {
  static constexpr const char* fn = "cudnnFindConvolutionBackwardDataAlgorithm";
  Geometry g;
  CUDNN_EMU_TRY(resolve(fn, kBackwardDataNames, dxDesc, wDesc, convDesc, dyDesc, &g));
  return report<cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t>(
      fn, handle, backward_data_algos(), g, convDesc->math, true, requestedAlgoCount,
      returnedAlgoCount, perfResults);
}

cudnnStatus_t CUDNNWINAPI cudnnGetConvolutionBackwardDataWorkspaceSize(
    cudnnHandle_t handle, const cudnnFilterDescriptor_t wDesc, const cudnnTensorDescriptor_t dyDesc,
    const cudnnConvolutionDescriptor_t convDesc, const cudnnTensorDescriptor_t dxDesc,
    cudnnConvolutionBwdDataAlgo_t algo, size_t* sizeInBytes) {
  static constexpr const char* fn = "cudnnGetConvolutionBackwardDataWorkspaceSize";
  Geometry g;
  CUDNN_EMU_TRY(resolve(fn, kBackwardDataNames, dxDesc, wDesc, convDesc, dyDesc, &g));
  return workspace_size(fn, handle, backward_data_algos(), algo, g, sizeInBytes);
}

cudnnStatus_t CUDNNWINAPI cudnnConvolutionBackwardData(
    cudnnHandle_t handle, const void* alpha, const cudnnFilterDescriptor_t wDesc, const void* w,
    const cudnnTensorDescriptor_t dyDesc, const void* dy,
    const cudnnConvolutionDescriptor_t convDesc, cudnnConvolutionBwdDataAlgo_t algo,
    void* workSpace, size_t workSpaceSizeInBytes, const void* beta,
    const cudnnTensorDescriptor_t dxDesc, void* dx) {
  static constexpr const char* fn = "cudnnConvolutionBackwardData";
  Geometry g;
  CUDNN_EMU_TRY(resolve(fn, kBackwardDataNames, dxDesc, wDesc, convDesc, dyDesc, &g));
  CUDNN_EMU_TRY(check_pointers(fn, handle, alpha, beta, w, dy, dx));
  CUDNN_EMU_TRY(check_extents(fn, g, dx, "dx", w, "w", dy, "dy"));
  float* col = nullptr;
  CUDNN_EMU_TRY(
      check_algo(fn, backward_data_algos(), algo, g, workSpace, workSpaceSizeInBytes, &col));
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  const bool w_nhwc = nhwc(wDesc), dy_nhwc = nhwc(dyDesc), dx_nhwc = nhwc(dxDesc);
  return run_on_stream(fn, handle, [=] {
    const size_t e = element_bytes(g.type);
    std::vector<unsigned char> wb, dyb;
    const void* wn = as_nchw(w_nhwc, w, filter_of(g), e, wb);
    const void* dyn = as_nchw(dy_nhwc, dy, output_of(g), e, dyb);
    NchwOutput dxn(dx_nhwc, dx, image_of(g), e, be != 0.f);
    run_backward_data(g, al, wn, dyn, be, dxn.data(), col);
    dxn.finish();
    return CUDNN_STATUS_SUCCESS;
  });
}

// ---- backward filter ----

cudnnStatus_t CUDNNWINAPI cudnnGetConvolutionBackwardFilterAlgorithm_v7(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t srcDesc,
    const cudnnTensorDescriptor_t diffDesc, const cudnnConvolutionDescriptor_t convDesc,
    const cudnnFilterDescriptor_t gradDesc, const int requestedAlgoCount, int* returnedAlgoCount,
    cudnnConvolutionBwdFilterAlgoPerf_t* perfResults) {
  static constexpr const char* fn = "cudnnGetConvolutionBackwardFilterAlgorithm_v7";
  Geometry g;
  CUDNN_EMU_TRY(resolve(fn, kBackwardFilterNames, srcDesc, gradDesc, convDesc, diffDesc, &g));
  return report<cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t>(
      fn, handle, backward_filter_algos(), g, convDesc->math, false, requestedAlgoCount,
      returnedAlgoCount, perfResults);
}

cudnnStatus_t CUDNNWINAPI cudnnFindConvolutionBackwardFilterAlgorithm(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc, const cudnnTensorDescriptor_t dyDesc,
    const cudnnConvolutionDescriptor_t convDesc, const cudnnFilterDescriptor_t dwDesc,
    const int requestedAlgoCount, int* returnedAlgoCount,
    cudnnConvolutionBwdFilterAlgoPerf_t* perfResults) {
  static constexpr const char* fn = "cudnnFindConvolutionBackwardFilterAlgorithm";
  Geometry g;
  CUDNN_EMU_TRY(resolve(fn, kBackwardFilterNames, xDesc, dwDesc, convDesc, dyDesc, &g));
  return report<cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t>(
      fn, handle, backward_filter_algos(), g, convDesc->math, true, requestedAlgoCount,
      returnedAlgoCount, perfResults);
}

cudnnStatus_t CUDNNWINAPI cudnnGetConvolutionBackwardFilterWorkspaceSize(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc, const cudnnTensorDescriptor_t dyDesc,
    const cudnnConvolutionDescriptor_t convDesc, const cudnnFilterDescriptor_t gradDesc,
    cudnnConvolutionBwdFilterAlgo_t algo, size_t* sizeInBytes) {
  static constexpr const char* fn = "cudnnGetConvolutionBackwardFilterWorkspaceSize";
  Geometry g;
  CUDNN_EMU_TRY(resolve(fn, kBackwardFilterNames, xDesc, gradDesc, convDesc, dyDesc, &g));
  return workspace_size(fn, handle, backward_filter_algos(), algo, g, sizeInBytes);
}

cudnnStatus_t CUDNNWINAPI cudnnConvolutionBackwardFilter(
    cudnnHandle_t handle, const void* alpha, const cudnnTensorDescriptor_t xDesc, const void* x,
    const cudnnTensorDescriptor_t dyDesc, const void* dy,
    const cudnnConvolutionDescriptor_t convDesc, cudnnConvolutionBwdFilterAlgo_t algo,
    void* workSpace, size_t workSpaceSizeInBytes, const void* beta,
    const cudnnFilterDescriptor_t dwDesc, void* dw) {
  static constexpr const char* fn = "cudnnConvolutionBackwardFilter";
  Geometry g;
  CUDNN_EMU_TRY(resolve(fn, kBackwardFilterNames, xDesc, dwDesc, convDesc, dyDesc, &g));
  CUDNN_EMU_TRY(check_pointers(fn, handle, alpha, beta, x, dy, dw));
  CUDNN_EMU_TRY(check_extents(fn, g, x, "x", dw, "dw", dy, "dy"));
  float* col = nullptr;
  CUDNN_EMU_TRY(
      check_algo(fn, backward_filter_algos(), algo, g, workSpace, workSpaceSizeInBytes, &col));
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  const bool x_nhwc = nhwc(xDesc), dy_nhwc = nhwc(dyDesc), dw_nhwc = nhwc(dwDesc);
  return run_on_stream(fn, handle, [=] {
    const size_t e = element_bytes(g.type);
    std::vector<unsigned char> xb, dyb;
    const void* xn = as_nchw(x_nhwc, x, image_of(g), e, xb);
    const void* dyn = as_nchw(dy_nhwc, dy, output_of(g), e, dyb);
    NchwOutput dwn(dw_nhwc, dw, filter_of(g), e, be != 0.f);
    run_backward_filter(g, al, xn, dyn, be, dwn.data(), col);
    dwn.finish();
    return CUDNN_STATUS_SUCCESS;
  });
}

// ---- backward bias ----

// db [1, K, 1, 1] = alpha * sum of dy [N, K, H, W] over n, h, w + beta * db: each plane
// summed in float32, then the planes over the batch, in a fixed order.
cudnnStatus_t CUDNNWINAPI cudnnConvolutionBackwardBias(cudnnHandle_t handle, const void* alpha,
                                                       const cudnnTensorDescriptor_t dyDesc,
                                                       const void* dy, const void* beta,
                                                       const cudnnTensorDescriptor_t dbDesc,
                                                       void* db) {
  static constexpr const char* fn = "cudnnConvolutionBackwardBias";
  CUDNN_EMU_TRY(check_tensor(fn, "dyDesc", dyDesc));
  CUDNN_EMU_TRY(check_tensor(fn, "dbDesc", dbDesc));
  CUDNN_EMU_TRY(check_pointers(fn, handle, alpha, beta, dy, db, db));
  const cudnnTensorStruct &t = *dyDesc, &b = *dbDesc;
  if (t.format != CUDNN_TENSOR_NCHW)
    return fail(CUDNN_STATUS_NOT_SUPPORTED, fn,
                "an NHWC dyDesc is not supported here by the host emulation");
  if (t.type != b.type)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "dyDesc is ", type_name(t.type), " but dbDesc is ",
                type_name(b.type));
  if (b.n != 1 || b.c != t.c || b.h != 1 || b.w != 1)
    return fail(CUDNN_STATUS_BAD_PARAM, fn, "dbDesc is ", shape(b), ", it must be ",
                shape(1, t.c, 1, 1), " for dyDesc ", shape(t));
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  return run_on_stream(fn, handle, [=, t = t, b = b] {
    const int64_t plane = int64_t{t.h} * t.w;
    std::vector<float> sums(static_cast<size_t>(t.c), 0.f);
    for (int64_t n = 0; n < t.n; ++n)
      for (int64_t k = 0; k < t.c; ++k) {
        const int64_t base = (n * t.c + k) * plane;
        float acc = 0.f;
        for (int64_t i = 0; i < plane; ++i) acc += load(t.type, dy, base + i);
        sums[static_cast<size_t>(k)] += acc;
      }
    for (float& v : sums) v *= al;
    store(b.type, sums.data(), be, db, 0, t.c);
    return CUDNN_STATUS_SUCCESS;
  });
}

}  // extern "C"
