// conv2d_forward as Winograd F(4x4, 3x3) (winograd.h) on the project's
// SGEMM microkernel (gemm.h), ISA-independent: the transforms come from
// winograd_transforms(), the microkernel and its tile from gemm_kernels().
// conv2d_backward_data runs here too for the layers whose backward data is
// a convolution this route takes (winograd.h): the same algorithm on
// grad_y, the weight transform reading the kernel rotated.
//
// Tiles. The output is cut into 4x4 tiles (ceil(P/4) x ceil(Q/4) per image;
// the last row and column of tiles compute past P and Q and drop it), tile
// (ti, tj) reading the 6x6 input patch from row 4 ti - pad_top and column
// 4 tj - pad_left, zero outside the input. Tiles are numbered over all
// images, (image, tile row, tile column), and taken in blocks of T tiles.
//
// Per block and per chunk of output channels (a unit of work):
// 1. Input transform: the block's tiles are shared evenly among its A
//    panels (at most mr tiles each). For each tile row a panel touches,
//    the band of its 6 input rows (all channels, zero-padded, 4 ceil(Q/4)
//    + 2 columns) is copied to a per-thread slot; the panel's tiles are
//    then transformed together, one SIMD lane each (gathered from the
//    bands at per-lane offsets), into V: for every point xi, A panels of
//    tiles x C channels (the microkernel's broadcast operand, k-major:
//    (tile i, channel c) at c * mr + i).
// 2. For each point, the GEMM M_xi[T, K chunk] = V_xi[T, C] x U_xi[C, K
//    chunk] on the microkernel: U, the transformed weight, is packed once
//    per call into B panels of nr output channels (zero-padded), as
//    gemm.h's packed B; C is cut into equal chunks of at most kc so that
//    an A panel stays in L1 while the B panels stream from L2.
// 3. Output transform of each tile of the block (vectorized across output
//    channels), bias added, activation applied, and the 4x4 x channels
//    result stored into y (cropped at P and Q).
// V (36 x T x C floats), M (36 x T x the chunk) and the bands are per-thread
// scratch of one block: T is chosen so that V and M together stay within
// kBlockBytes, or up to kMaxBlockBytes when U is large (at least one A
// panel of tiles); nothing of the size of the whole transformed image is
// ever built. U (36 x C x K, 4x the weight) is the only buffer of a
// layer's size.
//
// Threads take contiguous shares of the (block, channel chunk) units, the
// weight transform split among them first. Every output element is
// computed by the same operations in the same order (the same blocks, the
// same C chunks) whichever thread owns its unit, so results are
// bit-identical for any thread count.
//
// Error. The transforms scale values by up to 5 (B) and 8 (A) and divide
// by 24 (G), so the rounding error exceeds the direct sum's; measured
// against the float64 reference (tests/test_conv_winograd.py) it stays
// below 2.5e-5 of the output's largest magnitude (the issue allows 1e-4).
//
// When it applies (conv_forward_winograd_applies, by shape alone): a 3x3
// kernel, stride 1, dilation 1, groups 1, and
// * C and K both at least kMinChannels: the transforms cost per input and
//   output value about what the GEMMs cost per channel, so with few
//   channels they are not amortized. Measured (2 threads, GFLOP/s of this
//   route / the tap route, noisy): C=K=8 56x56 8-11 / 8-16; C=K=16 56x56
//   24-50 / 26-45, 28x28 N=8 41-69 / 25-55; C=K=24 56x56 87-95 / 49-77;
//   C=K=31 / 32 at 56x56 (tap route / this one) 86-90 / 144-154. At 16
//   the two are within the noise; from 24 on this route wins.
// * at least kMinTiles tiles (over all images): the weight transform and
//   U (4x the weight, written then read from memory once per block) are
//   paid per call, and amortized over the tiles. ResNet-50's 3x3 layers,
//   2 threads, GFLOP/s (direct FLOPs) of this route / the tap route, best
//   of repeats on the shared 2-core machine (noisy, the two interleaved):
//   56x56 C=K=64 N=1 (196 tiles) 259 / 62, N=8 128 / 49; 28x28 C=K=128
//   N=1 (49 tiles) 190-241 / 134-166, N=8 173 / 55; 14x14 C=K=256 N=1 (16
//   tiles) 103-108 / 92-136, N=2 (32) 132-143 / 123-139, N=4 (64) 154-185
//   / 135-142, N=8 (128) 92 / 54; 7x7 C=K=512 N=1 (4 tiles) 12-14 / 25-28,
//   N=8 (32) 115-143 / 109-123, N=16 (64) 144-189 / 117-126. From 32
//   tiles on this route is as fast or faster; below, slower.
//
// Panels: a block's tiles are shared evenly among its A panels (16 tiles
// on avx512 run as two panels of 8, not 14 and 2: a panel of few rows
// leaves the microkernel load-bound), and a panel's lanes take tiles from
// several tile rows and images (a 7x7 image has 2 tiles a row): one tile
// row a transform call filled 2 of 16 lanes.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "cpu/activation/activation.h"
#include "cpu/conv/conv_blocking.h"
#include "cpu/conv/winograd.h"
#include "cpu/gemm/gemm.h"
#include "runtime/threads.h"

namespace minidnn::cpu {
namespace {

constexpr int64_t kMinChannels = 24;
constexpr int64_t kMinTiles = 32;
// Per-thread bytes of V and M of a block: within L2 with the B panels of
// the weight streaming through it. Every block reads all of U, so when U is
// large (many channels, few tiles) blocks grow up to half of U's size, at
// most kMaxBlockBytes: V and M then spill to L3, but U is read fewer times.
// Measured (ResNet-50 3x3 layers at N = 8, avx512, 1 thread CPU time, ms,
// forward / backward data, 1 MB blocks against 4 MB, loaded machine):
// 7x7 512 20-26 / 25-26 against 15-17 / 17-19 (U 38 MB: 3 blocks against
// 1), 14x14 256 8.2-8.6 / 8.2-8.6 against 6.7-7.1 / 6.8-7.4 (U 9.4 MB),
// 28x28 128 5.7-5.9 / 5.4-5.9 against 6.2-6.5 / 6.0-6.3 (U 2.4 MB: this
// rule keeps it near 1 MB); 8 MB blocks no better than 4 MB.
constexpr int64_t kBlockBytes = int64_t{1} << 20;
constexpr int64_t kMaxBlockBytes = int64_t{4} << 20;
// Output channels per unit (rounded to whole B panels).
constexpr int64_t kChannelChunk = 128;
// The transforms gather with 32-bit lane offsets: the bands of one A panel
// (at most 16 tile rows of C x 6 x (Q + 6) floats) and 16 filters (C x 9
// floats apart) stay below 2^31 floats with C (Q + 6) <= 2^24.
constexpr int64_t kMaxBandFloats = int64_t{1} << 24;
constexpr int kMaxPanelTiles = 16;

// Rows [row0, row0 + 6) of the input, columns [col0, col0 + width), every
// channel of image xi, zero outside the input, into dst (planes of 6 x width).
void build_band(const ConvGeometry& g, const float* xi, int64_t row0, int64_t col0, int64_t width, float* dst) {
  const int64_t lo = std::clamp<int64_t>(-col0, 0, width);               // first column inside the input
  const int64_t hi = std::clamp<int64_t>(g.w - col0, lo, width);          // one past the last
  for (int64_t c = 0; c < g.c; ++c) {
    for (int i = 0; i < kWinogradPatch; ++i) {
      float* out = dst + (c * kWinogradPatch + i) * width;
      const int64_t ih = row0 + i;
      if (ih < 0 || ih >= g.h) {
        std::fill(out, out + width, 0.0f);
        continue;
      }
      std::fill(out, out + lo, 0.0f);
      if (hi > lo) std::memcpy(out + lo, xi + (c * g.h + ih) * g.w + col0 + lo, static_cast<size_t>(hi - lo) * sizeof(float));
      std::fill(out + hi, out + width, 0.0f);
    }
  }
}

// The route on the filters `filters` describes (winograd.h): conv2d's own
// weight, or the rotated one of backward data.
void winograd_convolution(const ConvGeometry& g, const float* x, const WinogradFilters& filters,
                          const ConvEpilogue& ep, float* y);

}  // namespace

bool conv_backward_data_winograd_applies(const ConvGeometry& g) {
  return g.r == 3 && g.s == 3 && g.stride_h == 1 && g.stride_w == 1 && g.dil_h == 1 && g.dil_w == 1 &&
         g.groups == 1 && conv_forward_winograd_applies(backward_data_as_convolution(g));
}

void conv2d_backward_data_winograd(const ConvGeometry& g, const float* grad_y, const float* weight, float* grad_x) {
  winograd_convolution(backward_data_as_convolution(g), grad_y, WinogradFilters{weight, 9, g.c * 9, true},
                       ConvEpilogue{}, grad_x);
}

void conv2d_forward_winograd(const ConvGeometry& g, const float* x, const float* weight, const ConvEpilogue& ep,
                             float* y) {
  winograd_convolution(g, x, WinogradFilters{weight, g.c * 9, 9, false}, ep, y);
}

bool conv_forward_winograd_applies(const ConvGeometry& g) {
  // A panel's tiles are the lanes of one input transform call (at most
  // 16): true of every ISA's microkernel (mr 14, 6, 4).
  if (gemm_kernels().blocking.mr > kMaxPanelTiles) return false;
  return g.r == 3 && g.s == 3 && g.stride_h == 1 && g.stride_w == 1 && g.dil_h == 1 && g.dil_w == 1 &&
         g.groups == 1 && g.c >= kMinChannels && g.k >= kMinChannels && g.c * (g.q + 6) <= kMaxBandFloats &&
         saturating_product({g.n, ceil_div(g.p, kWinogradTile), ceil_div(g.q, kWinogradTile)}) >= kMinTiles;
}

namespace {

void winograd_convolution(const ConvGeometry& g, const float* x, const WinogradFilters& filters,
                          const ConvEpilogue& ep, float* y) {
  const WinogradTransforms& wt = winograd_transforms();
  const GemmKernels& kern = gemm_kernels();
  const GemmBlocking& blk = kern.blocking;
  const int mr = blk.mr, nr = blk.nr;
  constexpr int kPoints = kWinogradPoints, kTile = kWinogradTile;

  const int64_t tiles_h = ceil_div(g.p, kTile), tiles_w = ceil_div(g.q, kTile);
  const int64_t tiles_per_image = tiles_h * tiles_w;
  const int64_t total_tiles = g.n * tiles_per_image;

  // Output channel chunks of equal size in whole B panels.
  const int64_t k_panels = ceil_div(g.k, nr);
  const int64_t k_chunks = ceil_div(k_panels * nr, kChannelChunk);
  const int64_t chunk_panels = ceil_div(k_panels, k_chunks);
  const int64_t n_k_chunks = ceil_div(k_panels, chunk_panels);
  const int64_t chunk_width = chunk_panels * nr;
  // Blocks of equal size in whole A panels (of mr tiles; each block's
  // tiles are then shared evenly among its panels).
  const int64_t per_tile_bytes = kPoints * (g.c + chunk_width) * int64_t{sizeof(float)};
  const int64_t tile_panels_all = ceil_div(total_tiles, mr);
  const int64_t u_bytes = kPoints * k_panels * nr * g.c * int64_t{sizeof(float)};
  const int64_t block_bytes = std::clamp(u_bytes / 2, kBlockBytes, kMaxBlockBytes);
  const int64_t block_panels_max = std::clamp<int64_t>(block_bytes / (per_tile_bytes * mr), 1, tile_panels_all);
  const int64_t n_blocks = ceil_div(tile_panels_all, block_panels_max);
  const int64_t block_panels = ceil_div(tile_panels_all, n_blocks);
  const int64_t block_tiles = block_panels * mr;
  // C chunks of equal size (<= kc).
  const int64_t c_chunks = ceil_div(g.c, blk.kc);
  const int64_t c_chunk = ceil_div(g.c, c_chunks);

  // The bands: the 6 input rows under one row of tiles, every channel,
  // zero-padded; a panel's tiles span at most band_slots tile rows, whose
  // bands are kept in slots (tile row id modulo band_slots).
  const int64_t band_width = tiles_w * kTile + (kWinogradPatch - kTile);
  const int64_t band_row = band_width, band_plane = kWinogradPatch * band_width;
  const int64_t band_floats = g.c * band_plane;
  const int64_t band_slots = std::min<int64_t>(mr, (mr - 1 + tiles_w - 1) / tiles_w + 1);

  const int64_t units = ceil_div(tile_panels_all, block_panels) * n_k_chunks;
  const int threads =
      static_cast<int>(std::min<int64_t>(units, threads_for(saturating_product({g.n, g.k, g.p, g.q, g.c, 9}), kConvGrain)));

  // U: point xi, B panel jn, channel c: nr floats at ((xi * k_panels + jn) * C + c) * nr.
  const int64_t u_point = k_panels * g.c * nr;
  float* u = gemm_scratch(0, kPoints * u_point);
  // Per thread: V ([xi][A panel][c][mr]), M ([xi][tile][chunk_width]), the
  // bands, one tile's output.
  const int64_t v_point = block_panels * g.c * mr;
  const int64_t v_floats = kPoints * v_point;
  const int64_t m_point = block_tiles * chunk_width;
  const int64_t m_floats = kPoints * m_point;
  const int64_t bands_floats = band_slots * band_floats;
  const int64_t out_floats = kTile * kTile * chunk_width;
  const int64_t thread_floats = v_floats + m_floats + bands_floats + out_floats;
  float* thread_buffers = gemm_scratch(1, threads * thread_floats);

  parallel(threads, [&](int t, int nt) {
    for (int64_t jn = k_panels * t / nt; jn < k_panels * (t + 1) / nt; ++jn) {
      const int count = static_cast<int>(std::min<int64_t>(nr, g.k - jn * nr));
      wt.weight(filters, jn * nr, g.c, count, nr, u + jn * g.c * nr, u_point);
    }
#pragma omp barrier

    float* v = thread_buffers + t * thread_floats;
    float* m = v + v_floats;
    float* bands = m + m_floats;
    float* out = bands + bands_floats;
    int64_t band_row_id[kMaxPanelTiles];  // the tile row (image * tiles_h + tile row) each slot holds
    for (int64_t& id : band_row_id) id = -1;
    int32_t offsets[kMaxPanelTiles];
    int64_t v_block = -1;  // the block whose tiles V holds
    for (int64_t unit = units * t / nt; unit < units * (t + 1) / nt; ++unit) {
      const int64_t b = unit / n_k_chunks, kk = unit % n_k_chunks;
      const int64_t tile0 = b * block_tiles;
      const int64_t tiles = std::min(block_tiles, total_tiles - tile0);
      const int64_t panels = ceil_div(tiles, mr);
      if (v_block != b) {
        for (int64_t ip = 0; ip < panels; ++ip) {
          const int64_t first = tile0 + tiles * ip / panels, end = tile0 + tiles * (ip + 1) / panels;
          for (int64_t tile = first; tile < end; ++tile) {
            const int64_t row_id = tile / tiles_w, slot = row_id % band_slots;
            if (band_row_id[slot] != row_id) {
              const int64_t img = row_id / tiles_h, th = row_id % tiles_h;
              build_band(g, x + img * g.c * g.h * g.w, th * kTile - g.pad_top, -g.pad_left, band_width,
                         bands + slot * band_floats);
              band_row_id[slot] = row_id;
            }
            offsets[tile - first] = static_cast<int32_t>(slot * band_floats + tile % tiles_w * kTile);
          }
          wt.input(bands, offsets, static_cast<int>(end - first), band_plane, band_row, g.c, v + ip * g.c * mr, mr,
                   v_point);
        }
        v_block = b;
      }

      const int64_t jn0 = kk * chunk_panels, jn_end = std::min(k_panels, jn0 + chunk_panels);
      const int64_t k0 = jn0 * nr, channels = std::min(g.k, jn_end * nr) - k0;
      for (int xi = 0; xi < kPoints; ++xi) {
        for (int64_t c0 = 0; c0 < g.c; c0 += c_chunk) {
          const int64_t cc = std::min(c_chunk, g.c - c0);
          const TileUpdate update{1.0f, 0.0f, c0 == 0, nullptr};
          for (int64_t ip = 0; ip < panels; ++ip) {
            const int64_t first = tiles * ip / panels;
            const int rows = static_cast<int>(tiles * (ip + 1) / panels - first);
            const float* a = v + xi * v_point + (ip * g.c + c0) * mr;
            float* c = m + xi * m_point + first * chunk_width;
            for (int64_t jn = jn0; jn < jn_end; ++jn) {
              const float* bp = u + xi * u_point + (jn * g.c + c0) * nr;
              kern.ukernel(cc, a, bp, nr, false, c + (jn - jn0) * nr, chunk_width, rows,
                           static_cast<int>(std::min<int64_t>(nr, g.k - jn * nr)), update);
            }
          }
        }
      }

      for (int64_t i = 0; i < tiles; ++i) {
        const int64_t tile = tile0 + i;
        const int64_t img = tile / tiles_per_image, th = tile % tiles_per_image / tiles_w, tw = tile % tiles_w;
        wt.output(m + i * chunk_width, m_point, channels, ep.bias != nullptr ? ep.bias + k0 : nullptr, out);
        if (ep.activate) activation_kernels().forward(ep.activation, out, out, kTile * kTile * channels, ep.alpha);
        const int64_t rows = std::min<int64_t>(kTile, g.p - th * kTile), cols = std::min<int64_t>(kTile, g.q - tw * kTile);
        float* yt = y + ((img * g.k + k0) * g.p + th * kTile) * g.q + tw * kTile;
        for (int64_t k = 0; k < channels; ++k) {
          float* yk = yt + k * g.p * g.q;
          for (int64_t r = 0; r < rows; ++r) {
            for (int64_t s = 0; s < cols; ++s) yk[r * g.q + s] = out[(r * kTile + s) * channels + k];
          }
        }
      }
    }
  });
}

}  // namespace
}  // namespace minidnn::cpu
