// jhash native CPU kernels: exact Hamming top-k over bit-packed codes.
//
// Layout: codes are rows of `nbytes` bytes (np.packbits order; byte order is
// irrelevant for Hamming distance). The result for each query is the k
// gallery rows with the smallest (distance, gallery index) keys, in that
// order.
//
// The selection structure (per query, per gallery chunk) is a threshold T
// with a histogram of the accepted distances and an append buffer of packed
// keys ((uint64)distance << 32 | index). A row is accepted iff d < T, where T
// is the smallest distance t with #accepted(d <= t) >= k: because rows are
// scanned in increasing index order, a later row with d == T always loses the
// tie. T only decreases, so the hot loop is "compute d, compare with a
// register, rarely branch". When the buffer fills up it is compacted to the k
// smallest keys (nth_element), so memory stays O(k) per query.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>
#include <system_error>

namespace jhash_native {

struct QState {
  int32_t T;       // accept iff d < T
  int32_t below;   // number of buffered keys with d < T
  int64_t n;       // number of buffered keys
  uint32_t* hist;  // [max_dist + 1] counts of buffered distances (valid for d <= T)
  uint64_t* buf;   // [cap] packed keys
};

struct SelCtx {
  int64_t k;
  int64_t cap;  // buffer capacity (>= k, or >= the chunk length)
};

// Cold path: record (d, j) for one query; returns the new threshold.
int32_t accept_key(QState* s, const SelCtx* ctx, int32_t d, int64_t j);

// A scan kernel: queries q[0..nq) (rows of nbytes) against gallery rows
// [j0, j1) of g, updating st[0..nq).
typedef void (*ScanFn)(const uint8_t* q, int64_t nq, int64_t nbytes,
                       const uint8_t* g, int64_t j0, int64_t j1, QState* st,
                       const SelCtx* ctx);
// Distance of one pair (used by the self-test).
typedef int32_t (*DistFn)(const uint8_t* a, const uint8_t* b, int64_t nbytes);

enum Isa : int { ISA_AUTO = 0, ISA_BASELINE = 1, ISA_AVX2 = 2, ISA_AVX512 = 3 };

struct KernelSet {
  ScanFn scan;
  DistFn dist;
  const char* name;  // human-readable kernel variant, e.g. "avx2-mula-mixed(32B)"
};

// Dense distances: out[i * ldo + j] = d(q_i, g_j) for queries q[0..nq) and
// gallery rows j in [j0, j1) (out points at query 0's row, column 0).
typedef void (*DenseFn)(const uint8_t* q, int64_t nq, int64_t nbytes,
                        const uint8_t* g, int64_t j0, int64_t j1, int32_t* out,
                        int64_t ldo);
// Gathered distances: out[i * c + t] = d(q_i, g_{idx[i * c + t]}) when
// 0 <= idx < ng, else `pad`.
typedef void (*GatherFn)(const uint8_t* q, int64_t nq, int64_t nbytes,
                         const uint8_t* g, int64_t ng, const int32_t* idx,
                         int64_t c, int32_t* out, int32_t pad);

struct DistKernels {
  DenseFn dense;
  GatherFn gather;
  const char* name;
};

// Per-ISA kernel selection for a code width (defined in kernels_*.cc).
namespace baseline { KernelSet select(int64_t nbytes); DistKernels select_dist(int64_t nbytes); }
#if defined(JHASH_X86_DISPATCH)
namespace avx2 { KernelSet select(int64_t nbytes); DistKernels select_dist(int64_t nbytes); }
namespace avx512 { KernelSet select(int64_t nbytes); DistKernels select_dist(int64_t nbytes); }
#endif

// ISA support on this CPU (compiled-in and reported by the CPU/OS).
bool isa_supported(int isa);
// The ISA used for ISA_AUTO (the best supported one that passed its
// self-test; JHASH_NATIVE_ISA=baseline|avx2|avx512 lowers it).
int default_isa();
const char* isa_name(int isa);
// Self-test failure message for an ISA, or nullptr if it passed / not run.
const char* isa_selftest_error(int isa);
// Threads used when num_threads <= 0 (JHASH_NUM_THREADS, else the CPUs this
// process may run on).
int default_num_threads();
const char* kernel_name(int isa, int64_t nbytes);
// The scan and distance kernels dispatched for an ISA and code width.
KernelSet select_kernels(int isa, int64_t nbytes);

// Runs fn(arg, thread id, item) for item in [0, nitems) on up to nthreads
// threads (the calling thread included); items are handed out dynamically.
// Exception-safe: if a thread cannot be started (ThreadStartError) or an item
// throws (e.g. std::bad_alloc), the remaining items are skipped, every started
// thread is joined and the first exception is rethrown in the calling thread.
void run_parallel(int nthreads, int64_t nitems, void (*fn)(void*, int, int64_t), void* arg);

struct ThreadStartError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Error messages the bindings map to Python exceptions by identity: kErrNoMemory
// -> MemoryError (RESOURCE_EXHAUSTED under XLA), kErrThreads / kErrInternal ->
// RuntimeError; every other message is a bad argument (ValueError).
extern const char* const kErrNoMemory;
extern const char* const kErrThreads;
extern const char* const kErrInternal;

// Calls f() (which returns nullptr or an error message) and turns any C++
// exception into one of the messages above, so that no exception ever leaves
// the native code (it would abort the Python process).
template <class F>
const char* no_throw(F&& f) noexcept {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    return kErrNoMemory;
  } catch (const ThreadStartError&) {
    return kErrThreads;
  } catch (const std::system_error&) {  // std::call_once, mutexes
    return kErrThreads;
  } catch (...) {
    return kErrInternal;
  }
}

// How the exact top-k divides its work between threads (a tuning and
// benchmarking knob: every setting gives the same result). SPLIT_AUTO: query
// superblocks when there are at least 8 queries per thread and more than one
// thread, else gallery chunks (one pass on one thread). SPLIT_QUERIES: query
// superblocks, each scanning the whole gallery. SPLIT_GALLERY: gallery chunks
// (each at least max(4096, 2k) rows) that share their thresholds and are
// merged at the end.
enum Split : int { SPLIT_AUTO = 0, SPLIT_QUERIES = 1, SPLIT_GALLERY = 2 };

// Exact top-k. Returns nullptr on success, else a static error message.
// Requirements (checked): nq >= 0, 1 <= k <= ng < 2^31, nbytes >= 1,
// split in Split, items_per_thread >= 0. items_per_thread: work items per
// thread (query superblocks when the queries are split, gallery chunks when
// the gallery is); 0 is the default (2 superblocks below 512 bits, 1 from 512
// bits up; 4 gallery chunks). Under SPLIT_AUTO the query split keeps at least
// 8 queries per superblock; a forced split is bounded only by the queries
// (one per superblock) and the gallery (chunks of at least max(4096, 2k) rows).
const char* hamming_topk(const uint8_t* q, int64_t nq, const uint8_t* g,
                         int64_t ng, int64_t nbytes, int64_t k,
                         int num_threads, int isa, int split,
                         int64_t items_per_thread, int32_t* out_dist,
                         int32_t* out_idx);

// Dense distance matrix out[nq, ng] (row-major int32). Returns nullptr on
// success, else a static error message. Requirements (checked): nq, ng >= 0,
// ng < 2^31, nbytes >= 1.
const char* hamming_distance(const uint8_t* q, int64_t nq, const uint8_t* g,
                             int64_t ng, int64_t nbytes, int num_threads,
                             int isa, int32_t* out);

// Gathered distances out[nq, c] = d(q_i, g[idx[i, t]]); entries of idx that
// are negative or >= ng give gather_pad(nbytes) = 8 * nbytes + 1 (one more
// than the largest possible distance).
const char* hamming_distance_gather(const uint8_t* q, int64_t nq,
                                    const uint8_t* g, int64_t ng,
                                    int64_t nbytes, const int32_t* idx,
                                    int64_t c, int num_threads, int isa,
                                    int32_t* out);
inline int32_t gather_pad(int64_t nbytes) { return (int32_t)(8 * nbytes + 1); }

const char* dist_kernel_name(int isa, int64_t nbytes);
// The dense / gather kernels of an ISA for a code width (defined in distance.cc).
DistKernels select_dist_kernels(int isa, int64_t nbytes);
// Threads for `work` (pairs x bytes): 1 below a serial cutoff, else num_threads
// (<= 0: default_num_threads()).
int threads_for(int num_threads, int64_t work);
// ISA_AUTO -> default_isa(); an explicit ISA must be supported. nullptr or an error.
const char* resolve_isa(int* isa);

// Coarse-to-fine cascade over a code pyramid (see ctf.cc). Levels 0..n-1 are
// ordered from the shortest to the longest code; q[s] holds nq rows and g[s]
// ng rows of nbytes[s] bytes; thresholds[s] (s < n - 1) in [0, 8 nbytes[s]].
// k >= 1: top-k mode, out_keys / out_idx [nq, k] (CtF keys, gallery indices,
// best first); k == 0: keys mode, out_full [nq, ng] (the CtF key of every
// pair). out_counts [nq, n]: column s < n - 1 is |C_{s+1}|, the last column
// repeats |C_{n-1}|.
const char* ctf_search(int n, const uint8_t* const* q, const uint8_t* const* g,
                       const int64_t* nbytes, int64_t nq, int64_t ng,
                       const int32_t* thresholds, int64_t k, int num_threads,
                       int isa, int32_t* out_keys, int32_t* out_idx,
                       int32_t* out_full, int64_t* out_counts);
constexpr int kCtfMaxLevels = 16;

// Attribute-first top-k (see afr.cc) over a gallery grouped by attribute code:
// codes [n_groups, nba] (nba <= 31), group u owns the positions
// [start[u], start[u+1]) of the grouped layout, position p is gallery item
// items[p] (increasing within a group) with ID code gi_grouped[p] [ng, nbi].
// out_keys / out_idx [nq, k]: the AFR keys (ID distance in the window,
// 8 nbi + 1 + d_attr after it) and gallery indices.
const char* afr_search(const uint8_t* qa, const uint8_t* codes, const int64_t* start,
                       const int32_t* items, int64_t n_groups, int64_t nba,
                       const uint8_t* qi, const uint8_t* gi_grouped, int64_t nbi, int64_t nq,
                       int64_t ng, int64_t w, int64_t k, int num_threads, int isa,
                       int32_t* out_keys, int32_t* out_idx);
// Self-test of an ISA's dense / gather kernels (run by the ISA self-test in
// topk.cc, so a kernel is never used unverified); "" when they pass.
std::string distance_selftest(int isa);

}  // namespace jhash_native
