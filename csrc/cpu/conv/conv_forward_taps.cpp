// conv2d_forward for stride 1 as a sum of GEMMs, one per kernel tap, whose
// B operand is the input itself, read in place by the microkernel (gemm.h,
// GemmKernels::ukernel with b_exact): no im2col, no packing of B.
//
// The padded grid. Output (p, q) and tap (r, s) read input (p - pad_top +
// r * dil_h, q - pad_left + s * dil_w). Lay the input out on a zero-padded
// grid of hp = P + (R-1) * dil_h rows by wp = Q + (S-1) * dil_w columns
// (grid (i, j) = input (i - pad_top, j - pad_left), zero outside), and
// number the outputs along the grid's rows, f = p * wp + q. Then tap (r, s)
// of output f reads grid element f + r * dil_h * wp + s * dil_w of each
// channel plane: for a run of consecutive f, a contiguous run of the grid.
// So, per group, with C_g channels as the reduction,
//
//   Y'[K_g, f] = sum over taps (r, s) of W_rs[K_g, C_g] x G[C_g, f + r*dil_h*wp + s*dil_w]
//
// each term a GEMM whose B rows are the channel planes of the grid (ldb =
// the plane's size), offset by the tap. Y' has wp - Q columns per row that
// are not outputs (q >= Q: they straddle two grid rows); they are computed
// and dropped, which is what makes every B run contiguous. The grid is
// built per column block (its band: the grid positions it reads, every
// channel) in a per-thread buffer; when the input already is the grid (no
// top / left padding, wp == W, hp <= H: 1x1 and "valid" convolutions) and
// its planes are small (kInPlaceMaxPlaneFloats) it is read in place.
//
// Blocking: per (image, group, block of <= kBlockColumns grid outputs), the
// band (C_g x about a few rows of wp) stays in L2 and is read once per A
// panel of mr output channels; the weight is packed once per call into A
// panels, one mr x C_g panel per tap (C_g cut into chunks of <= kc so that a
// panel stays in L1); the mr x block accumulator tile stays in L1 across the
// taps, and bias, activation and the copy of the valid columns into y are
// done on it while it is still there; where no column is dropped (a kernel
// one tap wide) the tile is the block's columns of y itself (tile_is_y).
//
// When it applies (conv_forward_taps_applies: the shape and the active
// ISA's tile height mr decide, never the thread count): stride 1,
// wp <= 2 Q (at most half the computed columns are dropped: wide dilated
// kernels on narrow images do better packed), and one of
// * a 1x1 kernel (one tap: a plain GEMM on the input in place);
// * C_g >= kMinTapChannels: each microkernel call reduces over C_g only,
//   and the accumulator tile is read and written back once per tap, which
//   costs about as much as a few FMA steps: amortized from 16 channels on;
// * C_g >= kMinChannelsPerPanel x the A panels of K_g: with fewer channels
//   the tile traffic per tap is not amortized, but neither is the implicit
//   GEMM's packing of the input, which is shared only by the A panels. By
//   the tap route / implicit GEMM times measured (1 thread, avx512, us):
//   C_g=3 K=4 8x8 1.5 / 2.6; C_g=8 K=8 16x16 6.6 / 12.1; C_g=6 K=6 5x5
//   kernel 20x20 14.8 / 38.2 (taps); C_g=4 K=16 32x32 28.4 / 22.8; C_g=12
//   K=64 28x28 122 / 109; C_g=8 K=64 56x56 355 / 267 (implicit); C_g=8
//   K=32 28x28 and C_g=3 K=8 32x32 about equal (ratio 2.7 and 3).
//
// Threads take contiguous shares of (image, group, column block, chunk of
// A panels) units, as in conv_forward.cpp; every output element is summed
// in the same order (channel chunks, then taps, then channels) whoever
// computes it, so results are bit-identical for any thread count.
#include "cpu/conv/conv_forward_taps.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "cpu/activation/activation.h"
#include "cpu/conv/conv_blocking.h"
#include "cpu/gemm/gemm.h"
#include "cpu/simd/cache_line.h"
#include "runtime/threads.h"

namespace minidnn::cpu {

// What it builds: conv_forward_taps.h. A flat range rather than whole rows, so that a
// block of a long row (conv1d: one row of 16,000 columns) copies its own
// columns, not the row.
void build_band(const ConvGeometry& g, const float* xg, int64_t channels, int64_t flat0, int64_t span, int64_t wp,
                float* dst) {
  // No padding before the input and rows as wide as the grid's: the range
  // is a range of each input plane, one copy a channel.
  if (g.pad_top == 0 && g.pad_left == 0 && wp == g.w && flat0 + span <= g.h * g.w) {
    for (int64_t c = 0; c < channels; ++c) {
      std::memcpy(dst + c * span, xg + c * g.h * g.w + flat0, static_cast<size_t>(span) * sizeof(float));
    }
    return;
  }
  for (int64_t c = 0; c < channels; ++c) {
    const float* xc = xg + c * g.h * g.w;
    for (int64_t f = flat0; f < flat0 + span;) {
      const int64_t col = f % wp;
      const int64_t len = std::min(wp - col, flat0 + span - f);
      float* out = dst + c * span + (f - flat0);
      const int64_t ih = f / wp - g.pad_top;
      // Grid columns [col, col + len) are input columns from col - pad_left:
      // zeros before the input's first column and after its last.
      const int64_t copy_begin = std::clamp<int64_t>(g.pad_left - col, 0, len);
      const int64_t copy_end =
          ih < 0 || ih >= g.h ? copy_begin : std::clamp<int64_t>(g.pad_left + g.w - col, copy_begin, len);
      std::fill(out, out + copy_begin, 0.0f);
      if (copy_end > copy_begin) {  // else the source address may lie outside x
        std::memcpy(out + copy_begin, xc + ih * g.w + col + copy_begin - g.pad_left,
                    static_cast<size_t>(copy_end - copy_begin) * sizeof(float));
      }
      std::fill(out + copy_end, out + len, 0.0f);
      f += len;
    }
  }
}

namespace {

constexpr int64_t kMinTapChannels = 16;
constexpr int64_t kMinChannelsPerPanel = 3;
// Grid outputs per column block: the mr x block accumulator tile (14 KB at
// mr = 14) shares L1 with the A panel of a tap.
constexpr int64_t kBlockColumns = 256;
// The input is read in place as the grid only when its channel planes (the
// B rows, one a K step) lie at most this many floats apart (2 KB, within
// what the hardware's stride prefetcher follows). Farther apart, the first
// A panel of each block met every B line cold from memory, 2 lines a row
// and the microkernel's software prefetch 8 rows ahead, latency-bound: 1x1
// 56x56 256->64 N=8 (5 A panels) spent 45% of its samples (perf, 1 thread)
// waiting on that load. Copied into the band instead (one memcpy a channel,
// which the hardware prefetchers stream), the block is read from L2 by
// every panel.
constexpr int64_t kInPlaceMaxPlaneFloats = 512;

// Inputs from this size (16 MB) on are taken to come from memory, not from
// a cache the previous layer or call left them in: conv2d_forward_taps
// prefetches the input of bands ahead for these (see there).
constexpr int64_t kPrefetchMinInputFloats = int64_t{1} << 22;

// Bias and activation on rows [0, rows) of an accumulator tile (`ncols`
// columns from `tile`, row stride ld), in place.
void finish_block_rows(const ConvEpilogue& ep, float* tile, int64_t ld, int rows, int64_t ncols, const float* bias) {
  if (bias == nullptr && !ep.activate) return;
  for (int i = 0; i < rows; ++i) {
    float* row = tile + i * ld;
    if (bias != nullptr) {
      const float b = bias[i];
      for (int64_t j = 0; j < ncols; ++j) row[j] += b;
    }
    if (ep.activate) activation_kernels().forward(ep.activation, row, row, ncols, ep.alpha);
  }
}

// The valid columns of an accumulator tile (rows of `ncols` grid outputs
// from f0, row stride ld) into the output planes at y (TapsOutput's
// strides), bias and activation applied first, in place in the tile.
void store_block(const ConvGeometry& g, const ConvEpilogue& ep, float* tile, int64_t ld, int rows, int64_t f0,
                 int64_t ncols, int64_t wp, const float* bias, const TapsOutput& out, float* y) {
  const int64_t p_first = f0 / wp, p_last = (f0 + ncols - 1) / wp;
  finish_block_rows(ep, tile, ld, rows, ncols, bias);
  for (int i = 0; i < rows; ++i) {
    const float* row = tile + i * ld;
    float* yplane = y + i * out.plane_stride;
    for (int64_t p = p_first; p <= p_last; ++p) {
      const int64_t q0 = std::max<int64_t>(0, f0 - p * wp), q1 = std::min(g.q, f0 + ncols - p * wp);
      if (q0 >= q1) continue;
      const float* src = row + (p * wp + q0 - f0);
      float* dst = yplane + p * out.row_stride + q0 * out.col_stride;
      if (out.col_stride == 1) {
        std::memcpy(dst, src, static_cast<size_t>(q1 - q0) * sizeof(float));
      } else {
        for (int64_t j = 0; j < q1 - q0; ++j) dst[j * out.col_stride] = src[j];
      }
    }
  }
}

}  // namespace

bool conv_forward_taps_applies(const ConvGeometry& g) {
  if (g.stride_h != 1 || g.stride_w != 1) return false;
  if (g.q + (g.s - 1) * g.dil_w > 2 * g.q) return false;
  const int64_t cg = g.c / g.groups;
  const int64_t a_panels = ceil_div(g.k / g.groups, gemm_kernels().blocking.mr);
  return g.r * g.s == 1 || cg >= kMinTapChannels || cg >= kMinChannelsPerPanel * a_panels;
}

void conv2d_forward_taps(const ConvGeometry& g, const float* x, const TapsWeight& weight, const ConvEpilogue& ep,
                         const TapsOutput& y) {
  const int64_t kg = g.k / g.groups, cg = g.c / g.groups;
  const int64_t taps = g.r * g.s;
  const int64_t npix = g.p * g.q;
  const GemmKernels& kern = gemm_kernels();
  const GemmBlocking& blk = kern.blocking;
  const int mr = blk.mr, nr = blk.nr;

  const int64_t hp = g.p + (g.r - 1) * g.dil_h, wp = g.q + (g.s - 1) * g.dil_w;
  const int64_t grid_outputs = (g.p - 1) * wp + g.q;  // the last row's dropped columns are not computed
  const bool in_place =
      g.pad_top == 0 && g.pad_left == 0 && wp == g.w && hp <= g.h && g.h * g.w <= kInPlaceMaxPlaneFloats;

  // Channel chunks of equal size (<= kc).
  const int64_t c_chunks = ceil_div(cg, blk.kc);
  const int64_t chunk = ceil_div(cg, c_chunks);
  // Column blocks of equal size in whole microkernel tiles.
  const int64_t col_blocks = ceil_div(grid_outputs, kBlockColumns);
  const int64_t nc = ceil_div(ceil_div(grid_outputs, col_blocks), nr) * nr;
  const int64_t n_col_blocks = ceil_div(grid_outputs, nc);
  // Grid positions a block reads: its ncols outputs from f0, and the taps
  // reach dil_h rows and (S-1) dil_w columns further (never past the
  // grid: the last output's last tap is its last position).
  const int64_t tap_reach = (g.r - 1) * g.dil_h * wp + (g.s - 1) * g.dil_w;

  const int64_t a_panels = ceil_div(kg, mr);
  const int threads = threads_for(saturating_product({g.n, g.k, npix, cg, taps}), kConvGrain);
  const int64_t outer_units = g.n * g.groups * n_col_blocks;
  const int64_t row_chunks = std::min(a_panels, outer_units >= threads ? int64_t{1} : ceil_div(threads, outer_units));
  const int64_t units = outer_units * row_chunks;

  // Packed weight: group gi, A panel ip, channel chunk from c0 (length cc),
  // tap t: mr x cc floats at gi * kg_pad * cg * taps + ip * mr * cg * taps
  // + (c0 * taps + t * cc) * mr, element (c, i) at c * mr + i. Rows past
  // kg in the last panel are never read (the kernel of that height skips them).
  const int64_t kg_pad = a_panels * mr;
  const int64_t group_floats = kg_pad * cg * taps;
  float* packed_w = gemm_scratch(0, g.groups * group_floats);
  // A 1x1 kernel's block of columns ends in dot products when only a few
  // columns are left past whole vectors (dot_tail_columns; 196 positions,
  // ResNet-50's 14x14 layers: a tile of 4 columns ran two vectors) where
  // its weight rows are contiguous along K (C_g; a transposed convolution's
  // phase has the channel axes swapped), so the dots read them in place,
  // against the block's tail columns packed contiguous (all C_g of them,
  // once per block).
  const int64_t max_tail = taps == 1 && weight.c_stride == 1 ? blk.lanes / 4 : 0;
  // When no grid column is dropped (wp == Q: a kernel one tap wide, 1x1
  // above all) and the output planes are row-major, grid output f is
  // element f of its output plane, so the output itself is the accumulator
  // tile: the microkernel writes its rows in place, and bias and activation
  // are applied there. Through the L1 tile, the copy into y (one memcpy
  // per output row of each tile row) took a quarter of a 1x1 56x56 64->256
  // layer (perf, 1 thread: 17% in memmove, most of the 9% in this driver),
  // after the FMAs rather than beside them; in place, the stores of one
  // microkernel tile drain while the next one computes.
  const bool tile_is_y = wp == g.q && y.col_stride == 1 && y.row_stride == g.q;
  // Per thread: the band (unless read in place), the accumulator tile
  // (unless it is y), the tail columns.
  const int64_t band_floats = in_place ? 0 : cg * std::min(hp * wp, nc + tap_reach);
  const int64_t tile_floats = tile_is_y ? 0 : int64_t{mr} * nc;
  const int64_t thread_floats = band_floats + tile_floats + max_tail * cg;
  float* thread_buffers = gemm_scratch(1, threads * thread_floats);

  const bool prefetch_bands = !in_place && saturating_product({g.n, g.c, g.h, g.w}) >= kPrefetchMinInputFloats;

  parallel(threads, [&](int t, int nt) {
    const int64_t all_panels = g.groups * a_panels;
    for (int64_t u = all_panels * t / nt; u < all_panels * (t + 1) / nt; ++u) {
      const int64_t gi = u / a_panels, ip = u % a_panels;
      const int rows = static_cast<int>(std::min<int64_t>(mr, kg - ip * mr));
      float* panel = packed_w + gi * group_floats + ip * mr * cg * taps;
      // Written in order, gathered from the panel's rows (reading each row
      // in order and scattering to the taps' panels measured twice as slow).
      const float* rows_src = weight.first + gi * weight.group_stride + ip * mr * weight.k_stride;
      for (int64_t c0 = 0; c0 < cg; c0 += chunk) {
        const int64_t cc = std::min(chunk, cg - c0);
        float* dst = panel + c0 * taps * mr;
        for (int64_t tap = 0; tap < taps; ++tap) {
          const int64_t tap_offset = tap / g.s * weight.tap_row_step + tap % g.s * weight.tap_col_step;
          for (int64_t c = c0; c < c0 + cc; ++c) {
            const float* src = rows_src + c * weight.c_stride + tap_offset;
            for (int i = 0; i < rows; ++i) dst[i] = src[i * weight.k_stride];
            dst += mr;
          }
        }
      }
    }
#pragma omp barrier

    float* band = thread_buffers + t * thread_floats;
    float* tile = band + band_floats;
    float* tail_cols = tile + tile_floats;
    int64_t band_of = -1;  // the (image, group, column block) whose band is built
    const int64_t u_end = units * (t + 1) / nt;
    for (int64_t u = units * t / nt; u < u_end; ++u) {
      const int64_t rchunk = u % row_chunks;
      const int64_t jb = u / row_chunks % n_col_blocks;
      const int64_t gi = u / (row_chunks * n_col_blocks) % g.groups;
      const int64_t img = u / (row_chunks * n_col_blocks * g.groups);
      const int64_t f0 = jb * nc, ncols = std::min(nc, grid_outputs - f0);
      const float* xg = x + (img * g.c + gi * cg) * g.h * g.w;
      // The input of the band after next this thread builds (its units of
      // other blocks), into L2 a share of its channels per microkernel call
      // below, so that build_band copies it from cache: from memory, the
      // copy stalled on its loads (1x1 56x56 256->64 N=8 on Zen 4: a quarter
      // of the time in memcpy). Two bands ahead rather than one, so that
      // the last shares have arrived when their copy starts: with the
      // prefetch that layer went 5.0-5.2 -> 4.8 ms on 2 threads (4.9 one band
      // ahead) and 10.2 -> 9.4 on 1; WaveNet's conv1d at N=8 13.3 -> 12.6
      // and 26.3 -> 24.2. Only for inputs too large to have stayed in
      // cache (kPrefetchMinInputFloats): at N=1 the 56x56 layer's 3.2 MB
      // came from L3 and the prefetches cost 1-2%.
      const int64_t ahead_band_u = (u / row_chunks + 2) * row_chunks;
      const bool prefetch_ahead = prefetch_bands && ahead_band_u < u_end;
      const float* ahead_input = nullptr;  // channel 0's first input element that band reads
      int64_t ahead_input_floats = 0;      // elements of each channel's plane from there
      if (prefetch_ahead) {
        const int64_t ahead_jb = ahead_band_u / row_chunks % n_col_blocks;
        const int64_t ahead_gi = ahead_band_u / (row_chunks * n_col_blocks) % g.groups;
        const int64_t ahead_img = ahead_band_u / (row_chunks * n_col_blocks * g.groups);
        const int64_t ahead_f0 = ahead_jb * nc;
        const int64_t ahead_last = ahead_f0 + std::min(nc, grid_outputs - ahead_f0) + tap_reach - 1;
        // Its first and last grid positions as input elements (rows
        // of the plane are contiguous), clamped to the plane: a block of a
        // long row (conv1d) reads a slice of it, not the row.
        int64_t ih0 = ahead_f0 / wp - g.pad_top, iw0 = ahead_f0 % wp - g.pad_left;
        int64_t ih1 = ahead_last / wp - g.pad_top, iw1 = ahead_last % wp - g.pad_left;
        if (ih0 < 0) {  // from the top padding on: the plane's first element
          ih0 = 0;
          iw0 = 0;
        }
        if (ih1 >= g.h) {  // into the bottom padding: up to the plane's last
          ih1 = g.h - 1;
          iw1 = g.w - 1;
        }
        const int64_t first = ih0 * g.w + std::clamp<int64_t>(iw0, 0, g.w - 1);
        const int64_t last = ih1 * g.w + std::clamp<int64_t>(iw1, 0, g.w - 1);
        if (ih0 < g.h && ih1 >= 0 && last >= first) {
          ahead_input = x + (ahead_img * g.c + ahead_gi * cg) * g.h * g.w + first;
          ahead_input_floats = last - first + 1;
        }
      }
      const float* b_block = nullptr;  // B of tap (0, 0), channel 0, grid position f0
      int64_t plane = 0;
      if (in_place) {
        b_block = xg + f0;
        plane = g.h * g.w;
      } else {
        plane = ncols + tap_reach;
        if (band_of != u / row_chunks) {
          build_band(g, xg, cg, f0, plane, wp, band);
          band_of = u / row_chunks;
        }
        b_block = band;
      }
      const int64_t tail = max_tail > 0 ? dot_tail_columns(blk.lanes, ncols) : 0, head = ncols - tail;
      for (int64_t e = 0; e < tail; ++e) {
        for (int64_t c = 0; c < cg; ++c) tail_cols[e * cg + c] = b_block[c * plane + head + e];
      }
      const int64_t ip_begin = a_panels * rchunk / row_chunks, ip_end = a_panels * (rchunk + 1) / row_chunks;
      // Prefetch shares: one per microkernel call of the first channel
      // chunk's first tap, channels [cg s / shares, cg (s + 1) / shares).
      // (Inline, not a function of its own: GCC finds a function of
      // prefetches alone free of side effects and drops its calls.)
      const int64_t head_tiles = ceil_div(head, nr);
      const int64_t shares = std::max<int64_t>(1, (ip_end - ip_begin) * head_tiles);
      for (int64_t ip = ip_begin; ip < ip_end; ++ip) {
        const int rows = static_cast<int>(std::min<int64_t>(mr, kg - ip * mr));
        const float* panel = packed_w + gi * group_floats + ip * mr * cg * taps;
        const int64_t k0 = gi * kg + ip * mr;
        float* const y_rows = y.first + img * y.image_stride + k0 * y.plane_stride;
        // The accumulator tile: the block's columns of y's rows, or the L1 tile.
        float* const acc = tile_is_y ? y_rows + f0 : tile;
        const int64_t ld_acc = tile_is_y ? y.plane_stride : nc;
        const float* bias = ep.bias != nullptr ? ep.bias + k0 : nullptr;
        for (int64_t c0 = 0; c0 < cg; c0 += chunk) {
          const int64_t cc = std::min(chunk, cg - c0);
          for (int64_t tap = 0; tap < taps; ++tap) {
            const float* a = panel + (c0 * taps + tap * cc) * mr;
            const float* b = b_block + c0 * plane + (tap / g.s) * g.dil_h * wp + (tap % g.s) * g.dil_w;
            const TileUpdate update{1.0f, 0.0f, c0 == 0 && tap == 0, nullptr, bias};
            for (int64_t j = 0; j < head; j += nr) {
              if (ahead_input_floats > 0 && c0 == 0 && tap == 0) {
                const int64_t share = (ip - ip_begin) * head_tiles + j / nr;
                for (int64_t c = cg * share / shares; c < cg * (share + 1) / shares; ++c) {
                  const float* input_c = ahead_input + c * g.h * g.w;
                  for (int64_t e = 0; e < ahead_input_floats; e += kCacheLineFloats) {
                    __builtin_prefetch(input_c + e, 0, 2);
                  }
                }
              }
              kern.ukernel(cc, a, b + j, plane, true, acc + j, ld_acc, rows,
                           static_cast<int>(std::min<int64_t>(nr, head - j)), update);
            }
          }
          if (tail > 0) {
            kern.dot(rows, tail, cc, weight.first + gi * weight.group_stride + ip * mr * weight.k_stride + c0,
                     weight.k_stride, tail_cols + c0, cg,
                     c0 == 0 ? 0.0f : 1.0f, acc + head, ld_acc);
          }
        }
        // The microkernel's columns have their bias; the dots' not yet.
        if (tail > 0) finish_block_rows(ConvEpilogue{}, acc + head, ld_acc, rows, tail, bias);
        if (tile_is_y) {
          finish_block_rows(ep, acc, ld_acc, rows, ncols, nullptr);
        } else {
          store_block(g, ep, tile, nc, rows, f0, ncols, wp, nullptr, y, y_rows);
        }
      }
    }
  });
}

}  // namespace minidnn::cpu
