// Pooling kernels (see pool.h). Each plane is handled on its own. Max pooling computes
// the in-image window taps once per output row and column, so that its inner loops carry
// no bounds tests, and has a separable values-only path for inference: the maximum over
// the window's rows for every input column, into a row padded with -inf on both sides
// (so that every window has all its taps and the column pass is a fixed-length loop the
// compiler vectorises), then over the window's columns. Adaptive pooling computes its
// bins once per call (their bounds are integer divisions, which cost more than the sums
// themselves when the bins hold one or two pixels, as ResNet's 7x7 -> 14x14 does).
#include "kernels/cpu/pool.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace caption::kernels::cpu {

namespace {
int64_t bin_start(int64_t i, int64_t in, int64_t out) { return i * in / out; }
int64_t bin_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }

// The window taps k in [lo, hi) of one axis that land inside the input for output o:
// 0 <= o*stride - pad + k*dilation < in. Computed once per output row/column, so the
// inner loops have no bounds tests.
struct Taps {
  int64_t lo, hi;
};
Taps window_taps(int64_t o, int64_t in, int64_t kernel, int64_t stride, int64_t pad,
                 int64_t dilation) {
  const int64_t start = o * stride - pad;
  const int64_t lo = start < 0 ? (-start + dilation - 1) / dilation : 0;
  const int64_t last = in - 1 - start;  // k*dilation <= last
  const int64_t hi = last < 0 ? 0 : std::min(kernel, last / dilation + 1);
  return {std::min(lo, hi), hi};
}

// The running maximum: a NaN wins and stays (PyTorch's rule).
template <typename T>
inline bool takes_over(T v, T best) {
  return v > best || std::isnan(v);
}

// With indices (the gradient will be needed): scan each window in row-major order, so
// that ties keep the first maximum.
template <typename T>
void max_pool2d_with_indices(const MaxPool2dParams& p, const T* x, T* y, int64_t* indices,
                             const std::vector<Taps>& rows, const std::vector<Taps>& cols) {
  const int64_t H = p.in_h, W = p.in_w, Ho = p.out_h, Wo = p.out_w;
  for (int64_t pl = 0; pl < p.planes; ++pl) {
    const T* xp = x + pl * H * W;
    T* yp = y + pl * Ho * Wo;
    int64_t* ip = indices + pl * Ho * Wo;
    for (int64_t oh = 0; oh < Ho; ++oh) {
      const int64_t h0 = oh * p.stride_h - p.pad_h;
      for (int64_t ow = 0; ow < Wo; ++ow) {
        const int64_t w0 = ow * p.stride_w - p.pad_w;
        T best = -std::numeric_limits<T>::infinity();
        int64_t best_index = -1;
        for (int64_t ki = rows[oh].lo; ki < rows[oh].hi; ++ki) {
          const int64_t row = (h0 + ki * p.dilation_h) * W;
          for (int64_t kj = cols[ow].lo; kj < cols[ow].hi; ++kj) {
            const int64_t at = row + w0 + kj * p.dilation_w;
            if (best_index < 0 || takes_over(xp[at], best)) {
              best = xp[at];
              best_index = at;
            }
          }
        }
        yp[oh * Wo + ow] = best;
        ip[oh * Wo + ow] = best_index;
      }
    }
  }
}

// Without indices (inference): separable, first the maximum over the window's rows for
// every input column (contiguous, vectorisable) into cm, which has pad_w values of -inf
// before the row and enough after it for the last window, then over the window's
// columns. -inf never takes over (takes_over), so the padding changes no result, and a
// window wholly in the padding gives -inf, as the indexed path does.
template <typename T>
void max_pool2d_values_only(const MaxPool2dParams& p, const T* x, T* y,
                            const std::vector<Taps>& rows) {
  const int64_t H = p.in_h, W = p.in_w, Ho = p.out_h, Wo = p.out_w;
  const int64_t sw = p.stride_w, dw = p.dilation_w, kw = p.kernel_w;
  constexpr T kMinusInf = -std::numeric_limits<T>::infinity();
  // The last window's last tap: (Wo - 1) * sw + (kw - 1) * dw in padded coordinates.
  const int64_t padded = std::max(p.pad_w + W, (Wo - 1) * sw + (kw - 1) * dw + 1);
  std::vector<T> padded_row(static_cast<size_t>(padded), kMinusInf);
  T* const cm = padded_row.data() + p.pad_w;  // cm[w] for input column w
  const T* const cp = padded_row.data();      // padded coordinates
  for (int64_t pl = 0; pl < p.planes; ++pl) {
    const T* xp = x + pl * H * W;
    T* yp = y + pl * Ho * Wo;
    for (int64_t oh = 0; oh < Ho; ++oh) {
      T* yr = yp + oh * Wo;
      const int64_t h0 = oh * p.stride_h - p.pad_h;
      if (rows[oh].lo >= rows[oh].hi) {
        std::fill_n(yr, Wo, kMinusInf);
        continue;
      }
      std::copy_n(xp + (h0 + rows[oh].lo * p.dilation_h) * W, W, cm);
      for (int64_t ki = rows[oh].lo + 1; ki < rows[oh].hi; ++ki) {
        const T* xr = xp + (h0 + ki * p.dilation_h) * W;
        for (int64_t w = 0; w < W; ++w) cm[w] = takes_over(xr[w], cm[w]) ? xr[w] : cm[w];
      }
      if (kw == 3 && sw == 2 && dw == 1) {  // ResNet's stem: a fixed window the compiler unrolls
        for (int64_t ow = 0; ow < Wo; ++ow) {
          const T* c = cp + 2 * ow;
          T best = c[0];
          best = takes_over(c[1], best) ? c[1] : best;
          best = takes_over(c[2], best) ? c[2] : best;
          yr[ow] = best;
        }
        continue;
      }
      for (int64_t ow = 0; ow < Wo; ++ow) {
        const T* c = cp + ow * sw;
        T best = kMinusInf;
        for (int64_t kj = 0; kj < kw; ++kj) best = takes_over(c[kj * dw], best) ? c[kj * dw] : best;
        yr[ow] = best;
      }
    }
  }
}

}  // namespace

template <typename T>
void max_pool2d_forward(const MaxPool2dParams& p, const T* x, T* y, int64_t* indices) {
  std::vector<Taps> rows(static_cast<size_t>(p.out_h)), cols(static_cast<size_t>(p.out_w));
  for (int64_t oh = 0; oh < p.out_h; ++oh)
    rows[oh] = window_taps(oh, p.in_h, p.kernel_h, p.stride_h, p.pad_h, p.dilation_h);
  for (int64_t ow = 0; ow < p.out_w; ++ow)
    cols[ow] = window_taps(ow, p.in_w, p.kernel_w, p.stride_w, p.pad_w, p.dilation_w);
  if (indices)
    max_pool2d_with_indices(p, x, y, indices, rows, cols);
  else
    max_pool2d_values_only(p, x, y, rows);
}

template <typename T>
void max_pool2d_backward(const MaxPool2dParams& p, const int64_t* indices, const T* grad_y,
                         T* grad_x) {
  const int64_t in_plane = p.in_h * p.in_w, out_plane = p.out_h * p.out_w;
  std::fill_n(grad_x, p.planes * in_plane, T(0));
  for (int64_t pl = 0; pl < p.planes; ++pl) {
    const int64_t* ip = indices + pl * out_plane;
    const T* gy = grad_y + pl * out_plane;
    T* gx = grad_x + pl * in_plane;
    for (int64_t o = 0; o < out_plane; ++o)
      if (ip[o] >= 0) gx[ip[o]] += gy[o];
  }
}

namespace {
// The bins of one axis: [start[i], end[i]) for output i.
struct Bins {
  std::vector<int64_t> start, end;
  Bins(int64_t in, int64_t out) : start(static_cast<size_t>(out)), end(static_cast<size_t>(out)) {
    for (int64_t i = 0; i < out; ++i) {
      start[i] = bin_start(i, in, out);
      end[i] = bin_end(i, in, out);
    }
  }
};
}  // namespace

template <typename T>
void adaptive_avg_pool2d_forward(const AdaptiveAvgPool2dParams& p, const T* x, T* y) {
  const int64_t H = p.in_h, W = p.in_w, Ho = p.out_h, Wo = p.out_w;
  const Bins rows(H, Ho), cols(W, Wo);
  bool single_pixels = true;  // every bin one pixel: up-sampling by an integer factor, or none
  for (int64_t i = 0; i < Ho; ++i) single_pixels &= rows.end[i] - rows.start[i] == 1;
  for (int64_t i = 0; i < Wo; ++i) single_pixels &= cols.end[i] - cols.start[i] == 1;
  for (int64_t pl = 0; pl < p.planes; ++pl) {
    const T* xp = x + pl * H * W;
    T* yp = y + pl * Ho * Wo;
    for (int64_t oh = 0; oh < Ho; ++oh) {
      const int64_t h0 = rows.start[oh], h1 = rows.end[oh];
      T* yr = yp + oh * Wo;
      if (single_pixels) {  // the general loop's arithmetic for one pixel: (0 + x) / 1
        const T* xr = xp + h0 * W;
        for (int64_t ow = 0; ow < Wo; ++ow) yr[ow] = T(0) + xr[cols.start[ow]];
        continue;
      }
      for (int64_t ow = 0; ow < Wo; ++ow) {
        const int64_t w0 = cols.start[ow], w1 = cols.end[ow];
        T acc = 0;
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t w = w0; w < w1; ++w) acc += xp[h * W + w];
        yr[ow] = acc / static_cast<T>((h1 - h0) * (w1 - w0));
      }
    }
  }
}

template <typename T>
void adaptive_avg_pool2d_backward(const AdaptiveAvgPool2dParams& p, const T* grad_y, T* grad_x) {
  const int64_t H = p.in_h, W = p.in_w, Ho = p.out_h, Wo = p.out_w;
  const Bins rows(H, Ho), cols(W, Wo);
  std::fill_n(grad_x, p.planes * H * W, T(0));
  for (int64_t pl = 0; pl < p.planes; ++pl) {
    T* gx = grad_x + pl * H * W;
    const T* gy = grad_y + pl * Ho * Wo;
    for (int64_t oh = 0; oh < Ho; ++oh) {
      const int64_t h0 = rows.start[oh], h1 = rows.end[oh];
      for (int64_t ow = 0; ow < Wo; ++ow) {
        const int64_t w0 = cols.start[ow], w1 = cols.end[ow];
        const T share = gy[oh * Wo + ow] / static_cast<T>((h1 - h0) * (w1 - w0));
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t w = w0; w < w1; ++w) gx[h * W + w] += share;
      }
    }
  }
}

template void max_pool2d_forward<float>(const MaxPool2dParams&, const float*, float*, int64_t*);
template void max_pool2d_forward<double>(const MaxPool2dParams&, const double*, double*,
                                         int64_t*);
template void max_pool2d_backward<float>(const MaxPool2dParams&, const int64_t*, const float*,
                                         float*);
template void max_pool2d_backward<double>(const MaxPool2dParams&, const int64_t*, const double*,
                                          double*);
template void adaptive_avg_pool2d_forward<float>(const AdaptiveAvgPool2dParams&, const float*,
                                                 float*);
template void adaptive_avg_pool2d_forward<double>(const AdaptiveAvgPool2dParams&, const double*,
                                                  double*);
template void adaptive_avg_pool2d_backward<float>(const AdaptiveAvgPool2dParams&, const float*,
                                                  float*);
template void adaptive_avg_pool2d_backward<double>(const AdaptiveAvgPool2dParams&,
                                                   const double*, double*);

}  // namespace caption::kernels::cpu
