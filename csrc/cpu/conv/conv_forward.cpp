// conv2d_forward as an implicit GEMM on the project's SGEMM microkernel
// (gemm.h), ISA-independent: the active ISA's kernel and blocking come from
// gemm_kernels(). The routes, in the order conv2d_forward_route tries them:
// * depthwise convolutions: depthwise.h's memory-bound kernel;
// * 3x3 stride-1 undilated convolutions with groups 1 and enough channels:
//   Winograd F(4x4, 3x3) (conv_forward_winograd.cpp gives the rule and its
//   measurements), 2.25x fewer multiplications than the direct sum;
// * few output positions with a large weight (few_positions_large_weight
//   below): here, the weight read in place;
// * stride-1 ones with enough channels per group: the tap route of
//   conv_forward_taps.cpp (no packing of the input; its header gives the
//   rule);
// * of the rest, few input channels with a kernel of more than one tap
//   (first layers): the direct convolution of first_layer.h
//   (conv_forward_first_layer.cpp gives the rule and its measurements);
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
// Threads take contiguous shares of (image, group, column block) units, or,
// with fewer units than threads, take them one at a time as a team (each
// packs a share of the unit's rows of `col`, then computes a share of its A
// panels over all of them). Every output element is accumulated in the same order (K blocks of
// one size fixed by the shape) whoever computes it and however the units
// are cut, so results are bit-identical for any thread count.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/activation/activation.h"
#include "cpu/conv/conv_blocking.h"
#include "cpu/conv/conv.h"
#include "cpu/conv/conv_forward_taps.h"
#include "cpu/conv/depthwise.h"
#include "cpu/conv/first_layer.h"
#include "cpu/conv/winograd.h"
#include "cpu/gemm/gemm.h"
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
void pack_col_block(const ConvGeometry& g, const float* xg, int64_t t0, int64_t kc, const Run* runs, int64_t n_runs,
                    int64_t ncols, int nr, int64_t panel_floats, float* dst) {
  const int64_t rs = g.r * g.s;
  const int64_t last_panel = (ncols - 1) / nr;
  const int64_t tail = ncols - last_panel * nr;  // valid columns of the last panel
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
      if (g.stride_w == 1) {
        const int64_t lo = std::clamp<int64_t>(-iw, 0, len), hi = std::clamp<int64_t>(g.w - iw, lo, len);
        std::fill(out, out + lo, 0.0f);
        const float* src = xrow + iw;
        for (int64_t e = lo; e < hi; ++e) out[e] = src[e];
        std::fill(out + hi, out + len, 0.0f);
      } else {
        const int64_t sw = g.stride_w;
        // Positions e with 0 <= iw + e * sw < w.
        const int64_t lo = std::clamp<int64_t>(iw >= 0 ? 0 : ceil_div(-iw, sw), 0, len);
        const int64_t hi = std::clamp<int64_t>(g.w - iw > 0 ? ceil_div(g.w - iw, sw) : 0, lo, len);
        std::fill(out, out + lo, 0.0f);
        for (int64_t e = lo; e < hi; ++e) out[e] = xrow[iw + e * sw];
        std::fill(out + hi, out + len, 0.0f);
      }
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

}  // namespace

ConvForwardRoute conv2d_forward_route(const ConvGeometry& g) {
  if (g.n == 0 || g.k == 0 || g.p * g.q == 0) return ConvForwardRoute::none;
  // Depthwise: one input plane per output plane, a GEMM of one row per
  // group; memory-bound, so a kernel of its own (depthwise.h).
  if (is_depthwise(g)) return ConvForwardRoute::depthwise;
  if (g.c / g.groups * g.r * g.s == 0) return ConvForwardRoute::none;
  if (conv_forward_winograd_applies(g)) return ConvForwardRoute::winograd;
  if (few_positions_large_weight(g)) return ConvForwardRoute::implicit_gemm;
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
  return route == ConvForwardRoute::implicit_gemm ||
         (route == ConvForwardRoute::taps && conv_forward_taps_applies(g)) ||
         (route == ConvForwardRoute::first_layer && conv_forward_first_layer_accepts(g));
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
    case ConvForwardRoute::first_layer: return conv2d_forward_first_layer(g, x, weight, ep, y);
    case ConvForwardRoute::winograd: return conv2d_forward_winograd(g, x, weight, ep, y);
    case ConvForwardRoute::taps: return conv2d_forward_taps(g, x, taps_weight_of(g, weight), ep, taps_output_of(g, y));
    case ConvForwardRoute::implicit_gemm: break;
  }
  const int64_t npix = g.p * g.q;
  const int64_t kg = g.k / g.groups, cg = g.c / g.groups;
  const int64_t kdim = cg * g.r * g.s;
  const GemmKernels& kern = gemm_kernels();
  const GemmBlocking& blk = kern.blocking;
  const int mr = blk.mr, nr = blk.nr;

  // K blocks of equal size (<= kc): a short last block would waste a pass.
  const int64_t k_blocks = ceil_div(kdim, blk.kc);
  const int64_t kc = ceil_div(kdim, k_blocks);
  // Column blocks of equal size in whole panels (<= nc).
  const int64_t col_blocks = ceil_div(npix, blk.nc);
  const int64_t nc = ceil_div(ceil_div(npix, col_blocks), nr) * nr;
  const int64_t n_col_blocks = ceil_div(npix, nc);

  // Threads split the (image, group, column block) units; when there are
  // fewer units than threads, the team takes them one at a time instead,
  // packing each unit's B blocks together (a share of the rows each) and
  // splitting its A panels: at N = 1 a layer of 7x7 or 14x14 positions is
  // one unit, and each thread repacking all of it cost a tenth of the call.
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
  float* b_blocks = gemm_scratch(1, col_is_x ? 0 : team_units ? k_blocks * kc * nc : nt_max * kc * nc);
  const int64_t max_runs = nc;  // each run holds at least one of the block's columns
  // Kept per calling thread and grown on demand, as the scratch above, so
  // that a small convolution allocates nothing; the team reaches it through
  // `runs_all` (each thread's own thread_local would be another vector).
  static thread_local std::vector<Run> runs_kept;
  if (runs_kept.size() < static_cast<size_t>(nt_max * max_runs)) runs_kept.resize(static_cast<size_t>(nt_max * max_runs));
  Run* const runs_all = runs_kept.data();

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

  // A panels [ip_begin, ip_end) of unit u over all K blocks, their B blocks
  // x itself (col_is_x), or packed at b_base (block b at b_base + b * kc *
  // nc), or, when `pack`, packed there first one at a time (b_base then
  // holds one).
  auto compute = [&](int64_t u, int64_t ip_begin, int64_t ip_end, float* b_base, bool pack, Run* runs) {
    const auto [gi, j0, ncols, xg] = unit_at(u);
    float* yg = y + (u / (n_col_blocks * g.groups) * g.k + gi * kg) * npix + j0;
    pack = pack && !col_is_x;
    const int64_t n_runs = pack ? make_runs(g, j0, ncols, nr, runs) : 0;
    const int64_t col_panels = ceil_div(ncols, nr);
    for (int64_t b = 0; b < k_blocks; ++b) {
      const int64_t p0 = b * kc, kcur = std::min(kc, kdim - p0);
      const float* b_block = col_is_x ? xg + p0 * npix + j0 : pack ? b_base : b_base + b * kc * nc;
      const int64_t ldb = col_is_x ? npix : nr, panel_floats = col_is_x ? nr : kcur * nr;
      if (pack) pack_col_block(g, xg, p0, kcur, runs, n_runs, ncols, nr, kcur * nr, b_base);
      const TileUpdate update{1.0f, 0.0f, b == 0, nullptr};
      const bool last = b + 1 == k_blocks;
      for (int64_t ip = ip_begin; ip < ip_end; ++ip) {
        const float* a_rows = weight + (gi * kg + ip * mr) * kdim + p0;
        const int rows = static_cast<int>(std::min<int64_t>(mr, kg - ip * mr));
        float* c = yg + ip * mr * npix;
        for (int64_t jp = 0; jp < col_panels; ++jp) {
          kern.ukernel_a_rows(kcur, a_rows, kdim, b_block + jp * panel_floats, ldb, col_is_x, c + jp * nr, npix, rows,
                              static_cast<int>(std::min<int64_t>(nr, ncols - jp * nr)), update);
        }
        if (last && (ep.bias != nullptr || ep.activate)) {
          finish_rows(c, npix, rows, ncols, ep.bias != nullptr ? ep.bias + gi * kg + ip * mr : nullptr, ep);
        }
      }
    }
  };

  parallel(threads, [&](int t, int nt) {
    Run* runs = runs_all + t * max_runs;
    if (!team_units) {
      for (int64_t u = units * t / nt; u < units * (t + 1) / nt; ++u) {
        compute(u, 0, a_panels, col_is_x ? nullptr : b_blocks + t * kc * nc, true, runs);
      }
      return;
    }
    for (int64_t u = 0; u < units; ++u) {
      if (col_is_x) {
        compute(u, a_panels * t / nt, a_panels * (t + 1) / nt, nullptr, false, runs);
        continue;
      }
      // This thread's rows [r0, r1) of the unit's `col`, into every K block they meet.
      const auto [gi, j0, ncols, xg] = unit_at(u);
      const int64_t n_runs = make_runs(g, j0, ncols, nr, runs);
      const int64_t r0 = kdim * t / nt, r1 = kdim * (t + 1) / nt;
      for (int64_t b = r0 / kc; b < k_blocks && b * kc < r1; ++b) {
        const int64_t p0 = b * kc, kcur = std::min(kc, kdim - p0);
        const int64_t lo = std::max(r0, p0), hi = std::min(r1, p0 + kcur);
        pack_col_block(g, xg, lo, hi - lo, runs, n_runs, ncols, nr, kcur * nr, b_blocks + b * kc * nc + (lo - p0) * nr);
      }
#pragma omp barrier
      compute(u, a_panels * t / nt, a_panels * (t + 1) / nt, b_blocks, false, runs);
      // The next unit's packing overwrites this one's B.
#pragma omp barrier
    }
  });
}

}  // namespace minidnn::cpu
