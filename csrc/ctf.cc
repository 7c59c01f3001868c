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
// Stage 0 compares each level-0 gallery code (one word when it has at most 8
// bytes, else the dense kernel over L1-sized gallery tiles) with a block of
// queries and appends the items with d_0 <= t_0 to each query's candidate
// list; stages 1..n-1 run the gather kernel over the surviving candidates.
// Top-k: the k smallest (key, index) of the candidates (nth_element); when a
// query has fewer than k candidates the rest come from the items with
// d_0 > t_0 in (d_0, index) order (a rescan of that query's level 0).
// Keys mode writes offset[0] + d_0 for every item and overwrites the keys of
// the candidates.
#include <algorithm>
#include <cstdint>
#include <cstring>
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


// Stage 0 for level-0 codes of at most 8 bytes (the common 32- / 64-bit first
// level): every gallery code is loaded once as a word and compared with the
// block's queries held in registers; no distance tile is written (top-k mode).
// full != nullptr (keys mode) also writes offset[0] + d_0 of every pair.
struct Scan0Args {
  const uint8_t* q;
  int64_t bq;
  const uint8_t* g;
  int64_t ng;
  int32_t t0, off0;
  std::vector<int32_t>* cand;
  int32_t* full;  // row r at full + r * ng, or nullptr
};
typedef void (*Scan0Fn)(const Scan0Args&);

template <int NB>
inline __attribute__((always_inline)) void scan0_body(const Scan0Args& A) {
  uint64_t qv[kQueryBlock];
  for (int64_t r = 0; r < kQueryBlock; ++r) qv[r] = load_code<NB>(A.q + std::min(r, A.bq - 1) * NB);
  const int32_t t0 = A.t0;
  if (A.full) {
    for (int64_t j = 0; j < A.ng; ++j) {
      const uint64_t x = load_code<NB>(A.g + j * NB);
      for (int64_t r = 0; r < A.bq; ++r) {
        const int32_t d = __builtin_popcountll(x ^ qv[r]);
        A.full[r * A.ng + j] = A.off0 + d;
        if (d <= t0) A.cand[r].push_back(int32_t(j));
      }
    }
    return;
  }
  for (int64_t j = 0; j < A.ng; ++j) {
    const uint64_t x = load_code<NB>(A.g + j * NB);
    int32_t d[kQueryBlock];
    bool hit = false;
    for (int64_t r = 0; r < kQueryBlock; ++r) {  // fixed trip count: unrolled, branch-free
      d[r] = __builtin_popcountll(x ^ qv[r]);
      hit |= d[r] <= t0;
    }
    if (hit)
      for (int64_t r = 0; r < A.bq; ++r)
        if (d[r] <= t0) A.cand[r].push_back(int32_t(j));
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
      if (A.full)
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
      if (A.full) A.full[r * A.ng + j] = A.off0 + d;
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
  Scan0Fn scan0;  // nullptr: dense tiles
  int64_t nq, ng, k, tile_rows;
  int32_t *out_keys, *out_idx, *out_full;
  int64_t* out_counts;
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

void ctf_item(void* arg, int, int64_t item) {
  const CtfPlan& P = *static_cast<const CtfPlan*>(arg);
  const int n = P.n;
  const int64_t i0 = item * kQueryBlock, i1 = std::min(P.nq, i0 + kQueryBlock), bq = i1 - i0;
  const int64_t ng = P.ng, nb0 = P.nb[0];
  const int32_t t0 = n > 1 ? P.t[0] : -1;
  std::vector<std::vector<int32_t>> cand(bq);
  if (P.scan0) {
    P.scan0(Scan0Args{P.q[0] + i0 * nb0, bq, P.g[0], ng, t0, P.off[0], cand.data(),
                      P.out_full ? P.out_full + i0 * ng : nullptr});
  }
  std::vector<int32_t> tile(P.scan0 ? 0 : bq * P.tile_rows);
  // stage 0: dense distances over gallery tiles, candidates d_0 <= t_0
  for (int64_t j0 = 0; !P.scan0 && j0 < ng; j0 += P.tile_rows) {
    const int64_t len = std::min(ng, j0 + P.tile_rows) - j0;
    P.dense0(P.q[0] + i0 * nb0, bq, nb0, P.g[0] + j0 * nb0, 0, len, tile.data(), len);
    for (int64_t r = 0; r < bq; ++r) {
      const int32_t* d = tile.data() + r * len;
      if (P.out_full) {
        int32_t* o = P.out_full + (i0 + r) * ng + j0;
        const int32_t off0 = P.off[0];
        for (int64_t j = 0; j < len; ++j) o[j] = off0 + d[j];
      }
      if (t0 < 0) continue;
      std::vector<int32_t>& c = cand[r];
      for (int64_t j = 0; j < len; ++j)
        if (d[j] <= t0) c.push_back(int32_t(j0 + j));
    }
  }
  // stages 1..n-1 on each query's candidates
  std::vector<int32_t> key, alive_g, alive_pos, dist;
  std::vector<uint64_t> comp;
  for (int64_t r = 0; r < bq; ++r) {
    const int64_t i = i0 + r;
    const std::vector<int32_t>& c = cand[r];
    const int64_t m = int64_t(c.size());
    int64_t* counts = P.out_counts + i * n;
    std::fill(counts, counts + n, 0);
    key.assign(m, 0);
    alive_g.assign(c.begin(), c.end());
    alive_pos.resize(m);
    std::iota(alive_pos.begin(), alive_pos.end(), 0);
    if (n > 1) counts[0] = m;
    for (int s = 1; s < n; ++s) {
      const int64_t a = int64_t(alive_g.size());
      dist.resize(a);
      if (a) P.gather[s](P.q[s] + i * P.nb[s], 1, P.nb[s], P.g[s], ng, alive_g.data(), a, dist.data(), 0);
      for (int64_t u = 0; u < a; ++u) key[alive_pos[u]] = P.off[s] + dist[u];
      if (s < n - 1) {
        int64_t w = 0;
        for (int64_t u = 0; u < a; ++u)
          if (dist[u] <= P.t[s]) {
            alive_g[w] = alive_g[u];
            alive_pos[w] = alive_pos[u];
            ++w;
          }
        alive_g.resize(w);
        alive_pos.resize(w);
        counts[s] = w;
      } else {
        counts[s] = counts[s - 1];
      }
    }
    if (P.out_full) {
      int32_t* o = P.out_full + i * ng;
      for (int64_t u = 0; u < m; ++u) o[c[u]] = key[u];
      continue;
    }
    comp.resize(m);
    for (int64_t u = 0; u < m; ++u) comp[u] = pack_key(uint32_t(key[u]), uint32_t(c[u]));
    const int64_t take = std::min(m, P.k);
    int32_t* ok = P.out_keys + i * P.k;
    int32_t* oi = P.out_idx + i * P.k;
    write_smallest(comp, take, ok, oi);
    if (take < P.k) fill_from_level0(P, i, t0, P.k - take, ok, oi, take);
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
  P.tile_rows = std::max<int64_t>(256, (16384 / nbytes[0]) / 8 * 8);
  if (nq == 0) return nullptr;
  const int64_t items = (nq + kQueryBlock - 1) / kQueryBlock;
  const int nt = threads_for(num_threads, nq * ng * nbytes[0]);
  run_parallel(std::min<int64_t>(nt, items), items, &ctf_item, &P);
  return nullptr;
}

}  // namespace jhash_native
