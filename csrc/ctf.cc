// Coarse-to-fine (CtF) Hamming search over a code pyramid, fused per block of
// queries (Wang et al., "Faster Person Re-Identification", ECCV 2020, §3.3;
// the Python reference and the definition of the keys are in
// jhash/search/coarse_to_fine.py).
//
// For one query, C_0 is the whole gallery and stage s keeps
// C_{s+1} = {j in C_s : d_s(j) <= t_s}. Every item gets the CtF key
// offset[s(j)] + d_{s(j)}(j), s(j) the last stage whose candidate set holds j,
// offset[n-1] = 0, offset[s] = offset[s+1] + 8 nbytes[s+1] + 1; the ranking is
// the order (key, index).
//
// Top-k mode. Stage 0 runs the exhaustive top-k's fused scan kernel (topk.h,
// ScanFn) with a fixed threshold, d_0 < t_0 + 1, for a block of queries over
// L2-sized gallery tiles: no distance is stored, each query's candidates
// (increasing index) are appended to its list. Stages 1..n-1 run the gather
// kernel (software prefetch ahead) over the survivors. The last stage's
// survivors have the smallest keys, so when there are at least k of them the
// top-k is the k smallest (d_{n-1}, index) among them (nth_element); else the
// keys of every candidate compete, and when a query has fewer than k
// candidates the rest come from the items with d_0 > t_0 in (d_0, index)
// order (a rescan of that query's level 0).
// Keys mode writes offset[0] + d_0 for every item (one word per code when the
// level-0 code has at most 8 bytes, else the dense kernel over L1-sized
// tiles) and overwrites the keys of the candidates.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#if defined(JHASH_X86_DISPATCH)
#include <immintrin.h>
#endif

#include "select.h"
#include "topk.h"

namespace jhash_native {

namespace {
constexpr int64_t kQueryBlock = 8;  // queries scanned together over a gallery tile
// Gallery bytes per stage-0 scan tile of top-k mode (re-read from L2 by every query of a block).
constexpr int64_t kScanTileBytes = int64_t(1) << 18;


// Stage 0 of keys mode for level-0 codes of at most 8 bytes (the common 32- /
// 64-bit first level): every gallery code is loaded once as a word and
// compared with the block's queries held in registers; writes offset[0] + d_0
// of every pair and appends the candidates d_0 <= t_0.
struct Scan0Args {
  const uint8_t* q;
  int64_t bq;
  const uint8_t* g;
  int64_t ng;
  int32_t t0, off0;
  std::vector<int32_t>* cand;
  int32_t* full;  // row r at full + r * ng
};
typedef void (*Scan0Fn)(const Scan0Args&);

template <int NB>
inline __attribute__((always_inline)) void scan0_body(const Scan0Args& A) {
  uint64_t qv[kQueryBlock];
  for (int64_t r = 0; r < kQueryBlock; ++r) qv[r] = load_code<NB>(A.q + std::min(r, A.bq - 1) * NB);
  for (int64_t j = 0; j < A.ng; ++j) {
    const uint64_t x = load_code<NB>(A.g + j * NB);
    for (int64_t r = 0; r < A.bq; ++r) {
      const int32_t d = __builtin_popcountll(x ^ qv[r]);
      A.full[r * A.ng + j] = A.off0 + d;
      if (d <= A.t0) A.cand[r].push_back(int32_t(j));
    }
  }
}

template <int NB>
void scan0_portable(const Scan0Args& A) { scan0_body<NB>(A); }
#if defined(__x86_64__) || defined(__i386__)
template <int NB>
__attribute__((target("popcnt"))) void scan0_popcnt(const Scan0Args& A) { scan0_body<NB>(A); }
#endif

#if defined(JHASH_X86_DISPATCH)
// 32-bit level-0 codes (the default pyramid's shortest level) with AVX2: eight gallery codes per 32-byte
// load, a nibble-table popcount of each query's XOR, the four byte counts of a lane summed by two
// multiply-adds, one compare and a movemask per query and eight codes.
__attribute__((target("avx2,popcnt"))) void scan0_avx2_4(const Scan0Args& A) {
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                       0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low = _mm256_set1_epi8(0x0f);
  const __m256i ones8 = _mm256_set1_epi8(1);
  const __m256i ones16 = _mm256_set1_epi16(1);
  const __m256i limit = _mm256_set1_epi32(A.t0 + 1);  // d <= t0  <=>  t0 + 1 > d
  const __m256i off0 = _mm256_set1_epi32(A.off0);
  __m256i qv[kQueryBlock];
  uint32_t qs[kQueryBlock];
  for (int64_t r = 0; r < kQueryBlock; ++r) {
    std::memcpy(&qs[r], A.q + std::min(r, A.bq - 1) * 4, 4);
    qv[r] = _mm256_set1_epi32(int32_t(qs[r]));
  }
  int64_t j = 0;
  for (; j + 8 <= A.ng; j += 8) {
    const __m256i g = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(A.g + j * 4));
    for (int64_t r = 0; r < A.bq; ++r) {
      const __m256i x = _mm256_xor_si256(g, qv[r]);
      const __m256i cnt = _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_and_si256(x, low)),
                                          _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(x, 4), low)));
      const __m256i d = _mm256_madd_epi16(_mm256_maddubs_epi16(cnt, ones8), ones16);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(A.full + r * A.ng + j), _mm256_add_epi32(d, off0));
      unsigned mask = unsigned(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(limit, d))));
      while (mask) {
        A.cand[r].push_back(int32_t(j + __builtin_ctz(mask)));
        mask &= mask - 1;
      }
    }
  }
  for (; j < A.ng; ++j) {  // the last < 8 codes
    uint32_t x;
    std::memcpy(&x, A.g + j * 4, 4);
    for (int64_t r = 0; r < A.bq; ++r) {
      const int32_t d = __builtin_popcount(x ^ qs[r]);
      A.full[r * A.ng + j] = A.off0 + d;
      if (d <= A.t0) A.cand[r].push_back(int32_t(j));
    }
  }
}
#endif

Scan0Fn select_scan0(int isa, int64_t nbytes) {
#if defined(JHASH_X86_DISPATCH)
  if ((isa == ISA_AVX2 || isa == ISA_AVX512) && nbytes == 4) return &scan0_avx2_4;
#endif
#if defined(__x86_64__) || defined(__i386__)
  if (isa != ISA_BASELINE) {  // AVX2 / AVX-512 CPUs have POPCNT
    static const Scan0Fn fns[] = JH_BY_CODE_WIDTH(scan0_popcnt);
    return nbytes <= 8 ? fns[nbytes] : nullptr;
  }
#endif
  (void)isa;
  static const Scan0Fn fns[] = JH_BY_CODE_WIDTH(scan0_portable);
  return nbytes <= 8 ? fns[nbytes] : nullptr;
}

struct CtfPlan {
  int n;
  const uint8_t* q[kCtfMaxLevels];
  const uint8_t* g[kCtfMaxLevels];
  int64_t nb[kCtfMaxLevels];
  int32_t t[kCtfMaxLevels];
  int32_t off[kCtfMaxLevels];
  GatherFn gather[kCtfMaxLevels];
  DenseFn dense0;
  Scan0Fn scan0;  // keys mode: nullptr means dense tiles
  ScanFn scan;    // top-k mode stage 0
  int64_t nq, ng, k, tile_rows, scan_rows;
  int32_t *out_keys, *out_idx, *out_full;
  int64_t* out_counts;
};

// Per-thread working memory, reused across query blocks.
struct Scratch {
  std::vector<std::vector<int32_t>> cand;  // [kQueryBlock] stage-0 candidates (increasing index)
  std::vector<uint32_t> hist;              // [kQueryBlock][8 nbytes[0] + 1] (the scan kernels' contract)
  std::vector<uint64_t> buf;               // [kQueryBlock][scan_rows] accepted (d_0, index) of one tile
  std::vector<int32_t> tile, key, alive, pos, dist;
  std::vector<uint64_t> comp;
};

// The `need` smallest (offset[0] + d_0, index) items with d_0 > t_0 of query
// row `i`, appended to keys / idx at position `at`.
void fill_from_level0(const CtfPlan& P, int64_t i, int32_t t0, int64_t need, int32_t* keys,
                      int32_t* idx, int64_t at) {
  const int64_t ng = P.ng, nb = P.nb[0];
  const int32_t l0 = int32_t(8 * nb);
  std::vector<int32_t> d(ng);
  P.dense0(P.q[0] + i * nb, 1, nb, P.g[0], 0, ng, d.data(), ng);
  std::vector<int64_t> hist(l0 + 2, 0);
  for (int64_t j = 0; j < ng; ++j) hist[d[j]]++;
  int32_t u = t0;  // smallest u with #(t0 < d <= u) >= need
  int64_t have = 0;
  while (have < need && u < l0) have += hist[++u];
  std::vector<uint64_t> sel;
  sel.reserve(have);
  for (int64_t j = 0; j < ng; ++j)
    if (d[j] > t0 && d[j] <= u) sel.push_back(pack_key(uint32_t(P.off[0] + d[j]), uint32_t(j)));
  write_smallest(sel, need, keys + at, idx + at);
}

// Stage 0 of top-k mode for queries [i0, i0 + bq): the scan kernel with the
// fixed threshold "accept iff d_0 < t_0 + 1" (SelCtx::k above any count, so
// the threshold never moves) over gallery tiles of scan_rows rows; a tile's
// accepted keys (at most scan_rows per query: the buffer never compacts) are
// moved to the candidate lists after the tile.
void scan_stage0(const CtfPlan& P, int64_t i0, int64_t bq, Scratch& S) {
  const int64_t H = 8 * P.nb[0] + 1, cap = P.scan_rows;
  if (S.buf.size() < size_t(kQueryBlock * cap)) {
    S.buf.resize(size_t(kQueryBlock * cap));
    S.hist.resize(size_t(kQueryBlock * H));
  }
  std::memset(S.hist.data(), 0, sizeof(uint32_t) * size_t(bq * H));
  QState st[kQueryBlock];
  for (int64_t r = 0; r < bq; ++r) st[r] = QState{P.t[0] + 1, 0, 0, S.hist.data() + r * H, S.buf.data() + r * cap};
  const SelCtx ctx{std::numeric_limits<int64_t>::max(), cap};
  for (int64_t j0 = 0; j0 < P.ng; j0 += cap) {
    P.scan(P.q[0] + i0 * P.nb[0], bq, P.nb[0], P.g[0], j0, std::min(P.ng, j0 + cap), st, &ctx);
    for (int64_t r = 0; r < bq; ++r) {
      std::vector<int32_t>& c = S.cand[r];
      const uint64_t* b = st[r].buf;
      for (int64_t u = 0; u < st[r].n; ++u) c.push_back(int32_t(b[u] & 0xffffffffu));
      st[r].n = 0;
    }
  }
}

// Stage 0 of keys mode: offset[0] + d_0 of every pair written to out_full, and
// the candidates d_0 <= t_0 (word scan for codes of at most 8 bytes, else the
// dense kernel over L1-sized gallery tiles).
void dense_stage0(const CtfPlan& P, int64_t i0, int64_t bq, Scratch& S) {
  const int64_t ng = P.ng, nb0 = P.nb[0];
  const int32_t t0 = P.n > 1 ? P.t[0] : -1;
  if (P.scan0) {
    P.scan0(Scan0Args{P.q[0] + i0 * nb0, bq, P.g[0], ng, t0, P.off[0], S.cand.data(), P.out_full + i0 * ng});
    return;
  }
  S.tile.resize(size_t(bq * P.tile_rows));
  for (int64_t j0 = 0; j0 < ng; j0 += P.tile_rows) {
    const int64_t len = std::min(ng, j0 + P.tile_rows) - j0;
    P.dense0(P.q[0] + i0 * nb0, bq, nb0, P.g[0] + j0 * nb0, 0, len, S.tile.data(), len);
    for (int64_t r = 0; r < bq; ++r) {
      const int32_t* d = S.tile.data() + r * len;
      int32_t* o = P.out_full + (i0 + r) * ng + j0;
      const int32_t off0 = P.off[0];
      for (int64_t j = 0; j < len; ++j) o[j] = off0 + d[j];
      std::vector<int32_t>& c = S.cand[r];
      for (int64_t j = 0; j < len; ++j)
        if (d[j] <= t0) c.push_back(int32_t(j0 + j));
    }
  }
}

// Stages 1..n-1 for query i on its stage-0 candidates c; fills counts[0..n)
// and leaves the survivors of the last stage in S.alive with their
// longest-code distances in S.dist. With `keys` it also writes in S.key the
// CtF key of every candidate (position u for c[u]).
void cascade(const CtfPlan& P, int64_t i, const std::vector<int32_t>& c, bool keys, Scratch& S) {
  const int n = P.n;
  const int64_t m = int64_t(c.size());
  int64_t* counts = P.out_counts + i * n;
  std::fill(counts, counts + n, 0);
  S.alive.assign(c.begin(), c.end());
  if (keys) {
    S.key.assign(size_t(m), 0);
    S.pos.resize(size_t(m));
    std::iota(S.pos.begin(), S.pos.end(), 0);
  }
  if (n > 1) counts[0] = m;
  for (int s = 1; s < n; ++s) {
    const int64_t a = int64_t(S.alive.size());
    S.dist.resize(size_t(a));
    if (a) P.gather[s](P.q[s] + i * P.nb[s], 1, P.nb[s], P.g[s], P.ng, S.alive.data(), a, S.dist.data(), 0);
    if (keys)
      for (int64_t u = 0; u < a; ++u) S.key[S.pos[u]] = P.off[s] + S.dist[u];
    if (s == n - 1) {
      counts[s] = counts[s - 1];
      break;
    }
    int64_t w = 0;
    for (int64_t u = 0; u < a; ++u)
      if (S.dist[u] <= P.t[s]) {
        S.alive[w] = S.alive[u];
        if (keys) S.pos[w] = S.pos[u];
        ++w;
      }
    S.alive.resize(size_t(w));
    if (keys) S.pos.resize(size_t(w));
    counts[s] = w;
  }
}

// Top-k of query i from its stage-0 candidates c. The last stage's survivors
// have the smallest keys (offset[n-1] = 0 and every earlier key exceeds
// l_{n-1}), so when there are at least k of them the top-k is among them;
// otherwise every candidate's key competes, then the items with d_0 > t_0.
void topk_query(const CtfPlan& P, int64_t i, const std::vector<int32_t>& c, Scratch& S) {
  int32_t* ok = P.out_keys + i * P.k;
  int32_t* oi = P.out_idx + i * P.k;
  cascade(P, i, c, false, S);
  const int64_t last = int64_t(S.alive.size());
  if (P.n > 1 && last >= P.k) {
    S.comp.resize(size_t(last));
    for (int64_t u = 0; u < last; ++u) S.comp[u] = pack_key(uint32_t(S.dist[u]), uint32_t(S.alive[u]));
    write_smallest(S.comp, P.k, ok, oi);
    return;
  }
  const int64_t m = int64_t(c.size());
  if (m) cascade(P, i, c, true, S);
  S.comp.resize(size_t(m));
  for (int64_t u = 0; u < m; ++u) S.comp[u] = pack_key(uint32_t(S.key[u]), uint32_t(c[u]));
  const int64_t take = std::min(m, P.k);
  write_smallest(S.comp, take, ok, oi);
  if (take < P.k) fill_from_level0(P, i, P.n > 1 ? P.t[0] : -1, P.k - take, ok, oi, take);
}

struct CtfRun {
  const CtfPlan* P;
  std::vector<Scratch> scratch;  // per thread
};

void ctf_item(void* arg, int tid, int64_t item) {
  CtfRun& R = *static_cast<CtfRun*>(arg);
  const CtfPlan& P = *R.P;
  Scratch& S = R.scratch[tid];
  const int64_t i0 = item * kQueryBlock, i1 = std::min(P.nq, i0 + kQueryBlock), bq = i1 - i0;
  S.cand.resize(kQueryBlock);
  for (auto& c : S.cand) c.clear();
  if (P.out_full) {
    dense_stage0(P, i0, bq, S);
  } else if (P.n > 1) {
    scan_stage0(P, i0, bq, S);
  }
  for (int64_t r = 0; r < bq; ++r) {
    const int64_t i = i0 + r;
    const std::vector<int32_t>& c = S.cand[r];
    if (!P.out_full) {
      topk_query(P, i, c, S);
      continue;
    }
    cascade(P, i, c, true, S);
    int32_t* o = P.out_full + i * P.ng;
    for (size_t u = 0; u < c.size(); ++u) o[c[u]] = S.key[u];
  }
}
}  // namespace

const char* ctf_search(int n, const uint8_t* const* q, const uint8_t* const* g,
                       const int64_t* nbytes, int64_t nq, int64_t ng,
                       const int32_t* thresholds, int64_t k, int num_threads,
                       int isa, int32_t* out_keys, int32_t* out_idx,
                       int32_t* out_full, int64_t* out_counts) {
  if (n < 1 || n > kCtfMaxLevels) return "number of code levels must be in [1, 16]";
  if (nq < 0 || ng < 1) return "need nq >= 0 and a non-empty gallery";
  if (ng >= (int64_t(1) << 31)) return "gallery has 2^31 rows or more (int32 indices)";
  if (k < 0 || k > ng) return "k must be in [0, ng] (0: keys mode)";
  if (k > 0 ? (!out_keys || !out_idx) : !out_full) return "missing output buffer";
  if (const char* e = resolve_isa(&isa)) return e;
  CtfPlan P;
  P.n = n;
  P.nq = nq;
  P.ng = ng;
  P.k = k;
  P.out_keys = k > 0 ? out_keys : nullptr;
  P.out_idx = k > 0 ? out_idx : nullptr;
  P.out_full = k > 0 ? nullptr : out_full;
  P.out_counts = out_counts;
  for (int s = 0; s < n; ++s) {
    if (nbytes[s] < 1 || nbytes[s] > (int64_t(1) << 20)) return "code width out of range";
    if (s && nbytes[s] < nbytes[s - 1]) return "levels must be ordered from the shortest to the longest code";
    P.q[s] = q[s];
    P.g[s] = g[s];
    P.nb[s] = nbytes[s];
    P.gather[s] = select_dist_kernels(isa, nbytes[s]).gather;
  }
  for (int s = 0; s + 1 < n; ++s) {
    if (thresholds[s] < 0 || thresholds[s] > 8 * nbytes[s]) return "threshold out of [0, code length]";
    P.t[s] = thresholds[s];
  }
  int64_t off = 0;
  P.off[n - 1] = 0;
  for (int s = n - 2; s >= 0; --s) {
    off += 8 * nbytes[s + 1] + 1;
    if (off + 8 * nbytes[s] >= (int64_t(1) << 31)) return "CtF keys overflow int32";
    P.off[s] = int32_t(off);
  }
  P.dense0 = select_dist_kernels(isa, nbytes[0]).dense;
  P.scan0 = select_scan0(isa, nbytes[0]);
  P.scan = select_kernels(isa, nbytes[0]).scan;
  P.tile_rows = std::max<int64_t>(256, (16384 / nbytes[0]) / 8 * 8);
  P.scan_rows = std::max<int64_t>(1024, (kScanTileBytes / nbytes[0]) / 64 * 64);
  if (nq == 0) return nullptr;
  const int64_t items = (nq + kQueryBlock - 1) / kQueryBlock;
  const int nt = int(std::min<int64_t>(threads_for(num_threads, nq * ng * nbytes[0]), items));
  CtfRun R{&P, std::vector<Scratch>(size_t(nt))};
  run_parallel(nt, items, &ctf_item, &R);
  return nullptr;
}

}  // namespace jhash_native
