// The cuDNN emulation (tools/cuda_emu/src/cudnn.cpp) against naive direct loops in double:
// forward, backward data, backward filter, backward bias and cudnnAddTensor, with alpha
// and beta (beta == 0 must not read the destination, which is filled with NaN), stride,
// padding, dilation, non-square shapes, batches, both convolution modes, float32 and
// bfloat16 (rounded once, to nearest even), every implemented algorithm with exactly the
// workspace it reports; then the algorithm queries, the output size, and the statuses and
// messages of bad descriptors and arguments.
#include <cudnn.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// ---- bfloat16 and typed buffers -----------------------------------------------------

float bf16_to_float(uint16_t bits) {
  const uint32_t u = static_cast<uint32_t>(bits) << 16;
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

uint16_t float_to_bf16(float x) {  // round to nearest even; NaN stays NaN
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// A tensor's storage in float32 or bfloat16, as cuDNN sees it.
struct Buffer {
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  std::vector<float> f;
  std::vector<uint16_t> h;

  Buffer(cudnnDataType_t t, int64_t n, float fill = 0.f) : type(t) {
    if (t == CUDNN_DATA_FLOAT)
      f.assign(static_cast<size_t>(n), fill);
    else
      h.assign(static_cast<size_t>(n), float_to_bf16(fill));
  }
  int64_t size() const {
    return static_cast<int64_t>(type == CUDNN_DATA_FLOAT ? f.size() : h.size());
  }
  void* data() { return type == CUDNN_DATA_FLOAT ? static_cast<void*>(f.data()) : h.data(); }
  float get(int64_t i) const {
    return type == CUDNN_DATA_FLOAT ? f[static_cast<size_t>(i)]
                                    : bf16_to_float(h[static_cast<size_t>(i)]);
  }
  void set(int64_t i, float v) {
    if (type == CUDNN_DATA_FLOAT)
      f[static_cast<size_t>(i)] = v;
    else
      h[static_cast<size_t>(i)] = float_to_bf16(v);
  }
  void randomize(std::mt19937& rng) {
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    for (int64_t i = 0; i < size(); ++i) set(i, u(rng));
  }
  bool same_bits(const Buffer& o) const { return f == o.f && h == o.h; }
};

// ---- geometry and the naive reference -----------------------------------------------

struct Case {
  const char* name;
  int B, C, H, W, O, kh, kw, ph, pw, sh, sw, dh, dw;
  cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;

  int Ho() const { return (H + 2 * ph - ((kh - 1) * dh + 1)) / sh + 1; }
  int Wo() const { return (W + 2 * pw - ((kw - 1) * dw + 1)) / sw + 1; }
  int64_t x_elems() const { return int64_t{B} * C * H * W; }
  int64_t w_elems() const { return int64_t{O} * C * kh * kw; }
  int64_t y_elems() const { return int64_t{B} * O * Ho() * Wo(); }
};

// Values of a reference result and, per element, the sum of the magnitudes of its terms
// (the scale of its rounding error).
struct Ref {
  std::vector<double> v, mag;
  explicit Ref(int64_t n) : v(static_cast<size_t>(n), 0.0), mag(static_cast<size_t>(n), 0.0) {}
  void add(int64_t i, double t) {
    v[static_cast<size_t>(i)] += t;
    mag[static_cast<size_t>(i)] += std::fabs(t);
  }
};

// Visits every (output, input, filter) index triple of the direct convolution: y[yi] uses
// x[xi] through the filter tap w[wi] (flipped for CUDNN_CONVOLUTION).
template <typename Fn>
void for_each_term(const Case& k, Fn fn) {
  const int Ho = k.Ho(), Wo = k.Wo();
  for (int b = 0; b < k.B; ++b)
    for (int o = 0; o < k.O; ++o)
      for (int oh = 0; oh < Ho; ++oh)
        for (int ow = 0; ow < Wo; ++ow) {
          const int64_t yi = ((int64_t{b} * k.O + o) * Ho + oh) * Wo + ow;
          for (int c = 0; c < k.C; ++c)
            for (int i = 0; i < k.kh; ++i)
              for (int j = 0; j < k.kw; ++j) {
                const int ih = oh * k.sh - k.ph + i * k.dh, iw = ow * k.sw - k.pw + j * k.dw;
                if (ih < 0 || ih >= k.H || iw < 0 || iw >= k.W) continue;
                const int64_t xi = ((int64_t{b} * k.C + c) * k.H + ih) * k.W + iw;
                const int ti = k.mode == CUDNN_CONVOLUTION ? k.kh - 1 - i : i;
                const int tj = k.mode == CUDNN_CONVOLUTION ? k.kw - 1 - j : j;
                const int64_t wi = ((int64_t{o} * k.C + c) * k.kh + ti) * k.kw + tj;
                fn(yi, xi, wi);
              }
        }
}

Ref ref_forward(const Case& k, const Buffer& x, const Buffer& w) {
  Ref r(k.y_elems());
  for_each_term(k, [&](int64_t yi, int64_t xi, int64_t wi) {
    r.add(yi, double{x.get(xi)} * w.get(wi));
  });
  return r;
}
Ref ref_backward_data(const Case& k, const Buffer& w, const Buffer& dy) {
  Ref r(k.x_elems());
  for_each_term(k, [&](int64_t yi, int64_t xi, int64_t wi) {
    r.add(xi, double{dy.get(yi)} * w.get(wi));
  });
  return r;
}
Ref ref_backward_filter(const Case& k, const Buffer& x, const Buffer& dy) {
  Ref r(k.w_elems());
  for_each_term(k, [&](int64_t yi, int64_t xi, int64_t wi) {
    r.add(wi, double{dy.get(yi)} * x.get(xi));
  });
  return r;
}

// Checks out == alpha * ref + beta * before, element by element: within float32's
// accumulation error of the terms, plus half a bfloat16 ulp (doubled, for a result that
// lands next to a rounding boundary) when out is bfloat16. With beta == 0, `before` is
// NaN and must not leak.
void expect_matches(const Buffer& out, const Ref& ref, float alpha, float beta,
                    const Buffer& before, const std::string& what) {
  ASSERT_EQ(out.size(), static_cast<int64_t>(ref.v.size())) << what;
  int bad = 0;
  for (int64_t i = 0; i < out.size() && bad < 5; ++i) {
    const double old = beta == 0.f ? 0.0 : double{before.get(i)};
    const double want = alpha * ref.v[static_cast<size_t>(i)] + beta * old;
    const double scale = std::fabs(alpha) * ref.mag[static_cast<size_t>(i)] + std::fabs(beta * old);
    double tol = 3e-6 * scale + 1e-7;
    if (out.type == CUDNN_DATA_BFLOAT16) tol += std::ldexp(std::fabs(want), -8);
    const double got = out.get(i);
    if (!(std::fabs(got - want) <= tol)) {
      ADD_FAILURE() << what << ": element " << i << " is " << got << ", expected " << want
                    << " (tolerance " << tol << ")";
      ++bad;
    }
  }
}

// ---- RAII descriptors ---------------------------------------------------------------

struct Handle {
  cudnnHandle_t h = nullptr;
  Handle() { EXPECT_EQ(cudnnCreate(&h), CUDNN_STATUS_SUCCESS); }
  ~Handle() { cudnnDestroy(h); }
};

struct Tensor {
  cudnnTensorDescriptor_t d = nullptr;
  Tensor() { EXPECT_EQ(cudnnCreateTensorDescriptor(&d), CUDNN_STATUS_SUCCESS); }
  Tensor(cudnnDataType_t t, int n, int c, int h, int w,
         cudnnTensorFormat_t format = CUDNN_TENSOR_NCHW)
      : Tensor() {
    EXPECT_EQ(cudnnSetTensor4dDescriptor(d, format, t, n, c, h, w), CUDNN_STATUS_SUCCESS);
  }
  ~Tensor() { cudnnDestroyTensorDescriptor(d); }
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;
};

struct Filter {
  cudnnFilterDescriptor_t d = nullptr;
  Filter() { EXPECT_EQ(cudnnCreateFilterDescriptor(&d), CUDNN_STATUS_SUCCESS); }
  Filter(cudnnDataType_t t, int k, int c, int h, int w,
         cudnnTensorFormat_t format = CUDNN_TENSOR_NCHW)
      : Filter() {
    EXPECT_EQ(cudnnSetFilter4dDescriptor(d, t, format, k, c, h, w), CUDNN_STATUS_SUCCESS);
  }
  ~Filter() { cudnnDestroyFilterDescriptor(d); }
  Filter(const Filter&) = delete;
  Filter& operator=(const Filter&) = delete;
};

struct Conv {
  cudnnConvolutionDescriptor_t d = nullptr;
  Conv() { EXPECT_EQ(cudnnCreateConvolutionDescriptor(&d), CUDNN_STATUS_SUCCESS); }
  explicit Conv(const Case& k, cudnnMathType_t math = CUDNN_FMA_MATH) : Conv() {
    EXPECT_EQ(cudnnSetConvolution2dDescriptor(d, k.ph, k.pw, k.sh, k.sw, k.dh, k.dw, k.mode,
                                              CUDNN_DATA_FLOAT),
              CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(cudnnSetConvolutionMathType(d, math), CUDNN_STATUS_SUCCESS);
  }
  ~Conv() { cudnnDestroyConvolutionDescriptor(d); }
  Conv(const Conv&) = delete;
  Conv& operator=(const Conv&) = delete;
};

// The descriptors of one case, as engine/cuda/conv_cuda.cpp makes them.
struct Plan {
  Tensor x, y;
  Filter w;
  Conv conv;
  Plan(const Case& k, cudnnDataType_t t, cudnnMathType_t math = CUDNN_FMA_MATH,
       cudnnTensorFormat_t format = CUDNN_TENSOR_NCHW)
      : x(t, k.B, k.C, k.H, k.W, format), y(t, k.B, k.O, k.Ho(), k.Wo(), format),
        w(t, k.O, k.C, k.kh, k.kw, format), conv(k, math) {}
};

std::string last_error() {
  char buf[1024];
  cudnnGetLastErrorString(buf, sizeof buf);
  return buf;
}

// A workspace of exactly `bytes` (nullptr for none), so that an overrun would show under
// a sanitizer.
struct Workspace {
  std::vector<float> buf;
  size_t bytes;
  explicit Workspace(size_t n) : buf((n + 3) / 4), bytes(n) {}
  void* ptr() { return bytes ? buf.data() : nullptr; }
};

// ---- the convolution cases ------------------------------------------------------------

const Case kCases[] = {
    {"Same3x3", 2, 3, 7, 9, 4, 3, 3, 1, 1, 1, 1, 1, 1},
    {"Stride2NonSquareKernel", 3, 2, 11, 8, 5, 3, 5, 1, 2, 2, 2, 1, 1},
    {"AnisotropicStrideAndPad", 2, 3, 9, 10, 3, 2, 3, 0, 1, 1, 3, 1, 1},
    {"Dilated", 2, 3, 12, 11, 4, 3, 3, 2, 1, 1, 1, 2, 3},
    {"DilatedStrided", 1, 2, 13, 14, 3, 3, 2, 1, 0, 2, 3, 2, 2},
    {"Pointwise", 2, 8, 5, 6, 7, 1, 1, 0, 0, 1, 1, 1, 1},
    {"PointwiseStride2", 2, 6, 7, 8, 5, 1, 1, 0, 0, 2, 2, 1, 1},
    {"Stem7x7", 1, 3, 17, 15, 5, 7, 7, 3, 3, 2, 2, 1, 1},
    {"StrideBeyondKernel", 2, 2, 10, 9, 3, 2, 2, 0, 1, 3, 3, 1, 1},
    {"WholeImage", 3, 4, 5, 4, 2, 5, 4, 0, 0, 1, 1, 1, 1},
    {"BigPadding", 1, 2, 3, 4, 2, 3, 3, 3, 2, 1, 2, 1, 1},
    {"ConvolutionMode", 2, 3, 8, 7, 4, 3, 2, 1, 1, 1, 2, 1, 1, CUDNN_CONVOLUTION},
    {"ConvolutionModeDilated", 1, 2, 9, 9, 3, 3, 3, 2, 2, 2, 1, 2, 2, CUDNN_CONVOLUTION},
    // Large enough that im2col/col2im split channels between threads.
    {"Threaded", 2, 32, 40, 36, 16, 3, 3, 1, 1, 1, 1, 1, 1},
};

struct Scale {
  float alpha, beta;
};
const Scale kScales[] = {{1.f, 0.f}, {0.75f, 1.f}, {-2.f, 0.5f}};

using Param = std::tuple<Case, cudnnDataType_t>;

class ConvEmu : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    std::mt19937 rng(1234);
    x.randomize(rng);
    w.randomize(rng);
    dy.randomize(rng);
  }
  // The destination before a call: NaN where beta == 0 (it must not be read), else
  // random values.
  Buffer before(int64_t n, float beta) {
    Buffer b(type, n, kNaN);
    if (beta != 0.f) {
      std::mt19937 rng(99);
      b.randomize(rng);
    }
    return b;
  }
  std::string label(const char* dir, int algo, const Scale& s) const {
    return std::string(dir) + " algo " + std::to_string(algo) + " alpha " +
           std::to_string(s.alpha) + " beta " + std::to_string(s.beta);
  }

  Case k{};
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  Buffer x{CUDNN_DATA_FLOAT, 0}, w{CUDNN_DATA_FLOAT, 0}, dy{CUDNN_DATA_FLOAT, 0};
  Handle handle;

 public:
  ConvEmu() {
    std::tie(k, type) = GetParam();
    x = Buffer(type, k.x_elems());
    w = Buffer(type, k.w_elems());
    dy = Buffer(type, k.y_elems());
  }
};

TEST_P(ConvEmu, OutputDimIsCudnns) {
  Plan p(k, type);
  int n = 0, c = 0, h = 0, wd = 0;
  ASSERT_EQ(cudnnGetConvolution2dForwardOutputDim(p.conv.d, p.x.d, p.w.d, &n, &c, &h, &wd),
            CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(n, k.B);
  EXPECT_EQ(c, k.O);
  EXPECT_EQ(h, k.Ho());
  EXPECT_EQ(wd, k.Wo());
}

TEST_P(ConvEmu, Forward) {
  Plan p(k, type);
  const Ref ref = ref_forward(k, x, w);
  cudnnConvolutionFwdAlgoPerf_t perf[16];
  int count = 0;
  ASSERT_EQ(cudnnGetConvolutionForwardAlgorithm_v7(handle.h, p.x.d, p.w.d, p.conv.d, p.y.d, 16,
                                                   &count, perf),
            CUDNN_STATUS_SUCCESS);
  int ran = 0;
  for (const Scale& s : kScales) {
    std::vector<Buffer> results;
    for (int i = 0; i < count; ++i) {
      if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
      Buffer y = before(k.y_elems(), s.beta);
      const Buffer y0 = y;
      Workspace ws(perf[i].memory);
      ASSERT_EQ(cudnnConvolutionForward(handle.h, &s.alpha, p.x.d, x.data(), p.w.d, w.data(),
                                        p.conv.d, perf[i].algo, ws.ptr(), ws.bytes, &s.beta,
                                        p.y.d, y.data()),
                CUDNN_STATUS_SUCCESS)
          << last_error();
      expect_matches(y, ref, s.alpha, s.beta, y0, label("forward", perf[i].algo, s));
      EXPECT_TRUE(results.empty() || y.same_bits(results[0])) << "algorithms disagree";
      results.push_back(std::move(y));
      ++ran;
    }
  }
  EXPECT_EQ(ran, 3 * 3);  // three implemented algorithms
}

TEST_P(ConvEmu, BackwardData) {
  Plan p(k, type);
  const Ref ref = ref_backward_data(k, w, dy);
  cudnnConvolutionBwdDataAlgoPerf_t perf[16];
  int count = 0;
  ASSERT_EQ(cudnnGetConvolutionBackwardDataAlgorithm_v7(handle.h, p.w.d, p.y.d, p.conv.d, p.x.d,
                                                        16, &count, perf),
            CUDNN_STATUS_SUCCESS);
  int ran = 0;
  for (const Scale& s : kScales) {
    std::vector<Buffer> results;
    for (int i = 0; i < count; ++i) {
      if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
      Buffer dx = before(k.x_elems(), s.beta);
      const Buffer dx0 = dx;
      Workspace ws(perf[i].memory);
      ASSERT_EQ(cudnnConvolutionBackwardData(handle.h, &s.alpha, p.w.d, w.data(), p.y.d,
                                             dy.data(), p.conv.d, perf[i].algo, ws.ptr(),
                                             ws.bytes, &s.beta, p.x.d, dx.data()),
                CUDNN_STATUS_SUCCESS)
          << last_error();
      expect_matches(dx, ref, s.alpha, s.beta, dx0, label("backward data", perf[i].algo, s));
      EXPECT_TRUE(results.empty() || dx.same_bits(results[0])) << "algorithms disagree";
      results.push_back(std::move(dx));
      ++ran;
    }
  }
  EXPECT_EQ(ran, 3 * 2);
}

TEST_P(ConvEmu, BackwardFilter) {
  Plan p(k, type);
  const Ref ref = ref_backward_filter(k, x, dy);
  cudnnConvolutionBwdFilterAlgoPerf_t perf[16];
  int count = 0;
  ASSERT_EQ(cudnnGetConvolutionBackwardFilterAlgorithm_v7(handle.h, p.x.d, p.y.d, p.conv.d,
                                                          p.w.d, 16, &count, perf),
            CUDNN_STATUS_SUCCESS);
  int ran = 0;
  for (const Scale& s : kScales) {
    std::vector<Buffer> results;
    for (int i = 0; i < count; ++i) {
      if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
      Buffer dw = before(k.w_elems(), s.beta);
      const Buffer dw0 = dw;
      Workspace ws(perf[i].memory);
      ASSERT_EQ(cudnnConvolutionBackwardFilter(handle.h, &s.alpha, p.x.d, x.data(), p.y.d,
                                               dy.data(), p.conv.d, perf[i].algo, ws.ptr(),
                                               ws.bytes, &s.beta, p.w.d, dw.data()),
                CUDNN_STATUS_SUCCESS)
          << last_error();
      expect_matches(dw, ref, s.alpha, s.beta, dw0, label("backward filter", perf[i].algo, s));
      EXPECT_TRUE(results.empty() || dw.same_bits(results[0])) << "algorithms disagree";
      results.push_back(std::move(dw));
      ++ran;
    }
  }
  EXPECT_EQ(ran, 3 * 2);
}

// Same inputs, same bits, run after run (the engine promises bit-identical runs).
TEST_P(ConvEmu, Deterministic) {
  Plan p(k, type);
  const float one = 1.f, zero = 0.f;
  size_t bytes = 0;
  ASSERT_EQ(cudnnGetConvolutionBackwardFilterWorkspaceSize(handle.h, p.x.d, p.y.d, p.conv.d, p.w.d,
                                                           CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1,
                                                           &bytes),
            CUDNN_STATUS_SUCCESS);
  Workspace ws(bytes);
  Buffer a(type, k.w_elems()), b(type, k.w_elems());
  for (Buffer* out : {&a, &b})
    ASSERT_EQ(cudnnConvolutionBackwardFilter(handle.h, &one, p.x.d, x.data(), p.y.d, dy.data(),
                                             p.conv.d, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1,
                                             ws.ptr(), ws.bytes, &zero, p.w.d, out->data()),
              CUDNN_STATUS_SUCCESS);
  EXPECT_TRUE(a.same_bits(b));
}

// [n][c][plane] <-> [n][plane][c] copies of a buffer.
Buffer relayout(const Buffer& b, int64_t n, int64_t c, int64_t plane, bool to_nhwc) {
  Buffer out = b;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t p = 0; p < plane; ++p) {
        const int64_t nchw = (i * c + ch) * plane + p, nhwc = (i * plane + p) * c + ch;
        out.set(to_nhwc ? nhwc : nchw, b.get(to_nhwc ? nchw : nhwc));
      }
  return out;
}

// NHWC descriptors (filters KRSC) give exactly the NCHW results, transposed, in each
// direction; beta != 0 reads the destination in its own layout.
TEST_P(ConvEmu, NhwcIsNchwTransposed) {
  Plan nchw(k, type), nhwc(k, type, CUDNN_FMA_MATH, CUDNN_TENSOR_NHWC);
  const int64_t in_plane = int64_t{k.H} * k.W, out_plane = int64_t{k.Ho()} * k.Wo();
  const int64_t taps = int64_t{k.kh} * k.kw;
  Buffer x_t = relayout(x, k.B, k.C, in_plane, true), w_t = relayout(w, k.O, k.C, taps, true);
  Buffer dy_t = relayout(dy, k.B, k.O, out_plane, true);
  const float alpha = 0.75f, beta = 0.5f;
  const size_t ws_bytes = size_t{1} << 24;  // more than any algorithm here asks
  Workspace ws(ws_bytes);
  // One direction: its result [n][c][plane] from NCHW and from NHWC descriptors (run
  // with the plan, the NHWC flag and the destination), compared after transposing back.
  auto check = [&](const char* what, int64_t n, int64_t c, int64_t plane,
                   const std::function<cudnnStatus_t(Plan&, bool, void*)>& run) {
    Buffer out = before(n * c * plane, beta);
    Buffer out_t = relayout(out, n, c, plane, true);
    ASSERT_EQ(run(nchw, false, out.data()), CUDNN_STATUS_SUCCESS) << what << ": " << last_error();
    ASSERT_EQ(run(nhwc, true, out_t.data()), CUDNN_STATUS_SUCCESS) << what << ": " << last_error();
    EXPECT_TRUE(relayout(out_t, n, c, plane, false).same_bits(out)) << what;
  };
  check("forward", k.B, k.O, out_plane, [&](Plan& p, bool t, void* y) {
    return cudnnConvolutionForward(handle.h, &alpha, p.x.d, t ? x_t.data() : x.data(), p.w.d,
                                   t ? w_t.data() : w.data(), p.conv.d,
                                   CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, ws.ptr(), ws.bytes,
                                   &beta, p.y.d, y);
  });
  check("backward data", k.B, k.C, in_plane, [&](Plan& p, bool t, void* dx) {
    return cudnnConvolutionBackwardData(handle.h, &alpha, p.w.d, t ? w_t.data() : w.data(), p.y.d,
                                        t ? dy_t.data() : dy.data(), p.conv.d,
                                        CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, ws.ptr(), ws.bytes,
                                        &beta, p.x.d, dx);
  });
  check("backward filter", k.O, k.C, taps, [&](Plan& p, bool t, void* dw) {
    return cudnnConvolutionBackwardFilter(handle.h, &alpha, p.x.d, t ? x_t.data() : x.data(), p.y.d,
                                          t ? dy_t.data() : dy.data(), p.conv.d,
                                          CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, ws.ptr(), ws.bytes,
                                          &beta, p.w.d, dw);
  });
}

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
  return std::string(std::get<0>(info.param).name) +
         (std::get<1>(info.param) == CUDNN_DATA_FLOAT ? "_F32" : "_BF16");
}

INSTANTIATE_TEST_SUITE_P(Cases, ConvEmu,
                         ::testing::Combine(::testing::ValuesIn(kCases),
                                            ::testing::Values(CUDNN_DATA_FLOAT,
                                                              CUDNN_DATA_BFLOAT16)),
                         param_name);

// ---- bfloat16 rounding --------------------------------------------------------------

// A 1x1 convolution of 1.0 by 1.0 scaled by alpha stores round(alpha): ties go to even,
// NaN stays NaN, beyond the largest bfloat16 is infinity.
TEST(CudnnEmuBf16, RoundsOnceToNearestEven) {
  Handle handle;
  const Case k{"one", 1, 1, 1, 5, 1, 1, 1, 0, 0, 1, 1, 1, 1};
  Plan p(k, CUDNN_DATA_BFLOAT16);
  Buffer x(CUDNN_DATA_BFLOAT16, 5, 1.f), w(CUDNN_DATA_BFLOAT16, 1, 1.f);
  x.set(3, kNaN);
  x.set(4, 3.0e38f);  // rounds to 0x7F62 in bfloat16; times 2 overflows
  const float zero = 0.f;
  auto run = [&](float alpha) {
    Buffer y(CUDNN_DATA_BFLOAT16, 5, kNaN);
    EXPECT_EQ(cudnnConvolutionForward(handle.h, &alpha, p.x.d, x.data(), p.w.d, w.data(), p.conv.d,
                                      CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0, &zero,
                                      p.y.d, y.data()),
              CUDNN_STATUS_SUCCESS);
    return y;
  };
  EXPECT_EQ(run(from_bits(0x3F808000u)).h[0], 0x3F80u);  // 1 + 2^-8: a tie, lsb 0 -> down
  EXPECT_EQ(run(from_bits(0x3F818000u)).h[0], 0x3F82u);  // a tie, lsb 1 -> up
  EXPECT_EQ(run(from_bits(0x3F808001u)).h[0], 0x3F81u);  // just above a tie -> up
  const Buffer y = run(2.f);
  EXPECT_EQ(y.h[0], 0x4000u);
  EXPECT_TRUE(std::isnan(y.get(3)));
  EXPECT_EQ(y.h[4], 0x7F80u);  // +inf
}

// ---- graphs ----------------------------------------------------------------------------

// A convolution reached while its stream captures is recorded, not run: the output is
// untouched until the graph is launched, and each launch reads the input as it is then
// (the descriptors and scalars are the call's, even after the caller destroyed them).
TEST(CudnnEmuGraph, CapturedConvolutionRunsAtEachReplay) {
  Handle handle;
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  ASSERT_EQ(cudnnSetStream(handle.h, stream), CUDNN_STATUS_SUCCESS);
  const Case k = kCases[0];
  Buffer x(CUDNN_DATA_FLOAT, int64_t{k.B} * k.C * k.H * k.W), w(CUDNN_DATA_FLOAT, int64_t{k.O} * k.C * k.kh * k.kw);
  std::mt19937 rng(3);
  x.randomize(rng);
  w.randomize(rng);
  const int64_t n_out = int64_t{k.B} * k.O * k.Ho() * k.Wo();
  Buffer y(CUDNN_DATA_FLOAT, n_out, -7.f), eager(CUDNN_DATA_FLOAT, n_out);
  auto forward = [&](Buffer& out) {
    Plan p(k, CUDNN_DATA_FLOAT);
    const float alpha = 1.f, beta = 0.f;
    return cudnnConvolutionForward(handle.h, &alpha, p.x.d, x.data(), p.w.d, w.data(), p.conv.d,
                                   CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0, &beta, p.y.d,
                                   out.data());
  };
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed), cudaSuccess);
  ASSERT_EQ(forward(y), CUDNN_STATUS_SUCCESS);  // the plan's descriptors die here
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  EXPECT_EQ(y.get(0), -7.f) << "a captured call must not run";
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  for (int replay = 0; replay < 2; ++replay) {
    x.randomize(rng);
    ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    ASSERT_EQ(cudnnSetStream(handle.h, nullptr), CUDNN_STATUS_SUCCESS);
    ASSERT_EQ(forward(eager), CUDNN_STATUS_SUCCESS);
    ASSERT_EQ(cudnnSetStream(handle.h, stream), CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(y.f, eager.f) << "replay " << replay;
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

// ---- algorithm queries ----------------------------------------------------------------

TEST(CudnnEmuAlgos, ForwardListIsRankedAndHonoursTheRequestedCount) {
  Handle handle;
  const Case k{"q", 2, 3, 10, 12, 4, 3, 3, 1, 1, 1, 1, 1, 1};
  Plan p(k, CUDNN_DATA_FLOAT);
  cudnnConvolutionFwdAlgoPerf_t perf[16];
  int count = -1;
  ASSERT_EQ(cudnnGetConvolutionForwardAlgorithm_v7(handle.h, p.x.d, p.w.d, p.conv.d, p.y.d, 16,
                                                   &count, perf),
            CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(count, CUDNN_CONVOLUTION_FWD_ALGO_COUNT);
  const size_t col = size_t{3} * 3 * 3 * 10 * 12 * sizeof(float);
  EXPECT_EQ(perf[0].algo, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM);
  EXPECT_EQ(perf[0].memory, col);  // the workspace path of the engine gets exercised
  EXPECT_EQ(perf[1].algo, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM);
  EXPECT_EQ(perf[1].memory, 0u);
  EXPECT_EQ(perf[2].algo, CUDNN_CONVOLUTION_FWD_ALGO_GEMM);
  EXPECT_EQ(perf[2].memory, col);
  bool seen_unsupported = false;
  for (int i = 0; i < count; ++i) {
    EXPECT_EQ(perf[i].determinism, CUDNN_DETERMINISTIC);
    EXPECT_EQ(perf[i].mathType, CUDNN_FMA_MATH);  // as the descriptor asks
    if (perf[i].status != CUDNN_STATUS_SUCCESS) {
      EXPECT_EQ(perf[i].status, CUDNN_STATUS_NOT_SUPPORTED);
      seen_unsupported = true;
    } else {
      EXPECT_FALSE(seen_unsupported) << "runnable algorithms come first";
    }
  }
  size_t bytes = 1;
  ASSERT_EQ(cudnnGetConvolutionForwardWorkspaceSize(handle.h, p.x.d, p.w.d, p.conv.d, p.y.d,
                                                    CUDNN_CONVOLUTION_FWD_ALGO_GEMM, &bytes),
            CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(bytes, col);

  cudnnConvolutionFwdAlgoPerf_t two[2];
  ASSERT_EQ(cudnnGetConvolutionForwardAlgorithm_v7(handle.h, p.x.d, p.w.d, p.conv.d, p.y.d, 2,
                                                   &count, two),
            CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(count, 2);
  EXPECT_EQ(two[1].algo, perf[1].algo);
}

TEST(CudnnEmuAlgos, FindReportsTimesInTheSameOrder) {
  Handle handle;
  const Case k{"q", 2, 3, 10, 12, 4, 3, 3, 1, 1, 1, 1, 1, 1};
  Plan p(k, CUDNN_DATA_FLOAT);
  cudnnConvolutionFwdAlgoPerf_t heur[16], found[16];
  int nh = 0, nf = 0;
  ASSERT_EQ(cudnnGetConvolutionForwardAlgorithm_v7(handle.h, p.x.d, p.w.d, p.conv.d, p.y.d, 16,
                                                   &nh, heur),
            CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(cudnnFindConvolutionForwardAlgorithm(handle.h, p.x.d, p.w.d, p.conv.d, p.y.d, 16, &nf,
                                                 found),
            CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(nf, nh);
  float last = 0.f;
  for (int i = 0; i < nf; ++i) {
    EXPECT_EQ(found[i].algo, heur[i].algo);
    EXPECT_EQ(found[i].status, heur[i].status);
    EXPECT_EQ(found[i].memory, heur[i].memory);
    if (found[i].status == CUDNN_STATUS_SUCCESS) {
      EXPECT_GT(found[i].time, 0.f);
      EXPECT_GE(found[i].time, last) << "Find sorts by time";
      last = found[i].time;
    }
  }

  cudnnConvolutionBwdDataAlgoPerf_t bd[16];
  ASSERT_EQ(cudnnFindConvolutionBackwardDataAlgorithm(handle.h, p.w.d, p.y.d, p.conv.d, p.x.d, 16,
                                                      &nf, bd),
            CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(nf, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT);
  EXPECT_GT(bd[0].time, 0.f);
  cudnnConvolutionBwdFilterAlgoPerf_t bf[16];
  ASSERT_EQ(cudnnFindConvolutionBackwardFilterAlgorithm(handle.h, p.x.d, p.y.d, p.conv.d, p.w.d,
                                                        16, &nf, bf),
            CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(nf, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT);
  EXPECT_GT(bf[0].time, 0.f);
}

// Backward: a non-deterministic algorithm first (cuDNN's ALGO_0), then a deterministic
// one with a workspace, which is what the engine picks by default.
TEST(CudnnEmuAlgos, BackwardListsOfferDeterministicAlgorithms) {
  Handle handle;
  const Case k{"q", 2, 3, 10, 12, 4, 3, 3, 1, 1, 2, 2, 1, 1};
  Plan p(k, CUDNN_DATA_FLOAT);
  const size_t col = size_t{3} * 3 * 3 * 5 * 6 * sizeof(float);
  cudnnConvolutionBwdDataAlgoPerf_t bd[16];
  int n = 0;
  ASSERT_EQ(cudnnGetConvolutionBackwardDataAlgorithm_v7(handle.h, p.w.d, p.y.d, p.conv.d, p.x.d,
                                                        16, &n, bd),
            CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(n, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT);
  EXPECT_EQ(bd[0].algo, CUDNN_CONVOLUTION_BWD_DATA_ALGO_0);
  EXPECT_EQ(bd[0].determinism, CUDNN_NON_DETERMINISTIC);
  EXPECT_EQ(bd[1].algo, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1);
  EXPECT_EQ(bd[1].determinism, CUDNN_DETERMINISTIC);
  EXPECT_EQ(bd[1].memory, col);
  cudnnConvolutionBwdFilterAlgoPerf_t bf[16];
  ASSERT_EQ(cudnnGetConvolutionBackwardFilterAlgorithm_v7(handle.h, p.x.d, p.y.d, p.conv.d, p.w.d,
                                                          16, &n, bf),
            CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(n, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT);
  EXPECT_EQ(bf[0].determinism, CUDNN_NON_DETERMINISTIC);
  EXPECT_EQ(bf[1].algo, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1);
  EXPECT_EQ(bf[1].determinism, CUDNN_DETERMINISTIC);
  EXPECT_EQ(bf[1].memory, col);
  for (int i = 2; i < n; ++i) EXPECT_EQ(bf[i].status, CUDNN_STATUS_NOT_SUPPORTED);
}

TEST(CudnnEmuAlgos, PointwiseNeedsNoWorkspace) {
  Handle handle;
  const Case k{"q", 2, 8, 5, 6, 7, 1, 1, 0, 0, 1, 1, 1, 1};
  Plan p(k, CUDNN_DATA_FLOAT);
  cudnnConvolutionFwdAlgoPerf_t perf[16];
  int n = 0;
  ASSERT_EQ(cudnnGetConvolutionForwardAlgorithm_v7(handle.h, p.x.d, p.w.d, p.conv.d, p.y.d, 16, &n,
                                                   perf),
            CUDNN_STATUS_SUCCESS);
  for (int i = 0; i < n; ++i) EXPECT_EQ(perf[i].memory, 0u);
}

// The math type reported: FMA when asked; tensor-core math for bfloat16 under default
// math (what the engine then sets); the descriptor's own for float32 otherwise.
TEST(CudnnEmuAlgos, ReportedMathType) {
  Handle handle;
  const Case k{"q", 1, 2, 6, 6, 3, 3, 3, 1, 1, 1, 1, 1, 1};
  auto first = [&](cudnnDataType_t t, cudnnMathType_t m) {
    Plan p(k, t, m);
    cudnnConvolutionFwdAlgoPerf_t perf[1];
    int n = 0;
    EXPECT_EQ(cudnnGetConvolutionForwardAlgorithm_v7(handle.h, p.x.d, p.w.d, p.conv.d, p.y.d, 1,
                                                     &n, perf),
              CUDNN_STATUS_SUCCESS);
    EXPECT_EQ(n, 1);
    return perf[0].mathType;
  };
  EXPECT_EQ(first(CUDNN_DATA_FLOAT, CUDNN_FMA_MATH), CUDNN_FMA_MATH);
  EXPECT_EQ(first(CUDNN_DATA_FLOAT, CUDNN_DEFAULT_MATH), CUDNN_DEFAULT_MATH);
  EXPECT_EQ(first(CUDNN_DATA_BFLOAT16, CUDNN_DEFAULT_MATH), CUDNN_TENSOR_OP_MATH);
  EXPECT_EQ(first(CUDNN_DATA_BFLOAT16, CUDNN_FMA_MATH), CUDNN_FMA_MATH);
}

// ---- output size ------------------------------------------------------------------------

TEST(CudnnEmuOutputDim, Formula) {
  struct Row {
    int H, W, kh, kw, ph, pw, sh, sw, dh, dw, Ho, Wo;
  };
  const Row rows[] = {
      {224, 224, 7, 7, 3, 3, 2, 2, 1, 1, 112, 112},  // ResNet stem
      {56, 56, 3, 3, 1, 1, 2, 2, 1, 1, 28, 28},
      {56, 56, 1, 1, 0, 0, 2, 2, 1, 1, 28, 28},
      {10, 7, 3, 3, 0, 0, 1, 1, 2, 2, 6, 3},        // dilated: effective 5x5
      {9, 12, 2, 5, 1, 0, 3, 2, 1, 2, 4, 2},        // (9+2-2)/3+1, (12-9)/2+1
      {5, 4, 5, 4, 0, 0, 1, 1, 1, 1, 1, 1},
      {1, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},
  };
  for (const Row& r : rows) {
    Tensor x(CUDNN_DATA_FLOAT, 3, 2, r.H, r.W);
    Filter w(CUDNN_DATA_FLOAT, 5, 2, r.kh, r.kw);
    Conv conv;
    ASSERT_EQ(cudnnSetConvolution2dDescriptor(conv.d, r.ph, r.pw, r.sh, r.sw, r.dh, r.dw,
                                              CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
              CUDNN_STATUS_SUCCESS);
    int n = 0, c = 0, h = 0, wd = 0;
    ASSERT_EQ(cudnnGetConvolution2dForwardOutputDim(conv.d, x.d, w.d, &n, &c, &h, &wd),
              CUDNN_STATUS_SUCCESS)
        << last_error();
    EXPECT_EQ(n, 3);
    EXPECT_EQ(c, 5);
    EXPECT_EQ(h, r.Ho) << r.H << "x" << r.W;
    EXPECT_EQ(wd, r.Wo) << r.H << "x" << r.W;
  }
}

TEST(CudnnEmuOutputDim, FilterLargerThanPaddedInputIsBadParam) {
  Tensor x(CUDNN_DATA_FLOAT, 1, 2, 4, 4);
  Filter w(CUDNN_DATA_FLOAT, 3, 2, 5, 3);
  Conv conv;
  ASSERT_EQ(cudnnSetConvolution2dDescriptor(conv.d, 0, 0, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION,
                                            CUDNN_DATA_FLOAT),
            CUDNN_STATUS_SUCCESS);
  int n, c, h, wd;
  EXPECT_EQ(cudnnGetConvolution2dForwardOutputDim(conv.d, x.d, w.d, &n, &c, &h, &wd),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_NE(last_error().find("does not fit"), std::string::npos);
}

// ---- AddTensor and backward bias --------------------------------------------------------

class AddTensorEmu : public ::testing::TestWithParam<cudnnDataType_t> {};

TEST_P(AddTensorEmu, BroadcastsLikeCudnn) {
  const cudnnDataType_t t = GetParam();
  Handle handle;
  const int N = 2, C = 5, H = 3, W = 4;
  struct Shape {
    int n, c, h, w;
  };
  const Shape shapes[] = {{1, C, 1, 1}, {N, C, H, W}, {N, 1, H, 1}, {1, 1, 1, W}, {1, 1, 1, 1}};
  std::mt19937 rng(7);
  for (const Shape& s : shapes)
    for (const Scale& sc : kScales) {
      Tensor a(t, s.n, s.c, s.h, s.w), c(t, N, C, H, W);
      Buffer A(t, int64_t{s.n} * s.c * s.h * s.w), Cb(t, int64_t{N} * C * H * W, kNaN);
      A.randomize(rng);
      if (sc.beta != 0.f) Cb.randomize(rng);
      const Buffer C0 = Cb;
      ASSERT_EQ(cudnnAddTensor(handle.h, &sc.alpha, a.d, A.data(), &sc.beta, c.d, Cb.data()),
                CUDNN_STATUS_SUCCESS)
          << last_error();
      Ref ref(Cb.size());
      for (int n = 0; n < N; ++n)
        for (int ch = 0; ch < C; ++ch)
          for (int h = 0; h < H; ++h)
            for (int w = 0; w < W; ++w) {
              const int64_t ci = ((int64_t{n} * C + ch) * H + h) * W + w;
              const int64_t ai =
                  ((int64_t{s.n == 1 ? 0 : n} * s.c + (s.c == 1 ? 0 : ch)) * s.h +
                   (s.h == 1 ? 0 : h)) * s.w + (s.w == 1 ? 0 : w);
              ref.add(ci, A.get(ai));
            }
      expect_matches(Cb, ref, sc.alpha, sc.beta, C0,
                     "AddTensor [" + std::to_string(s.n) + "," + std::to_string(s.c) + "," +
                         std::to_string(s.h) + "," + std::to_string(s.w) + "]");
    }
}

TEST_P(AddTensorEmu, ConvolutionBackwardBias) {
  const cudnnDataType_t t = GetParam();
  Handle handle;
  const int N = 3, K = 4, H = 5, W = 6;
  Tensor dyd(t, N, K, H, W), dbd(t, 1, K, 1, 1);
  std::mt19937 rng(11);
  Buffer dy(t, int64_t{N} * K * H * W);
  dy.randomize(rng);
  Ref ref(K);
  for (int n = 0; n < N; ++n)
    for (int k = 0; k < K; ++k)
      for (int i = 0; i < H * W; ++i) ref.add(k, dy.get((int64_t{n} * K + k) * H * W + i));
  for (const Scale& sc : kScales) {
    Buffer db(t, K, kNaN);
    if (sc.beta != 0.f) db.randomize(rng);
    const Buffer db0 = db;
    ASSERT_EQ(cudnnConvolutionBackwardBias(handle.h, &sc.alpha, dyd.d, dy.data(), &sc.beta, dbd.d,
                                           db.data()),
              CUDNN_STATUS_SUCCESS)
        << last_error();
    expect_matches(db, ref, sc.alpha, sc.beta, db0, "backward bias");
  }
  Tensor wrong(t, 1, K, 2, 1);
  Buffer db(t, 2 * K);
  const float one = 1.f;
  EXPECT_EQ(cudnnConvolutionBackwardBias(handle.h, &one, dyd.d, dy.data(), &one, wrong.d,
                                         db.data()),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_NE(last_error().find("dbDesc"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Types, AddTensorEmu,
                         ::testing::Values(CUDNN_DATA_FLOAT, CUDNN_DATA_BFLOAT16),
                         [](const ::testing::TestParamInfo<cudnnDataType_t>& i) {
                           return std::string(i.param == CUDNN_DATA_FLOAT ? "F32" : "BF16");
                         });

// ---- the engine's own sequence ------------------------------------------------------------

// engine/cuda/conv_cuda.cpp's forward under autocast: a bfloat16 convolution into a
// bfloat16 y, widened to float32, then the float32 bias added by cudnnAddTensor onto the
// float32 view (y32) of the same shape.
TEST(CudnnEmuEngine, Bf16ForwardThenFloatBias) {
  Handle handle;
  ASSERT_EQ(cudnnSetStream(handle.h, nullptr), CUDNN_STATUS_SUCCESS);
  const Case k{"engine", 2, 3, 9, 9, 4, 3, 3, 1, 1, 2, 2, 1, 1};
  Plan p(k, CUDNN_DATA_BFLOAT16, CUDNN_DEFAULT_MATH);
  Tensor y32(CUDNN_DATA_FLOAT, k.B, k.O, k.Ho(), k.Wo()), bias(CUDNN_DATA_FLOAT, 1, k.O, 1, 1);
  std::mt19937 rng(5);
  Buffer x(CUDNN_DATA_BFLOAT16, k.x_elems()), w(CUDNN_DATA_BFLOAT16, k.w_elems());
  Buffer b(CUDNN_DATA_FLOAT, k.O);
  x.randomize(rng);
  w.randomize(rng);
  b.randomize(rng);
  cudnnConvolutionFwdAlgoPerf_t perf[16];
  int n = 0;
  ASSERT_EQ(cudnnGetConvolutionForwardAlgorithm_v7(handle.h, p.x.d, p.w.d, p.conv.d, p.y.d, 16, &n,
                                                   perf),
            CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(cudnnSetConvolutionMathType(p.conv.d, perf[0].mathType), CUDNN_STATUS_SUCCESS);
  Workspace ws(perf[0].memory);
  const float one = 1.f, zero = 0.f;
  Buffer y16(CUDNN_DATA_BFLOAT16, k.y_elems(), kNaN);
  ASSERT_EQ(cudnnConvolutionForward(handle.h, &one, p.x.d, x.data(), p.w.d, w.data(), p.conv.d,
                                    perf[0].algo, ws.ptr(), ws.bytes, &zero, p.y.d, y16.data()),
            CUDNN_STATUS_SUCCESS);
  Buffer y(CUDNN_DATA_FLOAT, k.y_elems());
  for (int64_t i = 0; i < y.size(); ++i) y.set(i, y16.get(i));
  ASSERT_EQ(cudnnAddTensor(handle.h, &one, bias.d, b.data(), &one, y32.d, y.data()),
            CUDNN_STATUS_SUCCESS);
  const Ref ref = ref_forward(k, x, w);
  const int64_t plane = int64_t{k.Ho()} * k.Wo();
  for (int64_t i = 0; i < y.size(); ++i) {
    const float want = bf16_to_float(float_to_bf16(static_cast<float>(ref.v[static_cast<size_t>(i)]))) +
                       b.get((i / plane) % k.O);
    EXPECT_NEAR(y.get(i), want, 1e-5 * ref.mag[static_cast<size_t>(i)] + 1e-2 * std::fabs(want))
        << i;
  }
}

// ---- errors -----------------------------------------------------------------------------

TEST(CudnnEmuErrors, DescriptorSetters) {
  Tensor t;
  EXPECT_EQ(cudnnSetTensor4dDescriptor(t.d, CUDNN_TENSOR_NCHW_VECT_C, CUDNN_DATA_FLOAT, 1, 2, 3, 4),
            CUDNN_STATUS_NOT_SUPPORTED);
  EXPECT_NE(last_error().find("CUDNN_TENSOR_NCHW and CUDNN_TENSOR_NHWC only"), std::string::npos);
  EXPECT_EQ(cudnnSetTensor4dDescriptor(t.d, CUDNN_TENSOR_NCHW, CUDNN_DATA_HALF, 1, 2, 3, 4),
            CUDNN_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(cudnnSetTensor4dDescriptor(t.d, CUDNN_TENSOR_NCHW, static_cast<cudnnDataType_t>(99), 1,
                                       2, 3, 4),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnSetTensor4dDescriptor(t.d, static_cast<cudnnTensorFormat_t>(7), CUDNN_DATA_FLOAT,
                                       1, 2, 3, 4),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnSetTensor4dDescriptor(t.d, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, -2, 3, 4),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnSetTensor4dDescriptor(t.d, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 0, 2, 3, 4),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnSetTensor4dDescriptor(t.d, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1 << 16, 1 << 8,
                                       1 << 4, 1 << 4),
            CUDNN_STATUS_NOT_SUPPORTED);  // 2^32 elements
  EXPECT_EQ(cudnnSetTensor4dDescriptor(nullptr, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 2, 3, 4),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnSetTensor4dDescriptor(t.d, CUDNN_TENSOR_NCHW, CUDNN_DATA_BFLOAT16, 1, 2, 3, 4),
            CUDNN_STATUS_SUCCESS);
  cudnnDataType_t dt;
  int n, c, h, w, ns, cs, hs, ws;
  ASSERT_EQ(cudnnGetTensor4dDescriptor(t.d, &dt, &n, &c, &h, &w, &ns, &cs, &hs, &ws),
            CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(dt, CUDNN_DATA_BFLOAT16);
  EXPECT_EQ(ns, 24);
  EXPECT_EQ(cs, 12);
  EXPECT_EQ(hs, 4);
  EXPECT_EQ(ws, 1);
  ASSERT_EQ(cudnnSetTensor4dDescriptor(t.d, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, 1, 2, 3, 4),
            CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(cudnnGetTensor4dDescriptor(t.d, &dt, &n, &c, &h, &w, &ns, &cs, &hs, &ws),
            CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(ns, 24);  // NHWC: c fastest, then w, then h
  EXPECT_EQ(cs, 1);
  EXPECT_EQ(hs, 8);
  EXPECT_EQ(ws, 2);

  Filter f;
  EXPECT_EQ(cudnnSetFilter4dDescriptor(f.d, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW_VECT_C, 1, 2, 3, 3),
            CUDNN_STATUS_NOT_SUPPORTED);
  ASSERT_EQ(cudnnSetFilter4dDescriptor(f.d, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, 1, 2, 3, 3),
            CUDNN_STATUS_SUCCESS);
  cudnnTensorFormat_t format = CUDNN_TENSOR_NCHW;
  int fk, fc, fh, fw;
  ASSERT_EQ(cudnnGetFilter4dDescriptor(f.d, &dt, &format, &fk, &fc, &fh, &fw), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(format, CUDNN_TENSOR_NHWC);
  EXPECT_EQ(cudnnSetFilter4dDescriptor(f.d, CUDNN_DATA_DOUBLE, CUDNN_TENSOR_NCHW, 1, 2, 3, 3),
            CUDNN_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(cudnnSetFilter4dDescriptor(f.d, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 1, 2, 0, 3),
            CUDNN_STATUS_BAD_PARAM);

  Conv conv;
  EXPECT_EQ(cudnnSetConvolution2dDescriptor(conv.d, -1, 0, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION,
                                            CUDNN_DATA_FLOAT),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnSetConvolution2dDescriptor(conv.d, 0, 0, 0, 1, 1, 1, CUDNN_CROSS_CORRELATION,
                                            CUDNN_DATA_FLOAT),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnSetConvolution2dDescriptor(conv.d, 0, 0, 1, 1, 1, 0, CUDNN_CROSS_CORRELATION,
                                            CUDNN_DATA_FLOAT),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnSetConvolution2dDescriptor(conv.d, 0, 0, 1, 1, 1, 1,
                                            static_cast<cudnnConvolutionMode_t>(5),
                                            CUDNN_DATA_FLOAT),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnSetConvolution2dDescriptor(conv.d, 0, 0, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION,
                                            CUDNN_DATA_HALF),
            CUDNN_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(cudnnSetConvolutionMathType(conv.d, static_cast<cudnnMathType_t>(9)),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnSetConvolutionGroupCount(conv.d, 2), CUDNN_STATUS_NOT_SUPPORTED);
  EXPECT_NE(last_error().find("ungrouped"), std::string::npos);
  EXPECT_EQ(cudnnSetConvolutionGroupCount(conv.d, 0), CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnSetConvolutionGroupCount(conv.d, 1), CUDNN_STATUS_SUCCESS);
}

// Inconsistent descriptors: every convolution entry point refuses them with BAD_PARAM and
// says why.
TEST(CudnnEmuErrors, InconsistentDescriptors) {
  Handle handle;
  const Case k{"e", 2, 3, 8, 8, 4, 3, 3, 1, 1, 1, 1, 1, 1};
  Plan p(k, CUDNN_DATA_FLOAT);
  cudnnConvolutionFwdAlgoPerf_t perf[8];
  int n = 0;
  const float one = 1.f, zero = 0.f;
  std::vector<float> x(4096), w(4096), y(4096), ws(4096);

  {  // output of the wrong size
    Tensor bad(CUDNN_DATA_FLOAT, 2, 4, 7, 8);
    EXPECT_EQ(cudnnGetConvolutionForwardAlgorithm_v7(handle.h, p.x.d, p.w.d, p.conv.d, bad.d, 8,
                                                     &n, perf),
              CUDNN_STATUS_BAD_PARAM);
    const std::string msg = last_error();
    EXPECT_NE(msg.find("yDesc is [2, 4, 7, 8]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("gives [2, 4, 8, 8]"), std::string::npos) << msg;
    EXPECT_EQ(cudnnConvolutionForward(handle.h, &one, p.x.d, x.data(), p.w.d, w.data(), p.conv.d,
                                      CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0, &zero,
                                      bad.d, y.data()),
              CUDNN_STATUS_BAD_PARAM);
  }
  {  // channel count of x and w disagree
    Tensor bad(CUDNN_DATA_FLOAT, 2, 5, 8, 8);
    EXPECT_EQ(cudnnConvolutionForward(handle.h, &one, bad.d, x.data(), p.w.d, w.data(), p.conv.d,
                                      CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0, &zero,
                                      p.y.d, y.data()),
              CUDNN_STATUS_BAD_PARAM);
    EXPECT_NE(last_error().find("channels"), std::string::npos);
    int a, b, c, d;
    EXPECT_EQ(cudnnGetConvolution2dForwardOutputDim(p.conv.d, bad.d, p.w.d, &a, &b, &c, &d),
              CUDNN_STATUS_BAD_PARAM);
  }
  {  // data types disagree
    Tensor bad(CUDNN_DATA_BFLOAT16, 2, 4, 8, 8);
    EXPECT_EQ(cudnnConvolutionBackwardData(handle.h, &one, p.w.d, w.data(), bad.d, y.data(),
                                           p.conv.d, CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, nullptr, 0,
                                           &zero, p.x.d, x.data()),
              CUDNN_STATUS_BAD_PARAM);
    EXPECT_NE(last_error().find("CUDNN_DATA_BFLOAT16"), std::string::npos);
    Filter badw(CUDNN_DATA_BFLOAT16, 4, 3, 3, 3);
    EXPECT_EQ(cudnnConvolutionBackwardFilter(handle.h, &one, p.x.d, x.data(), p.y.d, y.data(),
                                             p.conv.d, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0,
                                             nullptr, 0, &zero, badw.d, w.data()),
              CUDNN_STATUS_BAD_PARAM);
  }
  {  // descriptors created but never set, or missing
    Tensor unset;
    EXPECT_EQ(cudnnConvolutionForward(handle.h, &one, unset.d, x.data(), p.w.d, w.data(),
                                      p.conv.d, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr,
                                      0, &zero, p.y.d, y.data()),
              CUDNN_STATUS_BAD_PARAM);
    EXPECT_NE(last_error().find("never set"), std::string::npos);
    Conv unset_conv;
    EXPECT_EQ(cudnnGetConvolutionForwardAlgorithm_v7(handle.h, p.x.d, p.w.d, unset_conv.d, p.y.d,
                                                     8, &n, perf),
              CUDNN_STATUS_BAD_PARAM);
    EXPECT_EQ(cudnnGetConvolutionForwardAlgorithm_v7(handle.h, p.x.d, nullptr, p.conv.d, p.y.d, 8,
                                                     &n, perf),
              CUDNN_STATUS_BAD_PARAM);
  }
  // Bad counts, pointers and handles.
  EXPECT_EQ(cudnnGetConvolutionForwardAlgorithm_v7(handle.h, p.x.d, p.w.d, p.conv.d, p.y.d, 0, &n,
                                                   perf),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnFindConvolutionForwardAlgorithm(nullptr, p.x.d, p.w.d, p.conv.d, p.y.d, 8, &n,
                                                 perf),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnConvolutionForward(handle.h, nullptr, p.x.d, x.data(), p.w.d, w.data(), p.conv.d,
                                    CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0, &zero,
                                    p.y.d, y.data()),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnConvolutionForward(handle.h, &one, p.x.d, nullptr, p.w.d, w.data(), p.conv.d,
                                    CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0, &zero,
                                    p.y.d, y.data()),
            CUDNN_STATUS_BAD_PARAM);
}

TEST(CudnnEmuErrors, AlgorithmsAndWorkspaces) {
  Handle handle;
  const Case k{"e", 1, 3, 8, 8, 4, 3, 3, 1, 1, 1, 1, 1, 1};
  Plan p(k, CUDNN_DATA_FLOAT);
  const float one = 1.f, zero = 0.f;
  std::vector<float> x(k.x_elems()), w(k.w_elems()), y(k.y_elems());
  const size_t need = size_t{27} * 64 * sizeof(float);
  std::vector<float> ws(need / sizeof(float));
  auto fwd = [&](cudnnConvolutionFwdAlgo_t algo, void* space, size_t bytes) {
    return cudnnConvolutionForward(handle.h, &one, p.x.d, x.data(), p.w.d, w.data(), p.conv.d,
                                   algo, space, bytes, &zero, p.y.d, y.data());
  };
  EXPECT_EQ(fwd(CUDNN_CONVOLUTION_FWD_ALGO_GEMM, ws.data(), need - 1), CUDNN_STATUS_BAD_PARAM);
  EXPECT_NE(last_error().find("needs a workspace of 6912 bytes"), std::string::npos);
  EXPECT_EQ(fwd(CUDNN_CONVOLUTION_FWD_ALGO_GEMM, nullptr, need), CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(fwd(CUDNN_CONVOLUTION_FWD_ALGO_GEMM, ws.data(), need), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(fwd(CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(fwd(CUDNN_CONVOLUTION_FWD_ALGO_FFT, ws.data(), need), CUDNN_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(fwd(static_cast<cudnnConvolutionFwdAlgo_t>(42), ws.data(), need),
            CUDNN_STATUS_BAD_PARAM);
  size_t bytes = 0;
  EXPECT_EQ(cudnnGetConvolutionForwardWorkspaceSize(handle.h, p.x.d, p.w.d, p.conv.d, p.y.d,
                                                    CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD, &bytes),
            CUDNN_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(cudnnConvolutionBackwardData(handle.h, &one, p.w.d, w.data(), p.y.d, y.data(),
                                         p.conv.d, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, nullptr, 0,
                                         &zero, p.x.d, x.data()),
            CUDNN_STATUS_BAD_PARAM);
  ASSERT_EQ(cudnnGetConvolutionBackwardDataWorkspaceSize(handle.h, p.w.d, p.y.d, p.conv.d, p.x.d,
                                                         CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
                                                         &bytes),
            CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(bytes, need);
  EXPECT_EQ(cudnnConvolutionBackwardFilter(handle.h, &one, p.x.d, x.data(), p.y.d, y.data(),
                                           p.conv.d, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1,
                                           ws.data(), 16, &zero, p.w.d, w.data()),
            CUDNN_STATUS_BAD_PARAM);
  ASSERT_EQ(cudnnGetConvolutionBackwardFilterWorkspaceSize(handle.h, p.x.d, p.y.d, p.conv.d, p.w.d,
                                                           CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1,
                                                           &bytes),
            CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(bytes, need);
  EXPECT_EQ(cudnnConvolutionBackwardFilter(handle.h, &one, p.x.d, x.data(), p.y.d, y.data(),
                                           p.conv.d, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3,
                                           ws.data(), need, &zero, p.w.d, w.data()),
            CUDNN_STATUS_NOT_SUPPORTED);
}

TEST(CudnnEmuErrors, AddTensorShapesAndTypes) {
  Handle handle;
  const float one = 1.f;
  std::vector<float> a(64), c(64);
  Tensor dst(CUDNN_DATA_FLOAT, 2, 4, 2, 2), notbroadcast(CUDNN_DATA_FLOAT, 1, 3, 1, 1);
  EXPECT_EQ(cudnnAddTensor(handle.h, &one, notbroadcast.d, a.data(), &one, dst.d, c.data()),
            CUDNN_STATUS_BAD_PARAM);
  EXPECT_NE(last_error().find("does not broadcast"), std::string::npos);
  Tensor bf(CUDNN_DATA_BFLOAT16, 1, 4, 1, 1);
  EXPECT_EQ(cudnnAddTensor(handle.h, &one, bf.d, a.data(), &one, dst.d, c.data()),
            CUDNN_STATUS_BAD_PARAM);
}

TEST(CudnnEmuErrors, LastErrorStringIsPerCallTruncatedAndClearedByReading) {
  Tensor t;
  EXPECT_EQ(cudnnSetTensor4dDescriptor(t.d, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, -1, 1, 1, 1),
            CUDNN_STATUS_BAD_PARAM);
  char small[12];
  cudnnGetLastErrorString(small, sizeof small);
  EXPECT_EQ(std::string(small), "cudnnSetTen");
  EXPECT_EQ(last_error(), "");  // cleared by the read
  cudnnGetLastErrorString(nullptr, 10);  // tolerated
}

TEST(CudnnEmuLibrary, VersionStreamAndStatusNames) {
  EXPECT_EQ(cudnnGetVersion(), static_cast<size_t>(CUDNN_VERSION));
  EXPECT_EQ(CUDNN_VERSION, 91900);
  EXPECT_STREQ(cudnnGetErrorString(CUDNN_STATUS_SUCCESS), "CUDNN_STATUS_SUCCESS");
  EXPECT_STREQ(cudnnGetErrorString(CUDNN_STATUS_BAD_PARAM), "CUDNN_STATUS_BAD_PARAM");
  EXPECT_STREQ(cudnnGetErrorString(CUDNN_STATUS_NOT_SUPPORTED), "CUDNN_STATUS_NOT_SUPPORTED");
  EXPECT_STREQ(cudnnGetErrorString(static_cast<cudnnStatus_t>(12345)),
               "CUDNN_UNKNOWN_STATUS_FOUND");
  cudnnHandle_t h = nullptr;
  ASSERT_EQ(cudnnCreate(&h), CUDNN_STATUS_SUCCESS);
  cudaStream_t s = reinterpret_cast<cudaStream_t>(0x1234);
  EXPECT_EQ(cudnnSetStream(h, s), CUDNN_STATUS_SUCCESS);
  cudaStream_t back = nullptr;
  EXPECT_EQ(cudnnGetStream(h, &back), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(back, s);
  EXPECT_EQ(cudnnDestroy(h), CUDNN_STATUS_SUCCESS);
  EXPECT_EQ(cudnnDestroy(nullptr), CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnCreate(nullptr), CUDNN_STATUS_BAD_PARAM);
  EXPECT_EQ(cudnnDestroyTensorDescriptor(nullptr), CUDNN_STATUS_SUCCESS);
}

// ---- speed ------------------------------------------------------------------------------

// A ResNet-50 3x3 layer at batch 2: forward, backward data and backward filter, timed (the
// numbers are printed; the bound only catches a pathological slowdown).
TEST(CudnnEmuSpeed, ResNetLayer) {
  Handle handle;
  const Case k{"resnet", 2, 64, 56, 56, 64, 3, 3, 1, 1, 1, 1, 1, 1};
  Plan p(k, CUDNN_DATA_FLOAT);
  std::mt19937 rng(3);
  Buffer x(CUDNN_DATA_FLOAT, k.x_elems()), w(CUDNN_DATA_FLOAT, k.w_elems());
  Buffer y(CUDNN_DATA_FLOAT, k.y_elems()), dx(CUDNN_DATA_FLOAT, k.x_elems());
  x.randomize(rng);
  w.randomize(rng);
  const float one = 1.f, zero = 0.f;
  Workspace ws(size_t{64} * 9 * 56 * 56 * sizeof(float));
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(cudnnConvolutionForward(handle.h, &one, p.x.d, x.data(), p.w.d, w.data(), p.conv.d,
                                    CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, ws.ptr(),
                                    ws.bytes, &zero, p.y.d, y.data()),
            CUDNN_STATUS_SUCCESS);
  const auto t1 = std::chrono::steady_clock::now();
  ASSERT_EQ(cudnnConvolutionBackwardData(handle.h, &one, p.w.d, w.data(), p.y.d, y.data(),
                                         p.conv.d, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, ws.ptr(),
                                         ws.bytes, &zero, p.x.d, dx.data()),
            CUDNN_STATUS_SUCCESS);
  const auto t2 = std::chrono::steady_clock::now();
  ASSERT_EQ(cudnnConvolutionBackwardFilter(handle.h, &one, p.x.d, x.data(), p.y.d, y.data(),
                                           p.conv.d, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1,
                                           ws.ptr(), ws.bytes, &zero, p.w.d, w.data()),
            CUDNN_STATUS_SUCCESS);
  const auto t3 = std::chrono::steady_clock::now();
  auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
  const double gflop = 2.0 * k.B * k.O * 576 * 56 * 56 * 1e-9;
  std::printf("[ resnet 64x56x56 3x3, batch 2: %.3f GFLOP per direction ] forward %.1f ms, "
              "backward data %.1f ms, backward filter %.1f ms\n",
              gflop, ms(t0, t1), ms(t1, t2), ms(t2, t3));
  EXPECT_LT(ms(t0, t3), 30000.0);
}

}  // namespace
