// Small helpers shared by the cascade searches (ctf.cc, afr.cc): (key, index)
// pairs packed into one uint64 so that integer order is the ranking order, and
// the selection of the smallest ones.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace jhash_native {

// (key, index) as one integer ordered by key, then index.
inline uint64_t pack_key(uint32_t key, uint32_t index) { return (uint64_t(key) << 32) | uint64_t(index); }

// A code of NB <= 8 bytes as one word (the remaining bytes zero).
template <int NB>
inline __attribute__((always_inline)) uint64_t load_code(const uint8_t* p) {
  uint64_t x = 0;
  std::memcpy(&x, p, NB);
  return x;
}

// {nullptr, &fn<1>, ..., &fn<8>}: a kernel template's instances indexed by the code width in bytes.
#define JH_BY_CODE_WIDTH(fn) {nullptr, &fn<1>, &fn<2>, &fn<3>, &fn<4>, &fn<5>, &fn<6>, &fn<7>, &fn<8>}

// The `take` smallest packed pairs of `v`, in order, written to keys[0..take) and idx[0..take).
inline void write_smallest(std::vector<uint64_t>& v, int64_t take, int32_t* keys, int32_t* idx) {
  take = std::min<int64_t>(take, int64_t(v.size()));
  if (int64_t(v.size()) > take) std::nth_element(v.begin(), v.begin() + take, v.end());
  std::sort(v.begin(), v.begin() + take);
  for (int64_t t = 0; t < take; ++t) {
    keys[t] = int32_t(v[t] >> 32);
    idx[t] = int32_t(v[t] & 0xffffffffu);
  }
}

}  // namespace jhash_native
