// Portable kernels: plain C++ (64-bit XOR + __builtin_popcountll), compiled
// for the baseline of the target (x86-64 without POPCNT, aarch64, ...).
#include <cstdint>
#include <cstring>

#include "topk.h"

namespace jhash_native {
namespace baseline {

#define JH_USE_AVX2 0
#define JH_USE_AVX512 0
#include "kernels_impl.h"

KernelSet select(int64_t nbytes) {
  static const char* const names[] = {"scalar-fixed", "scalar-runtime"};
  return select_scalar(nbytes, names);
}

DistKernels select_dist(int64_t nbytes) {
  static const char* const names[] = {"scalar-fixed", "scalar-runtime"};
  return select_dist_scalar(nbytes, names);
}

}  // namespace baseline
}  // namespace jhash_native
