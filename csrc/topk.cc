// Selection, work planning, threading and run-time ISA dispatch for the exact
// Hamming top-k (see topk.h for the selection structure).
#include "topk.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif

namespace jhash_native {

const char* const kErrNoMemory =
    "out of memory: the search's working buffers could not be allocated (search fewer queries per call, "
    "or with a smaller k)";
const char* const kErrThreads =
    "could not start the worker threads (the system refused a new thread: a process, thread or memory "
    "limit); pass a smaller num_threads or set JHASH_NUM_THREADS";
const char* const kErrInternal = "internal error in the native kernel (an unexpected C++ exception)";

// ------------------------------------------------------------- selection --
static void compact(QState* s, const SelCtx* ctx) {
  // Keep the k smallest keys: every key with d < T (s->below < k of them)
  // and the (k - below) smallest-index keys with d == T.
  std::nth_element(s->buf, s->buf + ctx->k, s->buf + s->n);
  s->n = ctx->k;
  s->hist[s->T] = (uint32_t)(ctx->k - s->below);
}

__attribute__((noinline)) int32_t accept_key(QState* s, const SelCtx* ctx,
                                             int32_t d, int64_t j) {
  if (s->n == ctx->cap) compact(s, ctx);
  s->buf[s->n++] = ((uint64_t)(uint32_t)d << 32) | (uint64_t)j;
  s->hist[d] += 1;
  int64_t below = s->below + 1;
  int32_t T = s->T;
  while (below >= ctx->k) {  // lower T to min{t : #(d <= t) >= k}
    --T;
    below -= s->hist[T];
  }
  s->below = (int32_t)below;
  s->T = T;
  return T;
}

// Lowers a state's threshold to a bound t < s->T received from another
// gallery chunk of the same query (that chunk holds k rows with d < t, so no
// row here with d >= t can be in the top-k). Keys with d < t stay counted in
// `below`; buffered keys with d >= t are left in the buffer (they are real
// keys and sort after the ones that matter, so they never change a result).
static void lower_threshold(QState* s, int32_t t) {
  int64_t below = 0;
  for (int32_t d = 0; d < t; ++d) below += s->hist[d];
  s->below = (int32_t)below;
  s->T = t;
}

// Exchanges one query's threshold with the other gallery chunks scanning it
// (`bound`: the smallest "accept iff d < bound" any chunk has proved): adopts a
// lower bound, or publishes T + 1 when that is lower (rows of another chunk
// tying at T may have a smaller index, so they stay acceptable there). T + 1 <
// bound implies this chunk's own selection lowered T, i.e. it holds k rows with
// d <= T (a received bound is never below the current one). Called between
// tiles, so the kernels only ever see a threshold in s->T.
static void share_threshold(QState* s, std::atomic<int32_t>* bound) {
  int32_t b = bound->load(std::memory_order_relaxed);
  if (b < s->T) {
    lower_threshold(s, b);
  } else if (s->T + 1 < b) {
    const int32_t mine = s->T + 1;
    while (mine < b && !bound->compare_exchange_weak(b, mine, std::memory_order_relaxed)) {
    }
  }
}

// The m = min(k, n) smallest keys of a state, sorted, into dst.
static int64_t finalize(QState* s, int64_t k, uint64_t* dst) {
  const int64_t m = std::min<int64_t>(k, s->n);
  if (m < s->n) std::nth_element(s->buf, s->buf + m, s->buf + s->n);
  std::sort(s->buf, s->buf + m);
  std::memcpy(dst, s->buf, (size_t)m * sizeof(uint64_t));
  return m;
}

// ------------------------------------------------------------------- ISA --
const char* isa_name(int isa) {
  switch (isa) {
    case ISA_BASELINE: return "baseline";
    case ISA_AVX2: return "avx2";
    case ISA_AVX512: return "avx512";
    default: return "auto";
  }
}

static bool cpu_has(int isa) {
  if (isa == ISA_BASELINE) return true;
#if defined(JHASH_X86_DISPATCH)
  __builtin_cpu_init();
  if (isa == ISA_AVX2)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt") &&
           __builtin_cpu_supports("bmi2");
  if (isa == ISA_AVX512)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt") &&
           __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512vpopcntdq");
#endif
  return false;
}

KernelSet select_kernels(int isa, int64_t nbytes) {
#if defined(JHASH_X86_DISPATCH)
  if (isa == ISA_AVX512) return avx512::select(nbytes);
  if (isa == ISA_AVX2) return avx2::select(nbytes);
#endif
  (void)isa;
  return baseline::select(nbytes);
}

const char* kernel_name(int isa, int64_t nbytes) { return select_kernels(isa, nbytes).name; }

static const char* topk_impl(const uint8_t* q, int64_t nq, const uint8_t* g,
                             int64_t ng, int64_t nbytes, int64_t k,
                             int num_threads, int isa, int split,
                             int64_t items_per_thread, int32_t* out_dist,
                             int32_t* out_idx);

// Self-test of an ISA's kernels against a byte-table reference on small
// random and tied inputs, all width classes; run once per ISA before first
// use, so a miscompiled or mis-dispatched kernel can never give wrong results.
static std::string run_selftest(int isa) {
  static const int widths[] = {1, 2, 3, 4, 5, 7, 8, 9, 12, 16, 24, 31, 32, 33, 40,
                               48, 64, 96, 100, 128, 160, 192, 256, 320, 512, 544};
  uint8_t pc8[256];
  for (int i = 0; i < 256; ++i) pc8[i] = (uint8_t)__builtin_popcount((unsigned)i);
  std::mt19937_64 rng(12345);
  for (int w : widths) {
    for (int variant = 0; variant < 2; ++variant) {
      const int64_t nq = 5, ng = 77, k = 9;
      std::vector<uint8_t> q(nq * w), g(ng * w);
      for (auto& x : q) x = (uint8_t)rng();
      for (auto& x : g) x = (uint8_t)rng();
      if (variant == 1) {  // heavy ties: rows from a handful of patterns
        for (int64_t j = 0; j < ng; ++j) std::memcpy(&g[j * w], &q[(j % 3) * w], w);
        for (int64_t j = 0; j < ng; j += 5) g[j * w] ^= 1;
      }
      std::vector<int32_t> d(nq * k), ix(nq * k);
      if (const char* e = topk_impl(q.data(), nq, g.data(), ng, w, k, 1, isa, SPLIT_AUTO, 0, d.data(),
                                    ix.data()))
        return e;
      const DistFn dist = select_kernels(isa, w).dist;
      for (int64_t i = 0; i < nq; ++i) {
        std::vector<uint64_t> keys(ng);
        for (int64_t j = 0; j < ng; ++j) {
          int dd = 0;
          for (int b = 0; b < w; ++b) dd += pc8[q[i * w + b] ^ g[j * w + b]];
          if (dist(&q[i * w], &g[j * w], w) != dd)
            return "distance kernel mismatch at width " + std::to_string(w);
          keys[j] = ((uint64_t)dd << 32) | (uint64_t)j;
        }
        std::sort(keys.begin(), keys.end());
        for (int64_t r = 0; r < k; ++r)
          if (d[i * k + r] != (int32_t)(keys[r] >> 32) ||
              ix[i * k + r] != (int32_t)(keys[r] & 0xffffffffu))
            return "top-k kernel mismatch at width " + std::to_string(w);
      }
    }
  }
  return distance_selftest(isa);
}

struct IsaStatus {
  std::once_flag once;
  bool ok = false;
  std::string error;
};
static IsaStatus g_isa_status[4];

static bool isa_usable(int isa) {
  if (isa < ISA_BASELINE || isa > ISA_AVX512) return false;
  IsaStatus& st = g_isa_status[isa];
  std::call_once(st.once, [&] {
    if (!cpu_has(isa)) {
      st.ok = false;
      st.error = "not supported by this CPU or build";
      return;
    }
    st.error = run_selftest(isa);
    st.ok = st.error.empty();
  });
  return st.ok;
}

bool isa_supported(int isa) { return isa_usable(isa); }

const char* isa_selftest_error(int isa) {
  if (isa < ISA_BASELINE || isa > ISA_AVX512) return nullptr;
  isa_usable(isa);
  const std::string& e = g_isa_status[isa].error;
  return e.empty() ? nullptr : e.c_str();
}

int default_isa() {
  static int chosen = [] {
    int cap = ISA_AVX512;
    if (const char* env = std::getenv("JHASH_NATIVE_ISA")) {
      const std::string v(env);
      if (v == "baseline") cap = ISA_BASELINE;
      else if (v == "avx2") cap = ISA_AVX2;
    }
    for (int isa = cap; isa > ISA_BASELINE; --isa)
      if (isa_usable(isa)) return isa;
    return (int)ISA_BASELINE;
  }();
  return chosen;
}

int default_num_threads() {
  if (const char* env = std::getenv("JHASH_NUM_THREADS")) {
    const int v = std::atoi(env);
    if (v > 0) return v;
  }
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int c = CPU_COUNT(&set);
    if (c > 0) return c;
  }
#endif
  const unsigned h = std::thread::hardware_concurrency();
  return h > 0 ? (int)h : 1;
}

// ------------------------------------------------------------ the driver --
void run_parallel(int nthreads, int64_t nitems, void (*fn)(void*, int, int64_t), void* arg) {
  std::atomic<int64_t> next(0);
  std::atomic<bool> failed(false);
  std::exception_ptr error;  // the first failure, written once under `failed`
  std::mutex error_mu;
  auto fail = [&](std::exception_ptr e) {
    std::lock_guard<std::mutex> lock(error_mu);
    if (!error) error = e;
    failed.store(true, std::memory_order_relaxed);
  };
  auto worker = [&](int tid) noexcept {
    try {
      while (!failed.load(std::memory_order_relaxed)) {
        const int64_t it = next.fetch_add(1, std::memory_order_relaxed);
        if (it >= nitems) break;
        fn(arg, tid, it);
      }
    } catch (...) {
      fail(std::current_exception());
    }
  };
  const int nt = (int)std::max<int64_t>(1, std::min<int64_t>(nthreads, nitems));
  std::vector<std::thread> pool;
  try {
    pool.reserve(nt - 1);
    for (int t = 1; t < nt; ++t) pool.emplace_back(worker, t);
  } catch (const std::system_error& e) {
    fail(std::make_exception_ptr(ThreadStartError(e.what())));
  } catch (...) {
    fail(std::current_exception());
  }
  if (!failed.load(std::memory_order_relaxed)) worker(0);
  for (auto& th : pool) th.join();
  if (error) std::rethrow_exception(error);
}

// Queries per work item below which the gallery, not the queries, is split
// between threads (fewer queries per gallery pass would make the pass, not the
// distances, the cost).
constexpr int64_t kMinQueriesPerItem = 8;
// Query superblocks per thread when the queries are split (see topk_impl):
// two for codes narrower than kWideCodeBytes (a spare item evens out a thread
// slowed by other work), one for wider codes, where every extra pass over the
// gallery costs CPU time.
constexpr int64_t kItemsPerThread = 2;
constexpr int64_t kWideCodeBytes = 64;
// Gallery chunks per thread when the gallery is split.
constexpr int64_t kChunksPerThread = 4;

namespace {
struct Plan {
  const uint8_t* q;
  const uint8_t* g;
  int64_t nq, ng, nbytes, k, maxd;
  int64_t qs_len, n_qs;        // query superblocks: n_qs parts of at most qs_len queries
  int64_t chunk_len, n_gc;     // gallery chunks
  int64_t tile_rows;
  int64_t kk;                  // results kept per (chunk, query)
  SelCtx ctx;
  ScanFn scan;
  int32_t* out_dist;
  int32_t* out_idx;
  std::vector<uint64_t> partial;  // [n_gc][nq][kk] keys (only if n_gc > 1)
  std::vector<int64_t> pcount;    // [n_gc][nq]
  // [nq] per query, the lowest threshold proved by any gallery chunk (n_gc > 1)
  std::unique_ptr<std::atomic<int32_t>[]> bound;
  struct Scratch {
    std::vector<uint32_t> hist;
    std::vector<uint64_t> buf;
    std::vector<QState> st;
    std::vector<uint64_t> tmp;
  };
  std::vector<Scratch> scratch;  // per thread
};
}  // namespace

// First query of superblock i when nq queries are split into n parts whose
// sizes differ by at most one (so equal-cost items keep the threads balanced).
static int64_t superblock_start(int64_t nq, int64_t n, int64_t i) { return i * nq / n; }

static void scan_item(void* arg, int tid, int64_t item) {
  Plan& P = *static_cast<Plan*>(arg);
  const int64_t qi = item % P.n_qs, gc = item / P.n_qs;
  const int64_t q0 = superblock_start(P.nq, P.n_qs, qi), q1 = superblock_start(P.nq, P.n_qs, qi + 1);
  const int64_t nqb = q1 - q0;
  const int64_t c0 = gc * P.chunk_len, c1 = std::min(P.ng, c0 + P.chunk_len);
  Plan::Scratch& S = P.scratch[tid];
  const int64_t H = P.maxd + 1;
  if (S.st.size() < (size_t)P.qs_len) {
    S.hist.assign((size_t)(P.qs_len * H), 0);
    S.buf.assign((size_t)(P.qs_len * P.ctx.cap), 0);
    S.st.resize((size_t)P.qs_len);
    S.tmp.resize((size_t)P.kk);
  }
  std::memset(S.hist.data(), 0, sizeof(uint32_t) * (size_t)(nqb * H));
  for (int64_t i = 0; i < nqb; ++i) {
    QState& s = S.st[i];
    s.T = (int32_t)(P.maxd + 1);
    s.below = 0;
    s.n = 0;
    s.hist = S.hist.data() + i * H;
    s.buf = S.buf.data() + i * P.ctx.cap;
  }
  const uint8_t* qb = P.q + q0 * P.nbytes;
  for (int64_t t0 = c0; t0 < c1; t0 += P.tile_rows) {
    const int64_t t1 = std::min(c1, t0 + P.tile_rows);
    if (P.n_gc > 1)  // chunks of one query share their thresholds between tiles
      for (int64_t i = 0; i < nqb; ++i) share_threshold(&S.st[i], &P.bound[q0 + i]);
    P.scan(qb, nqb, P.nbytes, P.g, t0, t1, S.st.data(), &P.ctx);
  }
  for (int64_t i = 0; i < nqb; ++i) {
    const int64_t qq = q0 + i;
    if (P.n_gc == 1) {
      const int64_t m = finalize(&S.st[i], P.k, S.tmp.data());
      for (int64_t r = 0; r < m; ++r) {
        P.out_dist[qq * P.k + r] = (int32_t)(S.tmp[r] >> 32);
        P.out_idx[qq * P.k + r] = (int32_t)(S.tmp[r] & 0xffffffffu);
      }
    } else {
      uint64_t* dst = P.partial.data() + (gc * P.nq + qq) * P.kk;
      P.pcount[gc * P.nq + qq] = finalize(&S.st[i], P.kk, dst);
    }
  }
}

static void merge_item(void* arg, int tid, int64_t item) {
  // item = a range of 64 queries
  Plan& P = *static_cast<Plan*>(arg);
  Plan::Scratch& S = P.scratch[tid];
  const int64_t q0 = item * 64, q1 = std::min(P.nq, q0 + 64);
  for (int64_t qq = q0; qq < q1; ++qq) {
    S.tmp.clear();
    for (int64_t gc = 0; gc < P.n_gc; ++gc) {
      const uint64_t* src = P.partial.data() + (gc * P.nq + qq) * P.kk;
      S.tmp.insert(S.tmp.end(), src, src + P.pcount[gc * P.nq + qq]);
    }
    std::partial_sort(S.tmp.begin(), S.tmp.begin() + P.k, S.tmp.end());
    for (int64_t r = 0; r < P.k; ++r) {
      P.out_dist[qq * P.k + r] = (int32_t)(S.tmp[r] >> 32);
      P.out_idx[qq * P.k + r] = (int32_t)(S.tmp[r] & 0xffffffffu);
    }
  }
}

static const char* topk_impl(const uint8_t* q, int64_t nq, const uint8_t* g,
                             int64_t ng, int64_t nbytes, int64_t k,
                             int num_threads, int isa, int split,
                             int64_t items_per_thread, int32_t* out_dist,
                             int32_t* out_idx) {
  if (split != SPLIT_AUTO && split != SPLIT_QUERIES && split != SPLIT_GALLERY)
    return "split must be 0 (automatic), 1 (queries) or 2 (gallery)";
  if (items_per_thread < 0) return "items_per_thread must be >= 0 (0: the default)";
  if (nbytes < 1) return "code width must be at least 1 byte";
  if (nbytes > (int64_t(1) << 27)) return "code width too large (distances must fit int32)";
  if (ng < 1) return "gallery is empty";
  if (ng >= (int64_t(1) << 31)) return "gallery has 2^31 rows or more (int32 indices)";
  if (k < 1 || k > ng) return "k must satisfy 1 <= k <= gallery rows";
  if (nq < 0) return "negative number of queries";
  if (nq == 0) return nullptr;

  Plan P;
  P.q = q; P.g = g; P.nq = nq; P.ng = ng; P.nbytes = nbytes; P.k = k;
  P.maxd = 8 * nbytes;
  P.scan = select_kernels(isa, nbytes).scan;
  P.out_dist = out_dist; P.out_idx = out_idx;
  const int nt = num_threads > 0 ? num_threads : default_num_threads();

  // Gallery tile: ~16 KiB so that it stays in L1 while every query of the
  // superblock is scanned against it; multiple of 8 rows (vector batches).
  P.tile_rows = std::max<int64_t>(64, (16384 / nbytes) / 8 * 8);

  // Work items (query superblock x gallery chunk) for the threads, several
  // per thread so that a thread slowed down by other work on a busy machine is
  // made up for by the others.
  //
  // With enough queries (>= kMinQueriesPerItem per item) the queries are split
  // and every item scans the whole gallery: each query's selection then sees
  // exactly the rows, in the same order, as with one thread (the same accepted
  // rows, nothing to merge), and threading costs only one more pass over the
  // gallery per item (streamed, each tile reused by the item's queries).
  // Splitting the gallery instead costs extra selection work, because each
  // chunk must keep its own top-k: the threshold a chunk can prove is the k-th
  // distance of its part of the gallery, not of the whole. Measured (AMD EPYC
  // AVX2, 100 queries, top-100, 2 threads, 8 chunks): 1M x 128 bits, 1,620
  // accepted rows per query instead of 860, 3.4 ms of chunk finalize and merge,
  // CPU time 1.14x that of one thread; 500k x 512 bits: 1,870 instead of 890
  // accepted rows, 1.09x the CPU time. Split by queries: the same accepted
  // rows as one thread and, in most rounds, 0.97-1.06x its CPU time.
  // kItemsPerThread = 2: with 4 items per thread, the extra gallery passes cost
  // 1.1-1.2x the CPU time at 1024-2048 bits (38-51 MB galleries, read from
  // memory again by every item) and the 1 -> 2 thread speed-up fell to
  // 1.52-1.58x, against 1.72-1.76x with 2 items per thread (same rounds).
  // From 512 bits up, one item per thread: in one quiet window (no other
  // process running; 100 queries, top-100, same process, interleaved, medians
  // of 9) 1 -> 2 threads gave 1.82x (500k x 512 b) and 1.97x (200k x 2048 b)
  // with one item per thread, CPU time 1.01-1.02x one thread's, against 1.64x
  // and 1.78x, CPU time 1.08-1.09x, with two; at 256 bits both gave 1.93-1.95x.
  //
  // With fewer queries, the gallery is split into chunks (each with its own
  // top-k, merged at the end). The chunks of a query share their thresholds
  // between tiles (share_threshold): without it every chunk paid the
  // selection's warm-up (rows accepted while its own threshold is still high)
  // again -- measured 1M x 256 bits, 100 queries, top-100, 2 threads: ~890
  // accepted rows per query with 1 chunk, ~5,800 with 8 independent chunks,
  // ~1,660 with shared thresholds.
  const int64_t min_chunk = std::max<int64_t>(4096, 2 * k);
  const int64_t cap0 = k + std::max<int64_t>(k, 256);
  const int64_t state_bytes = (P.maxd + 1) * 4 + std::min<int64_t>(cap0, ng) * 8;
  // Query superblock: bounded so that per-thread scratch stays <= ~64 MiB.
  int64_t qs_max = std::max<int64_t>(1, std::min<int64_t>(256, (int64_t(64) << 20) / state_bytes));
  P.n_qs = (nq + qs_max - 1) / qs_max;
  // `split` and `items_per_thread` (topk.h) override the rule and the item
  // counts; bench/search_threads.py times every setting against one thread.
  // The result is the same whatever the split.
  int64_t n_gc = 1;
  const bool auto_split = split == SPLIT_AUTO;
  const bool by_queries =
      auto_split ? nt > 1 && nq >= (int64_t)nt * kMinQueriesPerItem : split == SPLIT_QUERIES;
  const bool by_gallery = auto_split ? nt > 1 && !by_queries : split == SPLIT_GALLERY;
  if (by_queries) {
    // A multiple of the thread count, so that equal items divide evenly.
    // (More than ceil(nq / nt) per thread would only be capped at nq below.)
    int64_t per_thread = items_per_thread > 0 ? std::min<int64_t>(items_per_thread, (nq + nt - 1) / nt)
                         : nbytes >= kWideCodeBytes ? 1 : kItemsPerThread;
    if (auto_split) per_thread = std::min<int64_t>(per_thread, nq / ((int64_t)nt * kMinQueriesPerItem));
    P.n_qs = std::max<int64_t>(P.n_qs, per_thread * nt);
    P.n_qs = std::min<int64_t>(nq, (P.n_qs + nt - 1) / nt * nt);
  } else if (by_gallery) {
    const int64_t per_thread =
        items_per_thread > 0 ? std::min<int64_t>(items_per_thread, ng) : kChunksPerThread;
    const int64_t target_items = per_thread * (int64_t)nt;
    n_gc = (target_items + P.n_qs - 1) / P.n_qs;
    n_gc = std::max<int64_t>(1, std::min<int64_t>(n_gc, ng / min_chunk));
  }
  P.qs_len = (nq + P.n_qs - 1) / P.n_qs;
  P.chunk_len = (ng + n_gc - 1) / n_gc;
  P.chunk_len = (P.chunk_len + 63) / 64 * 64;
  P.n_gc = (ng + P.chunk_len - 1) / P.chunk_len;
  P.kk = std::min<int64_t>(k, P.chunk_len);
  P.ctx.k = k;
  P.ctx.cap = std::min<int64_t>(cap0, P.chunk_len);
  if (P.n_gc > 1) {
    P.partial.resize((size_t)(P.n_gc * nq * P.kk));
    P.pcount.assign((size_t)(P.n_gc * nq), 0);
    P.bound.reset(new std::atomic<int32_t>[(size_t)nq]);
    for (int64_t i = 0; i < nq; ++i) P.bound[i].store((int32_t)(P.maxd + 1), std::memory_order_relaxed);
  }
  const int64_t nitems = P.n_qs * P.n_gc;
  const int nthreads = (int)std::max<int64_t>(1, std::min<int64_t>(nt, nitems));
  P.scratch.resize((size_t)nthreads);
  run_parallel(nthreads, nitems, &scan_item, &P);
  if (P.n_gc > 1) {
    const int64_t nm = (nq + 63) / 64;
    run_parallel((int)std::min<int64_t>(nthreads, nm), nm, &merge_item, &P);
  }
  return nullptr;
}

const char* hamming_topk(const uint8_t* q, int64_t nq, const uint8_t* g,
                         int64_t ng, int64_t nbytes, int64_t k,
                         int num_threads, int isa, int split,
                         int64_t items_per_thread, int32_t* out_dist,
                         int32_t* out_idx) {
  if (isa == ISA_AUTO) {
    isa = default_isa();
  } else if (!isa_usable(isa)) {
    return "requested instruction set is not available on this CPU/build";
  }
  return topk_impl(q, nq, g, ng, nbytes, k, num_threads, isa, split, items_per_thread, out_dist,
                   out_idx);
}

}  // namespace jhash_native
