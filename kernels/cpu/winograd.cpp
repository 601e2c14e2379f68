// Winograd F(2x2, 3x3) forward (see winograd.h): transformed patches V, 16 products, the
// inverse transform with the epilogue.
//
// Layouts: V [16, C, T] and M [16, O, T] for the T tiles of the images that share one set
// of products (tile t = image j, tile row r, tile column q at t = j*tiles + r*tiles_w + q),
// U [16, O, C]. Each product M_xi = U_xi * V_xi is one OpenBLAS sgemm over contiguous
// rows. The transforms walk one tile row at a time along its tiles, so their loads and
// stores to V and M are unit-stride runs (16 of them) that the compiler vectorises.
#include "kernels/cpu/winograd.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/blas.h"
#include "kernels/cpu/parallel.h"

namespace caption::kernels::cpu {

namespace {

// Elements between consecutive blocks xi of U, V and M for blocks of n elements: n rounded
// up to an odd number of 16-element units. Blocks a multiple of 4 KiB apart would put the
// transforms' 16 concurrent streams into the same set of the L1 cache (measured: the
// weight transform of a 256x256 layer 5.4 ms with 256 KiB apart, ...).
int64_t block_stride(int64_t n) {
  const int64_t units = (n + 15) / 16;
  return 16 * (units | 1);
}

struct Tiling {
  int64_t rows, cols, per_image;  // tile rows, tile columns, tiles per image
};
Tiling tiling(const Conv2dGeometry& g) {
  const int64_t r = (g.out_h + 1) / 2, c = (g.out_w + 1) / 2;
  return {r, c, r * c};
}

// Images that share one set of 16 products: enough that each product has at least
// kGroupTiles columns (OpenBLAS runs short products at a fraction of its rate), when one
// image has fewer tiles.
constexpr int64_t kGroupTiles = 512;
int64_t images_per_group(const Conv2dGeometry& g) {
  const int64_t tiles = tiling(g).per_image;
  if (g.batch <= 1 || tiles >= kGroupTiles) return 1;
  return std::min(g.batch, (kGroupTiles + tiles - 1) / tiles);
}

// V's columns of images [b0, b0 + G) for input channels [c0, c1); V_xi rows are ld apart
// and the blocks V_xi plane apart.
template <typename T>
void transform_inputs(const Conv2dGeometry& g, const T* x, int64_t b0, int64_t G, T* V,
                      int64_t ld, int64_t plane, int64_t c0, int64_t c1) {
  const int64_t C = g.in_channels, H = g.in_h, W = g.in_w;
  const Tiling tl = tiling(g);
  // Each input plane is first copied with its padding into a buffer of 2*rows + 2 rows of
  // wb columns (buffer row p, column q = input row p - pad_h, column q - pad_w); tile row r
  // reads buffer rows 2r .. 2r + 3, combined (B^T d) into t.
  const int64_t wb = 2 * tl.cols + 2, hb = 2 * tl.rows + 2;
  std::vector<T> scratch(static_cast<size_t>((hb + 4) * wb));
  T* padded = scratch.data();
  T* t = padded + hb * wb;
  // Buffer columns [q0, q1) hold input columns [q0 - pad_w, q1 - pad_w); the rest is padding.
  const int64_t q0 = std::min(g.pad_w, wb), q1 = std::clamp(g.pad_w + W, q0, wb);
  for (int64_t c = c0; c < c1; ++c) {
    for (int64_t j = 0; j < G; ++j) {
      const T* xc = x + ((b0 + j) * C + c) * H * W;
      for (int64_t p = 0; p < hb; ++p) {
        T* dst = padded + p * wb;
        const int64_t ih = p - g.pad_h;
        if (ih < 0 || ih >= H) {
          std::fill_n(dst, wb, T(0));
          continue;
        }
        std::fill_n(dst, q0, T(0));
        if (q1 > q0)
          std::memcpy(dst + q0, xc + ih * W + (q0 - g.pad_w),
                      sizeof(T) * static_cast<size_t>(q1 - q0));
        std::fill_n(dst + q1, wb - q1, T(0));
      }
      for (int64_t r = 0; r < tl.rows; ++r) {
        const T* d0 = padded + 2 * r * wb;
        const T* d1 = d0 + wb;
        const T* d2 = d1 + wb;
        const T* d3 = d2 + wb;
        T* t0 = t;
        T* t1 = t + wb;
        T* t2 = t + 2 * wb;
        T* t3 = t + 3 * wb;
        for (int64_t k = 0; k < wb; ++k) {  // B^T d, down the columns
          t0[k] = d0[k] - d2[k];
          t1[k] = d1[k] + d2[k];
          t2[k] = d2[k] - d1[k];
          t3[k] = d1[k] - d3[k];
        }
        T* out = V + c * ld + j * tl.per_image + r * tl.cols;
        for (int64_t i = 0; i < 4; ++i) {  // (B^T d) B, along the rows
          const T* ti = t + i * wb;
          T* v0 = out + (4 * i) * plane;
          T* v1 = v0 + plane;
          T* v2 = v1 + plane;
          T* v3 = v2 + plane;
          for (int64_t q = 0; q < tl.cols; ++q) {
            const T a = ti[2 * q], b = ti[2 * q + 1], e = ti[2 * q + 2], f = ti[2 * q + 3];
            v0[q] = a - e;
            v1[q] = b + e;
            v2[q] = e - b;
            v3[q] = b - f;
          }
        }
      }
    }
  }
}

// y of images [b0, b0 + G) for output channels [o0, o1) from M (rows ld apart), with the
// bias, the residual and the ReLU as conv2d_forward applies them.
template <typename T>
void transform_outputs(const Conv2dGeometry& g, const T* M, const T* bias, const T* residual,
                       T* y, int64_t b0, int64_t G, int64_t ld, int64_t plane, int64_t o0,
                       int64_t o1) {
  const int64_t O = g.out_channels, Ho = g.out_h, Wo = g.out_w;
  const Tiling tl = tiling(g);
  std::vector<T> scratch(static_cast<size_t>(4 * tl.cols));
  T* top = scratch.data();  // the tile row's two output rows, 2*cols wide
  T* bottom = top + 2 * tl.cols;
  for (int64_t o = o0; o < o1; ++o) {
    const T b = bias ? bias[o] : T(0);
    for (int64_t j = 0; j < G; ++j) {
      const int64_t image = ((b0 + j) * O + o) * Ho * Wo;
      for (int64_t r = 0; r < tl.rows; ++r) {
        const T* m = M + o * ld + j * tl.per_image + r * tl.cols;
        for (int64_t q = 0; q < tl.cols; ++q) {
          T s[2][4];
          for (int64_t k = 0; k < 4; ++k) {  // A^T m, down the columns
            const T m0 = m[k * plane + q], m1 = m[(4 + k) * plane + q];
            const T m2 = m[(8 + k) * plane + q], m3 = m[(12 + k) * plane + q];
            s[0][k] = m0 + m1 + m2;
            s[1][k] = m1 - m2 - m3;
          }
          top[2 * q] = s[0][0] + s[0][1] + s[0][2];  // (A^T m) A, along the rows
          top[2 * q + 1] = s[0][1] - s[0][2] - s[0][3];
          bottom[2 * q] = s[1][0] + s[1][1] + s[1][2];
          bottom[2 * q + 1] = s[1][1] - s[1][2] - s[1][3];
        }
        for (int64_t i = 0; i < 2 && 2 * r + i < Ho; ++i) {
          const T* src = i == 0 ? top : bottom;
          const int64_t at = image + (2 * r + i) * Wo;
          T* dst = y + at;
          for (int64_t k = 0; k < Wo; ++k) dst[k] = src[k] + b;
          conv2d_epilogue(g, dst, residual ? residual + at : nullptr, Wo);
        }
      }
    }
  }
}

}  // namespace

bool winograd_applies(const Conv2dGeometry& g) {
  return g.kernel_h == 3 && g.kernel_w == 3 && g.stride_h == 1 && g.stride_w == 1 &&
         g.dilation_h == 1 && g.dilation_w == 1 && g.out_h > 0 && g.out_w > 0;
}

int64_t winograd_weight_elems(int64_t out_channels, int64_t in_channels) {
  return 16 * block_stride(out_channels * in_channels);
}

int64_t winograd_workspace_elems(const Conv2dGeometry& g) {
  const int64_t ld = images_per_group(g) * tiling(g).per_image;
  return 16 * (block_stride(g.in_channels * ld) + block_stride(g.out_channels * ld));
}

template <typename T>
void winograd_weights(int64_t out_channels, int64_t in_channels, const T* w, T* U) {
  const int64_t plane = block_stride(out_channels * in_channels);
  parallel_ranges(out_channels, 16 * plane, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o) {
      for (int64_t c = 0; c < in_channels; ++c) {
        const T* f = w + (o * in_channels + c) * 9;
        T gf[4][3];  // G f
        for (int64_t k = 0; k < 3; ++k) {
          gf[0][k] = f[k];
          gf[1][k] = (f[k] + f[3 + k] + f[6 + k]) * T(0.5);
          gf[2][k] = (f[k] - f[3 + k] + f[6 + k]) * T(0.5);
          gf[3][k] = f[6 + k];
        }
        T* u = U + o * in_channels + c;
        for (int64_t i = 0; i < 4; ++i) {  // (G f) G^T
          u[(4 * i) * plane] = gf[i][0];
          u[(4 * i + 1) * plane] = (gf[i][0] + gf[i][1] + gf[i][2]) * T(0.5);
          u[(4 * i + 2) * plane] = (gf[i][0] - gf[i][1] + gf[i][2]) * T(0.5);
          u[(4 * i + 3) * plane] = gf[i][2];
        }
      }
    }
  });
}

template <typename T>
void winograd_forward(const Conv2dGeometry& g, const T* x, const T* U, const T* bias,
                      const T* residual, T* y, T* workspace) {
  const int64_t C = g.in_channels, O = g.out_channels;
  const int64_t tiles = tiling(g).per_image, per_group = images_per_group(g);
  const int64_t u_plane = block_stride(O * C);
  for (int64_t b0 = 0; b0 < g.batch; b0 += per_group) {
    const int64_t G = std::min(per_group, g.batch - b0), ld = G * tiles;
    const int64_t v_plane = block_stride(C * ld), m_plane = block_stride(O * ld);
    T* V = workspace;
    T* M = workspace + 16 * v_plane;
    parallel_ranges(C, 16 * C * ld, [&](int64_t c0, int64_t c1) {
      transform_inputs(g, x, b0, G, V, ld, v_plane, c0, c1);
    });
    for (int64_t xi = 0; xi < 16; ++xi)
      gemm<T>(Trans::No, Trans::No, O, ld, C, T(1), U + xi * u_plane, C, V + xi * v_plane, ld,
              T(0), M + xi * m_plane, ld);
    parallel_ranges(O, 16 * O * ld, [&](int64_t o0, int64_t o1) {
      transform_outputs(g, M, bias, residual, y, b0, G, ld, m_plane, o0, o1);
    });
  }
}

#define CAPTION_WINOGRAD_INSTANTIATE(T)                                                  \
  template void winograd_weights<T>(int64_t, int64_t, const T*, T*);                     \
  template void winograd_forward<T>(const Conv2dGeometry&, const T*, const T*, const T*, \
                                    const T*, T*, T*);
CAPTION_WINOGRAD_INSTANTIATE(float)
CAPTION_WINOGRAD_INSTANTIATE(double)
#undef CAPTION_WINOGRAD_INSTANTIATE

}  // namespace caption::kernels::cpu
