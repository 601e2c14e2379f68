// Convolution kernels: im2col/col2im and the gemms around them (see conv.h).
//
// im2col writes each row of col (one channel c and kernel tap (ki, kj)) output row by
// output row: the output columns whose input column lies inside the image form one
// contiguous range [lo, hi), computed once per tap, so the inner loop is a plain copy
// (stride 1) or a strided gather with no bounds test, and the padding is a memset. When
// the output rows are as wide as the input's (stride 1, "same" padding: every 3x3 of
// ResNet but three), a tap's whole block is one copy (im2col_channels says how).
#include "kernels/cpu/conv.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <type_traits>

#include "kernels/cpu/blas.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/winograd.h"

namespace caption::kernels::cpu {

namespace {

// Output positions o in [0, out) whose input position o*stride - pad + offset lies in
// [0, in): a contiguous range [lo, hi) (empty when lo == hi).
struct Range {
  int64_t lo, hi;
};
Range valid_range(int64_t out, int64_t in, int64_t stride, int64_t pad, int64_t offset) {
  const int64_t first = pad - offset;  // o*stride >= first
  const int64_t last = in - 1 + pad - offset;  // o*stride <= last
  const int64_t lo = first <= 0 ? 0 : (first + stride - 1) / stride;
  const int64_t hi = last < 0 ? 0 : last / stride + 1;
  const int64_t l = std::min(lo, out);
  return {l, std::clamp(hi, l, out)};
}

// col's rows are ld apart (N for one image's matrix; more when images sit side by side).
template <typename T>
void im2col_channels(const Conv2dGeometry& g, const T* x, T* col, int64_t ld, int64_t c0,
                     int64_t c1) {
  const int64_t H = g.in_h, W = g.in_w, Ho = g.out_h, Wo = g.out_w, N = Ho * Wo;
  const int64_t sh = g.stride_h, sw = g.stride_w;
  const bool same_width = sw == 1 && sh == 1 && Wo == W;
  for (int64_t c = c0; c < c1; ++c) {
    const T* xc = x + c * H * W;
    for (int64_t ki = 0; ki < g.kernel_h; ++ki) {
      const Range rows = valid_range(Ho, H, sh, g.pad_h, ki * g.dilation_h);
      for (int64_t kj = 0; kj < g.kernel_w; ++kj) {
        T* dst = col + ((c * g.kernel_h + ki) * g.kernel_w + kj) * ld;
        const Range cols = valid_range(Wo, W, sw, g.pad_w, kj * g.dilation_w);
        const int64_t iw0 = cols.lo * sw - g.pad_w + kj * g.dilation_w;
        if (same_width && rows.lo < rows.hi && cols.lo < cols.hi) {
          // Output rows as wide as the input rows, strides 1: the tap's valid outputs read
          // one span of the input at a fixed offset, so one copy moves them all, reading
          // only inside the image (the span runs from the first valid output to the last);
          // the outputs whose column is in the padding read a neighbouring row's pixel in
          // that copy and are zeroed after it.
          const int64_t first = rows.lo * Wo + cols.lo, last = (rows.hi - 1) * Wo + cols.hi;
          const int64_t offset = (ki * g.dilation_h - g.pad_h) * W + kj * g.dilation_w - g.pad_w;
          std::memset(dst, 0, sizeof(T) * static_cast<size_t>(first));
          std::memcpy(dst + first, xc + first + offset,
                      sizeof(T) * static_cast<size_t>(last - first));
          std::memset(dst + last, 0, sizeof(T) * static_cast<size_t>(N - last));
          for (int64_t oh = rows.lo; oh < rows.hi; ++oh) {
            T* d = dst + oh * Wo;
            for (int64_t k = 0; k < cols.lo; ++k) d[k] = T(0);
            for (int64_t k = cols.hi; k < Wo; ++k) d[k] = T(0);
          }
          continue;
        }
        std::memset(dst, 0, sizeof(T) * static_cast<size_t>(rows.lo * Wo));
        for (int64_t oh = rows.lo; oh < rows.hi; ++oh) {
          T* d = dst + oh * Wo;
          const T* s = xc + (oh * sh - g.pad_h + ki * g.dilation_h) * W + iw0;
          std::memset(d, 0, sizeof(T) * static_cast<size_t>(cols.lo));
          const int64_t n = cols.hi - cols.lo;
          if (sw == 1) {
            std::memcpy(d + cols.lo, s, sizeof(T) * static_cast<size_t>(n));
          } else if (sw == 2) {  // ResNet's strided layers: a constant stride vectorises
            for (int64_t k = 0; k < n; ++k) d[cols.lo + k] = s[2 * k];
          } else {
            for (int64_t k = 0; k < n; ++k) d[cols.lo + k] = s[k * sw];
          }
          std::memset(d + cols.hi, 0, sizeof(T) * static_cast<size_t>(Wo - cols.hi));
        }
        std::memset(dst + rows.hi * Wo, 0, sizeof(T) * static_cast<size_t>((Ho - rows.hi) * Wo));
      }
    }
  }
}

// Channels are independent in col2im too (each writes only its own plane of x), which is
// what makes the split over threads race-free.
template <typename T>
void col2im_channels(const Conv2dGeometry& g, const T* col, T* x, int64_t c0, int64_t c1) {
  const int64_t H = g.in_h, W = g.in_w, Ho = g.out_h, Wo = g.out_w, N = Ho * Wo;
  const int64_t sh = g.stride_h, sw = g.stride_w;
  for (int64_t c = c0; c < c1; ++c) {
    T* xc = x + c * H * W;
    std::fill_n(xc, H * W, T(0));
    for (int64_t ki = 0; ki < g.kernel_h; ++ki) {
      const Range rows = valid_range(Ho, H, sh, g.pad_h, ki * g.dilation_h);
      for (int64_t kj = 0; kj < g.kernel_w; ++kj) {
        const T* src = col + ((c * g.kernel_h + ki) * g.kernel_w + kj) * N;
        const Range cols = valid_range(Wo, W, sw, g.pad_w, kj * g.dilation_w);
        const int64_t iw0 = cols.lo * sw - g.pad_w + kj * g.dilation_w;
        const int64_t n = cols.hi - cols.lo;
        for (int64_t oh = rows.lo; oh < rows.hi; ++oh) {
          const T* s = src + oh * Wo + cols.lo;
          T* d = xc + (oh * sh - g.pad_h + ki * g.dilation_h) * W + iw0;
          if (sw == 1) {
            for (int64_t k = 0; k < n; ++k) d[k] += s[k];
          } else {
            for (int64_t k = 0; k < n; ++k) d[k * sw] += s[k];
          }
        }
      }
    }
  }
}

// How many images share one product in the forward (see conv.h): enough that the
// product has at least kGroupColumns columns, when one image's output plane has fewer.
constexpr int64_t kGroupColumns = 512;
int64_t images_per_product(const Conv2dGeometry& g) {
  const int64_t N = g.out_plane();
  if (g.batch <= 1 || N >= kGroupColumns) return 1;
  return std::min(g.batch, (kGroupColumns + N - 1) / N);
}

// im2col of one image into N columns starting at col, in rows ld apart.
template <typename T>
void im2col_into(const Conv2dGeometry& g, const T* x, T* col, int64_t ld) {
  parallel_ranges(g.in_channels, g.patch_size() * g.out_plane(),
                  [&](int64_t c0, int64_t c1) { im2col_channels(g, x, col, ld, c0, c1); });
}

// y [O, n] = bias, broadcast along each row (the product then adds onto it: beta = 1).
template <typename T>
void fill_bias(const T* bias, int64_t O, int64_t n, T* y) {
  parallel_ranges(O, O * n, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o) std::fill_n(y + o * n, n, bias[o]);
  });
}

// The forward of images [b0, b0 + G) in one product: their column matrices side by side
// in cols [K, G*N] (for a pointwise convolution, the images' own planes copied), the
// product into ys [O, G*N] over the bias, then each image's block of ys to y with the
// epilogue.
template <typename T>
void forward_group(const Conv2dGeometry& g, const T* x, const T* w, const T* bias,
                   const T* residual, T* y, T* workspace, int64_t b0, int64_t G) {
  const int64_t O = g.out_channels, K = g.patch_size(), N = g.out_plane(), ld = G * N;
  const int64_t in_image = g.in_channels * g.in_h * g.in_w;
  T* cols = workspace;
  T* ys = workspace + K * ld;
  for (int64_t j = 0; j < G; ++j) {
    const T* xb = x + (b0 + j) * in_image;
    if (g.is_pointwise()) {
      parallel_ranges(K, K * N, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) std::copy_n(xb + c * N, N, cols + c * ld + j * N);
      });
    } else {
      im2col_into(g, xb, cols + j * N, ld);
    }
  }
  if (bias) fill_bias(bias, O, ld, ys);
  gemm<T>(Trans::No, Trans::No, O, ld, K, T(1), w, K, cols, ld, bias ? T(1) : T(0), ys, ld);
  parallel_ranges(O, O * ld, [&](int64_t o0, int64_t o1) {
    for (int64_t j = 0; j < G; ++j) {
      const int64_t at = (b0 + j) * O * N + o0 * N;
      for (int64_t o = o0; o < o1; ++o) std::copy_n(ys + o * ld + j * N, N, y + at + (o - o0) * N);
      conv2d_epilogue(g, y + at, residual ? residual + at : nullptr, (o1 - o0) * N);
    }
  });
}

// The transformed filters (U) first, then winograd_forward's own scratch.
int64_t winograd_scratch_elems(const Conv2dGeometry& g) {
  return winograd_weight_elems(g.out_channels, g.in_channels) + winograd_workspace_elems(g);
}

std::atomic<bool>& winograd_switch() {
  static std::atomic<bool> on{[] {
    const char* v = std::getenv("CAPTION_CONV_WINOGRAD");
    return !(v && std::string_view(v) == "0");
  }()};
  return on;
}

}  // namespace

void set_conv_winograd(bool on) { winograd_switch().store(on); }
bool conv_winograd() { return winograd_switch().load(); }

// The shapes that take Winograd while the switch is on. The scratch size follows this, not
// the switch, so that flipping the switch between sizing a call's workspace and running it
// cannot leave the workspace short.
bool winograd_shape_and_size(const Conv2dGeometry& g) {
  return !g.bf16 && winograd_applies(g) && g.batch * g.out_plane() >= kWinogradMinPositions;
}

bool conv2d_takes_winograd(const Conv2dGeometry& g) {
  return conv_winograd() && winograd_shape_and_size(g);
}

int64_t conv2d_workspace_elems(const Conv2dGeometry& g) {
  const int64_t G = images_per_product(g);
  int64_t n = g.is_pointwise() ? 0 : g.patch_size() * g.out_plane();
  if (G > 1) n = (g.patch_size() + g.out_channels) * G * g.out_plane();
  if (winograd_shape_and_size(g)) n = std::max(n, winograd_scratch_elems(g));
  return n;
}

template <typename T>
void im2col(const Conv2dGeometry& g, const T* x, T* col) {
  im2col_into(g, x, col, g.out_plane());
}

template <typename T>
void col2im(const Conv2dGeometry& g, const T* col, T* x) {
  parallel_ranges(g.in_channels, g.patch_size() * g.out_plane(),
                  [&](int64_t c0, int64_t c1) { col2im_channels(g, col, x, c0, c1); });
}

template <typename T>
void conv2d_forward(const Conv2dGeometry& g, const T* x, const T* w, const T* bias,
                    const T* residual, T* y, T* workspace) {
  const int64_t O = g.out_channels, K = g.patch_size(), N = g.out_plane();
  const int64_t in_image = g.in_channels * g.in_h * g.in_w;
  if constexpr (std::is_same_v<T, float>) {
    if (conv2d_takes_winograd(g) && !bf16_products()) {
      T* U = workspace;
      winograd_weights(O, g.in_channels, w, U);
      winograd_forward(g, x, U, bias, residual, y,
                       workspace + winograd_weight_elems(O, g.in_channels));
      return;
    }
  }
  if (const int64_t G = images_per_product(g); G > 1) {
    for (int64_t b0 = 0; b0 < g.batch; b0 += G)
      forward_group(g, x, w, bias, residual, y, workspace, b0, std::min(G, g.batch - b0));
    return;
  }
  for (int64_t b = 0; b < g.batch; ++b) {
    const T* xb = x + b * in_image;
    T* yb = y + b * O * N;
    const T* colb = xb;
    if (!g.is_pointwise()) {
      im2col(g, xb, workspace);
      colb = workspace;
    }
    // The bias goes in first so that the gemm adds onto it (beta = 1): one pass over y.
    if (bias) fill_bias(bias, O, N, yb);
    gemm<T>(Trans::No, Trans::No, O, N, K, T(1), w, K, colb, N, bias ? T(1) : T(0), yb, N);
    if (residual || g.relu) {
      const T* rb = residual ? residual + b * O * N : nullptr;
      parallel_ranges(O, O * N, [&](int64_t o0, int64_t o1) {
        conv2d_epilogue(g, yb + o0 * N, rb ? rb + o0 * N : nullptr, (o1 - o0) * N);
      });
    }
  }
}

template <typename T>
void conv2d_backward(const Conv2dGeometry& g, const T* x, const T* w, const T* grad_y, T* grad_x,
                     T* grad_w, T* grad_bias, T* workspace) {
  const int64_t O = g.out_channels, K = g.patch_size(), N = g.out_plane();
  const int64_t in_image = g.in_channels * g.in_h * g.in_w;
  if (grad_bias) {
    std::fill_n(grad_bias, O, T(0));
    for (int64_t b = 0; b < g.batch; ++b)
      for (int64_t o = 0; o < O; ++o) {
        const T* gy = grad_y + (b * O + o) * N;
        T acc = 0;
        for (int64_t i = 0; i < N; ++i) acc += gy[i];
        grad_bias[o] += acc;
      }
  }
  if (grad_w && g.batch == 0) std::fill_n(grad_w, O * K, T(0));
  for (int64_t b = 0; b < g.batch; ++b) {
    const T* gyb = grad_y + b * O * N;
    if (grad_w) {
      // grad_w [O, K] (+)= grad_y_b [O, N] * col_b^T [N, K]; the first image overwrites.
      const T* colb = x + b * in_image;
      if (!g.is_pointwise()) {
        im2col(g, x + b * in_image, workspace);
        colb = workspace;
      }
      gemm<T>(Trans::No, Trans::Yes, O, K, N, T(1), gyb, N, colb, N, b == 0 ? T(0) : T(1), grad_w,
              K);
    }
    if (grad_x) {
      // grad_col [K, N] = W^T [K, O] * grad_y_b [O, N], then scattered back by col2im.
      T* gxb = grad_x + b * in_image;
      if (g.is_pointwise()) {
        gemm<T>(Trans::Yes, Trans::No, K, N, O, T(1), w, K, gyb, N, T(0), gxb, N);
      } else {
        gemm<T>(Trans::Yes, Trans::No, K, N, O, T(1), w, K, gyb, N, T(0), workspace, N);
        col2im(g, workspace, gxb);
      }
    }
  }
}

template <typename T>
void conv2d_epilogue(const Conv2dGeometry& g, T* y, const T* residual, int64_t n) {
  if (residual) {
    if (g.relu) {
      for (int64_t i = 0; i < n; ++i) {
        const T v = y[i] + residual[i];
        y[i] = v > T(0) ? v : T(0);
      }
    } else {
      for (int64_t i = 0; i < n; ++i) y[i] += residual[i];
    }
  } else if (g.relu) {
    for (int64_t i = 0; i < n; ++i) y[i] = y[i] > T(0) ? y[i] : T(0);
  }
}

#define CAPTION_CONV_INSTANTIATE(T)                                                        \
  template void im2col<T>(const Conv2dGeometry&, const T*, T*);                            \
  template void conv2d_epilogue<T>(const Conv2dGeometry&, T*, const T*, int64_t);          \
  template void col2im<T>(const Conv2dGeometry&, const T*, T*);                            \
  template void conv2d_forward<T>(const Conv2dGeometry&, const T*, const T*, const T*,     \
                                  const T*, T*, T*);                                       \
  template void conv2d_backward<T>(const Conv2dGeometry&, const T*, const T*, const T*, T*, \
                                   T*, T*, T*);
CAPTION_CONV_INSTANTIATE(float)
CAPTION_CONV_INSTANTIATE(double)
#undef CAPTION_CONV_INSTANTIATE

}  // namespace caption::kernels::cpu
