// The two backward passes of conv2d (conv.h): grad_x, which is also the
// forward of the transposed convolution, and grad_weight / grad_bias, on the
// project's SGEMM microkernel (gemm.h) with cache-sized tiles, never a full
// im2col buffer.
//
// Backward data, per image n and group: grad_col[(c, r, s), (p, q)] =
// W_g^T x grad_y_n, then each column entry is added (col2im) to the input
// position its tap read. Work units are (span of images, group, block of
// input channels): a unit owns those grad_x planes, computes its rows of
// grad_col a tile of output positions (of the span's images in a row) at a
// time and scatters them before the next tile, so no two threads write one
// element.
//
// The routes of backward data, in the order conv2d_backward_data_route
// tries them: depthwise (direct loops, below); 1x1 stride-1 unpadded (one
// GEMM); Winograd (below); the stride phases (backward_data_phases: grad_x
// as stride_h x stride_w stride-1 convolutions of grad_y on the forward's
// tap route, no col2im; its rule, backward_data_phases_apply, takes
// stride-1 grouped layers and the strided layers where it measured
// faster); everything else the general route above.
//
// 3x3 stride-1 undilated convolutions with groups 1 and enough channels and
// tiles take the forward's Winograd route instead (winograd.h): their
// backward data is such a convolution of grad_y with the rotated kernel.
//
// Backward weight, per group: grad_W_g[k, (c, r, s)] = sum over images and
// output positions of grad_y[k, (p, q)] x im2col(x)[(c, r, s), (p, q)]: a
// GEMM whose reduction runs over the output positions, one GEMM per tile of
// positions (of every image in turn) on that tile's im2col rows,
// accumulated in a fixed order. Stride-1 grouped convolutions skip the
// im2col: one GEMM per tap on the padded grid of the input
// (backward_weight_taps).
//
// Units, tiles and the order of every sum depend on the shape (and on the
// ISA's tile size) only, so the results are bit-identical for any thread
// count. 1x1 stride-1 convolutions without padding are plain GEMMs on the
// tensors as they lie; depthwise convolutions (one input channel per group),
// where the GEMM would have only the channel multiplier as one extent, are
// direct loops over each tap's window, vectorized by the row kernels of
// conv_rows.h (they are bound by memory, not arithmetic).
#include <algorithm>
#include <cstdint>
#include <exception>
#include <numeric>
#include <vector>

#include "cpu/conv/conv.h"
#include "cpu/conv/conv_blocking.h"
#include "cpu/conv/conv_forward_taps.h"
#include "cpu/conv/conv_rows.h"
#include "cpu/conv/first_layer.h"
#include "cpu/conv/winograd.h"
#include "cpu/gemm/gemm.h"
#include "runtime/scratch.h"
#include "runtime/threads.h"

namespace minidnn::cpu {
namespace {

// Multiply-adds worth waking a thread for.
constexpr int64_t kGrain = int64_t{1} << 16;

// Rows (c, r, s) of grad_col per unit of backward data: blocks of input
// channels of about this many taps keep a unit's grad_col tile in L2
// (256 x 256 floats = 256 KB) while giving threads several units per image.
constexpr int64_t kTargetTapRows = 256;
// Output positions per grad_col tile (backward data).
constexpr int64_t kTileColumns = 256;
// Floats of an im2col tile (backward weight) when the taps are few enough
// for two K blocks of the GEMM in it: about 1 MB, within L2.
constexpr int64_t kIm2colTileFloats = int64_t{1} << 18;
// Positions of an im2col tile (backward weight) otherwise: measured on
// ResNet-50's 3x3 layers at N = 8 (1 thread, avx512, ms at 196 / 256 /
// 384 / 768 positions a tile; a tile spans images): 7x7 512 13.0-13.8 /
// 13.4-14.0 / 13.8-14.0 / 16.8-16.9, 14x14 256 13.0-13.6 / 13.0-13.7 /
// 14.3-14.6 / 15.3-15.7, 56x56 64 17.8-18.7 / 17.7-17.8 / 19.4-19.9 /
// 20.7-21.7; 150 and below slower again (the GEMM's C, grad_W, read and
// written once a tile). A 14x14 x 2304-tap tile of 196 positions is 1.8 MB.
constexpr int64_t kTilePositions = 256;

// The outputs o whose tap reads index o * stride + tap_offset inside
// [0, size): exactly [*first, *last), clipped to [0, outputs).
void valid_outputs(int64_t tap_offset, int64_t stride, int64_t size, int64_t outputs, int64_t* first, int64_t* last) {
  // o * stride + tap_offset >= 0  <=>  o >= ceil(-tap_offset / stride)
  int64_t lo = tap_offset >= 0 ? 0 : (-tap_offset + stride - 1) / stride;
  // o * stride + tap_offset < size  <=>  o < ceil((size - tap_offset) / stride)
  int64_t hi = size - tap_offset <= 0 ? 0 : (size - tap_offset + stride - 1) / stride;
  lo = std::min(lo, outputs);
  hi = std::min(hi, outputs);
  *first = lo;
  *last = std::max(lo, hi);
}

// Splits `count` items into equal blocks of at most about `target`.
int64_t block_size(int64_t count, int64_t target) {
  if (count <= 0) return 1;
  const int64_t blocks = ceil_div(count, std::max<int64_t>(target, 1));
  return ceil_div(count, blocks);
}

// Input channels per unit: about kTargetTapRows taps.
int64_t channel_block(const ConvGeometry& g) {
  return block_size(g.c / g.groups, std::max<int64_t>(1, kTargetTapRows / (g.r * g.s)));
}

bool is_plain_1x1(const ConvGeometry& g) {
  return g.r == 1 && g.s == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_top == 0 && g.pad_left == 0 &&
         g.p == g.h && g.q == g.w;
}

// Calls visit(m, j, ih, iw0, count, rows) for every window of the tap rows
// [m_begin, m_end) (m = (c - c_first) * R * S + r * S + s) and output
// positions [j_begin, j_end) (j = p * Q + q) that reads the input: for
// i < rows, positions j + i * Q .. j + i * Q + count - 1 read input row
// ih + i * stride_h of channel c, columns iw0, iw0 + stride_w, ...; the
// other positions read padding. Output rows wholly inside the range come
// as one window, the partial rows at its ends as windows of one row.
template <class Visit>
void for_each_tap_window(const ConvGeometry& g, int64_t m_begin, int64_t m_end, int64_t j_begin, int64_t j_end,
                         const Visit& visit) {
  const int64_t rs = g.r * g.s;
  for (int64_t m = m_begin; m < m_end; ++m) {
    const int64_t r = m % rs / g.s, s = m % g.s;
    int64_t p0, p1, q0, q1;
    valid_outputs(r * g.dil_h - g.pad_top, g.stride_h, g.h, g.p, &p0, &p1);
    valid_outputs(s * g.dil_w - g.pad_left, g.stride_w, g.w, g.q, &q0, &q1);
    if (q0 >= q1) continue;
    const int64_t p_end = std::min(p1, (j_end - 1) / g.q + 1);
    for (int64_t p = std::max(p0, j_begin / g.q); p < p_end;) {
      const int64_t qa = std::max(q0, j_begin - p * g.q), qb = std::min(q1, j_end - p * g.q);
      int64_t rows = 1;
      if (qa == q0 && qb == q1) rows = std::min(p_end, (j_end - q1) / g.q + 1) - p;  // every whole row from p on
      if (qa < qb) {
        visit(m, p * g.q + qa, p * g.stride_h - g.pad_top + r * g.dil_h, qa * g.stride_w - g.pad_left + s * g.dil_w,
              qb - qa, rows);
      }
      p += rows;
    }
  }
}

// ---------------------------------------------------------------------------
// Backward data.
// ---------------------------------------------------------------------------

// Depthwise passes with a column stride: each input plane is handled as
// stride_w column phases (phase f: columns f, f + stride_w, ...), each
// stored contiguous, so that a tap's window is contiguous in its phase and
// the row kernels apply. Tap column s reads phase `phase`, at phase column
// q + shift for output column q.
struct PhaseColumn {
  int64_t phase, shift;
};

PhaseColumn phase_column(const ConvGeometry& g, int64_t s) {
  const int64_t offset = s * g.dil_w - g.pad_left;  // input column of output column 0
  const int64_t phase = (offset % g.stride_w + g.stride_w) % g.stride_w;
  return PhaseColumn{phase, (offset - phase) / g.stride_w};
}

// The window of tap (r, s) over one depthwise plane, for every tap that
// meets the input: visit(tap, gy_offset, x_offset, x_ld, height, width), where
// grad_y's window starts at gy_offset (row stride q) and the input's at
// x_offset with row stride x_ld, in the plane itself when stride_w == 1 and
// in its column phases (phase_w columns per row) otherwise.
template <class Visit>
void for_each_depthwise_tap(const ConvGeometry& g, int64_t phase_w, Visit visit) {
  for (int64_t r = 0; r < g.r; ++r) {
    int64_t p0, p1;
    valid_outputs(r * g.dil_h - g.pad_top, g.stride_h, g.h, g.p, &p0, &p1);
    if (p0 >= p1) continue;
    const int64_t ih0 = p0 * g.stride_h - g.pad_top + r * g.dil_h;
    for (int64_t s = 0; s < g.s; ++s) {
      int64_t q0, q1;
      valid_outputs(s * g.dil_w - g.pad_left, g.stride_w, g.w, g.q, &q0, &q1);
      if (q0 >= q1) continue;
      const int64_t gy_offset = p0 * g.q + q0;
      if (g.stride_w == 1) {
        visit(r * g.s + s, gy_offset, ih0 * g.w + q0 - g.pad_left + s * g.dil_w, g.stride_h * g.w, p1 - p0, q1 - q0);
      } else {
        const PhaseColumn pc = phase_column(g, s);
        visit(r * g.s + s, gy_offset, (pc.phase * g.h + ih0) * phase_w + q0 + pc.shift, g.stride_h * phase_w, p1 - p0,
              q1 - q0);
      }
    }
  }
}

// grad_x of a depthwise convolution: each input channel gathers from its
// multiplier's output channels, one axpy per tap over the tap's window
// (into the column phases when stride_w > 1, interleaved at the end).
void backward_data_depthwise(const ConvGeometry& g, const float* grad_y, const float* weight, float* grad_x) {
  const int64_t kg = g.k / g.groups, hw = g.h * g.w, pq = g.p * g.q, rs = g.r * g.s;
  const int64_t planes = g.n * g.c;
  const int64_t phase_w = ceil_div(g.w, g.stride_w);  // columns of a phase
  const int64_t phase_floats = g.stride_w > 1 ? g.stride_w * g.h * phase_w : 0;
  const int threads = threads_for(planes * hw * kg * rs, kGrain);
  float* phases_all = phase_floats > 0 ? gemm_scratch(0, threads * phase_floats) : nullptr;
  const ConvRowKernels& rows = conv_row_kernels();
  parallel(threads, [&](int t, int nt) {
    float* phases = phases_all + t * phase_floats;
    for (int64_t plane = planes * t / nt; plane < planes * (t + 1) / nt; ++plane) {
      const int64_t n = plane / g.c, c = plane % g.c;
      float* gx = grad_x + plane * hw;
      // Taps accumulate into the plane, or into its column phases when stride_w > 1.
      float* dst_plane = g.stride_w > 1 ? phases : gx;
      std::fill(dst_plane, dst_plane + (g.stride_w > 1 ? phase_floats : hw), 0.0f);
      for (int64_t kk = 0; kk < kg; ++kk) {
        const int64_t k = c * kg + kk;
        const float* gy = grad_y + (n * g.k + k) * pq;
        const float* wk = weight + k * rs;
        for_each_depthwise_tap(g, phase_w, [&](int64_t tap, int64_t gy_offset, int64_t x_offset, int64_t ld, int64_t height,
                                            int64_t width) {
          rows.axpy(dst_plane + x_offset, ld, gy + gy_offset, g.q, wk[tap], height, width);
        });
      }
      for (int64_t f = 0; f < g.stride_w && g.stride_w > 1; ++f) {
        for (int64_t ih = 0; ih < g.h; ++ih) {
          const float* src = phases + (f * g.h + ih) * phase_w;
          float* dst = gx + ih * g.w + f;
          for (int64_t col = 0; col * g.stride_w + f < g.w; ++col) dst[col * g.stride_w] = src[col];
        }
      }
    }
  });
}

// grad_x (N, C, H, W) += bias[c].
void add_channel_bias(const ConvGeometry& g, const float* bias, float* grad_x) {
  const int64_t hw = g.h * g.w;
  parallel_for(threads_for(g.n * g.c * hw, kGrain), g.n * g.c, [&](int64_t plane) {
    float* dst = grad_x + plane * hw;
    const float b = bias[plane % g.c];
    for (int64_t e = 0; e < hw; ++e) dst[e] += b;
  });
}

// grad_x of a 1x1 stride-1 convolution without padding: per image and group
// grad_x_g (C/groups x HW) = W_g^T x grad_y_g, either a GEMM per image
// straight into grad_x (the GEMM splits its output across threads) or, on
// the SIMD paths, the forward's tap route on grad_y with the weight's
// channel axes swapped as it lies (as the stride phases read it), the bias
// added in its store, all images in one team. The GEMM packs each image of
// grad_y (its B, K/groups x HW, a copy from memory) for C/groups output
// rows, and all of W^T again for each image; the tap route reads grad_y in
// place. Measured (N=8, 1 thread, loaded machine, ms, GEMM / taps):
// 56x56 64->256 5.33 / 5.04, 256->64 4.98 / 5.77; 28x28 128->512 5.17 /
// 4.88, 512->128 4.50 / 4.73; 14x14 256->1024 4.99 / 4.55, 1024->256 5.13 /
// 4.71. So the GEMM keeps the layers whose pack of grad_y serves more
// output rows than it has rows (C/groups > K/groups) on large images. On
// small ones (kTapsMaxPositions) the repack of W^T per image is a larger
// share (a GEMM of HW columns per C x K floats packed), and the split of
// few columns between the threads is uneven (196 = 6 x 32 + 4: the last
// panel costs as much as a full one): measured on Zen 4 (the whole
// backward, N=8, 2 threads, ms, GEMM / taps), 14x14 1024->256 9.9 / 9.0,
// 7x7 2048->512 15.6 / 13.2 (1 thread: 17.8 / 17.8, 24.8 / 23.5), while
// 28x28 512->128 and 56x56 256->64 tie there (8.8 / 8.6, 9.0 / 8.9). On the
// portable path the tap route was 1.5x slower than the GEMM.
constexpr int64_t kTapsMaxPositions = 256;

bool backward_data_1x1_on_taps(const ConvGeometry& g) {
  return gemm_kernels().blocking.lanes > 1 && (g.c <= g.k || g.h * g.w <= kTapsMaxPositions);
}

void backward_data_1x1(const ConvGeometry& g, const float* grad_y, const float* weight, const float* bias,
                       float* grad_x) {
  const int64_t cg = g.c / g.groups, kg = g.k / g.groups, hw = g.h * g.w;
  const GemmKernels& kern = gemm_kernels();
  if (backward_data_1x1_on_taps(g)) {
    // Output channel c of the group and input channel k' read weight[gi kg + k', c].
    const TapsWeight swapped{weight, kg * cg, 1, cg, 0, 0};
    ConvEpilogue ep;
    ep.bias = bias;
    const ConvGeometry as_forward = backward_data_as_convolution(g);
    conv2d_forward_taps(as_forward, grad_y, swapped, ep, taps_output_of(as_forward, grad_x));
    return;
  }
  for (int64_t n = 0; n < g.n; ++n) {
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      kern.gemm(cg, hw, kg, 1.0f, GemmOperand{weight + grp * kg * cg, cg, true},
                GemmOperand{grad_y + (n * g.k + grp * kg) * hw, hw, false}, 0.0f,
                grad_x + (n * g.c + grp * cg) * hw, hw, GemmEpilogue{});
    }
  }
  if (bias != nullptr) add_channel_bias(g, bias, grad_x);
}

// The general route (see the top of the file).
void backward_data_gemm(const ConvGeometry& g, const float* grad_y, const float* weight, const float* bias,
                        float* grad_x) {
  const GemmKernels& kern = gemm_kernels();
  const int mr = kern.blocking.mr, nr = kern.blocking.nr;
  const int64_t kc = kern.blocking.kc;
  const int64_t cg = g.c / g.groups, kg = g.k / g.groups;
  const int64_t rs = g.r * g.s, hw = g.h * g.w, pq = g.p * g.q;
  const int64_t cb = channel_block(g);
  const int64_t blocks = ceil_div(cg, cb);
  const int64_t a_panels = ceil_div(cb * rs, mr);   // A panels of a full channel block
  const int64_t a_unit = kg * a_panels * mr;         // packed W^T floats of one (group, block)
  // Column tiles run over the positions of all the images in a row, across
  // image boundaries: DCGAN's 4x4/2 grad_x from 14 x 14 positions filled 6
  // panels of 32 columns and one of 4 an image, the last costing half a
  // full one (6% of the layer's time at batch 8); 8 images' 1568 columns
  // fill 49. The tiles' bounds depend on the shape alone: a grad_x element
  // sums its contributions tile by tile, so the order of that sum is the
  // same for any thread count. Where whole panels can hold whole output
  // rows (DCGAN's 14: 224 columns), a tile does, so that col2im meets each
  // image's stretch of it as one window a tap rather than up to three.
  const int64_t columns = g.n * pq;
  const int64_t rows_in_panels = std::lcm<int64_t>(nr, g.q);
  const int64_t tile = std::min(rows_in_panels <= kTileColumns ? kTileColumns / rows_in_panels * rows_in_panels
                                                               : kTileColumns,
                                ceil_div(columns, nr) * nr);
  const int threads = threads_for(g.n * g.c * rs * kg * pq, kGrain * 4);
  // Work units: (span of images, group, channel block), a unit owning its
  // grad_x planes. A thread takes consecutive units; those of one span and
  // group share each packed grad_y tile. Spans: one a thread where the
  // images allow (a thread then packs its own images' grad_y alone; DCGAN
  // at batch 8 measured a little faster than one span whose channel
  // blocks the threads split), more where that leaves the threads unequal
  // shares of units (and fewer than 8 each).
  const int64_t units_per_span = g.groups * blocks;
  int64_t spans = std::min<int64_t>(std::max<int64_t>(g.n, 1), threads);
  while (spans < g.n && spans * units_per_span % threads != 0 && spans * units_per_span < 8 * threads) ++spans;
  const int64_t units = spans * units_per_span;
  const ConvRowKernels& row_kernels = conv_row_kernels();
  // Per thread: the grad_col tile (cb R S rows x tile) and the packed
  // grad_y block (kc x tile). Both scratch buffers come from the calling
  // thread, before the parallel regions, so that a failed allocation throws
  // here and not inside OpenMP.
  const int64_t col_floats = a_panels * mr * tile, b_floats = kc * tile;
  float* packed_w = gemm_scratch(0, g.groups * blocks * a_unit);
  float* scratch = gemm_scratch(1, threads * (col_floats + b_floats));

  // W^T packed once: per (group, channel block), per K block of kc output
  // channels, A panels of mr taps (c, r, s): element (tap i, channel p) at
  // [p * mr + i]. The taps of one output channel lie contiguous in the
  // weight, so each k step copies mr floats, one copy run of the row
  // kernels (a masked load and store) where mr fits a vector. The output
  // channels go in the outer loop, so that the weight is read along its
  // rows: a panel at a time, the reads went cg R S floats apart (8 KB for
  // DCGAN's 128 x 4 x 4) and missed the cache on each; that, and one float
  // a copy, was a fifth of that layer's time at batch 1. The GEMM's own
  // pack_a reads a transposed A that way too (measured slower still).
  // Runs per block: [0, a_panels) for a full one, then the last one's.
  std::vector<ConvCopyRun> runs(2 * a_panels);
  for (int64_t last = 0; last < 2; ++last) {
    const int64_t m_count = last == 1 ? (cg - (blocks - 1) * cb) * rs : cb * rs;
    for (int64_t i = 0; i < a_panels; ++i) {
      const int32_t rows = static_cast<int32_t>(std::clamp<int64_t>(m_count - i * mr, 0, mr));
      runs[last * a_panels + i] = ConvCopyRun{i * mr, i * mr * std::min(kc, kg), 0, rows, mr};
    }
  }
  const bool vector_runs = mr <= row_kernels.lanes;
  parallel_for(threads_for(g.groups * blocks * a_unit, kGrain), g.groups * blocks, [&](int64_t gb) {
    const int64_t grp = gb / blocks, blk = gb % blocks, m0 = blk * cb * rs;
    const ConvCopyRun* block_runs = runs.data() + (blk + 1 == blocks ? a_panels : 0);
    float* dst = packed_w + gb * a_unit;
    for (int64_t pc = 0; pc < kg; pc += kc) {
      const int64_t kcb = std::min(kc, kg - pc);
      for (int64_t p = 0; p < kcb; ++p) {
        const float* src = weight + (grp * kg + pc + p) * cg * rs + m0;
        float* panels = dst + pc * a_panels * mr + p * mr;
        if (vector_runs && kcb == std::min(kc, kg)) {
          row_kernels.copy_runs(src, 1, block_runs, a_panels, panels);
          continue;
        }
        for (int64_t i = 0; i < a_panels; ++i) {
          const ConvCopyRun& run = block_runs[i];
          float* panel = panels + i * mr * kcb;
          std::copy(src + run.src, src + run.src + run.hi, panel);
          std::fill(panel + run.hi, panel + mr, 0.0f);
        }
      }
    }
  });

  // One K block: b_block holds the tile's packed grad_y whole, and it serves
  // every channel block of the thread's run (DCGAN's 4x4/2 128 x 14 x 14
  // grad_x: 8 blocks, each read 256 x 196 floats of an image).
  const bool b_whole_tile = kg <= kc;
  parallel(threads, [&](int t, int nt) {
    float* col = scratch + t * (col_floats + b_floats);
    float* b_block = col + col_floats;
    const int64_t u_end = units * (t + 1) / nt;
    for (int64_t u = units * t / nt; u < u_end;) {
      // The run: channel blocks [blk0, blk1) of one span and group.
      const int64_t span = u / units_per_span, grp = u / blocks % g.groups, blk0 = u % blocks;
      const int64_t blk1 = blk0 + std::min(u_end - u, blocks - blk0);
      u += blk1 - blk0;
      const int64_t span_begin = g.n * span / spans * pq, span_end = g.n * (span + 1) / spans * pq;
      const int64_t c_begin = grp * cg + blk0 * cb, c_end = grp * cg + std::min(cg, blk1 * cb);
      for (int64_t ja = span_begin; ja < span_end;) {
        const int64_t jb = std::min(span_end, (ja / tile + 1) * tile);
        const int64_t cols = jb - ja, b_panels = ceil_div(cols, nr);
        // grad_x starts at the bias (in the store, not a pass of its own),
        // each image as the first tile that reaches it begins.
        for (int64_t n = ceil_div(ja, pq); n * pq < jb; ++n) {
          for (int64_t c = c_begin; c < c_end; ++c) {
            float* plane = grad_x + (n * g.c + c) * hw;
            std::fill(plane, plane + hw, bias != nullptr ? bias[c] : 0.0f);
          }
        }
        for (int64_t blk = blk0; blk < blk1; ++blk) {
          const int64_t c0 = grp * cg + blk * cb, m_count = std::min(cb, cg - blk * cb) * rs;
          const float* w_unit = packed_w + (grp * blocks + blk) * a_unit;
          for (int64_t pc = 0; pc < kg; pc += kc) {
            const int64_t kcb = std::min(kc, kg - pc);
            // grad_y rows [pc, pc + kcb) of the tile's columns as B panels
            // (in place, rows pq apart, the microkernel ran at half the
            // speed), an image's stretch of a panel row at a time.
            for (int64_t jp = 0; jp < b_panels && (blk == blk0 || !b_whole_tile); ++jp) {
              const int64_t j_lo = ja + jp * nr, j_hi = std::min(jb, j_lo + nr);
              float* panel = b_block + jp * kcb * nr;
              for (int64_t p = 0; p < kcb; ++p) {
                float* dst = panel + p * nr;
                for (int64_t j = j_lo; j < j_hi;) {
                  const int64_t n = j / pq, stretch = std::min(j_hi, (n + 1) * pq) - j;
                  const float* src = grad_y + (n * g.k + grp * kg + pc + p) * pq + (j - n * pq);
                  // A loop, not std::copy: a call to memmove for each of
                  // these short stretches cost twice the copy (perf).
                  for (int64_t i = 0; i < stretch; ++i) dst[j - j_lo + i] = src[i];
                  j += stretch;
                }
                for (int64_t i = j_hi - j_lo; i < nr; ++i) dst[i] = 0.0f;
              }
            }
            const TileUpdate update{1.0f, 0.0f, pc == 0, nullptr};
            for (int64_t i = 0; i * mr < m_count; ++i) {
              const float* a_panel = w_unit + pc * a_panels * mr + i * mr * kcb;
              const int rows = static_cast<int>(std::min<int64_t>(mr, m_count - i * mr));
              for (int64_t jp = 0; jp < b_panels; ++jp) {
                kern.ukernel(kcb, a_panel, b_block + jp * kcb * nr, nr, false, col + i * mr * tile + jp * nr, tile,
                             rows, static_cast<int>(std::min<int64_t>(nr, cols - jp * nr)), update);
              }
            }
          }
          // col2im: each grad_col entry onto the input position its tap
          // read, an image's stretch of the tile at a time.
          for (int64_t n = ja / pq; n * pq < jb; ++n) {
            const int64_t image_begin = n * pq;
            float* gx = grad_x + (n * g.c + c0) * hw;
            for_each_tap_window(
                g, 0, m_count, std::max(ja, image_begin) - image_begin, std::min(jb, image_begin + pq) - image_begin,
                [&](int64_t m, int64_t j, int64_t ih, int64_t iw0, int64_t count, int64_t rows) {
                  const float* src = col + m * tile + (image_begin + j - ja);
                  float* dst = gx + m / rs * hw + ih * g.w + iw0;
                  const int64_t ldd = g.stride_h * g.w;
                  if (g.stride_w == 1) {
                    row_kernels.axpy(dst, ldd, src, g.q, 1.0f, rows, count);
                  } else if (g.stride_w == 2) {
                    row_kernels.add_stride2(dst, ldd, src, g.q, rows, count);
                  } else {
                    for (int64_t p = 0; p < rows; ++p) {
                      for (int64_t i = 0; i < count; ++i) dst[p * ldd + i * g.stride_w] += src[p * g.q + i];
                    }
                  }
                });
          }
        }
        ja = jb;
      }
    }
  });
}

// grad_x as stride_h x stride_w independent stride-1 convolutions of
// grad_y, one per phase (a, b) of grad_x: rows i = a + stride_h * i', columns
// b + stride_w * j'. Row i receives tap r from grad_y row (i + pad_top -
// r dil_h) / stride_h only where that divides, so phase a sees the taps r
// with r dil_h = a + pad_top (mod stride_h): none, or a progression r0,
// r0 + step, ... with step = stride_h / gcd(stride_h, dil_h), whose grad_y
// rows go down by dil_h / gcd from one tap to the next. So a phase is the
// forward convolution of grad_y (K channels in, C out) with the phase's
// taps flipped (the dilation dil_h / gcd) and the weight's two channel
// axes swapped within each group, P x Q in, phase rows x columns out; it
// runs on the forward's tap route (conv_forward_taps.h), which reads that
// kernel from the weight as it lies (TapsWeight with negative tap steps)
// and stores its tiles straight into every stride-th element of grad_x
// (TapsOutput), the bias added in the same store. A phase with no taps
// (kernel < stride, or a dilation sharing a factor with the stride) is the
// bias alone. No grad_col, no col2im: grad_x is written once, and each
// GEMM reduces over K x the phase's taps instead of K alone.
//
// Where the rule below takes it instead of the general route (GEMM and
// col2im): strided layers where that measured faster (bench/NOTES.md,
// "Transposed convolution by stride phases"), and stride-1 grouped
// convolutions with few channels per group (one phase), where the general
// route reduced over K/groups only per microkernel call and then scattered
// every grad_col entry (ResNeXt's 3x3 with 32 groups of 8 at 28x28, batch
// 8, 1 thread: 7.2 ms there, 5.0 on the tap route). Where the one phase of
// a stride-1 grouped convolution is one conv2d_forward_route sends to the
// first-layer route's direct kernel (few channels a group), it runs there
// instead, as the forward does (phase_runs_direct).
struct PhaseAxis {
  int64_t outputs;     // grad_x rows (columns) of the phase
  int64_t taps;        // kernel taps that reach them
  int64_t first_tap;   // kernel row (column) of the phase's tap 0: the last of the progression
  int64_t tap_step;    // between the progression's kernel taps
  int64_t dil, pad;    // the phase convolution's dilation and top (left) padding
};

PhaseAxis phase_axis(int64_t phase, int64_t size, int64_t stride, int64_t dil, int64_t pad, int64_t kernel) {
  const int64_t step = stride / std::gcd(stride, dil);
  PhaseAxis axis{phase < size ? ceil_div(size - phase, stride) : 0, 0, 0, step, dil / std::gcd(stride, dil), 0};
  for (int64_t r = 0; r < std::min(kernel, step); ++r) {
    if ((phase + pad - r * dil) % stride != 0) continue;
    axis.taps = ceil_div(kernel - r, step);
    axis.first_tap = r + (axis.taps - 1) * step;
    // Phase output i', tap t' (kernel tap first_tap - t' step) reads grad_y
    // row i' + (phase + pad - first_tap dil) / stride + t' dil / gcd.
    axis.pad = -(phase + pad - axis.first_tap * dil) / stride;
    break;
  }
  return axis;
}

// The phase (a, b) convolution (see above); taps r x s are zero where none reach it.
ConvGeometry phase_geometry(const ConvGeometry& g, const PhaseAxis& rows, const PhaseAxis& cols) {
  return ConvGeometry{g.n,     g.k,      g.p,      g.q,      g.c,      rows.outputs, cols.outputs, rows.taps,
                      cols.taps, 1,      1,        rows.dil, cols.dil, rows.pad,     cols.pad,     g.groups};
}

// Calls visit(a, b, rows, cols) for every phase of grad_x that has outputs.
template <class Visit>
void for_each_phase(const ConvGeometry& g, const Visit& visit) {
  for (int64_t a = 0; a < g.stride_h; ++a) {
    const PhaseAxis rows = phase_axis(a, g.h, g.stride_h, g.dil_h, g.pad_top, g.r);
    for (int64_t b = 0; b < g.stride_w; ++b) {
      const PhaseAxis cols = phase_axis(b, g.w, g.stride_w, g.dil_w, g.pad_left, g.s);
      if (rows.outputs * cols.outputs > 0) visit(a, b, rows, cols);
    }
  }
}

// The one phase of a stride-1 grouped convolution (g's phase pg) on the
// first-layer route (first_layer.h), which writes plain NCHW: the phase's
// output is grad_x itself at stride 1.
bool phase_runs_direct(const ConvGeometry& g, const ConvGeometry& pg) {
  return g.stride_h == 1 && g.stride_w == 1 && pg.groups > 1 && conv_forward_first_layer_applies(pg);
}

// Whether backward data runs as phases (see above). Stride 1, grouped:
// always where the tap or the first-layer route takes the one phase. Strided: where it
// measured faster than the general route (bench/NOTES.md, "Transposed
// convolution by stride phases"; 1 thread, avx512, ms, phases / general):
// * at least a full microkernel tile of output channels (C/groups >= mr):
//   the tap route's tile is mr output channels high, and with fewer most of
//   each microkernel call is wasted where the general route's GEMM has
//   C/groups x R x S rows (DCGAN's last layer, 4x4/2 64 -> 3 at 32x32,
//   batch 8: 1.64 / 0.49);
// * at most 1/32 of the tap route's computed columns dropped in every
//   phase ((S' - 1) dil' of each grid row of Q' + (S' - 1) dil'): the
//   dropped columns cost about what col2im does. DCGAN's 4x4/2 256 -> 128
//   at 14x14 (phases of 14 columns, 1/15 dropped) lost, 1.78 / 1.50 at
//   batch 1 and 11.5 / 10.9 at batch 8; a 3x3/2 128 -> 64 at 112x112 grad_x
//   (56 columns) won, 8.3 / 9.6;
// * a phase of more than one tap: where no phase has two (kernel <= stride,
//   the taps do not overlap), col2im adds nothing up, it copies, and the
//   phases lost (2x2/2 128 -> 64 at 28x28, batch 8: 3.89 / 3.34; a 1x1/2
//   256 -> 512 grad_x at 56x56: 12.5 / 11.7).
bool backward_data_phases_apply(const ConvGeometry& g) {
  if (g.c == g.groups || (g.stride_h == 1 && g.stride_w == 1 && g.groups == 1)) return false;
  const bool strided = g.stride_h > 1 || g.stride_w > 1;
  if (strided && g.c / g.groups < gemm_kernels().blocking.mr) return false;
  bool all_apply = true, taps_overlap = false;
  for_each_phase(g, [&](int64_t, int64_t, const PhaseAxis& rows, const PhaseAxis& cols) {
    if (rows.taps * cols.taps == 0) return;
    const ConvGeometry pg = phase_geometry(g, rows, cols);
    all_apply = all_apply && (phase_runs_direct(g, pg) ||
                              (conv_forward_taps_applies(pg) && (!strided || 32 * (pg.s - 1) * pg.dil_w <= pg.q)));
    taps_overlap = taps_overlap || pg.r * pg.s > 1;
  });
  return all_apply && (!strided || taps_overlap);
}

void backward_data_phases(const ConvGeometry& g, const float* grad_y, const float* weight, const float* bias,
                          float* grad_x) {
  const int64_t cg = g.c / g.groups, kg = g.k / g.groups, rs = g.r * g.s, hw = g.h * g.w;
  // Phases no tap reaches are the bias alone: all of grad_x is filled with
  // it first, contiguous (a strided fill of those phases alone cost a 1x1/2
  // layer's backward data a fifth more than the general route), and the
  // other phases overwrite their elements.
  bool some_phase_empty = false;
  for_each_phase(g, [&](int64_t, int64_t, const PhaseAxis& rows, const PhaseAxis& cols) {
    some_phase_empty = some_phase_empty || rows.taps * cols.taps == 0;
  });
  if (some_phase_empty) {
    parallel_for(threads_for(g.n * g.c * hw, kGrain), g.n * g.c, [&](int64_t plane) {
      std::fill(grad_x + plane * hw, grad_x + (plane + 1) * hw, bias != nullptr ? bias[plane % g.c] : 0.0f);
    });
  }
  for_each_phase(g, [&](int64_t a, int64_t b, const PhaseAxis& rows, const PhaseAxis& cols) {
    if (rows.taps * cols.taps == 0) return;
    // Phase output channel c (of group gi, c - gi cg within it) and input
    // channel k' of the group read weight[gi kg + k', c - gi cg, r, s].
    const TapsWeight phase_weight{weight + rows.first_tap * g.s + cols.first_tap, kg * cg * rs, rs, cg * rs,
                                  -rows.tap_step * g.s, -cols.tap_step};
    const TapsOutput out{grad_x + a * g.w + b, g.c * hw, hw, g.stride_h * g.w, g.stride_w};
    ConvEpilogue ep;
    ep.bias = bias;
    const ConvGeometry pg = phase_geometry(g, rows, cols);
    if (phase_runs_direct(g, pg)) {
      conv2d_forward_first_layer(pg, grad_y, phase_weight, ep, grad_x);
    } else {
      conv2d_forward_taps(pg, grad_y, phase_weight, ep, out);
    }
  });
}

// ---------------------------------------------------------------------------
// Backward weight.
// ---------------------------------------------------------------------------

// grad_bias[k]: grad_y summed over the positions of each image, then over
// the images in order.
void backward_bias(const ConvGeometry& g, const float* grad_y, float* grad_bias) {
  const int64_t pq = g.p * g.q;
  const ConvRowKernels& rows = conv_row_kernels();
  parallel_for(threads_for(g.n * g.k * pq, kGrain), g.k, [&](int64_t k) {
    float total = 0.0f;
    for (int64_t n = 0; n < g.n; ++n) total += rows.sum(grad_y + (n * g.k + k) * pq, pq, 1, pq);
    grad_bias[k] = total;
  });
}

// grad_W of a depthwise convolution: per output channel and tap, a dot
// product of grad_y with the tap's window of the input (of its column
// phases when stride_w > 1), summed over images in order. Threads own input
// channels (all of their multiplier's output channels).
void backward_weight_depthwise(const ConvGeometry& g, const float* grad_y, const float* x, float* grad_weight) {
  const int64_t kg = g.k / g.groups, hw = g.h * g.w, pq = g.p * g.q, rs = g.r * g.s;
  const int64_t phase_w = ceil_div(g.w, g.stride_w);
  const int64_t phase_floats = g.stride_w > 1 ? g.stride_w * g.h * phase_w : 0;
  const int threads = threads_for(g.k * rs * g.n * pq, kGrain);
  float* phases_all = phase_floats > 0 ? gemm_scratch(0, threads * phase_floats) : nullptr;
  const ConvRowKernels& rows = conv_row_kernels();
  parallel(threads, [&](int t, int nt) {
    float* phases = phases_all + t * phase_floats;
    for (int64_t c = g.c * t / nt; c < g.c * (t + 1) / nt; ++c) {
      float* gw = grad_weight + c * kg * rs;
      std::fill(gw, gw + kg * rs, 0.0f);
      for (int64_t n = 0; n < g.n; ++n) {
        const float* xc = x + (n * g.c + c) * hw;
        for (int64_t f = 0; f < g.stride_w && g.stride_w > 1; ++f) {
          for (int64_t ih = 0; ih < g.h; ++ih) {
            const float* src = xc + ih * g.w + f;
            float* dst = phases + (f * g.h + ih) * phase_w;
            for (int64_t col = 0; col * g.stride_w + f < g.w; ++col) dst[col] = src[col * g.stride_w];
          }
        }
        for (int64_t kk = 0; kk < kg; ++kk) {
          const float* gy = grad_y + (n * g.k + c * kg + kk) * pq;
          const float* x_plane = g.stride_w > 1 ? phases : xc;
          for_each_depthwise_tap(g, phase_w, [&](int64_t tap, int64_t gy_offset, int64_t x_offset, int64_t ld,
                                              int64_t height, int64_t width) {
            gw[kk * rs + tap] += rows.dot(gy + gy_offset, g.q, x_plane + x_offset, ld, height, width);
          });
        }
      }
    }
  });
}

// grad_W of a 1x1 stride-1 convolution without padding: per group the sum
// over images of grad_y_n (K/groups x HW) x x_n^T (HW x C/groups), one
// product per image accumulating into grad_W in image order.
//
// Both operands are contiguous along the reduction (HW), so the GEMM
// transposes both as it packs them, grad_y (its A: 256 rows of 3136 floats
// at 56x56, 64->256) in a pass of its own before any FMA, read from memory,
// with two barriers of the team per K block (backward at N=8, 1 thread: 9%
// of it). backward_weight_1x1_in_place avoids that where the smaller
// operand, packed whole, fits in L2 (kPackedOperandMaxFloats).
void backward_weight_1x1_gemm(const ConvGeometry& g, const float* grad_y, const float* x, float* grad_weight) {
  const int64_t cg = g.c / g.groups, kg = g.k / g.groups, hw = g.h * g.w;
  const GemmKernels& kern = gemm_kernels();
  for (int64_t n = 0; n < g.n; ++n) {
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      kern.gemm(kg, cg, hw, 1.0f, GemmOperand{grad_y + (n * g.k + grp * kg) * hw, hw, false},
                GemmOperand{x + (n * g.c + grp * cg) * hw, hw, true}, n == 0 ? 0.0f : 1.0f,
                grad_weight + grp * kg * cg, cg, GemmEpilogue{});
    }
  }
}

// The packed operand of backward_weight_1x1_in_place (all of HW, padded to
// whole panels) at most this big: 1 MB, half of an L2, so that it stays
// there while every strip of the other operand streams past it.
constexpr int64_t kPackedOperandMaxFloats = int64_t{1} << 18;

// The per-image product with the larger of the two operands (`rows`: grad_y
// when K/groups >= C/groups, else x) as the microkernel's broadcast operand,
// read in place (ukernel_a_rows: strips of MR rows, each row a stream the
// hardware prefetchers follow, its reads overlapping the FMAs), and only the
// smaller one packed (pack_b over all of HW, once per image). With x as
// `rows` the product is grad_W^T, accumulated in a scratch copy and
// transposed into grad_W after the last image. Threads split the strips
// (and, when the strips are few, the panels of each strip); each tile runs
// all of HW in order on one thread, and the images in order: the sums are
// the same for any thread count.
// Not on the portable path (1 lane), where this route took twice the GEMM's
// time.
bool backward_weight_1x1_in_place_applies(const ConvGeometry& g) {
  const GemmBlocking& blk = gemm_kernels().blocking;
  const int64_t packed_channels = std::min(g.c, g.k) / g.groups;
  return blk.lanes > 1 && ceil_div(packed_channels, blk.nr) * blk.nr * g.h * g.w <= kPackedOperandMaxFloats;
}

void backward_weight_1x1_in_place(const ConvGeometry& g, const float* grad_y, const float* x, float* grad_weight) {
  const int64_t cg = g.c / g.groups, kg = g.k / g.groups, hw = g.h * g.w;
  const GemmKernels& kern = gemm_kernels();
  const GemmBlocking& blk = kern.blocking;
  const bool rows_are_grad_y = kg >= cg;
  const int64_t m = rows_are_grad_y ? kg : cg, n_cols = rows_are_grad_y ? cg : kg;
  const int64_t strips = ceil_div(m, blk.mr), panels = ceil_div(n_cols, blk.nr);
  const int64_t n_padded = panels * blk.nr;
  const int threads = threads_for(kg * cg * hw, kGrain);
  // Panel ranges per strip: enough work items for even shares when the
  // strips are few.
  const int64_t chunks = std::min(panels, ceil_div(4 * threads, strips));
  const int64_t items = strips * chunks;
  float* packed = gemm_scratch(1, n_padded * hw);
  float* transposed = rows_are_grad_y ? nullptr : gemm_scratch(0, m * n_cols);
  for (int64_t grp = 0; grp < g.groups; ++grp) {
    float* const product = rows_are_grad_y ? grad_weight + grp * kg * cg : transposed;
    for (int64_t n = 0; n < g.n; ++n) {
      const float* gy = grad_y + (n * g.k + grp * kg) * hw;
      const float* xn = x + (n * g.c + grp * cg) * hw;
      const float* rows_operand = rows_are_grad_y ? gy : xn;
      kern.pack_b(hw, n_cols, GemmOperand{rows_are_grad_y ? xn : gy, hw, true}, packed);
      parallel(threads, [&](int t, int nt) {
        for (int64_t item = items * t / nt; item < items * (t + 1) / nt; ++item) {
          const int64_t strip = item / chunks, chunk = item % chunks;
          const int64_t i0 = strip * blk.mr;
          const int rows = static_cast<int>(std::min<int64_t>(blk.mr, m - i0));
          const int64_t q_begin = panels * chunk / chunks, q_end = panels * (chunk + 1) / chunks;
          for (int64_t pc = 0; pc < hw; pc += blk.kc) {
            const int64_t kc = std::min(blk.kc, hw - pc);
            const TileUpdate update{1.0f, n == 0 ? 0.0f : 1.0f, pc == 0, nullptr};
            for (int64_t q = q_begin; q < q_end; ++q) {
              const int64_t j0 = q * blk.nr;
              kern.ukernel_a_rows(kc, rows_operand + i0 * hw + pc, hw, packed + pc * n_padded + q * kc * blk.nr,
                                  blk.nr, false, product + i0 * n_cols + j0, n_cols, rows,
                                  static_cast<int>(std::min<int64_t>(blk.nr, n_cols - j0)), update);
            }
          }
        }
      });
    }
    if (!rows_are_grad_y) {
      float* gw = grad_weight + grp * kg * cg;
      for (int64_t k = 0; k < kg; ++k) {
        for (int64_t c = 0; c < cg; ++c) gw[k * cg + c] = transposed[c * kg + k];
      }
    }
  }
}

// im2col rows [m_begin, m_end) x positions [j0, j0 + cols) of image x_n
// (its group's channels), row m at col + (m - m_begin) * ld: the input each
// tap read at each position, zero where it read padding.
void im2col_rows(const ConvGeometry& g, const float* x_n, int64_t m_begin, int64_t m_end, int64_t j0, int64_t cols,
                 float* col, int64_t ld) {
  const int64_t rs = g.r * g.s, hw = g.h * g.w;
  const ConvRowKernels& row_kernels = conv_row_kernels();
  for (int64_t m = m_begin; m < m_end; ++m) std::fill(col + (m - m_begin) * ld, col + (m - m_begin) * ld + cols, 0.0f);
  for_each_tap_window(g, m_begin, m_end, j0, j0 + cols,
                      [&](int64_t m, int64_t j, int64_t ih, int64_t iw0, int64_t count, int64_t rows) {
                        if (g.stride_w == 2) {
                          row_kernels.copy_stride2(col + (m - m_begin) * ld + (j - j0), g.q,
                                                   x_n + m / rs * hw + ih * g.w + iw0, g.stride_h * g.w, rows, count);
                          return;
                        }
                        for (int64_t p = 0; p < rows; ++p) {
                          const float* src = x_n + m / rs * hw + (ih + p * g.stride_h) * g.w + iw0;
                          float* dst = col + (m - m_begin) * ld + (j - j0) + p * g.q;
                          if (g.stride_w == 1) {
                            std::copy(src, src + count, dst);
                          } else {
                            for (int64_t i = 0; i < count; ++i) dst[i] = src[i * g.stride_w];
                          }
                        }
                      });
}

// The general route: per group and tile of the N x P x Q output positions
// (a tile may span images), the tile's im2col rows and grad_y columns are
// gathered, then one GEMM adds grad_y tile x im2col tile^T into grad_W_g
// (it transposes the im2col rows as it packs them). Tiles span images so
// that the GEMM's reduction is a full K block even for small images: with
// one GEMM per image, a 7x7 layer reduced over 49 positions a call and read
// and wrote all of grad_W once per image. Tiles are summed in order and each
// GEMM's result does not depend on the thread count, so neither does grad_W.
//
// Threads: when one tile's GEMM is big enough to split (threads_for on its
// multiply-adds), the threads split the gathering and then the GEMM's
// output, group after group. Grouped convolutions with small groups
// (ResNeXt's 32 groups of 8 channels: 8 x 72 x 256 multiply-adds a tile)
// would then run every GEMM on one thread, so there the threads take
// contiguous shares of the groups instead, each gathering its own tiles and
// running its groups' GEMMs alone (a GEMM called inside the region stays on
// its thread).
void backward_weight_gemm(const ConvGeometry& g, const float* grad_y, const float* x, float* grad_weight) {
  const GemmKernels& kern = gemm_kernels();
  const int64_t kc = kern.blocking.kc;
  const int64_t cg = g.c / g.groups, kg = g.k / g.groups;
  const int64_t hw = g.h * g.w, pq = g.p * g.q, crs = cg * g.r * g.s;
  const int64_t positions = g.n * pq;
  // Positions per tile: with few taps, whole K blocks of the GEMM, as many
  // as keep the im2col tile near kIm2colTileFloats; otherwise
  // kTilePositions. Then evened out over the positions (784 positions as
  // 4 x 196, not 256 x 3 + 16).
  const int64_t tile_max = kIm2colTileFloats / crs >= 2 * kc ? kc * (kIm2colTileFloats / crs / kc) : kTilePositions;
  const int64_t tile = block_size(positions, tile_max);
  const int all_threads = threads_for(saturating_product({g.n, g.k, crs, pq}), kGrain);
  const bool by_group = threads_for(kg * crs * tile, kConvGrain) < all_threads && g.groups >= all_threads;
  const int group_threads = by_group ? all_threads : 1;
  // Not gemm_scratch: the GEMM below uses both of its slots. Per thread of
  // the group split, the im2col rows (crs x tile), then grad_y's
  // (kg x tile); taken here so that a failed allocation throws before any
  // thread starts.
  const int64_t tile_floats = (crs + kg) * tile;
  float* tiles = thread_scratch(ScratchSlot::conv_columns, group_threads * tile_floats);
  // A GEMM inside the group split may still take its packing scratch (its
  // own per-thread slots) on a worker; a failure there is carried out of
  // the region and rethrown.
  std::exception_ptr failure;
  parallel(group_threads, [&](int gt, int ngt) {
    float* col = tiles + gt * tile_floats;
    float* gy_tile = col + crs * tile;
    try {
      for (int64_t grp = g.groups * gt / ngt; grp < g.groups * (gt + 1) / ngt; ++grp) {
        for (int64_t j0 = 0; j0 < positions; j0 += tile) {
          const int64_t cols = std::min(tile, positions - j0);
          const int threads = by_group ? 1 : threads_for((crs + kg) * cols, kGrain);
          parallel(threads, [&](int t, int nt) {
            // Each image's part of the tile: its positions [first, last) at
            // column first - j0.
            for (int64_t n = j0 / pq; n * pq < j0 + cols; ++n) {
              const int64_t first = std::max(j0, n * pq), last = std::min(j0 + cols, (n + 1) * pq);
              const int64_t offset = first - j0;
              im2col_rows(g, x + (n * g.c + grp * cg) * hw, crs * t / nt, crs * (t + 1) / nt, first - n * pq,
                          last - first, col + crs * t / nt * cols + offset, cols);
              const float* gy = grad_y + (n * g.k + grp * kg) * pq + first - n * pq;
              for (int64_t k = kg * t / nt; k < kg * (t + 1) / nt; ++k) {
                std::copy(gy + k * pq, gy + k * pq + (last - first), gy_tile + k * cols + offset);
              }
            }
          });
          kern.gemm(kg, crs, cols, 1.0f, GemmOperand{gy_tile, cols, false}, GemmOperand{col, cols, true},
                    j0 == 0 ? 0.0f : 1.0f, grad_weight + grp * kg * crs, crs, GemmEpilogue{});
        }
      }
    } catch (...) {
#pragma omp critical(minidnn_conv_backward_weight_failure)
      failure = std::current_exception();
    }
  });
  if (failure) std::rethrow_exception(failure);
}

// The weight gradient of a stride-1 grouped convolution on the padded grid
// of conv_forward_taps.cpp, with no im2col: number the outputs along the
// grid's rows (f = p * wp + q) and tap (r, s) of output f reads grid
// element f + r dil_h wp + s dil_w of each channel plane, so per group and
// image
//
//   grad_W_rs[K_g, C_g] += grad_y'[K_g, f] x G[C_g, f + r dil_h wp + s dil_w]^T
//
// one GEMM per tap (the GEMM's dot-product route for few rows: both
// operands row-major along f), with grad_y' grad_y laid on the grid's rows
// (zero in the wp - Q columns that are not outputs). Per image a group
// copies its grid and grad_y' (ResNeXt's 3x3 at 28: 8 x 30 x 30 and
// 8 x 28 x 30 floats) where the im2col route writes 72 x 784, in 28-float
// runs. Threads take contiguous shares of the groups (or, for large
// groups, split each GEMM); a group's images are summed in order into a
// per-tap tile, transposed into grad_W at the end, so the result does not
// depend on the thread count.
bool backward_weight_taps_applies(const ConvGeometry& g) {
  return g.stride_h == 1 && g.stride_w == 1 && g.groups > 1 && g.c != g.groups && g.pad_top >= 0 &&
         g.pad_left >= 0 && g.q + (g.s - 1) * g.dil_w <= 2 * g.q;
}

void backward_weight_taps(const ConvGeometry& g, const float* grad_y, const float* x, float* grad_weight) {
  const GemmKernels& kern = gemm_kernels();
  const int64_t cg = g.c / g.groups, kg = g.k / g.groups, rs = g.r * g.s;
  const int64_t hw = g.h * g.w, pq = g.p * g.q;
  const int64_t wp = g.q + (g.s - 1) * g.dil_w, hp = g.p + (g.r - 1) * g.dil_h;
  const int64_t span = hp * wp;                  // grid floats a channel
  const int64_t outputs = (g.p - 1) * wp + g.q;  // f of the last output + 1: reads end at the grid's end
  const int64_t thread_floats = cg * span + kg * outputs + rs * kg * cg;
  // Threads split the groups when a tap's GEMM is too small to split and
  // there are groups enough (as in backward_weight_gemm); otherwise the
  // groups go in order on the calling thread and each GEMM splits its output.
  const int all_threads = threads_for(saturating_product({g.n, g.k, cg * rs, pq}), kGrain);
  const bool by_group = threads_for(kg * cg * outputs, kConvGrain) < all_threads && g.groups >= all_threads;
  const int threads = by_group ? all_threads : 1;
  // Not gemm_scratch: the GEMMs below may use both of its slots.
  float* buffers = thread_scratch(ScratchSlot::conv_columns, threads * thread_floats);
  // A GEMM may take its packing scratch (its own per-thread slots) on a
  // worker; a failure there is carried out of the region and rethrown.
  std::exception_ptr failure;
  parallel(threads, [&](int t, int nt) {
    float* grid = buffers + t * thread_floats;
    float* gy_grid = grid + cg * span;
    float* sums = gy_grid + kg * outputs;  // per tap, K_g x C_g
    try {
      for (int64_t grp = g.groups * t / nt; grp < g.groups * (t + 1) / nt; ++grp) {
        for (int64_t n = 0; n < g.n; ++n) {
          build_band(g, x + (n * g.c + grp * cg) * hw, cg, 0, span, wp, grid);
          const float* gy = grad_y + (n * g.k + grp * kg) * pq;
          for (int64_t k = 0; k < kg; ++k) {
            for (int64_t p = 0; p < g.p; ++p) {
              float* row = gy_grid + k * outputs + p * wp;
              std::copy(gy + k * pq + p * g.q, gy + k * pq + (p + 1) * g.q, row);
              if (p + 1 < g.p) std::fill(row + g.q, row + wp, 0.0f);
            }
          }
          for (int64_t tap = 0; tap < rs; ++tap) {
            const int64_t shift = tap / g.s * g.dil_h * wp + tap % g.s * g.dil_w;
            kern.gemm(kg, cg, outputs, 1.0f, GemmOperand{gy_grid, outputs, false},
                      GemmOperand{grid + shift, span, true}, n == 0 ? 0.0f : 1.0f, sums + tap * kg * cg, cg,
                      GemmEpilogue{});
          }
        }
        float* gw = grad_weight + grp * kg * cg * rs;
        for (int64_t k = 0; k < kg; ++k) {
          for (int64_t c = 0; c < cg; ++c) {
            for (int64_t tap = 0; tap < rs; ++tap) gw[(k * cg + c) * rs + tap] = sums[(tap * kg + k) * cg + c];
          }
        }
      }
    } catch (...) {
#pragma omp critical(minidnn_conv_backward_weight_failure)
      failure = std::current_exception();
    }
  });
  if (failure) std::rethrow_exception(failure);
}

}  // namespace

ConvBackwardDataRoute conv2d_backward_data_route(const ConvGeometry& g) {
  if (g.n == 0 || g.c == 0 || g.h == 0 || g.w == 0 || g.k / g.groups == 0 || g.p == 0 || g.q == 0) {
    return ConvBackwardDataRoute::none;
  }
  if (g.c == g.groups) return ConvBackwardDataRoute::depthwise;
  if (is_plain_1x1(g)) return ConvBackwardDataRoute::plain_1x1;
  if (conv_backward_data_winograd_applies(g)) return ConvBackwardDataRoute::winograd;
  if (backward_data_phases_apply(g)) return ConvBackwardDataRoute::phases;
  return ConvBackwardDataRoute::gemm;
}

const char* conv_backward_data_route_name(ConvBackwardDataRoute route) {
  switch (route) {
    case ConvBackwardDataRoute::none: return "none";
    case ConvBackwardDataRoute::depthwise: return "depthwise";
    case ConvBackwardDataRoute::plain_1x1: return "1x1";
    case ConvBackwardDataRoute::winograd: return "winograd";
    case ConvBackwardDataRoute::phases: return "phases";
    case ConvBackwardDataRoute::gemm: break;
  }
  return "gemm";
}

void conv2d_backward_data(const ConvGeometry& g, const float* grad_y, const float* weight, float* grad_x,
                          const float* bias) {
  switch (conv2d_backward_data_route(g)) {
    case ConvBackwardDataRoute::none:
      if (g.n * g.c * g.h * g.w == 0) return;  // grad_x is empty
      std::fill(grad_x, grad_x + g.n * g.c * g.h * g.w, 0.0f);
      break;
    case ConvBackwardDataRoute::depthwise: backward_data_depthwise(g, grad_y, weight, grad_x); break;
    case ConvBackwardDataRoute::plain_1x1:
      return backward_data_1x1(g, grad_y, weight, bias, grad_x);  // the bias is added in its store
    case ConvBackwardDataRoute::winograd: conv2d_backward_data_winograd(g, grad_y, weight, grad_x); break;
    case ConvBackwardDataRoute::phases:
      return backward_data_phases(g, grad_y, weight, bias, grad_x);  // the bias is added in its store
    case ConvBackwardDataRoute::gemm:
      return backward_data_gemm(g, grad_y, weight, bias, grad_x);  // the bias is grad_x's start
  }
  if (bias != nullptr) add_channel_bias(g, bias, grad_x);
}

void conv2d_backward_weight(const ConvGeometry& g, const float* grad_y, const float* x, float* grad_weight,
                            float* grad_bias) {
  const int64_t cg = g.c / g.groups;
  if (grad_bias != nullptr) backward_bias(g, grad_y, grad_bias);
  if (g.k == 0 || cg == 0) return;  // grad_weight is empty
  if (g.n == 0 || g.p == 0 || g.q == 0) {
    std::fill(grad_weight, grad_weight + g.k * cg * g.r * g.s, 0.0f);
  } else if (g.c == g.groups) {
    backward_weight_depthwise(g, grad_y, x, grad_weight);
  } else if (is_plain_1x1(g) && backward_weight_1x1_in_place_applies(g)) {
    backward_weight_1x1_in_place(g, grad_y, x, grad_weight);
  } else if (is_plain_1x1(g)) {
    backward_weight_1x1_gemm(g, grad_y, x, grad_weight);
  } else if (backward_weight_taps_applies(g)) {
    backward_weight_taps(g, grad_y, x, grad_weight);
  } else {
    backward_weight_gemm(g, grad_y, x, grad_weight);
  }
}

}  // namespace minidnn::cpu
