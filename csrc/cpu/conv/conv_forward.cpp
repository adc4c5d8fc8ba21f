// conv2d_forward as an implicit GEMM on the project's SGEMM microkernel
// (gemm.h), ISA-independent: the active ISA's kernel and blocking come from
// gemm_kernels(). The routes, in the order conv2d_forward_route tries them:
// * depthwise convolutions: depthwise.h's memory-bound kernel;
// * 3x3 stride-1 undilated convolutions with groups 1 and enough channels:
//   Winograd F(4x4, 3x3) (conv_forward_winograd.cpp gives the rule and its
//   measurements), 2.25x fewer multiplications than the direct sum;
// * few output positions with a large weight (few_positions_large_weight
//   below): here, the weight read in place;
// * grouped ones with few channels per group (ResNeXt): the direct
//   convolution of first_layer.h (conv_forward_first_layer.cpp gives the
//   rule and its measurements);
// * stride-1 ones with enough channels per group: the tap route of
//   conv_forward_taps.cpp (no packing of the input; its header gives the
//   rule);
// * of the rest, few input channels with a kernel of more than one tap
//   (first layers): the same direct convolution;
// * everything else comes here.
//
// Per image and group, with K_g = K / groups and C_g = C / groups:
//
//   Y_g[K_g, P*Q] = W_g[K_g, C_g*R*S] x col[C_g*R*S, P*Q]
//
// where row (c, r, s) of `col` holds, for every output position, the input
// value tap (r, s) of channel c reads (zero in the padding). W is read in
// place by the microkernel (GemmKernels::ukernel_a_rows: mr rows of W_g,
// C_g*R*S floats apart, broadcast from where they lie), never copied; `col`
// is never built: each (K block, column block) of it is packed straight
// from x into B panels, kc x nr, by copying runs of input rows (stride 1:
// contiguous), and the microkernel writes its tiles straight into the NCHW
// output (row stride P*Q). A 1x1 stride-1 unpadded convolution needs no
// special route: its `col` is x itself, read in place (ldb = P*Q).
//
// Reading W in place. W was packed once per call into A panels, a copy of
// the whole weight that the product then read again; per weight float the
// copy costs about what P*Q / 64 FMA steps of the product do, so on few
// output positions it was most of the call (7x7 512->512, N = 1, tap
// route: 32% of the samples in the packing loop against 42% in the
// microkernel). In place the mr rows of an A panel are mr streams kdim
// floats apart; a K block of them (mr x kc floats) stays in L1 across the
// column panels as the packed panel did. The sums are the same, in the
// same order, as with the packed weight.
//
// Bias (per output channel, i.e. per GEMM row: TileUpdate's bias is per
// column) and the activation are applied to each mr x nc strip right after
// its last K block, while it is still in cache.
//
// One unit of many output channels and several K blocks (N = 1, few
// positions) is summed as two halves of its K blocks, a thread per half
// (kSplitKPanels, in the driver). Otherwise threads take contiguous shares
// of (image, group, column block) units, or,
// with fewer units than threads, take them one at a time as a team: each
// takes a share of the unit's A panels, packing all of its `col` for
// itself, where there are many (kOwnPackPanels a thread), or else an equal
// share of the unit's whole B panels where they divide evenly (and packs
// and computes them as a unit of its own), or else packs a share of the
// unit's rows of `col`, then computes a share of its A panels over all of
// them. A column block's last few columns past whole
// vectors are dot products (dot_tail_columns), by whoever computes the
// block's last columns. Every output element is accumulated in the same
// order (K blocks of one size fixed by the shape, the K split's halves
// fixed by the shape, panels from the block's first column) whoever
// computes it and however the units are cut, so results are bit-identical
// for any thread count.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/activation/activation.h"
#include "cpu/conv/conv_blocking.h"
#include "cpu/conv/conv.h"
#include "cpu/conv/conv_forward_taps.h"
#include "cpu/conv/conv_rows.h"
#include "cpu/conv/depthwise.h"
#include "cpu/conv/first_layer.h"
#include "cpu/conv/winograd.h"
#include "cpu/gemm/gemm.h"
#include "runtime/scratch.h"
#include "runtime/threads.h"

namespace minidnn::cpu {
namespace {

// One run of output positions of a column block: consecutive q of output
// row p, all in one B panel.
struct Run {
  int64_t ih0;      // input row of tap row 0: p * stride_h - pad_top
  int64_t iw0;      // input column of the run's first position at tap column 0
  int64_t panel;    // B panel of the block
  int32_t col;      // first column within that panel
  int32_t len;      // positions
};

// Splits columns [j0, j0 + ncols) of `col` (output positions) into runs.
int64_t make_runs(const ConvGeometry& g, int64_t j0, int64_t ncols, int nr, Run* runs) {
  int64_t count = 0;
  int64_t j = 0;
  while (j < ncols) {
    const int64_t pos = j0 + j;
    const int64_t p = pos / g.q, q = pos % g.q;
    const int64_t in_panel = nr - j % nr;
    const int64_t len = std::min({g.q - q, in_panel, ncols - j});
    runs[count++] = Run{p * g.stride_h - g.pad_top, q * g.stride_w - g.pad_left, j / nr, static_cast<int32_t>(j % nr),
                        static_cast<int32_t>(len)};
    j += len;
  }
  return count;
}

// Rows [t0, t0 + kc) of `col` for the runs of one column block, into B
// panels of nr columns at `dst` (row t0 of panel i at dst + i * panel_floats,
// the next rows nr floats apart: a share of a K block's panels when
// panel_floats exceeds kc * nr); columns past `ncols` in the last panel are
// zero. `xg` is the group's first input channel.
//
// Column strides 1 and 2: tap by tap, the runs cut into pieces of at most
// one vector (ConvCopyRun, at most max_copies of them at `copies`) with
// their edges in the padding worked out once, then each channel's row of
// that tap copied by conv_row_kernels().copy_runs. Other strides: run by
// run.
void pack_col_block(const ConvGeometry& g, const float* xg, int64_t t0, int64_t kc, const Run* runs, int64_t n_runs,
                    int64_t ncols, int nr, int64_t panel_floats, ConvCopyRun* copies, float* dst) {
  const int64_t rs = g.r * g.s;
  const int64_t last_panel = (ncols - 1) / nr;
  const int64_t tail = ncols - last_panel * nr;  // valid columns of the last panel
  const int64_t sw = g.stride_w;
  if (sw <= 2) {
    const ConvRowKernels& row_kernels = conv_row_kernels();
    const int lanes = row_kernels.lanes;
    for (int64_t tap = 0; tap < rs; ++tap) {
      const int64_t r = tap / g.s, s = tap % g.s;
      const int64_t c0 = t0 <= tap ? 0 : ceil_div(t0 - tap, rs);  // first channel whose row of this tap is in range
      if (c0 * rs + tap >= t0 + kc) continue;
      int64_t n = 0;
      auto add_pieces = [&](int64_t src, int64_t dst_offset, int64_t len, int64_t lo, int64_t hi) {
        for (int64_t e = 0; e < len; e += lanes) {
          const int64_t piece = std::min<int64_t>(lanes, len - e);
          const int64_t plo = std::clamp<int64_t>(lo - e, 0, piece), phi = std::clamp<int64_t>(hi - e, plo, piece);
          copies[n++] = ConvCopyRun{src + e * sw, dst_offset + e, static_cast<int32_t>(plo), static_cast<int32_t>(phi),
                                    static_cast<int32_t>(piece)};
        }
      };
      for (int64_t i = 0; i < n_runs; ++i) {
        const Run& run = runs[i];
        const int64_t ih = run.ih0 + r * g.dil_h, iw = run.iw0 + s * g.dil_w;
        const bool row_in = ih >= 0 && ih < g.h;
        // Positions e with 0 <= iw + e * sw < w.
        const int64_t lo = row_in ? std::clamp<int64_t>(iw >= 0 ? 0 : ceil_div(-iw, sw), 0, run.len) : 0;
        const int64_t hi = row_in ? std::clamp<int64_t>(g.w - iw > 0 ? ceil_div(g.w - iw, sw) : 0, lo, run.len) : lo;
        add_pieces(row_in ? ih * g.w + iw : 0, run.panel * panel_floats + run.col, run.len, lo, hi);
      }
      add_pieces(0, last_panel * panel_floats + tail, nr - tail, 0, 0);
      for (int64_t c = c0; c * rs + tap < t0 + kc; ++c) {
        row_kernels.copy_runs(xg + c * g.h * g.w, sw, copies, n, dst + (c * rs + tap - t0) * nr);
      }
    }
    return;
  }
  int64_t c = t0 / rs, r = t0 % rs / g.s, s = t0 % g.s;
  for (int64_t t = 0; t < kc; ++t) {
    const float* xc = xg + c * g.h * g.w;
    const int64_t dh = r * g.dil_h, dw = s * g.dil_w;
    for (int64_t i = 0; i < n_runs; ++i) {
      const Run& run = runs[i];
      float* out = dst + run.panel * panel_floats + t * nr + run.col;
      const int64_t len = run.len;
      const int64_t ih = run.ih0 + dh;
      if (ih < 0 || ih >= g.h) {
        std::fill(out, out + len, 0.0f);
        continue;
      }
      const float* xrow = xc + ih * g.w;
      const int64_t iw = run.iw0 + dw;  // input column of position 0 of the run
      // Positions e with 0 <= iw + e * sw < w.
      const int64_t lo = std::clamp<int64_t>(iw >= 0 ? 0 : ceil_div(-iw, sw), 0, len);
      const int64_t hi = std::clamp<int64_t>(g.w - iw > 0 ? ceil_div(g.w - iw, sw) : 0, lo, len);
      std::fill(out, out + lo, 0.0f);
      for (int64_t e = lo; e < hi; ++e) out[e] = xrow[iw + e * sw];
      std::fill(out + hi, out + len, 0.0f);
    }
    if (tail < nr) std::fill(dst + last_panel * panel_floats + t * nr + tail, dst + last_panel * panel_floats + (t + 1) * nr, 0.0f);
    if (++s == g.s) {
      s = 0;
      if (++r == g.r) {
        r = 0;
        ++c;
      }
    }
  }
}

// Rows [t0, t0 + kc) of `col` at the `cols` output positions from pos0
// (one image, one output row or several), each column contiguous along K:
// column e at dst + e * kc. The operand of the dot products that take a
// column block's last few columns (see the driver).
void pack_col_columns(const ConvGeometry& g, const float* xg, int64_t t0, int64_t kc, int64_t pos0, int64_t cols,
                      float* dst) {
  const int64_t rs = g.r * g.s;
  for (int64_t e = 0; e < cols; ++e) {
    const int64_t pos = pos0 + e;
    const int64_t ih0 = pos / g.q * g.stride_h - g.pad_top, iw0 = pos % g.q * g.stride_w - g.pad_left;
    int64_t c = t0 / rs, r = t0 % rs / g.s, s = t0 % g.s;
    for (int64_t t = 0; t < kc; ++t) {
      const int64_t ih = ih0 + r * g.dil_h, iw = iw0 + s * g.dil_w;
      dst[e * kc + t] = ih >= 0 && ih < g.h && iw >= 0 && iw < g.w ? xg[(c * g.h + ih) * g.w + iw] : 0.0f;
      if (++s == g.s) {
        s = 0;
        if (++r == g.r) {
          r = 0;
          ++c;
        }
      }
    }
  }
}

// y rows [0, rows) of length n (row stride ld) = f(y + bias[row]).
void finish_rows(float* y, int64_t ld, int64_t rows, int64_t n, const float* bias, const ConvEpilogue& ep) {
  for (int64_t i = 0; i < rows; ++i) {
    float* row = y + i * ld;
    if (bias != nullptr) {
      const float b = bias[i];
      for (int64_t j = 0; j < n; ++j) row[j] += b;
    }
    if (ep.activate) activation_kernels().forward(ep.activation, row, row, n, ep.alpha);
  }
}

// y = f(bias) (or f(0)) everywhere: the convolution of an empty reduction.
void fill_epilogue_only(const ConvGeometry& g, const ConvEpilogue& ep, float* y) {
  const int64_t npix = g.p * g.q;
  for (int64_t i = 0; i < g.n; ++i) {
    for (int64_t k = 0; k < g.k; ++k) {
      float* row = y + (i * g.k + k) * npix;
      std::fill(row, row + npix, ep.bias != nullptr ? ep.bias[k] : 0.0f);
      if (ep.activate) activation_kernels().forward(ep.activation, row, row, npix, ep.alpha);
    }
  }
}

// Few output positions, where the tap route's copy of the weight (packed
// once per call) costs about as much as its product, and a weight large
// enough that this matters: such shapes come here, where the weight is read
// in place and only the few columns of `col` are packed. Measured (1
// thread, avx512, ms, tap route / here, machine shared with other builds):
// 3x3 7x7 512->512 3.17 / 1.91, 3x3 14x14 256->256 1.75 / 1.69, 1x1
// 14x14 256->1024 0.85 / 0.72, 1x1 14x14 1024->256 0.80 / 0.77.
constexpr int64_t kFewPositions = 256;
constexpr int64_t kLargeWeightFloats = int64_t{1} << 16;

bool few_positions_large_weight(const ConvGeometry& g) {
  return saturating_product({g.n, g.p, g.q}) <= kFewPositions &&
         saturating_product({g.k, g.c / g.groups, g.r, g.s}) >= kLargeWeightFloats;
}

// A team splitting one unit's output channels packs all of its `col` in
// each thread when each gets at least this many A panels (see the driver):
// the copy is then at most ~10% of a thread's work (~5% of a one-thread
// call at 19 panels of 14 rows).
constexpr int64_t kOwnPackPanels = 8;

// The K split of one unit (see the driver) from this many A panels: below,
// a thread's panels are few enough that the split of the output channels
// (each thread packing all of `col` for its half of them) wastes less.
constexpr int64_t kSplitKPanels = 2 * kOwnPackPanels;

}  // namespace

ConvForwardRoute conv2d_forward_route(const ConvGeometry& g) {
  if (g.n == 0 || g.k == 0 || g.p * g.q == 0) return ConvForwardRoute::none;
  // Depthwise: one input plane per output plane, a GEMM of one row per
  // group; memory-bound, so a kernel of its own (depthwise.h).
  if (is_depthwise(g)) return ConvForwardRoute::depthwise;
  if (g.c / g.groups * g.r * g.s == 0) return ConvForwardRoute::none;
  if (conv_forward_winograd_applies(g)) return ConvForwardRoute::winograd;
  if (few_positions_large_weight(g)) return ConvForwardRoute::implicit_gemm;
  // Grouped with few channels per group (ResNeXt's 8): the direct kernel
  // of the first-layer route beats the tap route's short reductions.
  if (g.groups > 1 && conv_forward_first_layer_applies(g)) return ConvForwardRoute::first_layer;
  if (conv_forward_taps_applies(g)) return ConvForwardRoute::taps;
  if (conv_forward_first_layer_applies(g)) return ConvForwardRoute::first_layer;
  return ConvForwardRoute::implicit_gemm;
}

const char* conv_forward_route_name(ConvForwardRoute route) {
  switch (route) {
    case ConvForwardRoute::none: return "none";
    case ConvForwardRoute::depthwise: return "depthwise";
    case ConvForwardRoute::first_layer: return "first_layer";
    case ConvForwardRoute::taps: return "taps";
    case ConvForwardRoute::winograd: return "winograd";
    case ConvForwardRoute::implicit_gemm: break;
  }
  return "implicit_gemm";
}

bool conv2d_forward_route_accepts(const ConvGeometry& g, ConvForwardRoute route) {
  const ConvForwardRoute own = conv2d_forward_route(g);
  if (route == own) return true;
  if (own == ConvForwardRoute::none) return false;
  return route == ConvForwardRoute::implicit_gemm || route == ConvForwardRoute::first_layer ||
         (route == ConvForwardRoute::taps && conv_forward_taps_applies(g));
}

void conv2d_forward(const ConvGeometry& g, const float* x, const float* weight, const ConvEpilogue& ep, float* y) {
  conv2d_forward_on_route(conv2d_forward_route(g), g, x, weight, ep, y);
}

void conv2d_forward_on_route(ConvForwardRoute route, const ConvGeometry& g, const float* x, const float* weight,
                             const ConvEpilogue& ep, float* y) {
  switch (route) {
    case ConvForwardRoute::none:
      fill_epilogue_only(g, ep, y);  // writes nothing when the output is empty
      return;
    case ConvForwardRoute::depthwise: return depthwise_kernels().forward(g, x, weight, ep, y);
    case ConvForwardRoute::first_layer: return conv2d_forward_first_layer(g, x, taps_weight_of(g, weight), ep, y);
    case ConvForwardRoute::winograd: return conv2d_forward_winograd(g, x, weight, ep, y);
    case ConvForwardRoute::taps: return conv2d_forward_taps(g, x, taps_weight_of(g, weight), ep, taps_output_of(g, y));
    case ConvForwardRoute::implicit_gemm: break;
  }
  const int64_t npix = g.p * g.q;
  const int64_t kg = g.k / g.groups, cg = g.c / g.groups;
  const int64_t kdim = cg * g.r * g.s;
  const GemmKernels& kern = gemm_kernels();
  const GemmBlocking& blk = kern.blocking;
  // The wide tile (GemmKernels::wide_tile) where an image's positions, less
  // the dot-product columns, are one column block and fill the wide tiles
  // exactly: 7x7's 48 (and 1), 14x14's 192 (and 4). On avx512 the 9 x 48
  // tile then runs 7x7's 48 columns as one tile where the 14 x 32 one ran
  // 32 + 16, the 16 on a one-vector kernel (1 load and 14 broadcasts per 14
  // FMAs: load-bound, 13% slower per FMA than the two-vector kernel in perf
  // samples); and at 14x14 it reads each weight row 4 times where 14 x 32
  // read it 6. Measured (1 thread, CPU time, avx512, ms, 14 x 32 / 9 x 48,
  // best of 200 calls, loaded machine): 3x3 7x7 512 1.385 / 1.224-1.244,
  // 3x3 14x14 256 1.18 / 1.14-1.15, 1x1 14x14 1024->256 0.542-0.555 /
  // 0.514-0.518, 256->1024 0.536-0.545 / 0.517-0.545.
  const GemmTile wide = kern.wide_tile;
  const int64_t head_all = npix - dot_tail_columns(blk.lanes, npix);
  const bool use_wide = wide.nr != blk.nr && npix <= blk.nc && head_all % wide.nr == 0;
  const int mr = use_wide ? wide.mr : blk.mr, nr = use_wide ? wide.nr : blk.nr;
  const auto ukernel_a_rows = use_wide ? kern.ukernel_a_rows_wide : kern.ukernel_a_rows;

  // K blocks of equal size (<= kc): a short last block would waste a pass.
  const int64_t k_blocks = ceil_div(kdim, blk.kc);
  const int64_t kc = ceil_div(kdim, k_blocks);
  // Column blocks of equal size in whole panels (<= nc).
  const int64_t col_blocks = ceil_div(npix, blk.nc);
  const int64_t nc = ceil_div(ceil_div(npix, col_blocks), nr) * nr;
  const int64_t n_col_blocks = ceil_div(npix, nc);

  // Threads split the (image, group, column block) units; when there are
  // fewer units than threads, the team takes them one at a time instead,
  // splitting the unit's B panels or packing its B blocks together (a share
  // of the rows each) and splitting its A panels: at N = 1 a layer of 7x7
  // or 14x14 positions is one unit, and each thread repacking all of it
  // cost a tenth of the call.
  const int64_t a_panels = ceil_div(kg, mr);
  const int threads = threads_for(saturating_product({g.n, g.k, npix, kdim}), kConvGrain);
  const int64_t units = g.n * g.groups * n_col_blocks;
  const bool team_units = units < threads;

  // The weight is read in place (GemmKernels::ukernel_a_rows: A panel ip of
  // K block b is mr rows of W_g, kdim floats apart, from column b * kc):
  // packing it cost about as much as the product on few output positions.
  // B: per thread one K block of a unit (kc x nc), or for the team all K
  // blocks of one (block b at b * kc * nc). When `col` is x itself (a 1x1
  // stride-1 unpadded convolution), B is read in place too and nothing is
  // packed.
  const bool col_is_x = g.r == 1 && g.s == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_top == 0 &&
                        g.pad_left == 0 && g.p == g.h && g.q == g.w;
  const int nt_max = threads;
  // (A team that splits a unit's columns uses the per-thread blocks.)
  float* b_blocks = gemm_scratch(1, col_is_x ? 0 : team_units ? std::max(k_blocks, int64_t{nt_max}) * kc * nc : nt_max * kc * nc);
  const int64_t max_runs = nc;  // each run holds at least one of the block's columns
  // Kept per calling thread and grown on demand, as the scratch above, so
  // that a small convolution allocates nothing; the team reaches it through
  // `runs_all` (each thread's own thread_local would be another vector).
  static thread_local std::vector<Run> runs_kept;
  if (runs_kept.size() < static_cast<size_t>(nt_max * max_runs)) runs_kept.resize(static_cast<size_t>(nt_max * max_runs));
  Run* const runs_all = runs_kept.data();
  // pack_col_block's pieces of one tap: at most ceil(len / lanes) of a run
  // of len columns, so at most ncols + n_runs, and the last panel's zero
  // columns at most nr more.
  const int64_t max_copies = 2 * nc + nr;
  static thread_local std::vector<ConvCopyRun> copies_kept;
  if (copies_kept.size() < static_cast<size_t>(nt_max * max_copies)) {
    copies_kept.resize(static_cast<size_t>(nt_max * max_copies));
  }
  ConvCopyRun* const copies_all = copies_kept.data();

  // A column block's last few columns past whole vectors (dot_tail_columns)
  // are dot products: the weight's rows in place against the columns
  // packed contiguous along K, per thread (in scratch, so that the extra
  // memory the benchmark reports counts them).
  const int64_t max_tail = blk.lanes / 4;
  auto tail_columns = [&](int64_t ncols) { return dot_tail_columns(blk.lanes, ncols); };
  float* const tail_all = thread_scratch(ScratchSlot::conv_columns, nt_max * max_tail * kc);

  // Unit u (image, group, column block): its group, first column and
  // columns, and the group's first input channel.
  struct Unit {
    int64_t gi, j0, ncols;
    const float* xg;
  };
  auto unit_at = [&](int64_t u) {
    const int64_t gi = u / n_col_blocks % g.groups, img = u / (n_col_blocks * g.groups);
    const int64_t j0 = u % n_col_blocks * nc;
    return Unit{gi, j0, std::min(nc, npix - j0), x + (img * g.c + gi * cg) * g.h * g.w};
  };

  // Columns [jb, je) of unit u (all of them, or a team member's share: jb
  // a whole number of panels in, the tail columns with the last share) and
  // its A panels [ip_begin, ip_end), over K blocks [b_begin, b_end), into
  // y_unit (the unit's rows of y, or of the K split's second partial sum
  // below), with the bias and activation when `finish`; their B blocks x
  // itself (col_is_x), or packed at b_base (block b at b_base + b * kc *
  // nc), or, when `pack`, packed there first one at a time (b_base then
  // holds one); the tail columns (tail_columns) packed at tail_buf, one K
  // block at a time, by each thread for its own rows.
  auto compute = [&](int64_t u, int64_t jb, int64_t je, int64_t ip_begin, int64_t ip_end, int64_t b_begin,
                     int64_t b_end, float* y_unit, bool finish, float* b_base, bool pack, Run* runs,
                     ConvCopyRun* copies, float* tail_buf) {
    const auto [gi, j_unit, ncols_unit, xg] = unit_at(u);
    const int64_t j0 = j_unit + jb, ncols = je - jb;
    float* yg = y_unit + j0;
    // head: the microkernel's columns.
    const int64_t tail = je == ncols_unit ? tail_columns(ncols_unit) : 0, head = ncols - tail;
    pack = pack && !col_is_x;
    const int64_t n_runs = pack && head > 0 ? make_runs(g, j0, head, nr, runs) : 0;
    const int64_t col_panels = ceil_div(head, nr);
    finish = finish && (ep.bias != nullptr || ep.activate);
    for (int64_t b = b_begin; b < b_end; ++b) {
      const int64_t p0 = b * kc, kcur = std::min(kc, kdim - p0);
      const float* b_block = col_is_x ? xg + p0 * npix + j0 : pack ? b_base : b_base + b * kc * nc;
      const int64_t ldb = col_is_x ? npix : nr, panel_floats = col_is_x ? nr : kcur * nr;
      if (pack && head > 0) pack_col_block(g, xg, p0, kcur, runs, n_runs, head, nr, kcur * nr, copies, b_base);
      if (tail > 0) pack_col_columns(g, xg, p0, kcur, j0 + head, tail, tail_buf);
      const TileUpdate update{1.0f, 0.0f, b == b_begin, nullptr};
      const bool last = b + 1 == b_end;
      for (int64_t ip = ip_begin; ip < ip_end; ++ip) {
        const float* a_rows = weight + (gi * kg + ip * mr) * kdim + p0;
        const int rows = static_cast<int>(std::min<int64_t>(mr, kg - ip * mr));
        float* c = yg + ip * mr * npix;
        for (int64_t jp = 0; jp < col_panels; ++jp) {
          ukernel_a_rows(kcur, a_rows, kdim, b_block + jp * panel_floats, ldb, col_is_x, c + jp * nr, npix, rows,
                              static_cast<int>(std::min<int64_t>(nr, head - jp * nr)), update);
        }
        // While the panel's rows of this K block are in L1.
        if (tail > 0) {
          kern.dot(rows, tail, kcur, a_rows, kdim, tail_buf, kcur, b == b_begin ? 0.0f : 1.0f, c + head, npix);
        }
        if (last && finish) finish_rows(c, npix, rows, ncols, ep.bias != nullptr ? ep.bias + gi * kg + ip * mr : nullptr, ep);
      }
    }
  };
  // The rows of y of unit u.
  auto y_of = [&](int64_t u) { return y + (u / (n_col_blocks * g.groups) * g.k + unit_at(u).gi * kg) * npix; };

  // One unit of many output channels and several K blocks (a layer of
  // few positions at N = 1: 3x3 14x14 256->256, 7x7 512->512) is computed
  // as two partial sums over the two halves of its K blocks, the second
  // into `partial`, then added: y = (first half) + (second half), row by
  // row, and the bias and activation applied. The halves are fixed by the
  // shape, so every thread count sums the same way; two threads take one
  // half each: each packs only its half of `col` (each thread packing all
  // of it, as the split of the output channels below does, was ~11% of a
  // thread's time at 14x14) and reads half of every weight row, and both
  // run the same panels, the short last one included.
  const bool split_k = units == 1 && !col_is_x && npix - tail_columns(npix) > 0 && k_blocks >= 2 &&
                       a_panels >= kSplitKPanels;
  float* const partial = split_k ? gemm_scratch(0, kg * npix) : nullptr;

  parallel(threads, [&](int t, int nt) {
    Run* runs = runs_all + t * max_runs;
    ConvCopyRun* copies = copies_all + t * max_copies;
    float* tail_buf = tail_all + t * max_tail * kc;
    float* own_b = col_is_x ? nullptr : b_blocks + t * kc * nc;
    if (split_k) {
      // Items (half, A panel), half-major; this thread's contiguous share.
      const int64_t items = 2 * a_panels, i0 = items * t / nt, i1 = items * (t + 1) / nt;
      for (int64_t half = 0; half < 2; ++half) {
        const int64_t ip0 = std::max(i0 - half * a_panels, int64_t{0}), ip1 = std::min(i1 - half * a_panels, a_panels);
        if (ip0 >= ip1) continue;
        compute(0, 0, npix, ip0, ip1, k_blocks * half / 2, k_blocks * (half + 1) / 2, half == 0 ? y : partial, false,
                own_b, true, runs, copies, tail_buf);
      }
#pragma omp barrier
      const int64_t r0 = kg * t / nt, r1 = kg * (t + 1) / nt;
      for (int64_t i = r0 * npix; i < r1 * npix; ++i) y[i] += partial[i];
      if (ep.bias != nullptr || ep.activate) {
        finish_rows(y + r0 * npix, npix, r1 - r0, npix, ep.bias != nullptr ? ep.bias + r0 : nullptr, ep);
      }
      return;
    }
    if (!team_units) {
      for (int64_t u = units * t / nt; u < units * (t + 1) / nt; ++u) {
        const int64_t ncols = unit_at(u).ncols;
        compute(u, 0, ncols, 0, a_panels, 0, k_blocks, y_of(u), true, own_b, true, runs, copies, tail_buf);
      }
      return;
    }
    for (int64_t u = 0; u < units; ++u) {
      const auto [gi, j0, ncols, xg] = unit_at(u);
      const int64_t head = ncols - tail_columns(ncols);
      if (col_is_x || head == 0) {
        compute(u, 0, ncols, a_panels * t / nt, a_panels * (t + 1) / nt, 0, k_blocks, y_of(u), true, b_blocks, false, runs, copies, tail_buf);
        continue;
      }
      // Many output channels (at least kOwnPackPanels A panels a thread):
      // the team splits them, each thread packing the whole unit's `col`
      // for itself (one K block at a time, as a unit of its own) and
      // computing its rows over all columns, with nothing shared and no
      // barrier. Each thread then streams only its share of the weight
      // (3x3 14x14 256->256: 1.2 MB, small enough to stay in its 2 MB L2
      // from call to call, where the split below reads all 2.4 MB), for a second
      // copy of the small `col` (~5% of a one-thread call there).
      // Measured, 2 threads, wall clock, fastest of 1000-1500 calls, machine
      // shared with a CI run: 14x14 0.640 ms against 0.672-0.719 split by
      // columns and 0.712-0.726 by rows over a shared `col`; 7x7 512->512
      // (whose panels do not divide: before, a shared `col`) 0.738-0.744
      // against 0.789-0.812.
      if (a_panels >= kOwnPackPanels * nt) {
        compute(u, 0, ncols, a_panels * t / nt, a_panels * (t + 1) / nt, 0, k_blocks, y_of(u), true, own_b, true, runs, copies, tail_buf);
        continue;
      }
      // Whole panels, as many for each thread: the team splits the columns,
      // each thread packing its own and computing all output channels on
      // them (as a unit of its own), with nothing shared. Splitting the
      // output channels shares the packed `col`, half of it written by the
      // other core: at two threads (3x3 14x14 256->256, N = 1, CPU time of
      // both threads, perf samples) the microkernel took 8% and the packing
      // 50% more time than at one thread, and the barriers' waits another
      // 10% of the call; split by columns, 3.5% and 18% more, and half the
      // waits. Each thread then reads all of the weight (2.4 MB there): one
      // thread on half the columns (14x7) took 0.535 of the whole layer.
      const int64_t head_panels = head / nr;
      if (head % nr == 0 && head_panels >= nt && head_panels % nt == 0) {
        const int64_t jb = head_panels * t / nt * nr, je = t + 1 == nt ? ncols : head_panels * (t + 1) / nt * nr;
        compute(u, jb, je, 0, a_panels, 0, k_blocks, y_of(u), true, own_b, true, runs, copies, tail_buf);
        // A next unit split by rows packs its B over these threads' blocks
        // (with more threads than 2, units can differ: the last column block).
        if (u + 1 < units) {
#pragma omp barrier
        }
        continue;
      }
      // This thread's rows [r0, r1) of the unit's `col`, into every K block they meet.
      const int64_t n_runs = make_runs(g, j0, head, nr, runs);
      const int64_t r0 = kdim * t / nt, r1 = kdim * (t + 1) / nt;
      for (int64_t b = r0 / kc; b < k_blocks && b * kc < r1; ++b) {
        const int64_t p0 = b * kc, kcur = std::min(kc, kdim - p0);
        const int64_t lo = std::max(r0, p0), hi = std::min(r1, p0 + kcur);
        pack_col_block(g, xg, lo, hi - lo, runs, n_runs, head, nr, kcur * nr, copies,
                       b_blocks + b * kc * nc + (lo - p0) * nr);
      }
#pragma omp barrier
      compute(u, 0, ncols, a_panels * t / nt, a_panels * (t + 1) / nt, 0, k_blocks, y_of(u), true, b_blocks, false, runs, copies, tail_buf);
      // The next unit's packing overwrites this one's B.
#pragma omp barrier
    }
  });
}

}  // namespace minidnn::cpu
