// Softmax, log-softmax and cross-entropy kernels, written once over a SIMD
// vocabulary and instantiated by softmax_<isa>.cpp (anonymous namespace:
// see simd/README.md).
//
// Two layouts of the reduced axis:
//
// * Rows (inner == 1): each row is contiguous. Pass 1 is an online softmax
//   over chunks that stay in L1: the chunk's max is found first, the running
//   sum is rescaled only when the max grows, then exp(x - max) is summed, so
//   the logits are read from memory once and exp runs once per element.
//   softmax keeps those exps in y and pass 2 rescales y in place;
//   log_softmax's pass 2 re-reads the row (from cache for rows up to L2
//   size) and writes. Cross-entropy folds the target gather and the
//   label-smoothing / soft-target dot products into pass 1, so its forward
//   is one pass.
//   Few long rows are reduced in slices fixed by the shape (row_slices);
//   the threads share out each row's slices, the partial statistics are
//   merged in slice order, and each thread writes its slices.
//
// * Columns (inner > 1, e.g. the channel axis of NCHW): SIMD lanes run along
//   the contiguous inner axis, a block of 4 vectors at a time, and the class
//   loop strides by `inner`. Max, sum and write are three short loops over
//   a block that stays in cache.
#pragma once

#include <cstdint>

#include "cpu/simd/cache_line.h"
#include "cpu/simd/math.h"
#include "cpu/simd/store.h"
#include "cpu/softmax/softmax.h"
#include "runtime/scratch.h"
#include "runtime/threads.h"

namespace {

using minidnn::cpu::LossScale;
using minidnn::cpu::LossTarget;
using minidnn::cpu::SoftmaxShape;

constexpr float kNegInf = -__builtin_inff();
constexpr float kNaN = __builtin_nanf("");
constexpr int64_t kChunk = 1024;         // floats per online chunk: 4 KB
constexpr int64_t kGrain = 1 << 14;      // elements worth waking a thread for
constexpr int64_t kSplitMinRow = 1 << 14;  // shorter rows are never split
constexpr int64_t kSplitMaxRows = 4;       // rows are split only when fewer
constexpr int kMaxSplit = 64;
constexpr int kBlockVectors = 4;         // column path: vectors per block
constexpr int64_t kSumBlock = 32;        // terms per lane of a partial sum

inline int64_t min_i(int64_t a, int64_t b) { return a < b ? a : b; }

// ---------------------------------------------------------------------------
// Work distribution shared by every kernel of the family.
// ---------------------------------------------------------------------------

// The slices each of `rows` rows of length n is reduced in: 1 (the whole
// row) unless the rows are few and long, so that the threads can share
// out a row. By the shape alone, never the thread count: a row's slices,
// and so its statistics' order of operations, are the same whoever
// computes them, and results are bit-identical for any thread count.
inline int64_t row_slices(int64_t rows, int64_t n) {
  if (rows >= kSplitMaxRows || n < kSplitMinRow) return 1;
  return min_i(kMaxSplit, n / kSplitMinRow);
}

// Runs reduce/combine/write over `rows` rows of length n. reduce(r, b, e)
// returns the statistics of row r's slice [b, e); combine merges the
// row_slices slices' statistics in order; write(r, b, e, total) writes the
// slice, on the thread that reduced it, after all of the row's slices are
// reduced. Rows of one slice are shared out whole; otherwise the threads
// take contiguous shares of each row's slices. Each thread ends with the
// fence of streaming stores (a no-op cost when it made none).
template <class Ops, class Stats, class Reduce, class Combine, class Write>
void for_each_row(int64_t rows, int64_t n, Reduce reduce, Combine combine, Write write) {
  const int threads = minidnn::threads_for(rows * n, kGrain);
  const int64_t slices = row_slices(rows, n);
  if (slices == 1) {
    minidnn::parallel(threads, [&](int64_t t, int64_t nt) {
      for (int64_t r = rows * t / nt; r < rows * (t + 1) / nt; ++r) {
        const Stats total = reduce(r, int64_t{0}, n);
        write(r, int64_t{0}, n, total);
      }
      Ops::stream_fence();
    });
    return;
  }
  Stats parts[2][kMaxSplit];
  const int64_t vectors = n / Ops::W;
  const auto slice_begin = [&](int64_t i) { return i == slices ? n : vectors * i / slices * Ops::W; };
  minidnn::parallel(static_cast<int>(min_i(threads, slices)), [&](int64_t t, int64_t nt) {
    const int64_t first = slices * t / nt, last = slices * (t + 1) / nt;
    for (int64_t r = 0; r < rows; ++r) {
      // Double-buffered: a thread can only reach row r + 2 after every
      // thread has passed row r + 1's barrier, so parts[r & 1] is free.
      Stats* row_parts = parts[r & 1];
      for (int64_t i = first; i < last; ++i) row_parts[i] = reduce(r, slice_begin(i), slice_begin(i + 1));
#pragma omp barrier
      const Stats total = combine(row_parts, static_cast<int>(slices));
      for (int64_t i = first; i < last; ++i) write(r, slice_begin(i), slice_begin(i + 1), total);
    }
    Ops::stream_fence();
  });
}

// Calls block(o, j0, lanes) for every block of up to kBlockVectors * W
// columns of every outer index.
template <class Ops, class Block>
void for_each_column_block(SoftmaxShape s, Block block) {
  const int64_t width = kBlockVectors * Ops::W;
  const int64_t blocks = (s.inner + width - 1) / width;
  const int64_t items = s.outer * blocks;
  const int threads = minidnn::threads_for(items * s.classes * width, kGrain);
  minidnn::parallel_for(threads, items, [&](int64_t item) {
    const int64_t o = item / blocks;
    const int64_t j0 = (item % blocks) * width;
    block(o, j0, min_i(width, s.inner - j0));
  });
}

// A block of kBlockVectors vectors whose last `lanes` may end early: loads
// and stores that touch only the block's valid lanes.
template <class Ops>
struct ColumnBlock {
  using V = typename Ops::V;
  int64_t lanes;
  int vectors() const { return static_cast<int>((lanes + Ops::W - 1) / Ops::W); }
  int64_t valid(int u) const { return min_i(Ops::W, lanes - int64_t{u} * Ops::W); }
  V load(const float* p, int u, float fill) const {
    const int64_t v = valid(u);
    return v == Ops::W ? Ops::load(p + u * Ops::W) : Ops::load_tail(p + u * Ops::W, v, fill);
  }
  void store(float* p, int u, V x) const {
    const int64_t v = valid(u);
    if (v == Ops::W) {
      Ops::store(p + u * Ops::W, x);
    } else {
      Ops::store_tail(p + u * Ops::W, x, v);
    }
  }
};

// ---------------------------------------------------------------------------
// Row statistics: max, sum of exp, and the dot products cross-entropy needs.
// ---------------------------------------------------------------------------

// m: max; s: sum exp(x - m); d: sum wq * (x - m); qw: sum wq, where wq is
// the class weight times the target probability (each 1 when absent).
// d is kept relative to the max, so it is a sum of non-positive terms and
// never cancels, however large the logits.
struct RowStats {
  float m;
  float s;
  double d;
  double qw;
};

constexpr RowStats kEmptyStats{kNegInf, 0.0f, 0.0, 0.0};

// The max of a chunk, taken four vectors at a time so that it can also
// run inside another chunk's loop (see "Lookahead" below).
template <class Ops>
struct RunningMax {
  using V = typename Ops::V;
  V a0 = Ops::set1(kNegInf), a1 = a0, a2 = a0, a3 = a0;

  void add4(const float* p) {
    a0 = Ops::max(a0, Ops::load(p));
    a1 = Ops::max(a1, Ops::load(p + Ops::W));
    a2 = Ops::max(a2, Ops::load(p + 2 * Ops::W));
    a3 = Ops::max(a3, Ops::load(p + 3 * Ops::W));
  }

  // The max of x[0, n), of which x[0, i) went through add4.
  float finish(const float* x, int64_t n, int64_t i) {
    for (; i + Ops::W <= n; i += Ops::W) a0 = Ops::max(a0, Ops::load(x + i));
    if (i < n) a1 = Ops::max(a1, Ops::load_tail(x + i, n - i, kNegInf));
    const float m = Ops::reduce_max(Ops::max(Ops::max(a0, a1), Ops::max(a2, a3)));
    // max returns its second operand when either is NaN (as x86's maxps), so
    // a lane that meets NaN and then -inf ends at -inf. A chunk that holds
    // NaN must not pass for all -inf (callers skip those): its max is NaN,
    // which poisons the row as it should. Only all -inf (or NaN) chunks pay
    // the scan.
    if (m == kNegInf) {
      for (int64_t k = 0; k < n; ++k) {
        if (x[k] != x[k]) return x[k];
      }
    }
    return m;
  }
};

template <class Ops>
float max_of(const float* x, int64_t n) {
  RunningMax<Ops> acc;
  int64_t i = 0;
  for (; i + 4 * Ops::W <= n; i += 4 * Ops::W) acc.add4(x + i);
  return acc.finish(x, n, i);
}

// wq over [i, i + len): class weight times target probability, either
// one 1 when absent. Lanes past len read 0 (or 1 when both are absent: the
// callers multiply them by 0 there).
template <class Ops, bool kWeight, bool kProb>
typename Ops::V load_wq(const float* w, const float* q, int64_t i, int64_t len = Ops::W) {
  if constexpr (kWeight && kProb) return Ops::mul(load_part<Ops>(w, i, len, 0.0f), load_part<Ops>(q, i, len, 0.0f));
  if constexpr (kWeight && !kProb) return load_part<Ops>(w, i, len, 0.0f);
  if constexpr (!kWeight && kProb) return load_part<Ops>(q, i, len, 0.0f);
  return Ops::set1(1.0f);
}

template <class Ops, bool kWeight, bool kProb>
double sum_wq(const float* w, const float* q, int64_t n) {
  if constexpr (!kWeight && !kProb) return static_cast<double>(n);
  typename Ops::V acc = Ops::zero();
  int64_t i = 0;
  for (; i + Ops::W <= n; i += Ops::W) acc = Ops::add(acc, load_wq<Ops, kWeight, kProb>(w, q, i));
  if (i < n) acc = Ops::add(acc, load_wq<Ops, kWeight, kProb>(w, q, i, n - i));
  return Ops::reduce_add(acc);
}

// Lookahead. A chunk's first reads come from memory. Read by the max pass
// just before the chunk's exp, they arrive as a burst of loads with nothing
// to compute, and then the exp computes while the memory has nothing to
// do: the two add up (bench/NOTES.md, "Branch sm3"). So each pass that
// takes a chunk's max before its exp takes the max of the chunk read next
// (the next chunk of the row, or the first of the next row) inside this
// chunk's exp loop, four vectors per step (RunningMax), and the reads
// overlap the exp. The values, and the order of every sum, are those of
// separate passes.

// The lines of the four vectors kPrefetchAhead floats past p, into L1:
// issued by softmax's exp pass beside its lookahead reads. On Zen 4 those
// reads still came from memory one by one, stalling the exp (samples on
// the max of the lookahead), however sequential; prefetched 4 KB ahead,
// softmax 4096x1000 ran 0.86 -> 0.70 ms and 64x262144 5.0 -> 4.6 ms at two
// threads (medians of 8 processes; 2 and 8 KB ahead were slower, 1 KB much
// slower). The statistics pass of log_softmax and cross-entropy gained
// nothing from it (bench/NOTES.md).
constexpr int64_t kPrefetchAhead = 1024;
template <class Ops>
inline void prefetch_ahead(const float* p) {
  for (int64_t l = 0; l < 4 * Ops::W; l += kCacheLineFloats) __builtin_prefetch(p + kPrefetchAhead + l, 0, 3);
}

// Runs pass(ahead_max, fused) over a chunk of len floats and returns the
// max of the chunk read next, ahead[0, ahead_len) (-inf when ahead_len is
// 0). The pass feeds ahead[0, fused) to ahead_max->add4, four vectors per
// step of its loop, fused being the whole four-vector steps both chunks
// have; the rest of ahead is read after it.
template <class Ops, class Pass>
float pass_then_max_ahead(int64_t len, const float* ahead, int64_t ahead_len, Pass pass) {
  if (ahead_len == 0) {
    pass(static_cast<RunningMax<Ops>*>(nullptr), int64_t{0});
    return kNegInf;
  }
  RunningMax<Ops> next;
  const int64_t fused = min_i(len, ahead_len) / (4 * Ops::W) * (4 * Ops::W);
  pass(&next, fused);
  return next.finish(ahead, ahead_len, fused);
}

// Adds exp(x - m) to st->s and, with kDot, wq * (x - m) to st->d and wq to
// st->qw, over one chunk; feeds ahead[0, fused) to ahead_max on the way
// (see pass_then_max_ahead).
template <class Ops, bool kDot, bool kWeight, bool kProb>
void accumulate_chunk(const float* x, const float* w, const float* q, int64_t n, RowStats* st,
                      RunningMax<Ops>* ahead_max, const float* ahead, int64_t fused) {
  using V = typename Ops::V;
  const V m = Ops::set1(st->m);
  V s0 = Ops::zero(), s1 = Ops::zero(), d0 = Ops::zero(), q0 = Ops::zero();
  // Inlined by force: left to itself GCC made this a function of its own,
  // the sums in memory through the captured references (cross-entropy
  // 4096x1000 15-20% slower than before the lambda).
  const auto two_vectors = [&](int64_t i) __attribute__((always_inline)) {
    const V z0 = Ops::sub(Ops::load(x + i), m);
    const V z1 = Ops::sub(Ops::load(x + i + Ops::W), m);
    s0 = Ops::add(s0, vexp_nonpositive<Ops>(z0));
    s1 = Ops::add(s1, vexp_nonpositive<Ops>(z1));
    if constexpr (kDot) {
      const V wq0 = load_wq<Ops, kWeight, kProb>(w, q, i);
      const V wq1 = load_wq<Ops, kWeight, kProb>(w, q, i + Ops::W);
      d0 = Ops::fmadd(wq1, z1, Ops::fmadd(wq0, z0, d0));
      q0 = Ops::add(q0, Ops::add(wq0, wq1));
    }
  };
  int64_t i = 0;
  for (; i < fused; i += 4 * Ops::W) {
    ahead_max->add4(ahead + i);
    two_vectors(i);
    two_vectors(i + 2 * Ops::W);
  }
  for (; i + 2 * Ops::W <= n; i += 2 * Ops::W) two_vectors(i);
  for (; i < n; i += Ops::W) {
    const int64_t len = min_i(Ops::W, n - i);
    // Missing lanes read x = -inf, adding exp(-inf) = 0 to the sum, and
    // x = m, adding wq * 0 to the dot product.
    s0 = Ops::add(s0, vexp_nonpositive<Ops>(Ops::sub(Ops::load_tail(x + i, len, kNegInf), m)));
    if constexpr (kDot) {
      const V wq = load_wq<Ops, kWeight, kProb>(w, q, i, len);
      d0 = Ops::fmadd(wq, Ops::sub(Ops::load_tail(x + i, len, st->m), m), d0);
      q0 = Ops::add(q0, wq);
    }
  }
  st->s += Ops::reduce_add(Ops::add(s0, s1));
  if constexpr (kDot) {
    st->d += Ops::reduce_add(d0);
    // Without weights or probabilities wq is 1, and the caller counts.
    if constexpr (kWeight || kProb) st->qw += Ops::reduce_add(q0);
  }
}

// Folds one chunk x[0, len), len <= kChunk, whose max is cm (with w, q at
// the same offsets), into the online statistics st. Returns the max of
// the chunk read next, ahead[0, ahead_len) (see pass_then_max_ahead).
template <class Ops, bool kDot, bool kWeight, bool kProb>
float add_chunk_stats(const float* x, const float* w, const float* q, int64_t len, float cm, const float* ahead,
                      int64_t ahead_len, RowStats* st) {
  if (cm == kNegInf) {
    // exp(-inf - m) is 0 whatever m is; a positive wq on a -inf logit
    // makes the loss +inf, as log_softmax would give -inf there.
    if (kDot) {
      const double cq = sum_wq<Ops, kWeight, kProb>(w, q, len);
      if (cq > 0) st->d = -__builtin_inf();
      st->qw += cq;
    }
    return max_of<Ops>(ahead, ahead_len);
  }
  if (cm > st->m) {
    if (st->m > kNegInf) {
      st->s *= __builtin_expf(st->m - cm);
      if (kDot) st->d += (static_cast<double>(st->m) - cm) * st->qw;
    }
    st->m = cm;
  }
  const float next_max =
      pass_then_max_ahead<Ops>(len, ahead, ahead_len, [&](RunningMax<Ops>* ahead_max, int64_t fused) {
        accumulate_chunk<Ops, kDot, kWeight, kProb>(x, w, q, len, st, ahead_max, ahead, fused);
      });
  if constexpr (kDot && !kWeight && !kProb) st->qw += static_cast<double>(len);
  return next_max;
}

// Online statistics of x[0, n) (with w, q at the same offsets) whose first
// chunk's max is *first_max on entry. The last chunk's pass takes the max
// of the first chunk of next[0, next_len), the row read next (none when
// next_len is 0), into *first_max (see Lookahead). after_chunk(c, len) is
// called once chunk x[c, c + len) is folded in: for work to interleave with
// the reads of the row (log_softmax_pipelined).
template <class Ops, bool kDot, bool kWeight, bool kProb, class AfterChunk>
RowStats row_stats_ahead(const float* x, const float* w, const float* q, int64_t n, const float* next,
                         int64_t next_len, float* first_max, AfterChunk after_chunk) {
  RowStats st = kEmptyStats;
  float cm = *first_max;
  for (int64_t c = 0; c < n; c += kChunk) {
    const int64_t len = min_i(kChunk, n - c);
    const bool last = c + len == n;
    cm = add_chunk_stats<Ops, kDot, kWeight, kProb>(x + c, kWeight ? w + c : nullptr, kProb ? q + c : nullptr, len,
                                                    cm, last ? next : x + c + len,
                                                    min_i(kChunk, last ? next_len : n - c - len), &st);
    after_chunk(c, len);
  }
  *first_max = cm;
  return st;
}

// Online statistics of x[0, n) (with w, q at the same offsets).
template <class Ops, bool kDot, bool kWeight, bool kProb>
RowStats row_stats(const float* x, const float* w, const float* q, int64_t n) {
  float first_max = max_of<Ops>(x, min_i(kChunk, n));
  return row_stats_ahead<Ops, kDot, kWeight, kProb>(x, w, q, n, x + n, 0, &first_max, [](int64_t, int64_t) {});
}

// Merges slice statistics, in slice order (row_slices fixes the slices).
inline RowStats merge_stats(const RowStats* parts, int k) {
  float m = kNegInf;
  for (int i = 0; i < k; ++i) m = parts[i].m > m ? parts[i].m : m;
  RowStats total{m, 0.0f, 0.0, 0.0};
  for (int i = 0; i < k; ++i) {
    const RowStats& p = parts[i];
    if (p.m > kNegInf) {
      total.s += p.s * __builtin_expf(p.m - m);
      total.d += p.d + (static_cast<double>(p.m) - m) * p.qw;
    } else {
      total.s += p.s;
      total.d += p.d;
    }
    total.qw += p.qw;
  }
  return total;
}

// acc[u] += the sum over classes c of term(c, u), for the vectors u of a
// column block, through partial sums of kSumBlock classes: float error then
// grows with kSumBlock + C / kSumBlock rather than with C.
template <class Ops, class Term>
void sum_over_classes(int64_t classes, int nv, typename Ops::V* acc, Term term) {
  for (int64_t c0 = 0; c0 < classes; c0 += kSumBlock) {
    typename Ops::V part[kBlockVectors];
    for (int u = 0; u < nv; ++u) part[u] = Ops::zero();
    for (int64_t c = c0; c < min_i(c0 + kSumBlock, classes); ++c) {
      for (int u = 0; u < nv; ++u) part[u] = Ops::add(part[u], term(c, u));
    }
    for (int u = 0; u < nv; ++u) acc[u] = Ops::add(acc[u], part[u]);
  }
}

// The per-lane max over the classes of one column block.
template <class Ops>
void column_max(const float* x, SoftmaxShape s, int64_t base, const ColumnBlock<Ops>& blk, typename Ops::V* vm) {
  const int nv = blk.vectors();
  for (int u = 0; u < nv; ++u) vm[u] = Ops::set1(kNegInf);
  for (int64_t c = 0; c < s.classes; ++c) {
    for (int u = 0; u < nv; ++u) vm[u] = Ops::max(vm[u], blk.load(x + base + c * s.inner, u, 0.0f));
  }
}

// Column statistics of one block into per-lane arrays: a max pass, then
// the three sums relative to the max, blocked as in sum_over_classes.
template <class Ops, bool kDot, bool kWeight, bool kProb>
void column_stats(const float* x, const LossTarget& t, SoftmaxShape s, int64_t base, const ColumnBlock<Ops>& blk,
                  float* m, float* sum, float* d, float* qw) {
  using V = typename Ops::V;
  const int nv = blk.vectors();
  V vm[kBlockVectors], vs[kBlockVectors], vd[kBlockVectors], vq[kBlockVectors];
  for (int u = 0; u < nv; ++u) vs[u] = vd[u] = vq[u] = Ops::zero();
  column_max<Ops>(x, s, base, blk, vm);
  for (int64_t c0 = 0; c0 < s.classes; c0 += kSumBlock) {
    V ps[kBlockVectors], pd[kBlockVectors], pq[kBlockVectors];
    for (int u = 0; u < nv; ++u) ps[u] = pd[u] = pq[u] = Ops::zero();
    for (int64_t c = c0; c < min_i(c0 + kSumBlock, s.classes); ++c) {
      const int64_t off = base + c * s.inner;
      const V wc = kWeight ? Ops::set1(t.weight[c]) : Ops::set1(1.0f);
      for (int u = 0; u < nv; ++u) {
        const V z = Ops::sub(blk.load(x + off, u, 0.0f), vm[u]);
        ps[u] = Ops::add(ps[u], vexp_nonpositive<Ops>(z));
        if constexpr (kDot) {
          const V wq = kProb ? Ops::mul(wc, blk.load(t.prob + off, u, 0.0f)) : wc;
          pd[u] = Ops::fmadd(wq, z, pd[u]);
          pq[u] = Ops::add(pq[u], wq);
        }
      }
    }
    for (int u = 0; u < nv; ++u) {
      vs[u] = Ops::add(vs[u], ps[u]);
      vd[u] = Ops::add(vd[u], pd[u]);
      vq[u] = Ops::add(vq[u], pq[u]);
    }
  }
  for (int u = 0; u < nv; ++u) {
    Ops::store(m + u * Ops::W, vm[u]);
    Ops::store(sum + u * Ops::W, vs[u]);
    Ops::store(d + u * Ops::W, vd[u]);
    Ops::store(qw + u * Ops::W, vq[u]);
  }
}

// ---------------------------------------------------------------------------
// softmax / log_softmax forward
// ---------------------------------------------------------------------------

// log_softmax: y = (x - m) - log s. softmax rows too long for the one-pass
// form: y = exp(x - m) / s, recomputing the exp.
template <class Ops>
void write_softmax_row(const float* x, float* y, int64_t n, float m, float s, bool log, bool streaming) {
  using V = typename Ops::V;
  const V mv = Ops::set1(m);
  if (log) {
    const V ls = Ops::set1(__builtin_logf(s));
    write_row<Ops>(y, n, streaming, [&](int64_t i, int64_t len) {
      return Ops::sub(Ops::sub(load_part<Ops>(x, i, len, 0.0f), mv), ls);
    });
  } else {
    const V inv = Ops::set1(1.0f / s);
    write_row<Ops>(y, n, streaming, [&](int64_t i, int64_t len) {
      return Ops::mul(vexp_nonpositive<Ops>(Ops::sub(load_part<Ops>(x, i, len, 0.0f), mv)), inv);
    });
  }
}

// softmax on rows of up to kOnePassMax floats evaluates exp once per
// element: pass 1 writes exp(x - chunk max) into y and keeps each chunk's
// max (in a per-thread array, the chunks of one row); pass 2 scales each
// chunk of y in place by exp(chunk max - row max) / sum, from cache. The
// logits are read once and y written once. Longer rows, and rows reduced
// in slices (row_slices: a thread may hold several slices of a row, which
// would share the array), recompute the exp in pass 2 instead
// (write_softmax_row).
constexpr int64_t kOnePassMax = int64_t{1} << 18;

inline float* thread_chunk_maxima() {
  static thread_local float maxima[kOnePassMax / kChunk + 1];
  return maxima;
}

template <class Ops>
void fill_zero(float* p, int64_t n) {
  store_row<Ops>(p, n, [](int64_t, int64_t) { return Ops::zero(); });
}

// e[i] = exp(x[i] - m) for i in [0, n); returns their sum, through
// partial sums of kSumBlock terms per lane (as sum_over_classes): with one
// lane (the scalar path) a 1024-float row otherwise chains 512 additions,
// enough to put softmax 2.8e-6 off in one test draw in about a thousand.
// Feeds ahead[0, fused) to ahead_max on the way (see pass_then_max_ahead;
// fused and the blocks' bounds are whole four-vector steps).
template <class Ops>
float exp_store_sum(const float* x, float* e, int64_t n, float m, RunningMax<Ops>* ahead_max = nullptr,
                    const float* ahead = nullptr, int64_t fused = 0) {
  using V = typename Ops::V;
  const V mv = Ops::set1(m);
  V total = Ops::zero();
  // The lookahead's maxima in registers: read through ahead_max, which the
  // stores to e might alias for all the compiler knows, they made a load,
  // a max and a store per vector, whose store-to-load chain ran softmax
  // 4096x1000 at about half its speed on Zen 4 (bench/NOTES.md).
  RunningMax<Ops> next;
  if (ahead_max) next = *ahead_max;
  int64_t i = 0;
  while (i + 2 * Ops::W <= n) {
    const int64_t block_end = min_i(n, i + kSumBlock * 2 * Ops::W);
    V s0 = Ops::zero(), s1 = Ops::zero();
    const auto two_vectors = [&](int64_t j) __attribute__((always_inline)) {  // as accumulate_chunk's
      const V e0 = vexp_nonpositive<Ops>(Ops::sub(Ops::load(x + j), mv));
      const V e1 = vexp_nonpositive<Ops>(Ops::sub(Ops::load(x + j + Ops::W), mv));
      Ops::store(e + j, e0);
      Ops::store(e + j + Ops::W, e1);
      s0 = Ops::add(s0, e0);
      s1 = Ops::add(s1, e1);
    };
    for (const int64_t fused_end = min_i(block_end, fused); i < fused_end; i += 4 * Ops::W) {
      prefetch_ahead<Ops>(ahead + i);
      next.add4(ahead + i);
      two_vectors(i);
      two_vectors(i + 2 * Ops::W);
    }
    for (; i + 2 * Ops::W <= block_end; i += 2 * Ops::W) two_vectors(i);
    total = Ops::add(total, Ops::add(s0, s1));
  }
  for (; i < n; i += Ops::W) {
    const int64_t len = min_i(Ops::W, n - i);
    const V ev = vexp_nonpositive<Ops>(Ops::sub(Ops::load_tail(x + i, len, kNegInf), mv));
    Ops::store_tail(e + i, ev, len);
    total = Ops::add(total, ev);
  }
  if (ahead_max) *ahead_max = next;
  return Ops::reduce_add(total);
}

// Pass 1 of the one-pass softmax over x[0, n): fills e[0, n) and, per
// chunk k, chunk_max[k]; returns the online (max, sum).
template <class Ops>
RowStats exp_into_output(const float* x, int64_t n, float* e, float* chunk_max) {
  RowStats st = kEmptyStats;
  float cm = max_of<Ops>(x, min_i(kChunk, n));
  for (int64_t c = 0, k = 0; c < n; c += kChunk, ++k) {
    const int64_t len = min_i(kChunk, n - c);
    const float* ahead = x + c + len;
    const int64_t ahead_len = min_i(kChunk, n - c - len);
    chunk_max[k] = cm;
    if (cm == kNegInf) {
      // exp(-inf - m) = 0 for any m; pass 2 turns these into NaN if the
      // whole row is -inf.
      fill_zero<Ops>(e + c, len);
      cm = max_of<Ops>(ahead, ahead_len);
      continue;
    }
    float cs = 0.0f;
    const float next_max =
        pass_then_max_ahead<Ops>(len, ahead, ahead_len, [&](RunningMax<Ops>* ahead_max, int64_t fused) {
          cs = exp_store_sum<Ops>(x + c, e + c, len, cm, ahead_max, ahead, fused);
        });
    if (cm > st.m) {
      st.s = (st.m > kNegInf ? st.s * __builtin_expf(st.m - cm) : 0.0f) + cs;
      st.m = cm;
    } else {
      st.s += cs * __builtin_expf(cm - st.m);  // a NaN chunk max poisons the sum, as it should
    }
    cm = next_max;
  }
  return st;
}

// Pass 2 of the one-pass softmax: y = exps scaled per chunk (exps may be y).
template <class Ops>
void scale_chunks(const float* exps, float* y, const float* chunk_max, int64_t n, const RowStats& total,
                  bool streaming) {
  for (int64_t c = 0, k = 0; c < n; c += kChunk, ++k) {
    const int64_t len = min_i(kChunk, n - c);
    const float f = chunk_max[k] == total.m ? 1.0f / total.s : __builtin_expf(chunk_max[k] - total.m) / total.s;
    const typename Ops::V fv = Ops::set1(f);
    const float* ec = exps + c;
    write_row<Ops>(y + c, len, streaming,
                   [&](int64_t i, int64_t l) { return Ops::mul(load_part<Ops>(ec, i, l, 0.0f), fv); });
  }
}

// Columns. log_softmax: statistics, then y = (x - m) - log s. softmax, as
// on rows, evaluates exp once: y = exp(x - m) with the sum, then y *= 1 / s
// over the block, which is still in cache.
template <class Ops>
void softmax_columns(const float* x, float* y, SoftmaxShape s, bool log) {
  using V = typename Ops::V;
  constexpr int kLanes = kBlockVectors * Ops::W;
  for_each_column_block<Ops>(s, [&](int64_t o, int64_t j0, int64_t lanes) {
    const ColumnBlock<Ops> blk{lanes};
    const int nv = blk.vectors();
    const int64_t base = o * s.classes * s.inner + j0;
    V vm[kBlockVectors], k[kBlockVectors];
    if (log) {
      float m[kLanes], sum[kLanes], d[kLanes], qw[kLanes];
      column_stats<Ops, false, false, false>(x, LossTarget{}, s, base, blk, m, sum, d, qw);
      for (int l = 0; l < kLanes; ++l) sum[l] = __builtin_logf(sum[l]);
      for (int u = 0; u < nv; ++u) {
        vm[u] = Ops::load(m + u * Ops::W);
        k[u] = Ops::load(sum + u * Ops::W);
      }
      for (int64_t c = 0; c < s.classes; ++c) {
        const int64_t off = base + c * s.inner;
        for (int u = 0; u < nv; ++u) blk.store(y + off, u, Ops::sub(Ops::sub(blk.load(x + off, u, 0.0f), vm[u]), k[u]));
      }
      return;
    }
    column_max<Ops>(x, s, base, blk, vm);
    V sum[kBlockVectors];
    for (int u = 0; u < nv; ++u) sum[u] = Ops::zero();
    sum_over_classes<Ops>(s.classes, nv, sum, [&](int64_t c, int u) {
      const int64_t off = base + c * s.inner;
      const V e = vexp_nonpositive<Ops>(Ops::sub(blk.load(x + off, u, 0.0f), vm[u]));
      blk.store(y + off, u, e);
      return e;
    });
    for (int u = 0; u < nv; ++u) k[u] = Ops::div(Ops::set1(1.0f), sum[u]);
    for (int64_t c = 0; c < s.classes; ++c) {
      const int64_t off = base + c * s.inner;
      for (int u = 0; u < nv; ++u) blk.store(y + off, u, Ops::mul(blk.load(y + off, u, 0.0f), k[u]));
    }
  });
}

// softmax of whole rows [begin, end) of up to kChunk floats, which stay in
// L1: max, then y = exp(x - max) with the sum, then y *= 1 / sum. Short
// rows (attention's 128 keys, 1000 classes) spend a good part of their
// time outside the element loops, so this skips the chunk bookkeeping of
// exp_into_output (a thread_local lookup, a call into the TLS resolver
// from a shared library, per pass), and scales each row after the exp pass
// of the next, so that the wait for a row's sum overlaps other work.
template <class Ops>
void softmax_short_rows(const float* x, float* y, int64_t n, int64_t begin, int64_t end) {
  float inv_prev = 0.0f;
  // Each row's max is taken during the exp pass of the row before (see
  // Lookahead).
  float m_next = begin < end ? max_of<Ops>(x + begin * n, n) : 0.0f;
  for (int64_t r = begin; r <= end; ++r) {
    float inv = 0.0f;
    if (r < end) {
      const float m = m_next;
      const float* ahead = x + (r + 1) * n;
      m_next = pass_then_max_ahead<Ops>(n, ahead, r + 1 < end ? n : 0, [&](RunningMax<Ops>* ahead_max, int64_t fused) {
        inv = 1.0f / exp_store_sum<Ops>(x + r * n, y + r * n, n, m, ahead_max, ahead, fused);
      });
    }
    if (r > begin) {
      float* yp = y + (r - 1) * n;
      const typename Ops::V f = Ops::set1(inv_prev);
      store_row<Ops>(yp, n, [&](int64_t i, int64_t len) { return Ops::mul(load_part<Ops>(yp, i, len, 0.0f), f); });
    }
    inv_prev = inv;
  }
}

// log_softmax of whole rows [begin, end) of length n, the write pass of
// each row interleaved chunk by chunk with the statistics pass of the next.
// Done row after row, the statistics pass reads memory while the exp keeps
// the FMA ports busy, and the write pass then stores while the core has
// little to compute (it re-reads the row from L1 or L2); interleaved, the
// reads, the stores and the exp overlap. One thread, L3-resident, against
// row after row: 256x32000 -25 to -36%, 2048x1000 and 12288x128 -5%
// (bench/NOTES.md).
template <class Ops>
void log_softmax_pipelined(const float* x, float* y, int64_t n, int64_t begin, int64_t end, bool streaming) {
  if (begin >= end) return;
  // The statistics pass reads rows [begin, end) as one run of chunks: the
  // first chunk's max of each row is taken during the last chunk of the
  // row before (see Lookahead).
  float first_max = max_of<Ops>(x + begin * n, min_i(kChunk, n));
  const auto stats = [&](int64_t r, auto after_chunk) {
    return row_stats_ahead<Ops, false, false, false>(x + r * n, nullptr, nullptr, n, x + (r + 1) * n,
                                                     r + 1 < end ? n : 0, &first_max, after_chunk);
  };
  RowStats st = stats(begin, [](int64_t, int64_t) {});
  for (int64_t r = begin + 1; r < end; ++r) {
    const float* written = x + (r - 1) * n;
    float* out = y + (r - 1) * n;
    const RowStats done = st;
    st = stats(r, [&](int64_t c, int64_t len) {
      write_softmax_row<Ops>(written + c, out + c, len, done.m, done.s, true, streaming);
    });
  }
  write_softmax_row<Ops>(x + (end - 1) * n, y + (end - 1) * n, n, st.m, st.s, true, streaming);
}

// One class: softmax 1 and log_softmax 0 where x is finite, NaN where it
// is not (x - x, as the general path gives through x - max), elementwise:
// the general path's per-row bookkeeping took 53 us on 1000 rows of one.
template <class Ops>
void single_class_softmax(const float* x, float* y, int64_t n, bool log) {
  using V = typename Ops::V;
  const V offset = Ops::set1(log ? 0.0f : 1.0f);
  minidnn::parallel(minidnn::threads_for(n, kGrain), [&](int64_t t, int64_t nt) {
    const int64_t begin = n * t / nt, end = n * (t + 1) / nt;
    store_row<Ops>(y + begin, end - begin, [&](int64_t i, int64_t len) {
      const V v = load_part<Ops>(x + begin, i, len, 0.0f);
      return Ops::add(Ops::sub(v, v), offset);
    });
  });
}

template <class Ops>
void softmax_forward(const float* x, float* y, SoftmaxShape s, bool log) {
  if (s.classes == 1) return single_class_softmax<Ops>(x, y, s.outer * s.inner, log);
  if (s.inner != 1) return softmax_columns<Ops>(x, y, s, log);
  const int64_t n = s.classes;
  const int threads = minidnn::threads_for(s.outer * n, kGrain);
  const bool streaming = s.outer * n >= kStreamMinFloats;
  if (!log && n <= kChunk) {
    minidnn::parallel(threads, [&](int64_t t, int64_t nt) {
      softmax_short_rows<Ops>(x, y, n, s.outer * t / nt, s.outer * (t + 1) / nt);
    });
    return;
  }
  const bool split = row_slices(s.outer, n) > 1;
  if (log && !split) {
    minidnn::parallel(threads, [&](int64_t t, int64_t nt) {
      log_softmax_pipelined<Ops>(x, y, n, s.outer * t / nt, s.outer * (t + 1) / nt, streaming);
      if (streaming) Ops::stream_fence();
    });
    return;
  }
  if (!log && n <= kOnePassMax && !split) {
    // Streaming: the exps go to a per-thread slice in L2 rather than into
    // y, which the scale pass then streams to; y is written once and never
    // read for ownership.
    for_each_row<Ops, RowStats>(
        s.outer, n,
        [&](int64_t r, int64_t b, int64_t e) {
          float* exps = streaming ? minidnn::thread_scratch(minidnn::ScratchSlot::softmax_row, e - b) : y + r * n + b;
          return exp_into_output<Ops>(x + r * n + b, e - b, exps, thread_chunk_maxima());
        },
        merge_stats,
        [&](int64_t r, int64_t b, int64_t e, const RowStats& total) {
          const float* exps =
              streaming ? minidnn::thread_scratch(minidnn::ScratchSlot::softmax_row, e - b) : y + r * n + b;
          scale_chunks<Ops>(exps, y + r * n + b, thread_chunk_maxima(), e - b, total, streaming);
        });
    return;
  }
  for_each_row<Ops, RowStats>(
      s.outer, n,
      [&](int64_t r, int64_t b, int64_t e) {
        return row_stats<Ops, false, false, false>(x + r * n + b, nullptr, nullptr, e - b);
      },
      merge_stats,
      [&](int64_t r, int64_t b, int64_t e, const RowStats& st) {
        write_softmax_row<Ops>(x + r * n + b, y + r * n + b, e - b, st.m, st.s, log, streaming);
      });
}

// ---------------------------------------------------------------------------
// softmax / log_softmax backward
//   softmax:     gx = y * (gy - sum(gy * y))
//   log_softmax: gx = gy - exp(y) * sum(gy)
// ---------------------------------------------------------------------------

// sum(gy * y) (softmax) or sum(gy) (log_softmax) over [0, n), through
// float partial sums of one chunk each.
template <class Ops, bool kLog>
double backward_dot(const float* gy, const float* y, int64_t n) {
  using V = typename Ops::V;
  const auto term = [&](V acc, int64_t i, int64_t len) {
    const V g = load_part<Ops>(gy, i, len, 0.0f);
    return kLog ? Ops::add(acc, g) : Ops::fmadd(g, load_part<Ops>(y, i, len, 0.0f), acc);
  };
  double total = 0.0;
  for (int64_t c = 0; c < n; c += kChunk) {
    const int64_t end = c + min_i(kChunk, n - c);
    V a0 = Ops::zero(), a1 = Ops::zero();
    int64_t i = c;
    for (; i + 2 * Ops::W <= end; i += 2 * Ops::W) {
      a0 = term(a0, i, Ops::W);
      a1 = term(a1, i + Ops::W, Ops::W);
    }
    for (; i < end; i += Ops::W) a0 = term(a0, i, min_i(Ops::W, end - i));
    total += Ops::reduce_add(Ops::add(a0, a1));
  }
  return total;
}

template <class Ops, bool kLog>
typename Ops::V backward_value(typename Ops::V g, typename Ops::V y, typename Ops::V dot) {
  return kLog ? Ops::fnmadd(vexp<Ops>(y), dot, g) : Ops::mul(y, Ops::sub(g, dot));
}

template <class Ops, bool kLog>
void softmax_backward_columns(const float* gy, const float* y, float* gx, SoftmaxShape s) {
  using V = typename Ops::V;
  for_each_column_block<Ops>(s, [&](int64_t o, int64_t j0, int64_t lanes) {
    const ColumnBlock<Ops> blk{lanes};
    const int nv = blk.vectors();
    const int64_t base = o * s.classes * s.inner + j0;
    V dot[kBlockVectors];
    for (int u = 0; u < nv; ++u) dot[u] = Ops::zero();
    sum_over_classes<Ops>(s.classes, nv, dot, [&](int64_t c, int u) {
      const int64_t off = base + c * s.inner;
      const V g = blk.load(gy + off, u, 0.0f);
      return kLog ? g : Ops::mul(g, blk.load(y + off, u, 0.0f));
    });
    for (int64_t c = 0; c < s.classes; ++c) {
      const int64_t off = base + c * s.inner;
      for (int u = 0; u < nv; ++u) {
        blk.store(gx + off, u, backward_value<Ops, kLog>(blk.load(gy + off, u, 0.0f), blk.load(y + off, u, 0.0f), dot[u]));
      }
    }
  });
}

template <class Ops, bool kLog>
void softmax_backward_as(const float* gy, const float* y, float* gx, SoftmaxShape s) {
  if (s.inner != 1) return softmax_backward_columns<Ops, kLog>(gy, y, gx, s);
  const int64_t n = s.classes;
  const bool streaming = s.outer * n >= kStreamMinFloats;
  for_each_row<Ops, double>(
      s.outer, n,
      [&](int64_t r, int64_t b, int64_t e) { return backward_dot<Ops, kLog>(gy + r * n + b, y + r * n + b, e - b); },
      [](const double* parts, int k) {
        double total = 0.0;
        for (int i = 0; i < k; ++i) total += parts[i];
        return total;
      },
      [&](int64_t r, int64_t b, int64_t e, double total) {
        const typename Ops::V dot = Ops::set1(static_cast<float>(total));
        const float* gr = gy + r * n + b;
        const float* yr = y + r * n + b;
        write_row<Ops>(gx + r * n + b, e - b, streaming, [&](int64_t i, int64_t len) {
          return backward_value<Ops, kLog>(load_part<Ops>(gr, i, len, 0.0f), load_part<Ops>(yr, i, len, 0.0f), dot);
        });
      });
}

template <class Ops>
void softmax_backward(const float* gy, const float* y, float* gx, SoftmaxShape s, bool log) {
  if (log) return softmax_backward_as<Ops, true>(gy, y, gx, s);
  softmax_backward_as<Ops, false>(gy, y, gx, s);
}

// ---------------------------------------------------------------------------
// cross-entropy, fused
//   class targets:       loss = (1-eps) w_t (lse - x_t) + eps/C sum_c w_c (lse - x_c)
//   probability targets: loss = sum_c w_c q_c (lse - x_c)
// From the statistics relative to the max m: lse - x = (m - x) + log s and
// sum wq (lse - x) = qw log s - d. The gradient of loss_i wrt logit c is
//   class: g ((1-eps) w_t + eps/C W) p_c - g eps/C w_c - [c == t] g (1-eps) w_t
//   prob:  g qw p_c - g w_c q_c
// with p = softmax(x) and W = sum_c w_c: a scale A on p minus B * wq, plus
// one correction at the target.
// ---------------------------------------------------------------------------

// What one call needs besides the data.
struct CrossEntropyPlan {
  const LossTarget& t;
  int64_t classes;
  double one_minus_eps;
  double eps_over_c;
  double weight_sum;

  CrossEntropyPlan(const LossTarget& target, int64_t c)
      : t(target),
        classes(c),
        one_minus_eps(1.0 - target.label_smoothing),
        eps_over_c(static_cast<double>(target.label_smoothing) / static_cast<double>(c)),
        weight_sum(0.0) {
    if (target.weight == nullptr) {
      weight_sum = static_cast<double>(c);
    } else {
      for (int64_t i = 0; i < c; ++i) weight_sum += target.weight[i];
    }
  }

  // 0: ignored, 1: a valid class, -1: out of range.
  int classify(int64_t idx) const {
    if (idx == t.ignore_index) return 0;
    return idx >= 0 && idx < classes ? 1 : -1;
  }
  float weight_of(int64_t idx) const { return t.weight != nullptr ? t.weight[idx] : 1.0f; }
  bool smoothing() const { return t.label_smoothing > 0.0f; }

  double class_loss(const RowStats& st, float w_t, float x_t) const {
    const double log_s = __builtin_log(static_cast<double>(st.s));
    double loss = one_minus_eps * w_t * ((static_cast<double>(st.m) - x_t) + log_s);
    if (smoothing()) loss += eps_over_c * (st.qw * log_s - st.d);
    return loss;
  }
  static double prob_loss(const RowStats& st) {
    return st.qw * __builtin_log(static_cast<double>(st.s)) - st.d;
  }
  // The loss of one element from its statistics, its class target `idx`
  // (unused for probability targets) and its logits, class c at
  // logits[c * stride]. False for a target out of range (loss NaN).
  template <bool kProb>
  bool element_loss(const RowStats& st, int64_t idx, const float* logits, int64_t stride, double* loss) const {
    if constexpr (kProb) {
      *loss = prob_loss(st);
      return true;
    }
    const int kind = classify(idx);
    *loss = kind == 1 ? class_loss(st, weight_of(idx), logits[idx * stride]) : kind == 0 ? 0.0 : kNaN;
    return kind >= 0;
  }
  // A and B of the gradient formula for one element of scale g.
  void gradient_terms(const RowStats& st, float w_t, float g, float* a, float* b) const {
    if (t.prob != nullptr) {
      *a = static_cast<float>(g * st.qw);
      *b = g;
    } else {
      *a = static_cast<float>(g * (one_minus_eps * w_t + eps_over_c * weight_sum));
      *b = static_cast<float>(g * eps_over_c);
    }
  }
  float target_correction(float w_t, float g) const { return static_cast<float>(g * one_minus_eps * w_t); }
};

inline float scale_of(const LossScale& scale, int64_t i) {
  return scale.per_element != nullptr ? scale.per_element[i] : scale.scalar;
}

// Statistics of the slice [b, e) of row r of the logits; an ignored or
// out-of-range class target skips the row without reading it.
template <class Ops, bool kDot, bool kWeight, bool kProb>
RowStats loss_row_stats(const float* x, const CrossEntropyPlan& plan, int64_t r, int64_t b, int64_t e) {
  const LossTarget& t = plan.t;
  if (!kProb && plan.classify(t.index[r]) != 1) return kEmptyStats;
  const int64_t n = plan.classes;
  return row_stats<Ops, kDot, kWeight, kProb>(x + r * n + b, kWeight ? t.weight + b : nullptr,
                                              kProb ? t.prob + r * n + b : nullptr, e - b);
}

template <class Ops, bool kDot, bool kWeight, bool kProb>
int64_t cross_entropy_rows(const float* x, const CrossEntropyPlan& plan, int64_t rows, double* loss) {
  const int64_t n = plan.classes;
  const LossTarget& t = plan.t;
  int64_t bad = 0;
  for_each_row<Ops, RowStats>(
      rows, n,
      [&](int64_t r, int64_t b, int64_t e) { return loss_row_stats<Ops, kDot, kWeight, kProb>(x, plan, r, b, e); },
      merge_stats,
      [&](int64_t r, int64_t b, int64_t, const RowStats& st) {
        if (b == 0 && !plan.element_loss<kProb>(st, kProb ? 0 : t.index[r], x + r * n, 1, &loss[r])) {
#pragma omp atomic
          ++bad;
        }
      });
  return bad;
}

template <class Ops, bool kDot, bool kWeight, bool kProb>
int64_t cross_entropy_columns(const float* x, const CrossEntropyPlan& plan, SoftmaxShape s, double* loss) {
  constexpr int kLanes = kBlockVectors * Ops::W;
  const LossTarget& t = plan.t;
  int64_t bad = 0;
  for_each_column_block<Ops>(s, [&](int64_t o, int64_t j0, int64_t lanes) {
    const ColumnBlock<Ops> blk{lanes};
    const int64_t base = o * s.classes * s.inner + j0;
    float m[kLanes], sum[kLanes], d[kLanes], qw[kLanes];
    column_stats<Ops, kDot, kWeight, kProb>(x, t, s, base, blk, m, sum, d, qw);
    for (int64_t l = 0; l < lanes; ++l) {
      const int64_t elem = o * s.inner + j0 + l;
      const RowStats st{m[l], sum[l], d[l], kWeight || kProb ? qw[l] : static_cast<double>(s.classes)};
      if (!plan.element_loss<kProb>(st, kProb ? 0 : t.index[elem], x + base + l, s.inner, &loss[elem])) {
#pragma omp atomic
        ++bad;
      }
    }
  });
  return bad;
}

template <class Ops, bool kDot, bool kWeight, bool kProb>
int64_t cross_entropy_as(const float* x, const CrossEntropyPlan& plan, SoftmaxShape s, double* loss) {
  if (s.inner == 1) return cross_entropy_rows<Ops, kDot, kWeight, kProb>(x, plan, s.outer, loss);
  return cross_entropy_columns<Ops, kDot, kWeight, kProb>(x, plan, s, loss);
}

template <class Ops>
int64_t cross_entropy_forward(const float* x, const LossTarget& t, SoftmaxShape s, double* loss) {
  const CrossEntropyPlan plan(t, s.classes);
  const bool w = t.weight != nullptr;
  if (t.prob != nullptr) {
    return w ? cross_entropy_as<Ops, true, true, true>(x, plan, s, loss)
             : cross_entropy_as<Ops, true, false, true>(x, plan, s, loss);
  }
  if (plan.smoothing()) {
    return w ? cross_entropy_as<Ops, true, true, false>(x, plan, s, loss)
             : cross_entropy_as<Ops, true, false, false>(x, plan, s, loss);
  }
  return cross_entropy_as<Ops, false, false, false>(x, plan, s, loss);
}

// grad = a * exp(x - m) - b * wq over [0, n) of one row; kSub: b * wq
// exists.
template <class Ops, bool kSub, bool kWeight, bool kProb>
void write_ce_gradient(const float* x, const float* w, const float* q, float* grad, int64_t n, float m, float a,
                       float b) {
  using V = typename Ops::V;
  const V mv = Ops::set1(m), av = Ops::set1(a), bv = Ops::set1(b);
  store_row<Ops>(grad, n, [&](int64_t i, int64_t len) {
    V g = Ops::mul(av, vexp_nonpositive<Ops>(Ops::sub(load_part<Ops>(x, i, len, 0.0f), mv)));
    if constexpr (kSub) {
      g = Ops::fnmadd(bv, load_wq<Ops, kWeight, kProb>(w, q, i, len), g);
    }
    return g;
  });
}

template <class Ops, bool kSub, bool kWeight, bool kProb>
int64_t cross_entropy_backward_rows(const float* x, const CrossEntropyPlan& plan, int64_t rows, LossScale scale,
                                    float* grad) {
  const int64_t n = plan.classes;
  const LossTarget& t = plan.t;
  int64_t bad = 0;
  for_each_row<Ops, RowStats>(
      rows, n,
      [&](int64_t r, int64_t b, int64_t e) {
        return loss_row_stats<Ops, kProb, kWeight && kProb, kProb>(x, plan, r, b, e);
      },
      merge_stats,
      [&](int64_t r, int64_t b, int64_t e, const RowStats& st) {
        float* gr = grad + r * n;
        const float g = scale_of(scale, r);
        int64_t idx = 0;
        float w_t = 1.0f;
        if constexpr (!kProb) {
          idx = t.index[r];
          const int kind = plan.classify(idx);
          if (kind != 1) {
            fill_zero<Ops>(gr + b, e - b);
            if (kind < 0 && b == 0) {
#pragma omp atomic
              ++bad;
            }
            return;
          }
          w_t = plan.weight_of(idx);
        }
        float a, bb;
        plan.gradient_terms(st, w_t, g, &a, &bb);
        write_ce_gradient<Ops, kSub, kWeight, kProb>(x + r * n + b, kWeight ? t.weight + b : nullptr,
                                                      kProb ? t.prob + r * n + b : nullptr, gr + b, e - b, st.m,
                                                      a / st.s, bb);
        if (!kProb && idx >= b && idx < e) gr[idx] -= plan.target_correction(w_t, g);
      });
  return bad;
}

template <class Ops, bool kSub, bool kWeight, bool kProb>
int64_t cross_entropy_backward_columns(const float* x, const CrossEntropyPlan& plan, SoftmaxShape s,
                                       LossScale scale, float* grad) {
  using V = typename Ops::V;
  constexpr int kLanes = kBlockVectors * Ops::W;
  const LossTarget& t = plan.t;
  int64_t bad = 0;
  for_each_column_block<Ops>(s, [&](int64_t o, int64_t j0, int64_t lanes) {
    const ColumnBlock<Ops> blk{lanes};
    const int nv = blk.vectors();
    const int64_t base = o * s.classes * s.inner + j0;
    float m[kLanes], sum[kLanes], d[kLanes], qw[kLanes], a[kLanes], b[kLanes], fix[kLanes], live[kLanes];
    int64_t target[kLanes];
    column_stats<Ops, kProb, kWeight && kProb, kProb>(x, t, s, base, blk, m, sum, d, qw);
    for (int64_t l = 0; l < kLanes; ++l) {
      a[l] = b[l] = fix[l] = live[l] = 0.0f;
      target[l] = -1;
      if (l >= lanes) continue;
      const int64_t elem = o * s.inner + j0 + l;
      const float g = scale_of(scale, elem);
      float w_t = 1.0f;
      if constexpr (!kProb) {
        const int64_t idx = t.index[elem];
        const int kind = plan.classify(idx);
        if (kind != 1) {
          if (kind < 0) {
#pragma omp atomic
            ++bad;
          }
          continue;
        }
        target[l] = idx;
        w_t = plan.weight_of(idx);
        fix[l] = plan.target_correction(w_t, g);
      }
      plan.gradient_terms(RowStats{m[l], sum[l], d[l], qw[l]}, w_t, g, &a[l], &b[l]);
      a[l] /= sum[l];
      live[l] = 1.0f;
    }
    V vm[kBlockVectors], va[kBlockVectors], vb[kBlockVectors], vlive[kBlockVectors];
    for (int u = 0; u < nv; ++u) {
      vm[u] = Ops::load(m + u * Ops::W);
      va[u] = Ops::load(a + u * Ops::W);
      vb[u] = Ops::load(b + u * Ops::W);
      vlive[u] = Ops::load(live + u * Ops::W);
    }
    for (int64_t c = 0; c < s.classes; ++c) {
      const int64_t off = base + c * s.inner;
      const V wc = kWeight ? Ops::set1(t.weight[c]) : Ops::set1(1.0f);
      for (int u = 0; u < nv; ++u) {
        V g = Ops::mul(va[u], vexp_nonpositive<Ops>(Ops::sub(blk.load(x + off, u, 0.0f), vm[u])));
        if constexpr (kSub) {
          const V wq = kProb ? Ops::mul(wc, blk.load(t.prob + off, u, 0.0f)) : wc;
          g = Ops::fnmadd(vb[u], wq, g);
        }
        // An ignored element's gradient is 0, also where 0 * exp(inf - inf)
        // would make it NaN (as the row path, which skips such rows).
        if constexpr (!kProb) g = Ops::select(Ops::gt(vlive[u], Ops::zero()), g, Ops::zero());
        blk.store(grad + off, u, g);
      }
    }
    for (int64_t l = 0; l < lanes; ++l) {
      if (target[l] >= 0) grad[base + target[l] * s.inner + l] -= fix[l];
    }
  });
  return bad;
}

template <class Ops, bool kSub, bool kWeight, bool kProb>
int64_t cross_entropy_backward_as(const float* x, const CrossEntropyPlan& plan, SoftmaxShape s, LossScale scale,
                                  float* grad) {
  if (s.inner == 1) return cross_entropy_backward_rows<Ops, kSub, kWeight, kProb>(x, plan, s.outer, scale, grad);
  return cross_entropy_backward_columns<Ops, kSub, kWeight, kProb>(x, plan, s, scale, grad);
}

template <class Ops>
int64_t cross_entropy_backward(const float* x, const LossTarget& t, SoftmaxShape s, LossScale scale, float* grad) {
  const CrossEntropyPlan plan(t, s.classes);
  const bool w = t.weight != nullptr;
  if (t.prob != nullptr) {
    return w ? cross_entropy_backward_as<Ops, true, true, true>(x, plan, s, scale, grad)
             : cross_entropy_backward_as<Ops, true, false, true>(x, plan, s, scale, grad);
  }
  if (plan.smoothing()) {
    return w ? cross_entropy_backward_as<Ops, true, true, false>(x, plan, s, scale, grad)
             : cross_entropy_backward_as<Ops, true, false, false>(x, plan, s, scale, grad);
  }
  return cross_entropy_backward_as<Ops, false, false, false>(x, plan, s, scale, grad);
}

}  // namespace
