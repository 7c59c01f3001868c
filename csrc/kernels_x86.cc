// x86-64 kernels compiled for specific extensions with `#pragma GCC target`
// (so the rest of the module stays baseline x86-64 and one binary runs on
// every x86-64 CPU); topk.cc picks one at run time with __builtin_cpu_supports.
#include "topk.h"

#if defined(JHASH_X86_DISPATCH)
#include <immintrin.h>

#include <cstdint>
#include <cstring>

// ------------------------------------------------------------------ AVX2 --
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,popcnt,bmi2"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,popcnt,bmi2")
#endif

namespace jhash_native {
namespace avx2 {

#define JH_USE_AVX2 1
#define JH_USE_AVX512 0
#include "kernels_impl.h"
#undef JH_USE_AVX2
#undef JH_USE_AVX512

KernelSet select(int64_t nbytes) {
  // Variant per width, measured on Zen 3 (min over 300 short runs, 1 core):
  //   256-bit: vector+scalar interleaved 0.88 ns/pair, vector 1.16, scalar 1.7
  //   512-bit: vector 1.9, interleaved 2.25, scalar 3.0
  //   1024-bit: vector 3.8, scalar 4.8;  2048-bit: vector 6.6
  //   128-bit: 2 rows per vector, 2 queries + 1 scalar query interleaved: 1.47x
  //   less CPU time than scalar POPCNT (100 q x 1M codes, top-100, AMD EPYC
  //   AVX2, 1 thread, load ~19; 1 vector query alone: 1.19x)
  // Other narrow codes and widths that are not a multiple of 32 bytes use POPCNT.
  switch (nbytes) {
    case 16:
      return KernelSet{&scan_avx2_16<2, 1>, &dist_fixed_fn<16>, "avx2-mula-2rows+popcnt-interleaved"};
    case 32:
      return KernelSet{&scan_avx2_fixed<1, 1, 1>, &dist_fixed_fn<32>, "avx2-mula+popcnt-interleaved"};
    case 64:
      return KernelSet{&scan_avx2_fixed<2, 1, 0>, &dist_fixed_fn<64>, "avx2-mula"};
    case 96:
      return KernelSet{&scan_avx2_fixed<3, 1, 0>, &dist_fixed_fn<96>, "avx2-mula"};
    case 128:
      return KernelSet{&scan_avx2_fixed<4, 1, 0>, &dist_fixed_fn<128>, "avx2-mula"};
    case 192:
      return KernelSet{&scan_avx2_fixed<6, 1, 0>, &dist_fixed_fn<192>, "avx2-mula"};
    case 256:
      return KernelSet{&scan_avx2_fixed<8, 1, 0>, &dist_fixed_fn<256>, "avx2-mula"};
    case 512:
      return KernelSet{&scan_avx2_fixed<16, 1, 0>, &dist_avx2_rt_fn, "avx2-mula"};
    default:
      break;
  }
  if (nbytes % 32 == 0 && nbytes >= 64)
    return KernelSet{&scan_avx2_rt, &dist_avx2_rt_fn, "avx2-mula-runtime"};
  static const char* const names[] = {"popcnt-fixed", "popcnt-runtime"};
  return select_scalar(nbytes, names);
}

DistKernels select_dist(int64_t nbytes) {
  // Same variants per width as the top-k scan (the distance work is the same).
  switch (nbytes) {
    case 32:
      return DistKernels{&dense_avx2_fixed<1, 1, 1>, &gather_avx2_fixed<1>, "avx2-mula+popcnt-interleaved"};
    case 64:
      return DistKernels{&dense_avx2_fixed<2, 1, 0>, &gather_avx2_fixed<2>, "avx2-mula"};
    case 96:
      return DistKernels{&dense_avx2_fixed<3, 1, 0>, &gather_avx2_fixed<3>, "avx2-mula"};
    case 128:
      return DistKernels{&dense_avx2_fixed<4, 1, 0>, &gather_avx2_fixed<4>, "avx2-mula"};
    case 192:
      return DistKernels{&dense_avx2_fixed<6, 1, 0>, &gather_avx2_fixed<6>, "avx2-mula"};
    case 256:
      return DistKernels{&dense_avx2_fixed<8, 1, 0>, &gather_avx2_fixed<8>, "avx2-mula"};
    case 512:
      return DistKernels{&dense_avx2_fixed<16, 1, 0>, &gather_avx2_fixed<16>, "avx2-mula"};
    default:
      break;
  }
  if (nbytes % 32 == 0 && nbytes >= 64)
    return DistKernels{&dense_avx2_rt, &gather_avx2_rt, "avx2-mula-runtime"};
  static const char* const names[] = {"popcnt-fixed", "popcnt-runtime"};
  return select_dist_scalar(nbytes, names);
}

}  // namespace avx2
}  // namespace jhash_native

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

// ---------------------------------------------------------------- AVX512 --
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,popcnt,bmi2,avx512f,avx512bw,avx512vl,avx512vpopcntdq"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,popcnt,bmi2,avx512f,avx512bw,avx512vl,avx512vpopcntdq")
#endif

namespace jhash_native {
namespace avx512 {

#define JH_USE_AVX2 1
#define JH_USE_AVX512 1
#include "kernels_impl.h"
#undef JH_USE_AVX2
#undef JH_USE_AVX512

KernelSet select(int64_t nbytes) {
  // 64-256-bit codes: 8 rows per VPOPCNTQ step, G queries over the same rows
  // (gallery loads shared); wider codes: whole rows of 512-bit words.
  switch (nbytes) {
    case 8:
      return KernelSet{&scan_small512<8, 4>, &dist_fixed_fn<8>, "avx512-vpopcntq-8rows"};
    case 16:
      return KernelSet{&scan_small512<16, 2>, &dist_fixed_fn<16>, "avx512-vpopcntq-8rows"};
    case 32:
      return KernelSet{&scan_small512<32, 2>, &dist_fixed_fn<32>, "avx512-vpopcntq-8rows"};
    case 64:
      return KernelSet{&scan_avx512_fixed<1>, &dist512_fn<64>, "avx512-vpopcntq"};
    case 128:
      return KernelSet{&scan_avx512_fixed<2>, &dist512_fn<128>, "avx512-vpopcntq"};
    case 256:
      return KernelSet{&scan_avx512_fixed<4>, &dist512_fn<256>, "avx512-vpopcntq"};
    case 512:
      return KernelSet{&scan_avx512_fixed<8>, &dist512_fn<512>, "avx512-vpopcntq"};
    default:
      break;
  }
  if (nbytes % 64 == 0)
    return KernelSet{&scan_avx512_rt, &dist_avx512_rt_fn, "avx512-vpopcntq-runtime"};
  if (nbytes % 32 == 0)
    return KernelSet{&scan_avx2_rt, &dist_avx2_rt_fn, "avx2-mula-runtime"};
  static const char* const names[] = {"popcnt-fixed", "popcnt-runtime"};
  return select_scalar(nbytes, names);
}

DistKernels select_dist(int64_t nbytes) {
  switch (nbytes) {
    case 64:
      return DistKernels{&dense_avx512_fixed<1>, &gather_avx512_fixed<1>, "avx512-vpopcntq"};
    case 128:
      return DistKernels{&dense_avx512_fixed<2>, &gather_avx512_fixed<2>, "avx512-vpopcntq"};
    case 256:
      return DistKernels{&dense_avx512_fixed<4>, &gather_avx512_fixed<4>, "avx512-vpopcntq"};
    case 512:
      return DistKernels{&dense_avx512_fixed<8>, &gather_avx512_fixed<8>, "avx512-vpopcntq"};
    default:
      break;
  }
  if (nbytes % 64 == 0)
    return DistKernels{&dense_avx512_rt, &gather_avx512_rt, "avx512-vpopcntq-runtime"};
  if (nbytes == 32)
    return DistKernels{&dense_avx2_fixed<1, 1, 1>, &gather_avx2_fixed<1>, "avx2-mula+popcnt-interleaved"};
  if (nbytes % 32 == 0)
    return DistKernels{&dense_avx2_rt, &gather_avx2_rt, "avx2-mula-runtime"};
  static const char* const names[] = {"popcnt-fixed", "popcnt-runtime"};
  return select_dist_scalar(nbytes, names);
}

}  // namespace avx512
}  // namespace jhash_native

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif  // JHASH_X86_DISPATCH
