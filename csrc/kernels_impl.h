// Scan kernels, included once per instruction set inside its own namespace
// (see kernels_baseline.cc / kernels_x86.cc). Before including, the TU sets
//   JH_USE_AVX2   1 to compile the AVX2 (nibble-LUT, Mula) paths
//   JH_USE_AVX512 1 to compile the AVX-512 VPOPCNTDQ paths
// and, for x86 targets, a `#pragma GCC target` covering those extensions.
// All standard/intrinsics headers are included by the TU before this file.
//
// Kernels:
//  * scalar: 64-bit XOR + popcount per word (the fastest scalar form on x86
//    with POPCNT; faiss uses the same), with compile-time widths for the
//    common code sizes and a runtime-width fallback (any nbytes, incl. widths
//    that are not a multiple of 8 bytes).
//  * avx2 (nbytes % 32 == 0): Mula's nibble-LUT popcount on 256-bit XORs,
//    byte counts accumulated per pair, then 8 pairs reduced together
//    (psadbw + packs + pmaddwd) into 8 int32 distances, compared with the
//    query's threshold in one vpcmpgtd/movemask. For 256-bit codes the
//    vector path and the scalar popcnt path run *interleaved* on two
//    different queries over the same gallery rows: they use different
//    execution units (vector pipes vs integer ALUs), which measured ~12%
//    faster than either alone on Zen 3.
//  * avx512 (nbytes % 64 == 0): VPOPCNTQ on 512-bit XORs.

#define JH_INLINE inline __attribute__((always_inline))

static JH_INLINE uint64_t ld64(const uint8_t* p) {
  uint64_t x;
  std::memcpy(&x, p, 8);
  return x;
}

// Loads R (< 8) bytes zero-extended into a uint64 (compile-time R).
template <int R>
static JH_INLINE uint64_t ld_tail(const uint8_t* p) {
  uint64_t x = 0;
  std::memcpy(&x, p, R);
  return x;
}

static JH_INLINE uint64_t ld_tail_rt(const uint8_t* p, int r) {
  uint64_t x = 0;
  for (int i = 0; i < r; ++i) x |= (uint64_t)p[i] << (8 * i);
  return x;
}

#if defined(__x86_64__) && !defined(__POPCNT__)
// x86-64 without POPCNT: __builtin_popcountll would call libgcc's
// __popcountdi2 (table based, ~10x slower); use the SWAR form instead.
static JH_INLINE int pc64(uint64_t x) {
  x = x - ((x >> 1) & 0x5555555555555555ULL);
  x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
  x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
  return (int)((x * 0x0101010101010101ULL) >> 56);
}
#else
static JH_INLINE int pc64(uint64_t x) { return __builtin_popcountll(x); }
#endif

// ---------------------------------------------------------------- scalar --
// A query's words, loaded once into locals (registers) so that the hot loop
// does not reload them after the (cold) accept_key call.
template <int B>
struct QWords {
  static constexpr int W = B / 8, R = B % 8;
  uint64_t w[W > 0 ? W : 1];
  uint64_t tail;
  JH_INLINE explicit QWords(const uint8_t* q) {
    for (int i = 0; i < W; ++i) w[i] = ld64(q + 8 * i);
    tail = R ? ld_tail<(R ? R : 1)>(q + 8 * W) : 0;
  }
  JH_INLINE int32_t dist(const uint8_t* p) const {
    int s0 = 0, s1 = 0;
#pragma GCC unroll 64
    for (int i = 0; i + 1 < W; i += 2) {
      s0 += pc64(w[i] ^ ld64(p + 8 * i));
      s1 += pc64(w[i + 1] ^ ld64(p + 8 * i + 8));
    }
    if (W & 1) s0 += pc64(w[W - 1] ^ ld64(p + 8 * (W - 1)));
    if (R) s1 += pc64(tail ^ ld_tail<(R ? R : 1)>(p + 8 * W));
    return s0 + s1;
  }
};

template <int B>
static JH_INLINE int32_t dist_fixed(const uint8_t* a, const uint8_t* b) {
  return QWords<B>(a).dist(b);
}

static inline int32_t dist_rt(const uint8_t* a, const uint8_t* b, int64_t nbytes) {
  const int64_t W = nbytes / 8;
  const int R = (int)(nbytes % 8);
  int64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t w = 0;
  for (; w + 4 <= W; w += 4) {
    s0 += pc64(ld64(a + 8 * w) ^ ld64(b + 8 * w));
    s1 += pc64(ld64(a + 8 * w + 8) ^ ld64(b + 8 * w + 8));
    s2 += pc64(ld64(a + 8 * w + 16) ^ ld64(b + 8 * w + 16));
    s3 += pc64(ld64(a + 8 * w + 24) ^ ld64(b + 8 * w + 24));
  }
  for (; w < W; ++w) s0 += pc64(ld64(a + 8 * w) ^ ld64(b + 8 * w));
  if (R) s1 += pc64(ld_tail_rt(a + 8 * W, R) ^ ld_tail_rt(b + 8 * W, R));
  return (int32_t)(s0 + s1 + s2 + s3);
}

template <int B>
static int32_t dist_fixed_fn(const uint8_t* a, const uint8_t* b, int64_t) {
  return dist_fixed<B>(a, b);
}
static int32_t dist_rt_fn(const uint8_t* a, const uint8_t* b, int64_t nbytes) {
  return dist_rt(a, b, nbytes);
}

// One query at a time against the tile; T lives in a register.
template <int B>
static void scan_scalar_fixed(const uint8_t* q, int64_t nq, int64_t nbytes,
                              const uint8_t* g, int64_t j0, int64_t j1,
                              QState* st, const SelCtx* ctx) {
  (void)nbytes;
  for (int64_t i = 0; i < nq; ++i) {
    const QWords<B> qw(q + i * B);
    QState* s = st + i;
    int32_t T = s->T;
    const uint8_t* p = g + j0 * B;
    for (int64_t j = j0; j < j1; ++j, p += B) {
      const int32_t d = qw.dist(p);
      if (__builtin_expect(d < T, 0)) T = accept_key(s, ctx, d, j);
    }
  }
}

static void scan_scalar_rt(const uint8_t* q, int64_t nq, int64_t nbytes,
                           const uint8_t* g, int64_t j0, int64_t j1, QState* st,
                           const SelCtx* ctx) {
  for (int64_t i = 0; i < nq; ++i) {
    const uint8_t* qi = q + i * nbytes;
    QState* s = st + i;
    int32_t T = s->T;
    const uint8_t* p = g + j0 * nbytes;
    for (int64_t j = j0; j < j1; ++j, p += nbytes) {
      const int32_t d = dist_rt(qi, p, nbytes);
      if (__builtin_expect(d < T, 0)) T = accept_key(s, ctx, d, j);
    }
  }
}

static KernelSet select_scalar(int64_t nbytes, const char* const* names) {
  // names[i]: label for the compile-time widths below, names[last]: runtime
  switch (nbytes) {
#define JH_CASE(b, i) \
  case b:             \
    return KernelSet{&scan_scalar_fixed<b>, &dist_fixed_fn<b>, names[i]};
    JH_CASE(1, 0) JH_CASE(2, 0) JH_CASE(3, 0) JH_CASE(4, 0) JH_CASE(5, 0)
    JH_CASE(6, 0) JH_CASE(7, 0) JH_CASE(8, 0) JH_CASE(12, 0) JH_CASE(16, 0)
    JH_CASE(24, 0) JH_CASE(32, 0) JH_CASE(48, 0) JH_CASE(64, 0)
    JH_CASE(96, 0) JH_CASE(128, 0) JH_CASE(256, 0)
#undef JH_CASE
    default:
      return KernelSet{&scan_scalar_rt, &dist_rt_fn, names[1]};
  }
}

#if JH_USE_AVX2
// ------------------------------------------------------------------ AVX2 --
static JH_INLINE __m256i mula_bytes(__m256i x) {
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                       0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i m = _mm256_set1_epi8(0x0f);
  const __m256i lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(x, m));
  const __m256i hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(x, 4), m));
  return _mm256_add_epi8(lo, hi);
}

// Per-qword popcount sums of (q ^ p) over V 256-bit vectors. Byte counters
// are flushed through psadbw every 31 vectors (8 * 31 < 256).
template <int V>
static JH_INLINE __m256i pair_sad(const __m256i* qv, const uint8_t* p) {
  const __m256i zero = _mm256_setzero_si256();
  __m256i total = zero;
#pragma GCC unroll 32
  for (int v0 = 0; v0 < V; v0 += 31) {
    __m256i acc = zero;
    const int v1 = (v0 + 31 < V) ? v0 + 31 : V;
#pragma GCC unroll 32
    for (int v = v0; v < v1; ++v) {
      const __m256i x = _mm256_xor_si256(qv[v], _mm256_loadu_si256((const __m256i*)(p + 32 * v)));
      acc = _mm256_add_epi8(acc, mula_bytes(x));
    }
    total = (v0 == 0) ? _mm256_sad_epu8(acc, zero)
                      : _mm256_add_epi64(total, _mm256_sad_epu8(acc, zero));
  }
  return total;
}

// 8 psadbw results (4 qwords each, every qword < 2^15 / 2) -> 8 int32 sums in
// order. Requires each pair's distance < 32768 (checked by the caller: V <= 255).
static JH_INLINE __m256i reduce8(const __m256i* s) {
  const __m256i p01 = _mm256_packus_epi32(s[0], s[1]);
  const __m256i p23 = _mm256_packus_epi32(s[2], s[3]);
  const __m256i p45 = _mm256_packus_epi32(s[4], s[5]);
  const __m256i p67 = _mm256_packus_epi32(s[6], s[7]);
  const __m256i X = _mm256_packus_epi32(p01, p23);  // per lane: a0 a1 b0 b1 c0 c1 d0 d1
  const __m256i Y = _mm256_packus_epi32(p45, p67);
  const __m256i Z = _mm256_add_epi16(_mm256_permute2x128_si256(X, Y, 0x20),
                                     _mm256_permute2x128_si256(X, Y, 0x31));
  return _mm256_madd_epi16(Z, _mm256_set1_epi16(1));
}

template <int V>
static JH_INLINE __m256i dist8(const __m256i* qv, const uint8_t* p) {
  __m256i s[8];
#pragma GCC unroll 8
  for (int u = 0; u < 8; ++u) s[u] = pair_sad<V>(qv, p + 32 * V * u);
  return reduce8(s);
}

static JH_INLINE int32_t check8(__m256i d, int32_t T, int64_t j, QState* s,
                                const SelCtx* ctx) {
  const int mk = _mm256_movemask_ps(
      _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(T), d)));
  if (__builtin_expect(mk != 0, 0)) {
    alignas(32) int32_t dd[8];
    _mm256_store_si256((__m256i*)dd, d);
    for (int u = 0; u < 8; ++u)
      if (dd[u] < T) T = accept_key(s, ctx, dd[u], j + u);
  }
  return T;
}

// NV queries on the vector path and (NS = 0 or 1) on the scalar path,
// interleaved over the same 8 gallery rows. Remainder rows (< 8) use the
// scalar distance.
template <int V, int NV, int NS>
static JH_INLINE void scan_group(const uint8_t* q, const uint8_t* g, int64_t j0,
                                 int64_t j1, QState* st, const SelCtx* ctx) {
  static_assert(NS == 0 || NS == 1, "at most one scalar query per group");
  constexpr int B = 32 * V;
  __m256i qv[NV > 0 ? NV : 1][V];
  for (int a = 0; a < NV; ++a)
    for (int v = 0; v < V; ++v)
      qv[a][v] = _mm256_loadu_si256((const __m256i*)(q + a * B + 32 * v));
  int32_t T[NV + NS];
  for (int a = 0; a < NV + NS; ++a) T[a] = st[a].T;
  int64_t j = j0;
  const uint8_t* p = g + j0 * B;
  if constexpr (NS == 1) {
    const QWords<B> qs(q + NV * B);  // words in registers (B <= 64 in practice)
    for (; j + 8 <= j1; j += 8, p += 8 * B) {
#pragma GCC unroll 4
      for (int a = 0; a < NV; ++a) T[a] = check8(dist8<V>(qv[a], p), T[a], j, st + a, ctx);
#pragma GCC unroll 8
      for (int u = 0; u < 8; ++u) {
        const int32_t e = qs.dist(p + u * B);
        if (__builtin_expect(e < T[NV], 0)) T[NV] = accept_key(st + NV, ctx, e, j + u);
      }
    }
  } else {
    for (; j + 8 <= j1; j += 8, p += 8 * B) {
#pragma GCC unroll 4
      for (int a = 0; a < NV; ++a) T[a] = check8(dist8<V>(qv[a], p), T[a], j, st + a, ctx);
    }
  }
  for (; j < j1; ++j, p += B) {
    for (int a = 0; a < NV + NS; ++a) {
      const int32_t e = dist_fixed<B>(q + a * B, p);
      if (e < T[a]) T[a] = accept_key(st + a, ctx, e, j);
    }
  }
}

template <int V, int NV, int NS>
static void scan_avx2_fixed(const uint8_t* q, int64_t nq, int64_t nbytes,
                            const uint8_t* g, int64_t j0, int64_t j1, QState* st,
                            const SelCtx* ctx) {
  (void)nbytes;
  constexpr int B = 32 * V, G = NV + NS;
  int64_t i = 0;
  for (; i + G <= nq; i += G) scan_group<V, NV, NS>(q + i * B, g, j0, j1, st + i, ctx);
  for (; i < nq; ++i) scan_group<V, 1, 0>(q + i * B, g, j0, j1, st + i, ctx);
}

// 16-byte (128-bit) codes: two rows per 256-bit vector, the query in both
// halves. Per vector, the Mula byte counts of a row's two 8-byte halves are
// added (a qword swap) before psadbw, so each qword holds a row's distance;
// 8 rows (4 vectors) are then packed into 8 int32 lanes, row u in lane16(u).
static constexpr int lane16(int u) { return (u & 1) * 4 + u / 2; }

static JH_INLINE __m256i dist8_16(__m256i qq, const uint8_t* p) {
  const __m256i zero = _mm256_setzero_si256();
  __m256i t[4];
#pragma GCC unroll 4
  for (int v = 0; v < 4; ++v) {
    const __m256i b = mula_bytes(_mm256_xor_si256(qq, _mm256_loadu_si256((const __m256i*)(p + 32 * v))));
    t[v] = _mm256_sad_epu8(_mm256_add_epi8(b, _mm256_shuffle_epi32(b, 0x4E)), zero);
  }
  // t[v]: row 2v in lane 0, row 2v + 1 in lane 1 (dwords 0 and 2 of the lane)
  const __m256i u01 = _mm256_blend_epi32(t[0], _mm256_slli_epi64(t[1], 32), 0xAA);
  const __m256i u23 = _mm256_blend_epi32(t[2], _mm256_slli_epi64(t[3], 32), 0xAA);
  return _mm256_unpacklo_epi64(u01, u23);  // rows 0 2 4 6 | 1 3 5 7
}

// NV queries on the vector path and NS (0 or 1) on the scalar path over the
// same 8 rows (as scan_group); remainder rows scalar.
template <int NV, int NS>
static JH_INLINE void scan_group16(const uint8_t* q, const uint8_t* g, int64_t j0, int64_t j1,
                                   QState* st, const SelCtx* ctx) {
  constexpr int B = 16;
  __m256i qq[NV];
  for (int a = 0; a < NV; ++a) qq[a] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)(q + a * B)));
  int32_t T[NV + NS];
  for (int a = 0; a < NV + NS; ++a) T[a] = st[a].T;
  const QWords<B> qs(q + (NV + NS - 1) * B);
  int64_t j = j0;
  const uint8_t* p = g + j0 * B;
  for (; j + 8 <= j1; j += 8, p += 8 * B) {
#pragma GCC unroll 4
    for (int a = 0; a < NV; ++a) {
      const __m256i d = dist8_16(qq[a], p);
      const int mk = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(T[a]), d)));
      if (__builtin_expect(mk != 0, 0)) {
        alignas(32) int32_t dd[8];
        _mm256_store_si256((__m256i*)dd, d);
        for (int u = 0; u < 8; ++u)
          if (dd[lane16(u)] < T[a]) T[a] = accept_key(st + a, ctx, dd[lane16(u)], j + u);
      }
    }
    if constexpr (NS == 1) {
#pragma GCC unroll 8
      for (int u = 0; u < 8; ++u) {
        const int32_t e = qs.dist(p + u * B);
        if (__builtin_expect(e < T[NV], 0)) T[NV] = accept_key(st + NV, ctx, e, j + u);
      }
    }
  }
  for (; j < j1; ++j, p += B)
    for (int a = 0; a < NV + NS; ++a) {
      const int32_t e = dist_fixed<B>(q + a * B, p);
      if (e < T[a]) T[a] = accept_key(st + a, ctx, e, j);
    }
}

template <int NV, int NS>
static void scan_avx2_16(const uint8_t* q, int64_t nq, int64_t nbytes, const uint8_t* g, int64_t j0,
                         int64_t j1, QState* st, const SelCtx* ctx) {
  (void)nbytes;
  constexpr int G = NV + NS;
  int64_t i = 0;
  for (; i + G <= nq; i += G) scan_group16<NV, NS>(q + i * 16, g, j0, j1, st + i, ctx);
  // Remainder: a pair still interleaves a vector and a scalar query.
  if constexpr (G > 2)
    for (; i + 2 <= nq; i += 2) scan_group16<1, 1>(q + i * 16, g, j0, j1, st + i, ctx);
  for (; i < nq; ++i) scan_group16<1, 0>(q + i * 16, g, j0, j1, st + i, ctx);
}

// Runtime width (nbytes % 32 == 0, 32 * V): one query at a time.
static void scan_avx2_rt(const uint8_t* q, int64_t nq, int64_t nbytes,
                         const uint8_t* g, int64_t j0, int64_t j1, QState* st,
                         const SelCtx* ctx) {
  const int64_t V = nbytes / 32;
  const __m256i zero = _mm256_setzero_si256();
  for (int64_t i = 0; i < nq; ++i) {
    const uint8_t* qi = q + i * nbytes;
    QState* s = st + i;
    int32_t T = s->T;
    const uint8_t* p = g + j0 * nbytes;
    for (int64_t j = j0; j < j1; ++j, p += nbytes) {
      __m256i total = zero;
      for (int64_t v0 = 0; v0 < V; v0 += 31) {
        const int64_t v1 = (v0 + 31 < V) ? v0 + 31 : V;
        __m256i acc = zero;
        for (int64_t v = v0; v < v1; ++v) {
          const __m256i x = _mm256_xor_si256(_mm256_loadu_si256((const __m256i*)(qi + 32 * v)),
                                             _mm256_loadu_si256((const __m256i*)(p + 32 * v)));
          acc = _mm256_add_epi8(acc, mula_bytes(x));
        }
        total = _mm256_add_epi64(total, _mm256_sad_epu8(acc, zero));
      }
      const __m128i h = _mm_add_epi64(_mm256_castsi256_si128(total),
                                      _mm256_extracti128_si256(total, 1));
      const int64_t d64 = _mm_cvtsi128_si64(h) + _mm_extract_epi64(h, 1);
      const int32_t d = (int32_t)d64;
      if (__builtin_expect(d < T, 0)) T = accept_key(s, ctx, d, j);
    }
  }
}

static int32_t dist_avx2_rt_fn(const uint8_t* a, const uint8_t* b, int64_t nbytes) {
  const int64_t V = nbytes / 32;
  const __m256i zero = _mm256_setzero_si256();
  __m256i total = zero;
  for (int64_t v0 = 0; v0 < V; v0 += 31) {
    const int64_t v1 = (v0 + 31 < V) ? v0 + 31 : V;
    __m256i acc = zero;
    for (int64_t v = v0; v < v1; ++v) {
      const __m256i x = _mm256_xor_si256(_mm256_loadu_si256((const __m256i*)(a + 32 * v)),
                                         _mm256_loadu_si256((const __m256i*)(b + 32 * v)));
      acc = _mm256_add_epi8(acc, mula_bytes(x));
    }
    total = _mm256_add_epi64(total, _mm256_sad_epu8(acc, zero));
  }
  const __m128i h = _mm_add_epi64(_mm256_castsi256_si128(total), _mm256_extracti128_si256(total, 1));
  return (int32_t)(_mm_cvtsi128_si64(h) + _mm_extract_epi64(h, 1));
}
#endif  // JH_USE_AVX2

#if JH_USE_AVX512
// ---------------------------------------------------------------- AVX512 --
// nbytes % 64 == 0: VPOPCNTQ on 512-bit XORs, per-pair horizontal sum.
template <int Z>
static JH_INLINE int32_t dist512_fixed(const __m512i* qz, const uint8_t* p) {
  __m512i acc = _mm512_setzero_si512();
#pragma GCC unroll 32
  for (int z = 0; z < Z; ++z)
    acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(
                                    qz[z], _mm512_loadu_si512((const void*)(p + 64 * z)))));
  return (int32_t)_mm512_reduce_add_epi64(acc);
}

template <int Z>
static void scan_avx512_fixed(const uint8_t* q, int64_t nq, int64_t nbytes,
                              const uint8_t* g, int64_t j0, int64_t j1,
                              QState* st, const SelCtx* ctx) {
  (void)nbytes;
  constexpr int B = 64 * Z;
  for (int64_t i = 0; i < nq; ++i) {
    __m512i qz[Z];
    for (int z = 0; z < Z; ++z) qz[z] = _mm512_loadu_si512((const void*)(q + i * B + 64 * z));
    QState* s = st + i;
    int32_t T = s->T;
    const uint8_t* p = g + j0 * B;
    for (int64_t j = j0; j < j1; ++j, p += B) {
      const int32_t d = dist512_fixed<Z>(qz, p);
      if (__builtin_expect(d < T, 0)) T = accept_key(s, ctx, d, j);
    }
  }
}

static int32_t dist_avx512_rt_fn(const uint8_t* a, const uint8_t* b, int64_t nbytes) {
  const int64_t Z = nbytes / 64;
  __m512i acc = _mm512_setzero_si512();
  for (int64_t z = 0; z < Z; ++z)
    acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(
                                    _mm512_loadu_si512((const void*)(a + 64 * z)),
                                    _mm512_loadu_si512((const void*)(b + 64 * z)))));
  return (int32_t)_mm512_reduce_add_epi64(acc);
}

static void scan_avx512_rt(const uint8_t* q, int64_t nq, int64_t nbytes,
                           const uint8_t* g, int64_t j0, int64_t j1, QState* st,
                           const SelCtx* ctx) {
  for (int64_t i = 0; i < nq; ++i) {
    const uint8_t* qi = q + i * nbytes;
    QState* s = st + i;
    int32_t T = s->T;
    const uint8_t* p = g + j0 * nbytes;
    for (int64_t j = j0; j < j1; ++j, p += nbytes) {
      const int32_t d = dist_avx512_rt_fn(qi, p, nbytes);
      if (__builtin_expect(d < T, 0)) T = accept_key(s, ctx, d, j);
    }
  }
}

// Codes of B = 8, 16 or 32 bytes (64-256 bits): 8 gallery rows per step. The
// rows are XORed with the query broadcast to every 64-bit word, VPOPCNTQ
// counts every word, and the words of a row are summed with unpack /
// shuffle adds, giving the 8 distances in one register (row u in lane(u)).
template <int B>
struct Small512 {
  static_assert(B == 8 || B == 16 || B == 32, "8, 16 or 32-byte codes");
  // The lane holding row u's distance in dist8's result.
  static constexpr int lane(int u) {
    return B == 8 ? u : B == 16 ? (u < 4 ? 2 * u : 2 * (u - 4) + 1) : ((u & 4) | ((u & 1) << 1) | ((u >> 1) & 1));
  }
  static JH_INLINE __m512i broadcast(const uint8_t* q) {
    if constexpr (B == 8) return _mm512_set1_epi64((long long)ld64(q));
    else if constexpr (B == 16) return _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i*)q));
    else return _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i*)q));
  }
  static JH_INLINE __m512i pc(__m512i qb, const uint8_t* p) {
    return _mm512_popcnt_epi64(_mm512_xor_si512(qb, _mm512_loadu_si512((const void*)p)));
  }
  // Distances of rows p[0 .. 8 B) to the query (lanes in kLane order).
  static JH_INLINE __m512i dist8(__m512i qb, const uint8_t* p) {
    if constexpr (B == 8) {
      return pc(qb, p);  // one row per word, lane u = row u
    } else if constexpr (B == 16) {
      // a: rows 0-3, b: rows 4-7 (one row per 128-bit lane); the pair sums
      // put row l in lane 2 l and row 4 + l in lane 2 l + 1.
      const __m512i a = pc(qb, p), b = pc(qb, p + 64);
      return _mm512_add_epi64(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b));
    } else {
      // a..d: rows (0,1), (2,3), (4,5), (6,7), a row per 256 bits. Pair sums
      // per 128-bit lane, then the two lanes of a row added: the result holds
      // rows 0, 2, 1, 3, 4, 6, 5, 7.
      const __m512i a = pc(qb, p), b = pc(qb, p + 64), c = pc(qb, p + 128), d = pc(qb, p + 192);
      const __m512i x = _mm512_add_epi64(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b));
      const __m512i y = _mm512_add_epi64(_mm512_unpacklo_epi64(c, d), _mm512_unpackhi_epi64(c, d));
      return _mm512_add_epi64(_mm512_shuffle_i64x2(x, y, _MM_SHUFFLE(2, 0, 2, 0)),
                              _mm512_shuffle_i64x2(x, y, _MM_SHUFFLE(3, 1, 3, 1)));
    }
  }
};
// G queries over the same 8 rows at a time; rows j0 .. j1 in order (the
// selection requires increasing indices per query), remainder rows scalar.
template <int B, int G>
static JH_INLINE void scan_small512_group(const uint8_t* q, const uint8_t* g, int64_t j0,
                                          int64_t j1, QState* st, const SelCtx* ctx) {
  using S = Small512<B>;
  __m512i qb[G];
  int32_t T[G];
  for (int a = 0; a < G; ++a) {
    qb[a] = S::broadcast(q + a * B);
    T[a] = st[a].T;
  }
  int64_t j = j0;
  const uint8_t* p = g + j0 * B;
  for (; j + 8 <= j1; j += 8, p += 8 * B) {
#pragma GCC unroll 4
    for (int a = 0; a < G; ++a) {
      const __m512i d = S::dist8(qb[a], p);
      if (__builtin_expect(_mm512_cmplt_epi64_mask(d, _mm512_set1_epi64(T[a])) != 0, 0)) {
        alignas(64) int64_t dd[8];
        _mm512_store_si512((void*)dd, d);
        for (int u = 0; u < 8; ++u) {
          const int32_t e = (int32_t)dd[S::lane(u)];
          if (e < T[a]) T[a] = accept_key(st + a, ctx, e, j + u);
        }
      }
    }
  }
  for (; j < j1; ++j, p += B)
    for (int a = 0; a < G; ++a) {
      const int32_t e = dist_fixed<B>(q + a * B, p);
      if (e < T[a]) T[a] = accept_key(st + a, ctx, e, j);
    }
}

template <int B, int G>
static void scan_small512(const uint8_t* q, int64_t nq, int64_t nbytes, const uint8_t* g,
                          int64_t j0, int64_t j1, QState* st, const SelCtx* ctx) {
  (void)nbytes;
  int64_t i = 0;
  for (; i + G <= nq; i += G) scan_small512_group<B, G>(q + i * B, g, j0, j1, st + i, ctx);
  for (; i < nq; ++i) scan_small512_group<B, 1>(q + i * B, g, j0, j1, st + i, ctx);
}

template <int B>
static int32_t dist512_fn(const uint8_t* a, const uint8_t* b, int64_t) {
  constexpr int Z = B / 64;
  __m512i qz[Z];
  for (int z = 0; z < Z; ++z) qz[z] = _mm512_loadu_si512((const void*)(a + 64 * z));
  return dist512_fixed<Z>(qz, b);
}
#endif  // JH_USE_AVX512

// ======================================================= distance kernels --
// Dense and gathered distances (see topk.h, DistKernels). They reuse the
// per-pair building blocks above; only the "what happens with d" differs:
// the distance is stored instead of compared with a selection threshold.

// Prefetch the cache lines of a gallery row (gathered rows are random reads).
static JH_INLINE void prefetch_row(const uint8_t* p, int64_t nbytes) {
  for (int64_t o = 0; o < nbytes; o += 64) __builtin_prefetch(p + o, 0, 3);
}

// How far ahead (in candidates) gathered rows are prefetched: random rows
// come from DRAM (~100 ns), far longer than one distance takes.
static constexpr int64_t kPrefetchAhead = 32;

// Prefetch the rows of the valid candidates ix[t0, t1).
static JH_INLINE void prefetch_cands(const uint8_t* g, int64_t ng, int64_t nbytes,
                                     const int32_t* ix, int64_t t0, int64_t t1) {
  for (int64_t u = t0; u < t1; ++u) {
    const int32_t j = ix[u];
    if (j >= 0 && j < ng) prefetch_row(g + (int64_t)j * nbytes, nbytes);
  }
}

template <int B>
static void dense_scalar_fixed(const uint8_t* q, int64_t nq, int64_t nbytes,
                               const uint8_t* g, int64_t j0, int64_t j1,
                               int32_t* out, int64_t ldo) {
  (void)nbytes;
  for (int64_t i = 0; i < nq; ++i) {
    const QWords<B> qw(q + i * B);
    int32_t* o = out + i * ldo;
    const uint8_t* p = g + j0 * B;
    for (int64_t j = j0; j < j1; ++j, p += B) o[j] = qw.dist(p);
  }
}

static void dense_scalar_rt(const uint8_t* q, int64_t nq, int64_t nbytes,
                            const uint8_t* g, int64_t j0, int64_t j1,
                            int32_t* out, int64_t ldo) {
  for (int64_t i = 0; i < nq; ++i) {
    const uint8_t* qi = q + i * nbytes;
    int32_t* o = out + i * ldo;
    const uint8_t* p = g + j0 * nbytes;
    for (int64_t j = j0; j < j1; ++j, p += nbytes) o[j] = dist_rt(qi, p, nbytes);
  }
}

// Gathered rows of one query: out[t] = d(q, g[idx[t]]) for 0 <= idx[t] < ng,
// else `pad`.
template <int B>
static void gather_scalar_fixed(const uint8_t* q, int64_t nq, int64_t nbytes,
                                const uint8_t* g, int64_t ng, const int32_t* idx,
                                int64_t c, int32_t* out, int32_t pad) {
  (void)nbytes;
  for (int64_t i = 0; i < nq; ++i) {
    const QWords<B> qw(q + i * B);
    const int32_t* ix = idx + i * c;
    int32_t* o = out + i * c;
    prefetch_cands(g, ng, B, ix, 0, c < kPrefetchAhead ? c : kPrefetchAhead);
    for (int64_t t = 0; t < c; ++t) {
      if (t + kPrefetchAhead < c) prefetch_cands(g, ng, B, ix, t + kPrefetchAhead, t + kPrefetchAhead + 1);
      const int32_t j = ix[t];
      o[t] = (j >= 0 && j < ng) ? qw.dist(g + (int64_t)j * B) : pad;
    }
  }
}

static void gather_scalar_rt(const uint8_t* q, int64_t nq, int64_t nbytes,
                             const uint8_t* g, int64_t ng, const int32_t* idx,
                             int64_t c, int32_t* out, int32_t pad) {
  for (int64_t i = 0; i < nq; ++i) {
    const uint8_t* qi = q + i * nbytes;
    const int32_t* ix = idx + i * c;
    int32_t* o = out + i * c;
    prefetch_cands(g, ng, nbytes, ix, 0, c < kPrefetchAhead ? c : kPrefetchAhead);
    for (int64_t t = 0; t < c; ++t) {
      if (t + kPrefetchAhead < c) prefetch_cands(g, ng, nbytes, ix, t + kPrefetchAhead, t + kPrefetchAhead + 1);
      const int32_t j = ix[t];
      o[t] = (j >= 0 && j < ng) ? dist_rt(qi, g + (int64_t)j * nbytes, nbytes) : pad;
    }
  }
}

static DistKernels select_dist_scalar(int64_t nbytes, const char* const* names) {
  switch (nbytes) {
#define JH_CASE(b)                                                                  \
  case b:                                                                           \
    return DistKernels{&dense_scalar_fixed<b>, &gather_scalar_fixed<b>, names[0]};
    JH_CASE(1) JH_CASE(2) JH_CASE(3) JH_CASE(4) JH_CASE(5) JH_CASE(6) JH_CASE(7)
    JH_CASE(8) JH_CASE(12) JH_CASE(16) JH_CASE(24) JH_CASE(32) JH_CASE(48)
    JH_CASE(64) JH_CASE(96) JH_CASE(128) JH_CASE(256)
#undef JH_CASE
    default:
      return DistKernels{&dense_scalar_rt, &gather_scalar_rt, names[1]};
  }
}

#if JH_USE_AVX2
// 8 pairs (q, ptr[u]) -> 8 int32 distances (V 256-bit vectors per code).
template <int V>
static JH_INLINE __m256i dist8p(const __m256i* qv, const uint8_t* const* ptr) {
  __m256i s[8];
#pragma GCC unroll 8
  for (int u = 0; u < 8; ++u) s[u] = pair_sad<V>(qv, ptr[u]);
  return reduce8(s);
}

// Runtime V: per-qword sums of popcount(q ^ p) over V 256-bit vectors.
static JH_INLINE __m256i pair_sad_rt(const uint8_t* q, const uint8_t* p, int64_t V) {
  const __m256i zero = _mm256_setzero_si256();
  __m256i total = zero;
  for (int64_t v0 = 0; v0 < V; v0 += 31) {
    const int64_t v1 = (v0 + 31 < V) ? v0 + 31 : V;
    __m256i acc = zero;
    for (int64_t v = v0; v < v1; ++v) {
      const __m256i x = _mm256_xor_si256(_mm256_loadu_si256((const __m256i*)(q + 32 * v)),
                                         _mm256_loadu_si256((const __m256i*)(p + 32 * v)));
      acc = _mm256_add_epi8(acc, mula_bytes(x));
    }
    total = _mm256_add_epi64(total, _mm256_sad_epu8(acc, zero));
  }
  return total;
}

// reduce8 packs with unsigned 16-bit saturation: exact while every distance
// is < 32768, i.e. codes of at most 4095 bytes; wider codes use per-pair sums.
static constexpr int64_t kReduce8MaxBytes = 4095;

static JH_INLINE __m256i dist8p_rt(const uint8_t* q, const uint8_t* const* ptr, int64_t V) {
  __m256i s[8];
  for (int u = 0; u < 8; ++u) s[u] = pair_sad_rt(q, ptr[u], V);
  return reduce8(s);
}

// NV queries on the vector path and NS (0 or 1) on the scalar path over the
// same 8 gallery rows (as scan_group), storing the distances.
template <int V, int NV, int NS>
static JH_INLINE void dense_group(const uint8_t* q, const uint8_t* g, int64_t j0,
                                  int64_t j1, int32_t* out, int64_t ldo) {
  static_assert(NS == 0 || NS == 1, "at most one scalar query per group");
  constexpr int B = 32 * V;
  __m256i qv[NV > 0 ? NV : 1][V];
  for (int a = 0; a < NV; ++a)
    for (int v = 0; v < V; ++v)
      qv[a][v] = _mm256_loadu_si256((const __m256i*)(q + a * B + 32 * v));
  int64_t j = j0;
  const uint8_t* p = g + j0 * B;
  const uint8_t* ptr[8];
  if constexpr (NS == 1) {
    const QWords<B> qs(q + NV * B);
    int32_t* os = out + NV * ldo;
    for (; j + 8 <= j1; j += 8, p += 8 * B) {
      for (int u = 0; u < 8; ++u) ptr[u] = p + u * B;
#pragma GCC unroll 4
      for (int a = 0; a < NV; ++a)
        _mm256_storeu_si256((__m256i*)(out + a * ldo + j), dist8p<V>(qv[a], ptr));
#pragma GCC unroll 8
      for (int u = 0; u < 8; ++u) os[j + u] = qs.dist(p + u * B);
    }
  } else {
    for (; j + 8 <= j1; j += 8, p += 8 * B) {
      for (int u = 0; u < 8; ++u) ptr[u] = p + u * B;
#pragma GCC unroll 4
      for (int a = 0; a < NV; ++a)
        _mm256_storeu_si256((__m256i*)(out + a * ldo + j), dist8p<V>(qv[a], ptr));
    }
  }
  for (; j < j1; ++j, p += B)
    for (int a = 0; a < NV + NS; ++a) out[a * ldo + j] = dist_fixed<B>(q + a * B, p);
}

template <int V, int NV, int NS>
static void dense_avx2_fixed(const uint8_t* q, int64_t nq, int64_t nbytes,
                             const uint8_t* g, int64_t j0, int64_t j1,
                             int32_t* out, int64_t ldo) {
  (void)nbytes;
  constexpr int B = 32 * V, G = NV + NS;
  int64_t i = 0;
  for (; i + G <= nq; i += G) dense_group<V, NV, NS>(q + i * B, g, j0, j1, out + i * ldo, ldo);
  for (; i < nq; ++i) dense_group<V, 1, 0>(q + i * B, g, j0, j1, out + i * ldo, ldo);
}

static void dense_avx2_rt(const uint8_t* q, int64_t nq, int64_t nbytes,
                          const uint8_t* g, int64_t j0, int64_t j1,
                          int32_t* out, int64_t ldo) {
  const int64_t V = nbytes / 32;
  const bool vec8 = nbytes <= kReduce8MaxBytes;
  const uint8_t* ptr[8];
  for (int64_t i = 0; i < nq; ++i) {
    const uint8_t* qi = q + i * nbytes;
    int32_t* o = out + i * ldo;
    int64_t j = j0;
    const uint8_t* p = g + j0 * nbytes;
    if (vec8) {
      for (; j + 8 <= j1; j += 8, p += 8 * nbytes) {
        for (int u = 0; u < 8; ++u) ptr[u] = p + u * nbytes;
        _mm256_storeu_si256((__m256i*)(o + j), dist8p_rt(qi, ptr, V));
      }
    }
    for (; j < j1; ++j, p += nbytes) o[j] = dist_avx2_rt_fn(qi, p, nbytes);
  }
}

// Gathered rows, 8 candidates at a time; padding / out-of-range candidates
// are computed against the query itself (valid memory) and then replaced by
// `pad` with a blend.
template <int V>
static void gather_avx2_fixed(const uint8_t* q, int64_t nq, int64_t nbytes,
                              const uint8_t* g, int64_t ng, const int32_t* idx,
                              int64_t c, int32_t* out, int32_t pad) {
  (void)nbytes;
  constexpr int B = 32 * V;
  const __m256i padv = _mm256_set1_epi32(pad);
  const __m256i zero = _mm256_setzero_si256();
  const __m256i last = _mm256_set1_epi32((int32_t)(ng - 1));  // ng - 1 >= -1
  for (int64_t i = 0; i < nq; ++i) {
    const uint8_t* qi = q + i * B;
    __m256i qv[V];
    for (int v = 0; v < V; ++v) qv[v] = _mm256_loadu_si256((const __m256i*)(qi + 32 * v));
    const int32_t* ix = idx + i * c;
    int32_t* o = out + i * c;
    int64_t t = 0;
    const uint8_t* ptr[8];
    prefetch_cands(g, ng, B, ix, 0, c < kPrefetchAhead ? c : kPrefetchAhead);
    for (; t + 8 <= c; t += 8) {
      {
        const int64_t t0 = t + kPrefetchAhead, t1 = t0 + 8 < c ? t0 + 8 : c;
        if (t0 < t1) prefetch_cands(g, ng, B, ix, t0, t1);
      }
      for (int u = 0; u < 8; ++u) {
        const int32_t j = ix[t + u];
        ptr[u] = (j >= 0 && j < ng) ? g + (int64_t)j * B : qi;
      }
      const __m256i jv = _mm256_loadu_si256((const __m256i*)(ix + t));
      // invalid = j < 0 or j >= ng  <=>  !(0 <= j < ng)
      const __m256i bad = _mm256_or_si256(_mm256_cmpgt_epi32(zero, jv),
                                          _mm256_cmpgt_epi32(jv, last));
      const __m256i d = dist8p<V>(qv, ptr);
      _mm256_storeu_si256((__m256i*)(o + t), _mm256_blendv_epi8(d, padv, bad));
    }
    for (; t < c; ++t) {
      const int32_t j = ix[t];
      o[t] = (j >= 0 && j < ng) ? dist_fixed<B>(qi, g + (int64_t)j * B) : pad;
    }
  }
}

static void gather_avx2_rt(const uint8_t* q, int64_t nq, int64_t nbytes,
                           const uint8_t* g, int64_t ng, const int32_t* idx,
                           int64_t c, int32_t* out, int32_t pad) {
  for (int64_t i = 0; i < nq; ++i) {
    const uint8_t* qi = q + i * nbytes;
    const int32_t* ix = idx + i * c;
    int32_t* o = out + i * c;
    prefetch_cands(g, ng, nbytes, ix, 0, c < kPrefetchAhead ? c : kPrefetchAhead);
    for (int64_t t = 0; t < c; ++t) {
      if (t + kPrefetchAhead < c) prefetch_cands(g, ng, nbytes, ix, t + kPrefetchAhead, t + kPrefetchAhead + 1);
      const int32_t j = ix[t];
      o[t] = (j >= 0 && j < ng) ? dist_avx2_rt_fn(qi, g + (int64_t)j * nbytes, nbytes) : pad;
    }
  }
}
#endif  // JH_USE_AVX2

#if JH_USE_AVX512
template <int Z>
static void dense_avx512_fixed(const uint8_t* q, int64_t nq, int64_t nbytes,
                               const uint8_t* g, int64_t j0, int64_t j1,
                               int32_t* out, int64_t ldo) {
  (void)nbytes;
  constexpr int B = 64 * Z;
  for (int64_t i = 0; i < nq; ++i) {
    __m512i qz[Z];
    for (int z = 0; z < Z; ++z) qz[z] = _mm512_loadu_si512((const void*)(q + i * B + 64 * z));
    int32_t* o = out + i * ldo;
    const uint8_t* p = g + j0 * B;
    for (int64_t j = j0; j < j1; ++j, p += B) o[j] = dist512_fixed<Z>(qz, p);
  }
}

static void dense_avx512_rt(const uint8_t* q, int64_t nq, int64_t nbytes,
                            const uint8_t* g, int64_t j0, int64_t j1,
                            int32_t* out, int64_t ldo) {
  for (int64_t i = 0; i < nq; ++i) {
    const uint8_t* qi = q + i * nbytes;
    int32_t* o = out + i * ldo;
    const uint8_t* p = g + j0 * nbytes;
    for (int64_t j = j0; j < j1; ++j, p += nbytes) o[j] = dist_avx512_rt_fn(qi, p, nbytes);
  }
}

template <int Z>
static void gather_avx512_fixed(const uint8_t* q, int64_t nq, int64_t nbytes,
                                const uint8_t* g, int64_t ng, const int32_t* idx,
                                int64_t c, int32_t* out, int32_t pad) {
  (void)nbytes;
  constexpr int B = 64 * Z;
  for (int64_t i = 0; i < nq; ++i) {
    __m512i qz[Z];
    for (int z = 0; z < Z; ++z) qz[z] = _mm512_loadu_si512((const void*)(q + i * B + 64 * z));
    const int32_t* ix = idx + i * c;
    int32_t* o = out + i * c;
    prefetch_cands(g, ng, B, ix, 0, c < kPrefetchAhead ? c : kPrefetchAhead);
    for (int64_t t = 0; t < c; ++t) {
      if (t + kPrefetchAhead < c) prefetch_cands(g, ng, B, ix, t + kPrefetchAhead, t + kPrefetchAhead + 1);
      const int32_t j = ix[t];
      o[t] = (j >= 0 && j < ng) ? dist512_fixed<Z>(qz, g + (int64_t)j * B) : pad;
    }
  }
}

static void gather_avx512_rt(const uint8_t* q, int64_t nq, int64_t nbytes,
                             const uint8_t* g, int64_t ng, const int32_t* idx,
                             int64_t c, int32_t* out, int32_t pad) {
  for (int64_t i = 0; i < nq; ++i) {
    const uint8_t* qi = q + i * nbytes;
    const int32_t* ix = idx + i * c;
    int32_t* o = out + i * c;
    prefetch_cands(g, ng, nbytes, ix, 0, c < kPrefetchAhead ? c : kPrefetchAhead);
    for (int64_t t = 0; t < c; ++t) {
      if (t + kPrefetchAhead < c) prefetch_cands(g, ng, nbytes, ix, t + kPrefetchAhead, t + kPrefetchAhead + 1);
      const int32_t j = ix[t];
      o[t] = (j >= 0 && j < ng) ? dist_avx512_rt_fn(qi, g + (int64_t)j * nbytes, nbytes) : pad;
    }
  }
}
#endif  // JH_USE_AVX512
