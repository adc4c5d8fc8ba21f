// conv2d_forward's first-layer route (first_layer.h): the driver, ISA-
// independent; the kernels come from first_layer_kernels().
//
// Why a route of its own. With few input channels the implicit GEMM's
// reduction (C x R x S: 147 for ResNet's conv1) is short and its packing
// of the input (every output position times every tap, copied once per
// column block: each input value R x S / (stride_h x stride_w) times, 12
// for conv1) is shared by only K / mr panels of output channels: conv1
// ran at 65% of the SGEMM ceiling. Here each input value is copied about
// once per band of output rows (conv1: 21 input rows for 16 rows' worth of
// stride), and each tap of a register tile is PV vector loads and KK
// broadcasts for KK x PV FMAs (first_layer_impl.h), so the kernel runs at
// the rate of the FMA ports.
//
// The rule (conv_forward_first_layer_applies; conv2d_forward_route tries it
// after the Winograd and tap routes, which keep their stride-1 shapes):
// groups 1, C <= kMaxChannels, a kernel of more than one tap and C x R x S
// <= kMaxTaps (3 x 11 x 11, AlexNet's first layer). Measured against the
// implicit GEMM (1 thread, thread CPU time, avx512 / avx2, implicit over
// first-layer time): conv1 7x7/2 C=3 K=64 224 1.77 / 1.54 (N=1);
// 11x11/4 C=3 K=96 227 1.29 / 1.32; C=8 7x7/2 K=64 56 1.83 / 1.51; C=8
// 3x3/1 K=64 56 1.21 / 1.25; C=6 3x3/2 K=64 56 1.30 / 1.18; C=4 2x2/2 K=24
// 56 1.19 / 1.10; C=3 3x3/1 K=64 224 1.06 / 1.23. Not taken: 1x1 kernels
// (0.68 / 0.96: three taps do not amortize a tile's stores; the GEMM reads
// x in place), and from 16 channels on short rows lose (C=16 3x3/2 K=256
// at 28: 0.96; Q = 12 fills 12 of 16 lanes).
//
// Grouped convolutions. Each group is a convolution of C / groups channels
// of its own, so the same kernel computes one group at a time (the units
// the threads share are (image, group, band)). conv2d_forward_route tries
// the rule for groups > 1 before the tap route, whose reduction per
// microkernel call is C / groups channels: with 8 (ResNeXt-50's 3x3
// layers, 32 groups) the tap tile is read and written back every 8 FMA
// steps. The same bounds on C / groups, and K / groups >= 8 (a group's
// output channels fill avx512's channel block of 8). Measured (2 threads,
// GFLOP/s direct / tap route, on the shared machine under load, noisy):
// ResNeXt g32 3x3 at 28, 256 channels, N=8 avx512 80 / 49, avx2 55 / 41;
// N=1 avx512 236 / 135, avx2 46 / 34; g32 3x3 at 56, 128 channels, N=8
// avx512 47 / 25, avx2 53 / 31; g8 3x3 at 56, 64 channels, N=1 avx512
// 85 / 55, avx2 51 / 38.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/conv/conv_blocking.h"
#include "cpu/conv/first_layer.h"
#include "cpu/gemm/gemm.h"
#include "runtime/threads.h"

namespace minidnn::cpu {
namespace {

// Output rows of a band: the input rows a band copies are shared by its
// rows (conv1 7x7 stride 2: 21 rows copied for 8 output rows rather than
// 56), and N x P / band_rows bands are the units the threads share.
constexpr int64_t kBandRows = 8;
// The rule's bounds (see above).
constexpr int64_t kMaxChannels = 8;
constexpr int64_t kMaxTaps = 3 * 11 * 11;
// Grouped: a group's output channels fill the register tile's channel
// block (8 on avx512) or most of it.
constexpr int64_t kMinGroupOutputChannels = 8;

}  // namespace

bool conv_forward_first_layer_applies(const ConvGeometry& g) {
  const int64_t cg = g.c / g.groups;
  return cg <= kMaxChannels && cg * g.r * g.s <= kMaxTaps && g.r * g.s > 1 &&
         (g.groups == 1 || g.k / g.groups >= kMinGroupOutputChannels);
}

void conv2d_forward_first_layer(const ConvGeometry& g, const float* x, const TapsWeight& weight,
                                const ConvEpilogue& ep, float* y) {
  // One group is a groups-1 convolution of its channels (gg): the kernels
  // see only gg, and each unit is pointed at its group's input planes,
  // output planes, packed weight and bias.
  ConvGeometry gg = g;
  gg.c = g.c / g.groups;
  gg.k = g.k / g.groups;
  gg.groups = 1;
  const FirstLayerKernels& kern = first_layer_kernels();
  FirstLayerPlan plan{};
  plan.lanes = kern.lanes;
  plan.block_channels = kern.block_channels;
  plan.taps = gg.c * g.r * g.s;
  plan.vectors = ceil_div(g.q, plan.lanes);
  // Whole vectors, so that every phase row starts on a vector boundary of
  // the (aligned) scratch: a tile's loads at reach 0 do not straddle lines.
  plan.phase_len = ceil_div(plan.vectors * plan.lanes + (g.s - 1) * g.dil_w / g.stride_w, plan.lanes) * plan.lanes;

  const int threads = threads_for(saturating_product({g.n, g.k, g.p * g.q, plan.taps}), kConvGrain);
  // Bands short enough that every thread gets a few (the band height
  // changes which thread computes an output, never how).
  plan.band_rows =
      std::clamp<int64_t>(ceil_div(g.n * g.groups * g.p, 4 * int64_t{threads}), 1, std::min(kBandRows, g.p));
  plan.band_in_rows = (plan.band_rows - 1) * g.stride_h + (g.r - 1) * g.dil_h + 1;
  plan.band_floats = gg.c * g.stride_w * plan.band_in_rows * plan.phase_len;

  // Kept per calling thread and grown on demand (as conv_forward.cpp's
  // runs), so that a small convolution allocates nothing.
  static thread_local std::vector<int64_t> offsets_kept;
  const size_t offset_count = static_cast<size_t>(plan.taps + 2 * g.stride_w);
  if (offsets_kept.size() < offset_count) offsets_kept.resize(offset_count);
  int64_t* tap_offset = offsets_kept.data();
  int64_t* phase_columns = tap_offset + plan.taps;
  for (int64_t c = 0, t = 0; c < gg.c; ++c) {
    for (int64_t r = 0; r < g.r; ++r) {
      for (int64_t s = 0; s < g.s; ++s, ++t) {
        const int64_t col = s * g.dil_w;
        tap_offset[t] = ((c * g.stride_w + col % g.stride_w) * plan.band_in_rows + r * g.dil_h) * plan.phase_len +
                        col / g.stride_w;
      }
    }
  }
  for (int64_t ph = 0; ph < g.stride_w; ++ph) {
    // Elements m with 0 <= m * stride_w + ph - pad_left < W.
    const int64_t col0 = ph - g.pad_left;
    const int64_t begin = std::min(col0 >= 0 ? 0 : ceil_div(-col0, g.stride_w), plan.phase_len);
    const int64_t end = std::clamp<int64_t>(g.w - col0 > 0 ? ceil_div(g.w - col0, g.stride_w) : 0, begin, plan.phase_len);
    phase_columns[2 * ph] = begin;
    phase_columns[2 * ph + 1] = end;
  }
  plan.tap_offset = tap_offset;
  plan.phase_columns = phase_columns;

  // Per group, weight blocks of block_channels output channels, tap-major:
  // the block_channels weights of a tap are adjacent (one broadcast each).
  const int64_t kk = plan.block_channels;
  const int64_t k_blocks = ceil_div(gg.k, kk);
  const int64_t group_weight = k_blocks * plan.taps * kk;
  float* packed = gemm_scratch(0, g.groups * group_weight);
  for (int64_t gi = 0; gi < g.groups; ++gi) {
    for (int64_t b = 0; b < k_blocks; ++b) {
      for (int64_t c = 0, t = 0; c < gg.c; ++c) {
        for (int64_t r = 0; r < g.r; ++r) {
          for (int64_t s = 0; s < g.s; ++s, ++t) {
            const float* tap = weight.first + gi * weight.group_stride + c * weight.c_stride +
                               r * weight.tap_row_step + s * weight.tap_col_step;
            float* dst = packed + gi * group_weight + (b * plan.taps + t) * kk;
            for (int64_t i = 0; i < kk; ++i) {
              const int64_t k = b * kk + i;
              dst[i] = k < gg.k ? tap[k * weight.k_stride] : 0.0f;
            }
          }
        }
      }
    }
  }

  float* bands = gemm_scratch(1, threads * plan.band_floats);
  const int64_t bands_per_plane = ceil_div(g.p, plan.band_rows);
  const int64_t units = g.n * g.groups * bands_per_plane;
  const int64_t group_in = gg.c * g.h * g.w, group_out = gg.k * g.p * g.q;
  parallel(threads, [&](int t, int nt) {
    float* band = bands + t * plan.band_floats;
    FirstLayerPlan group_plan = plan;
    ConvEpilogue group_ep = ep;
    for (int64_t u = units * t / nt; u < units * (t + 1) / nt; ++u) {
      const int64_t plane = u / bands_per_plane, p0 = u % bands_per_plane * plan.band_rows;
      const int64_t gi = plane % g.groups;  // plane: image * groups + group
      group_plan.packed_weight = packed + gi * group_weight;
      group_ep.bias = ep.bias != nullptr ? ep.bias + gi * gg.k : nullptr;
      const float* x_plane = x + plane * group_in;
      const float* next_planes = plane + 1 < g.n * g.groups ? x_plane + group_in : nullptr;
      kern.rows(group_plan, gg, x_plane, next_planes, group_ep, p0, std::min(g.p, p0 + plan.band_rows), band,
                y + plane * group_out);
    }
  });
}

}  // namespace minidnn::cpu
