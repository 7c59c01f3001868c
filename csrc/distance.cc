// Dense and gathered Hamming distances (int32), with the same run-time ISA
// dispatch and threading as the top-k (see topk.h).
//
// Dense: out[i, j] = popcount(q_i XOR g_j) for all pairs. The gallery is cut
// into L1-sized tiles; every query of a block of up to 64 queries is run over
// a tile while it is hot, and the work items (query block x gallery chunk)
// write disjoint parts of the output, so threads need no merging.
//
// Gathered: out[i, t] = popcount(q_i XOR g_{idx[i, t]}), the re-ranking of a
// per-query candidate list (coarse-to-fine / attribute-first search).
// Candidates outside [0, ng) -- negative entries are padding -- give the
// sentinel 8 * nbytes + 1 (larger than every real distance). Gallery rows
// are random reads here, so the next rows are prefetched.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "topk.h"

namespace jhash_native {

DistKernels select_dist_kernels(int isa, int64_t nbytes) {
#if defined(JHASH_X86_DISPATCH)
  if (isa == ISA_AVX512) return avx512::select_dist(nbytes);
  if (isa == ISA_AVX2) return avx2::select_dist(nbytes);
#endif
  (void)isa;
  return baseline::select_dist(nbytes);
}

const char* dist_kernel_name(int isa, int64_t nbytes) {
  return select_dist_kernels(isa, nbytes).name;
}

// Below this much work (pairs x bytes) a call runs on the calling thread only:
// starting threads costs tens of microseconds.
static constexpr int64_t kSerialWork = int64_t(1) << 22;

int threads_for(int num_threads, int64_t work) {
  if (work < kSerialWork) return 1;
  return num_threads > 0 ? num_threads : default_num_threads();
}

// ----------------------------------------------------------------- dense --
namespace {
struct DensePlan {
  const uint8_t* q;
  const uint8_t* g;
  int64_t nq, ng, nbytes;
  int64_t qb_len, n_qb;     // query blocks
  int64_t chunk_len, n_gc;  // gallery chunks (multiples of tile_rows)
  int64_t tile_rows;
  DenseFn dense;
  int32_t* out;
};
}  // namespace

static void dense_item(void* arg, int, int64_t item) {
  const DensePlan& P = *static_cast<const DensePlan*>(arg);
  const int64_t qi = item % P.n_qb, gc = item / P.n_qb;
  const int64_t q0 = qi * P.qb_len, q1 = std::min(P.nq, q0 + P.qb_len);
  const int64_t c0 = gc * P.chunk_len, c1 = std::min(P.ng, c0 + P.chunk_len);
  const uint8_t* qb = P.q + q0 * P.nbytes;
  int32_t* out = P.out + q0 * P.ng;
  for (int64_t t0 = c0; t0 < c1; t0 += P.tile_rows) {
    const int64_t t1 = std::min(c1, t0 + P.tile_rows);
    P.dense(qb, q1 - q0, P.nbytes, P.g, t0, t1, out, P.ng);
  }
}

static const char* check_common(int64_t nq, int64_t ng, int64_t nbytes) {
  if (nbytes < 1) return "code width must be at least 1 byte";
  if (nbytes > (int64_t(1) << 27)) return "code width too large (distances must fit int32)";
  if (nq < 0 || ng < 0) return "negative number of rows";
  if (ng >= (int64_t(1) << 31)) return "gallery has 2^31 rows or more (int32 indices)";
  return nullptr;
}

static const char* distance_impl(const uint8_t* q, int64_t nq, const uint8_t* g,
                                 int64_t ng, int64_t nbytes, int num_threads,
                                 int isa, int32_t* out) {
  if (const char* e = check_common(nq, ng, nbytes)) return e;
  if (nq == 0 || ng == 0) return nullptr;
  DensePlan P;
  P.q = q; P.g = g; P.nq = nq; P.ng = ng; P.nbytes = nbytes; P.out = out;
  P.dense = select_dist_kernels(isa, nbytes).dense;
  P.tile_rows = std::max<int64_t>(64, (16384 / nbytes) / 8 * 8);
  const int nt = threads_for(num_threads, nq * ng * nbytes);
  P.n_qb = (nq + 63) / 64;
  P.qb_len = (nq + P.n_qb - 1) / P.n_qb;
  // With few query blocks, split the gallery too (4 items per thread, for
  // load balance on a busy machine), in whole tiles.
  const int64_t target_items = nt > 1 ? 4 * (int64_t)nt : 1;
  const int64_t n_tiles = (ng + P.tile_rows - 1) / P.tile_rows;
  int64_t n_gc = std::max<int64_t>(1, std::min<int64_t>((target_items + P.n_qb - 1) / P.n_qb, n_tiles));
  P.chunk_len = (n_tiles + n_gc - 1) / n_gc * P.tile_rows;
  P.n_gc = (ng + P.chunk_len - 1) / P.chunk_len;
  run_parallel(nt, P.n_qb * P.n_gc, &dense_item, &P);
  return nullptr;
}

// ---------------------------------------------------------------- gather --
namespace {
struct GatherPlan {
  const uint8_t* q;
  const uint8_t* g;
  const int32_t* idx;
  int64_t nq, ng, nbytes, c;
  int64_t rows_per_item;  // queries per item (split == false)
  int64_t seg, n_seg;     // candidate segments per query (split == true)
  bool split;
  GatherFn gather;
  int32_t pad;
  int32_t* out;
};
}  // namespace

static void gather_item(void* arg, int, int64_t item) {
  const GatherPlan& P = *static_cast<const GatherPlan*>(arg);
  if (P.split) {  // one query, candidates [t0, t1)
    const int64_t i = item / P.n_seg, t0 = (item % P.n_seg) * P.seg;
    const int64_t t1 = std::min(P.c, t0 + P.seg);
    P.gather(P.q + i * P.nbytes, 1, P.nbytes, P.g, P.ng, P.idx + i * P.c + t0, t1 - t0,
             P.out + i * P.c + t0, P.pad);
  } else {
    const int64_t q0 = item * P.rows_per_item, q1 = std::min(P.nq, q0 + P.rows_per_item);
    P.gather(P.q + q0 * P.nbytes, q1 - q0, P.nbytes, P.g, P.ng, P.idx + q0 * P.c, P.c,
             P.out + q0 * P.c, P.pad);
  }
}

static const char* gather_impl(const uint8_t* q, int64_t nq, const uint8_t* g,
                               int64_t ng, int64_t nbytes, const int32_t* idx,
                               int64_t c, int num_threads, int isa, int32_t* out) {
  if (const char* e = check_common(nq, ng, nbytes)) return e;
  if (c < 0) return "negative number of candidates";
  if (nq == 0 || c == 0) return nullptr;
  GatherPlan P;
  P.q = q; P.g = g; P.idx = idx; P.nq = nq; P.ng = ng; P.nbytes = nbytes; P.c = c;
  P.gather = select_dist_kernels(isa, nbytes).gather;
  P.pad = gather_pad(nbytes);
  P.out = out;
  const int nt = threads_for(num_threads, nq * c * nbytes);
  constexpr int64_t kItemPairs = 8192;
  P.split = c > kItemPairs;
  int64_t nitems;
  if (P.split) {
    P.seg = kItemPairs;
    P.n_seg = (c + P.seg - 1) / P.seg;
    P.rows_per_item = 1;
    nitems = nq * P.n_seg;
  } else {
    P.seg = c;
    P.n_seg = 1;
    P.rows_per_item = std::max<int64_t>(1, kItemPairs / c);
    nitems = (nq + P.rows_per_item - 1) / P.rows_per_item;
  }
  run_parallel(nt, nitems, &gather_item, &P);
  return nullptr;
}

// ---------------------------------------------------------------- public --
const char* resolve_isa(int* isa) {
  if (*isa == ISA_AUTO) {
    *isa = default_isa();
  } else if (!isa_supported(*isa)) {
    return "requested instruction set is not available on this CPU/build";
  }
  return nullptr;
}

const char* hamming_distance(const uint8_t* q, int64_t nq, const uint8_t* g,
                             int64_t ng, int64_t nbytes, int num_threads,
                             int isa, int32_t* out) {
  if (const char* e = resolve_isa(&isa)) return e;
  return distance_impl(q, nq, g, ng, nbytes, num_threads, isa, out);
}

const char* hamming_distance_gather(const uint8_t* q, int64_t nq,
                                    const uint8_t* g, int64_t ng,
                                    int64_t nbytes, const int32_t* idx,
                                    int64_t c, int num_threads, int isa,
                                    int32_t* out) {
  if (const char* e = resolve_isa(&isa)) return e;
  return gather_impl(q, nq, g, ng, nbytes, idx, c, num_threads, isa, out);
}

// ------------------------------------------------------------- self-test --
std::string distance_selftest(int isa) {
  static const int widths[] = {1, 2, 3, 4, 5, 7, 8, 9, 12, 16, 24, 31, 32, 33, 40, 48, 64,
                               96, 100, 128, 160, 192, 256, 320, 512, 544, 4096, 4128};
  uint8_t pc8[256];
  for (int i = 0; i < 256; ++i) pc8[i] = (uint8_t)__builtin_popcount((unsigned)i);
  std::mt19937_64 rng(777);
  for (int w : widths) {
    const int64_t nq = 5, ng = 37, c = 29;
    std::vector<uint8_t> q(nq * w), g(ng * w);
    for (auto& x : q) x = (uint8_t)rng();
    for (auto& x : g) x = (uint8_t)rng();
    for (int64_t j = 0; j < ng; j += 6) std::memcpy(&g[j * w], &q[(j % nq) * w], w);  // d = 0
    std::vector<int32_t> ref(nq * ng);
    for (int64_t i = 0; i < nq; ++i)
      for (int64_t j = 0; j < ng; ++j) {
        int d = 0;
        for (int b = 0; b < w; ++b) d += pc8[q[i * w + b] ^ g[j * w + b]];
        ref[i * ng + j] = d;
      }
    const std::string at = " at width " + std::to_string(w);
    // dense: whole matrix through the driver, then one sub-range directly
    std::vector<int32_t> out(nq * ng, -1);
    if (const char* e = distance_impl(q.data(), nq, g.data(), ng, w, 1, isa, out.data())) return e;
    if (out != ref) return "dense distance kernel mismatch" + at;
    std::fill(out.begin(), out.end(), -1);
    select_dist_kernels(isa, w).dense(q.data() + w, nq - 1, w, g.data(), 3, ng, out.data() + ng, ng);
    for (int64_t i = 1; i < nq; ++i)
      for (int64_t j = 0; j < ng; ++j)
        if (out[i * ng + j] != (j < 3 ? -1 : ref[i * ng + j]))
          return "dense distance kernel (sub-range) mismatch" + at;
    // gather: random valid indices, padding and out-of-range entries
    std::vector<int32_t> idx(nq * c), got(nq * c, -1);
    for (int64_t t = 0; t < nq * c; ++t) {
      const uint64_t r = rng();
      switch (r % 7) {
        case 0: idx[t] = -1 - (int32_t)((r >> 8) % 5); break;
        case 1: idx[t] = (int32_t)ng + (int32_t)((r >> 8) % 3); break;
        case 2: idx[t] = (r >> 8) & 1 ? INT32_MIN : INT32_MAX; break;
        default: idx[t] = (int32_t)((r >> 8) % ng);
      }
    }
    if (const char* e = gather_impl(q.data(), nq, g.data(), ng, w, idx.data(), c, 1, isa, got.data()))
      return e;
    for (int64_t i = 0; i < nq; ++i)
      for (int64_t t = 0; t < c; ++t) {
        const int32_t j = idx[i * c + t];
        const int32_t want = (j >= 0 && j < ng) ? ref[i * ng + j] : gather_pad(w);
        if (got[i * c + t] != want) return "gather distance kernel mismatch" + at;
      }
  }
  return "";
}

}  // namespace jhash_native
