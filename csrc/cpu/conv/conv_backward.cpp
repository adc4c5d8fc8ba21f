// The two backward passes of conv2d (conv.h): grad_x, which is also the
// forward of the transposed convolution, and grad_weight / grad_bias.
//
// Each thread owns whole output planes (grad_x planes of one image and
// channel; grad_weight rows of one output channel), which it writes
// alone and accumulates in a fixed order, so the results do not depend on
// the thread count.
#include <algorithm>
#include <cstdint>

#include "cpu/conv/conv.h"
#include "runtime/threads.h"

namespace minidnn::cpu {
namespace {

// Multiply-adds worth waking a thread for.
constexpr int64_t kGrain = int64_t{1} << 16;

// The taps' input index i = o * stride - pad + t * dil lies in [0, size)
// exactly for the outputs o in [*first, *last).
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

}  // namespace

void conv2d_backward_data(const ConvGeometry& g, const float* grad_y, const float* weight, float* grad_x) {
  const int64_t cg = g.c / g.groups, kg = g.k / g.groups;
  const int64_t hw = g.h * g.w, pq = g.p * g.q, rs = g.r * g.s;
  const int64_t planes = g.n * g.c;
  const int threads = threads_for(planes * hw * kg * rs, kGrain);
  parallel_for(threads, planes, [&](int64_t plane) {
    const int64_t n = plane / g.c, c = plane % g.c;
    const int64_t group = c / cg, c_in_group = c % cg;
    float* gx = grad_x + plane * hw;
    std::fill(gx, gx + hw, 0.0f);
    for (int64_t kk = 0; kk < kg; ++kk) {
      const int64_t k = group * kg + kk;
      const float* gy = grad_y + (n * g.k + k) * pq;
      const float* wk = weight + (k * cg + c_in_group) * rs;
      for (int64_t r = 0; r < g.r; ++r) {
        int64_t p0, p1;
        valid_outputs(r * g.dil_h - g.pad_top, g.stride_h, g.h, g.p, &p0, &p1);
        for (int64_t s = 0; s < g.s; ++s) {
          int64_t q0, q1;
          valid_outputs(s * g.dil_w - g.pad_left, g.stride_w, g.w, g.q, &q0, &q1);
          const float wv = wk[r * g.s + s];
          for (int64_t p = p0; p < p1; ++p) {
            // Indices, not pointers: the row's origin (q = 0) may lie outside the plane.
            const int64_t row = (p * g.stride_h - g.pad_top + r * g.dil_h) * g.w - g.pad_left + s * g.dil_w;
            const float* gy_row = gy + p * g.q;
            for (int64_t q = q0; q < q1; ++q) gx[row + q * g.stride_w] += wv * gy_row[q];
          }
        }
      }
    }
  });
}

void conv2d_backward_weight(const ConvGeometry& g, const float* grad_y, const float* x, float* grad_weight,
                            float* grad_bias) {
  const int64_t cg = g.c / g.groups, kg = g.k / g.groups;
  const int64_t hw = g.h * g.w, pq = g.p * g.q, rs = g.r * g.s;
  const int threads = threads_for(g.k * cg * rs * g.n * pq, kGrain);
  parallel_for(threads, g.k, [&](int64_t k) {
    const int64_t group = k / kg;
    float* gw = grad_weight + k * cg * rs;
    for (int64_t ci = 0; ci < cg; ++ci) {
      const int64_t c = group * cg + ci;
      for (int64_t r = 0; r < g.r; ++r) {
        int64_t p0, p1;
        valid_outputs(r * g.dil_h - g.pad_top, g.stride_h, g.h, g.p, &p0, &p1);
        for (int64_t s = 0; s < g.s; ++s) {
          int64_t q0, q1;
          valid_outputs(s * g.dil_w - g.pad_left, g.stride_w, g.w, g.q, &q0, &q1);
          float sum = 0.0f;
          for (int64_t n = 0; n < g.n; ++n) {
            const float* gy = grad_y + (n * g.k + k) * pq;
            const float* xc = x + (n * g.c + c) * hw;
            for (int64_t p = p0; p < p1; ++p) {
              const int64_t row = (p * g.stride_h - g.pad_top + r * g.dil_h) * g.w - g.pad_left + s * g.dil_w;
              const float* gy_row = gy + p * g.q;
              for (int64_t q = q0; q < q1; ++q) sum += gy_row[q] * xc[row + q * g.stride_w];
            }
          }
          gw[(ci * g.r + r) * g.s + s] = sum;
        }
      }
    }
    if (grad_bias != nullptr) {
      float sum = 0.0f;
      for (int64_t n = 0; n < g.n; ++n) {
        const float* gy = grad_y + (n * g.k + k) * pq;
        for (int64_t i = 0; i < pq; ++i) sum += gy[i];
      }
      grad_bias[k] = sum;
    }
  });
}

}  // namespace minidnn::cpu
