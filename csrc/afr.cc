// Attribute-first fast retrieval (AFR; Jin et al. 2021, §5.1, eqs. 6-7; the
// Python reference and the keys are defined in
// jhash/search/attribute_first.py): rank the gallery by the attribute Hamming
// distance, keep the first w items under the order (d_attr, index) -- the
// window --, rank those by the ID distance; the rest follow in attribute order
// with the key L + 1 + d_attr.
//
// The gallery is grouped by attribute code (attribute codes are short and
// repeat: U distinct codes <= ng): group u has the code codes[u] and the
// positions [start[u], start[u+1]) of the grouped layout, where position p
// holds gallery item items[p] (increasing within a group) and its ID code is
// row p of gi_grouped. Per block of 8 queries, each group code is loaded once
// and compared with every query (stage 1); a histogram weighted by group size
// gives each query's boundary distance t* (the smallest t with >= w items at
// d <= t). The window is every group with d < t* plus the r = w - #(d < t*)
// smallest item indices of the groups at t*; the gather kernel computes its
// ID distances -- sweeping the grouped layout forwards, so the reads are
// mostly sequential -- and nth_element picks the top k. Cost per query
// O(U |attr| + w |id|) instead of O(ng |id|).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "select.h"
#include "topk.h"

namespace jhash_native {

namespace {
constexpr int64_t kBlock = 8;

struct AfrPlan {
  const uint8_t *qa, *codes, *qi, *gi;  // gi: ID codes in the grouped layout
  const int64_t* start;
  const int32_t* items;
  int64_t nba, nbi, nq, ng, n_groups, w, k;
  DenseFn dense_attr;
  GatherFn gather_id;
  int32_t *out_keys, *out_idx;
};

// d[r * U + u] = d(q_r, codes[u]) for the block's queries (bq <= 8), codes of NB <= 8 bytes, and
// hist[r * nh + t] += the size of every group at distance t (start == nullptr: every group is one item).
template <int NB, bool kFullBlock>
inline __attribute__((always_inline)) void attr_block_loop(const uint8_t* q, int64_t bq, const uint8_t* codes,
                                                           int64_t U, const int64_t* start, uint8_t* __restrict d,
                                                           int64_t* __restrict hist, int64_t nh) {
  uint64_t qv[kBlock];
  for (int64_t r = 0; r < kBlock; ++r) qv[r] = load_code<NB>(q + std::min(r, bq - 1) * NB);
  for (int64_t u = 0; u < U; ++u) {
    const uint64_t x = load_code<NB>(codes + u * NB);
    const int64_t size = start ? start[u + 1] - start[u] : 1;
    for (int64_t r = 0; r < kBlock; ++r)
      if (kFullBlock || r < bq) {
        const int t = __builtin_popcountll(x ^ qv[r]);
        d[r * U + u] = uint8_t(t);
        hist[r * nh + t] += size;
      }
  }
}

template <int NB>
inline __attribute__((always_inline)) void attr_block_body(const uint8_t* q, int64_t bq, const uint8_t* codes,
                                                           int64_t U, const int64_t* start, uint8_t* d,
                                                           int64_t* hist, int64_t nh) {
  if (bq == kBlock) {
    attr_block_loop<NB, true>(q, bq, codes, U, start, d, hist, nh);
  } else {
    attr_block_loop<NB, false>(q, bq, codes, U, start, d, hist, nh);
  }
}

typedef void (*AttrBlockFn)(const uint8_t*, int64_t, const uint8_t*, int64_t, const int64_t*, uint8_t*, int64_t*,
                            int64_t);
template <int NB>
void attr_block_portable(const uint8_t* q, int64_t bq, const uint8_t* c, int64_t U, const int64_t* start, uint8_t* d,
                         int64_t* hist, int64_t nh) {
  attr_block_body<NB>(q, bq, c, U, start, d, hist, nh);
}
#if defined(__x86_64__) || defined(__i386__)
template <int NB>
__attribute__((target("popcnt"))) void attr_block_popcnt(const uint8_t* q, int64_t bq, const uint8_t* c, int64_t U,
                                                         const int64_t* start, uint8_t* d, int64_t* hist,
                                                         int64_t nh) {
  attr_block_body<NB>(q, bq, c, U, start, d, hist, nh);
}
#endif

AttrBlockFn select_attr_block(int isa, int64_t nbytes) {
  if (nbytes > 8) return nullptr;
#if defined(__x86_64__) || defined(__i386__)
  if (isa != ISA_BASELINE) {
    static const AttrBlockFn fns[] = JH_BY_CODE_WIDTH(attr_block_popcnt);
    return fns[nbytes];
  }
#endif
  (void)isa;
  static const AttrBlockFn fns[] = JH_BY_CODE_WIDTH(attr_block_portable);
  return fns[nbytes];
}

struct AfrBlockCtx {
  const AfrPlan* P;
  AttrBlockFn attr_block;
};

void afr_query(const AfrPlan& P, int64_t i, const uint8_t* d, const int64_t* hist) {
  const int64_t U = P.n_groups;
  const int32_t idmax = int32_t(8 * P.nbi);
  int32_t t_star = 0;
  int64_t below = 0;  // items with d < t_star
  while (below + hist[t_star] < P.w) below += hist[t_star++];
  const int64_t r = P.w - below;
  // window positions in the grouped layout: groups with d < t* (ascending, a forward sweep for the
  // gather), then the r ties at t* with the smallest item indices
  std::vector<int32_t> pos(P.w);
  std::vector<uint64_t> ties;
  int64_t filled = 0;
  for (int64_t u = 0; u < U; ++u) {
    if (d[u] < t_star) {
      for (int64_t p = P.start[u]; p < P.start[u + 1]; ++p) pos[filled++] = int32_t(p);
    } else if (d[u] == t_star) {
      for (int64_t p = P.start[u]; p < P.start[u + 1]; ++p) ties.push_back(pack_key(uint32_t(P.items[p]), uint32_t(p)));
    }
  }
  if (int64_t(ties.size()) > r) std::nth_element(ties.begin(), ties.begin() + r, ties.end());
  for (int64_t t = 0; t < r; ++t) pos[filled++] = int32_t(ties[t] & 0xffffffffu);
  std::vector<int32_t> dist(P.w);
  P.gather_id(P.qi + i * P.nbi, 1, P.nbi, P.gi, P.ng, pos.data(), P.w, dist.data(), 0);
  std::vector<uint64_t> comp(P.w);
  for (int64_t t = 0; t < P.w; ++t) comp[t] = pack_key(uint32_t(dist[t]), uint32_t(P.items[pos[t]]));
  const int64_t take = std::min(P.w, P.k);
  int32_t* ok = P.out_keys + i * P.k;
  int32_t* oi = P.out_idx + i * P.k;
  write_smallest(comp, take, ok, oi);
  if (take == P.k) return;
  // k > w: the next items in attribute order (key idmax + 1 + d_attr): the unused ties, then farther groups
  std::vector<uint64_t> rest;
  for (size_t t = size_t(r); t < ties.size(); ++t) rest.push_back(pack_key(uint32_t(idmax + 1 + t_star), uint32_t(ties[t] >> 32)));
  for (int64_t u = 0; u < U; ++u)
    if (d[u] > t_star)
      for (int64_t p = P.start[u]; p < P.start[u + 1]; ++p)
        rest.push_back(pack_key(uint32_t(idmax + 1 + d[u]), uint32_t(P.items[p])));
  write_smallest(rest, P.k - take, ok + take, oi + take);
}

void afr_block(void* arg, int, int64_t block) {
  const AfrBlockCtx& C = *static_cast<const AfrBlockCtx*>(arg);
  const AfrPlan& P = *C.P;
  const int64_t i0 = block * kBlock, bq = std::min(P.nq, i0 + kBlock) - i0, U = P.n_groups;
  const int64_t nh = 8 * P.nba + 1;
  std::vector<uint8_t> d(bq * U);
  std::vector<int64_t> hist(bq * nh, 0);  // items per attribute distance (groups weighted by size)
  const int64_t* start = U == P.ng ? nullptr : P.start;  // every group one item: size 1
  if (C.attr_block) {
    C.attr_block(P.qa + i0 * P.nba, bq, P.codes, U, start, d.data(), hist.data(), nh);
  } else {  // long attribute codes: the dense kernel, then narrowed
    std::vector<int32_t> tmp(U);
    for (int64_t r = 0; r < bq; ++r) {
      P.dense_attr(P.qa + (i0 + r) * P.nba, 1, P.nba, P.codes, 0, U, tmp.data(), U);
      for (int64_t u = 0; u < U; ++u) {
        d[r * U + u] = uint8_t(tmp[u]);
        hist[r * nh + tmp[u]] += start ? start[u + 1] - start[u] : 1;
      }
    }
  }
  for (int64_t r = 0; r < bq; ++r) afr_query(P, i0 + r, d.data() + r * U, hist.data() + r * nh);
}
}  // namespace

const char* afr_search(const uint8_t* qa, const uint8_t* codes, const int64_t* start,
                       const int32_t* items, int64_t n_groups, int64_t nba,
                       const uint8_t* qi, const uint8_t* gi_grouped, int64_t nbi, int64_t nq,
                       int64_t ng, int64_t w, int64_t k, int num_threads, int isa,
                       int32_t* out_keys, int32_t* out_idx) {
  if (nq < 0 || ng < 1 || n_groups < 1 || n_groups > ng) return "need nq >= 0 and 1 <= n_groups <= ng";
  if (ng >= (int64_t(1) << 31)) return "gallery has 2^31 rows or more (int32 indices)";
  if (nba < 1 || nba > 31 || nbi < 1 || nbi > (int64_t(1) << 20))
    return "code width out of range (attribute codes: at most 248 bits)";
  if (w < 1 || w > ng || k < 1 || k > ng) return "w and k must be in [1, ng]";
  if (start[0] != 0 || start[n_groups] != ng) return "group starts must run from 0 to ng";
  for (int64_t u = 0; u < n_groups; ++u)
    if (start[u + 1] <= start[u]) return "group starts must be increasing (no empty group)";
  for (int64_t s = 0; s < ng; ++s)
    if (items[s] < 0 || items[s] >= ng) return "group items must be gallery indices in [0, ng)";
  if (const char* e = resolve_isa(&isa)) return e;
  AfrPlan P;
  P.qa = qa; P.codes = codes; P.qi = qi; P.gi = gi_grouped; P.start = start; P.items = items;
  P.nba = nba; P.nbi = nbi; P.nq = nq; P.ng = ng; P.n_groups = n_groups; P.w = w; P.k = k;
  P.dense_attr = select_dist_kernels(isa, nba).dense;
  P.gather_id = select_dist_kernels(isa, nbi).gather;
  P.out_keys = out_keys;
  P.out_idx = out_idx;
  if (nq == 0) return nullptr;
  AfrBlockCtx C{&P, select_attr_block(isa, nba)};
  const int64_t blocks = (nq + kBlock - 1) / kBlock;
  const int nt = threads_for(num_threads, nq * (n_groups * nba + w * nbi));
  run_parallel(std::min<int64_t>(nt, blocks), blocks, &afr_block, &C);
  return nullptr;
}

}  // namespace jhash_native
