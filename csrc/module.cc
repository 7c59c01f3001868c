// CPython extension `jhash.search._jhash_native`: the exact Hamming top-k,
// dense distance and gathered distance kernels as XLA FFI handlers (PyCapsule, for jax.ffi.register_ffi_target)
// plus a buffer-protocol entry point for NumPy arrays and a few introspection
// helpers. Plain Python C API (no pybind/nanobind dependency).
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstdint>
#include <string>

#include "topk.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
namespace jhn = jhash_native;

// An XLA FFI error for a kernel error message: out of memory is
// RESOURCE_EXHAUSTED, a thread or internal failure INTERNAL (both raise a
// RuntimeError in JAX), anything else a bad argument.
static ffi::Error FfiError(const char* target, const char* err) {
  const std::string msg = std::string(target) + ": " + err;
  if (err == jhn::kErrNoMemory) return ffi::Error(ffi::ErrorCode::kResourceExhausted, msg);
  if (err == jhn::kErrThreads || err == jhn::kErrInternal) return ffi::Error(ffi::ErrorCode::kInternal, msg);
  return ffi::Error::InvalidArgument(msg);
}

// Sets the Python exception for a kernel error message: MemoryError for out of
// memory, RuntimeError for a thread or internal failure, else ValueError.
static void SetPyError(const char* err) {
  PyObject* type = PyExc_ValueError;
  if (err == jhn::kErrNoMemory) type = PyExc_MemoryError;
  else if (err == jhn::kErrThreads || err == jhn::kErrInternal) type = PyExc_RuntimeError;
  PyErr_SetString(type, err);
}

// ----------------------------------------------------------- FFI handler --
// Operands: q u8[nq, nbytes], g u8[ng, nbytes]; attributes: k, num_threads
// (<= 0: default), isa (0 auto, 1 baseline, 2 avx2, 3 avx512), split (0 auto,
// 1 queries, 2 gallery), items_per_thread (0: default); results:
// dist s32[nq, k], idx s32[nq, k].
static ffi::Error TopkImpl(ffi::Buffer<ffi::U8> q, ffi::Buffer<ffi::U8> g,
                           int64_t k, int64_t num_threads, int64_t isa,
                           int64_t split, int64_t items_per_thread,
                           ffi::ResultBuffer<ffi::S32> dist,
                           ffi::ResultBuffer<ffi::S32> idx) {
  const auto qd = q.dimensions();
  const auto gd = g.dimensions();
  if (qd.size() != 2 || gd.size() != 2)
    return ffi::Error::InvalidArgument("jhash_hamming_topk: q and g must be rank 2");
  if (qd[1] != gd[1])
    return ffi::Error::InvalidArgument("jhash_hamming_topk: q and g code widths differ");
  const auto dd = dist->dimensions();
  if (dd.size() != 2 || dd[0] != qd[0] || dd[1] != k)
    return ffi::Error::InvalidArgument("jhash_hamming_topk: bad result shape");
  const char* err = jhn::no_throw([&]() -> const char* { return jhn::hamming_topk(q.typed_data(), qd[0], g.typed_data(), gd[0], qd[1], k,
                                     (int)num_threads, (int)isa, (int)split, items_per_thread,
                                     dist->typed_data(), idx->typed_data()); });
  if (err) return FfiError("jhash_hamming_topk", err);
  return ffi::Error::Success();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(JhashHammingTopk, TopkImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::U8>>()
                                  .Arg<ffi::Buffer<ffi::U8>>()
                                  .Attr<int64_t>("k")
                                  .Attr<int64_t>("num_threads")
                                  .Attr<int64_t>("isa")
                                  .Attr<int64_t>("split")
                                  .Attr<int64_t>("items_per_thread")
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>());

// Operands: q u8[nq, nbytes], g u8[ng, nbytes]; attributes: num_threads,
// isa; result: dist s32[nq, ng].
static ffi::Error DistanceImpl(ffi::Buffer<ffi::U8> q, ffi::Buffer<ffi::U8> g,
                               int64_t num_threads, int64_t isa,
                               ffi::ResultBuffer<ffi::S32> dist) {
  const auto qd = q.dimensions();
  const auto gd = g.dimensions();
  if (qd.size() != 2 || gd.size() != 2)
    return ffi::Error::InvalidArgument("jhash_hamming_distance: q and g must be rank 2");
  if (qd[1] != gd[1])
    return ffi::Error::InvalidArgument("jhash_hamming_distance: q and g code widths differ");
  const auto dd = dist->dimensions();
  if (dd.size() != 2 || dd[0] != qd[0] || dd[1] != gd[0])
    return ffi::Error::InvalidArgument("jhash_hamming_distance: bad result shape");
  const char* err = jhn::no_throw([&]() -> const char* { return jhn::hamming_distance(q.typed_data(), qd[0], g.typed_data(), gd[0], qd[1],
                                          (int)num_threads, (int)isa, dist->typed_data()); });
  if (err) return FfiError("jhash_hamming_distance", err);
  return ffi::Error::Success();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(JhashHammingDistance, DistanceImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::U8>>()
                                  .Arg<ffi::Buffer<ffi::U8>>()
                                  .Attr<int64_t>("num_threads")
                                  .Attr<int64_t>("isa")
                                  .Ret<ffi::Buffer<ffi::S32>>());

// Operands: q u8[nq, nbytes], g u8[ng, nbytes], idx s32[nq, c]; attributes:
// num_threads, isa; result: dist s32[nq, c] (8 * nbytes + 1 where idx is
// outside [0, ng)).
static ffi::Error GatherImpl(ffi::Buffer<ffi::U8> q, ffi::Buffer<ffi::U8> g,
                             ffi::Buffer<ffi::S32> idx, int64_t num_threads, int64_t isa,
                             ffi::ResultBuffer<ffi::S32> dist) {
  const auto qd = q.dimensions();
  const auto gd = g.dimensions();
  const auto id = idx.dimensions();
  if (qd.size() != 2 || gd.size() != 2 || id.size() != 2)
    return ffi::Error::InvalidArgument("jhash_hamming_distance_gather: q, g, idx must be rank 2");
  if (qd[1] != gd[1])
    return ffi::Error::InvalidArgument("jhash_hamming_distance_gather: q and g code widths differ");
  if (id[0] != qd[0])
    return ffi::Error::InvalidArgument("jhash_hamming_distance_gather: idx must have nq rows");
  const auto dd = dist->dimensions();
  if (dd.size() != 2 || dd[0] != id[0] || dd[1] != id[1])
    return ffi::Error::InvalidArgument("jhash_hamming_distance_gather: bad result shape");
  const char* err = jhn::no_throw([&]() -> const char* { return jhn::hamming_distance_gather(q.typed_data(), qd[0], g.typed_data(), gd[0],
                                                 qd[1], idx.typed_data(), id[1], (int)num_threads,
                                                 (int)isa, dist->typed_data()); });
  if (err) return FfiError("jhash_hamming_distance_gather", err);
  return ffi::Error::Success();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(JhashHammingDistanceGather, GatherImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::U8>>()
                                  .Arg<ffi::Buffer<ffi::U8>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Attr<int64_t>("num_threads")
                                  .Attr<int64_t>("isa")
                                  .Ret<ffi::Buffer<ffi::S32>>());

// --------------------------------------------------------------- Python --
static PyObject* py_topk_capsule(PyObject*, PyObject*) {
  return PyCapsule_New(reinterpret_cast<void*>(&JhashHammingTopk), nullptr, nullptr);
}

static PyObject* py_distance_capsule(PyObject*, PyObject*) {
  return PyCapsule_New(reinterpret_cast<void*>(&JhashHammingDistance), nullptr, nullptr);
}

static PyObject* py_gather_capsule(PyObject*, PyObject*) {
  return PyCapsule_New(reinterpret_cast<void*>(&JhashHammingDistanceGather), nullptr, nullptr);
}

// distance_into(q, g, nbytes, out, num_threads, isa): out holds nq * ng int32.
static PyObject* py_distance_into(PyObject*, PyObject* args) {
  PyObject *qo, *go, *oo;
  long long nbytes;
  int num_threads, isa;
  if (!PyArg_ParseTuple(args, "OOLOii", &qo, &go, &nbytes, &oo, &num_threads, &isa)) return nullptr;
  if (nbytes < 1) {
    PyErr_SetString(PyExc_ValueError, "nbytes must be >= 1");
    return nullptr;
  }
  Py_buffer qb, gb, ob;
  if (PyObject_GetBuffer(qo, &qb, PyBUF_C_CONTIGUOUS) < 0) return nullptr;
  if (PyObject_GetBuffer(go, &gb, PyBUF_C_CONTIGUOUS) < 0) {
    PyBuffer_Release(&qb);
    return nullptr;
  }
  if (PyObject_GetBuffer(oo, &ob, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) {
    PyBuffer_Release(&qb);
    PyBuffer_Release(&gb);
    return nullptr;
  }
  const char* err = nullptr;
  const int64_t nq = qb.len / nbytes, ng = gb.len / nbytes;
  if (qb.len % nbytes || gb.len % nbytes) {
    err = "buffer sizes are not multiples of nbytes";
  } else if (ob.len != (Py_ssize_t)(nq * ng * 4)) {
    err = "output buffer must hold nq * ng int32";
  } else {
    Py_BEGIN_ALLOW_THREADS
    err = jhn::no_throw([&]() -> const char* { return jhn::hamming_distance((const uint8_t*)qb.buf, nq, (const uint8_t*)gb.buf, ng, nbytes,
                                num_threads, isa, (int32_t*)ob.buf); });
    Py_END_ALLOW_THREADS
  }
  PyBuffer_Release(&qb);
  PyBuffer_Release(&gb);
  PyBuffer_Release(&ob);
  if (err) {
    SetPyError(err);
    return nullptr;
  }
  Py_RETURN_NONE;
}

// gather_into(q, g, nbytes, idx, c, out, num_threads, isa): idx and out hold
// nq * c int32.
static PyObject* py_gather_into(PyObject*, PyObject* args) {
  PyObject *qo, *go, *io, *oo;
  long long nbytes, c;
  int num_threads, isa;
  if (!PyArg_ParseTuple(args, "OOLOLOii", &qo, &go, &nbytes, &io, &c, &oo, &num_threads, &isa))
    return nullptr;
  if (nbytes < 1 || c < 0) {
    PyErr_SetString(PyExc_ValueError, "nbytes must be >= 1 and c >= 0");
    return nullptr;
  }
  Py_buffer qb, gb, ib, ob;
  if (PyObject_GetBuffer(qo, &qb, PyBUF_C_CONTIGUOUS) < 0) return nullptr;
  if (PyObject_GetBuffer(go, &gb, PyBUF_C_CONTIGUOUS) < 0) {
    PyBuffer_Release(&qb);
    return nullptr;
  }
  if (PyObject_GetBuffer(io, &ib, PyBUF_C_CONTIGUOUS) < 0) {
    PyBuffer_Release(&qb);
    PyBuffer_Release(&gb);
    return nullptr;
  }
  if (PyObject_GetBuffer(oo, &ob, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) {
    PyBuffer_Release(&qb);
    PyBuffer_Release(&gb);
    PyBuffer_Release(&ib);
    return nullptr;
  }
  const char* err = nullptr;
  const int64_t nq = qb.len / nbytes, ng = gb.len / nbytes;
  if (qb.len % nbytes || gb.len % nbytes) {
    err = "buffer sizes are not multiples of nbytes";
  } else if (ib.len != (Py_ssize_t)(nq * c * 4) || ob.len != (Py_ssize_t)(nq * c * 4)) {
    err = "idx and output buffers must hold nq * c int32";
  } else {
    Py_BEGIN_ALLOW_THREADS
    err = jhn::no_throw([&]() -> const char* { return jhn::hamming_distance_gather((const uint8_t*)qb.buf, nq, (const uint8_t*)gb.buf, ng,
                                       nbytes, (const int32_t*)ib.buf, c, num_threads, isa,
                                       (int32_t*)ob.buf); });
    Py_END_ALLOW_THREADS
  }
  PyBuffer_Release(&qb);
  PyBuffer_Release(&gb);
  PyBuffer_Release(&ib);
  PyBuffer_Release(&ob);
  if (err) {
    SetPyError(err);
    return nullptr;
  }
  Py_RETURN_NONE;
}

// kernel_name / dist_kernel_name(isa, nbytes): the kernel variant `name_of`
// gives for a width under an ISA (0: the default one), None if unusable.
static PyObject* KernelNameOf(PyObject* args, const char* (*name_of)(int, int64_t)) {
  int isa;
  long long nbytes;
  if (!PyArg_ParseTuple(args, "iL", &isa, &nbytes)) return nullptr;
  const char* name = nullptr;
  if (const char* err = jhn::no_throw([&]() -> const char* {
        if (isa == jhn::ISA_AUTO) isa = jhn::default_isa();
        if (nbytes >= 1 && jhn::isa_supported(isa)) name = name_of(isa, nbytes);
        return nullptr;
      })) {
    SetPyError(err);
    return nullptr;
  }
  if (!name) Py_RETURN_NONE;
  return PyUnicode_FromString(name);
}

static PyObject* py_dist_kernel_name(PyObject*, PyObject* args) {
  return KernelNameOf(args, &jhn::dist_kernel_name);
}

// topk_into(q, g, nbytes, k, out_dist, out_idx, num_threads, isa, split,
// items_per_thread): q, g: C-contiguous byte buffers; out_*: writable
// C-contiguous int32 buffers of nq * k elements; split 0 auto, 1 queries,
// 2 gallery; items_per_thread 0: default. Shapes are validated by the Python
// wrapper; sizes are re-checked here. Releases the GIL while computing.
static PyObject* py_topk_into(PyObject*, PyObject* args) {
  PyObject *qo, *go, *do_, *io;
  long long nbytes, k, items_per_thread;
  int num_threads, isa, split;
  if (!PyArg_ParseTuple(args, "OOLLOOiiiL", &qo, &go, &nbytes, &k, &do_, &io, &num_threads, &isa, &split,
                        &items_per_thread))
    return nullptr;
  if (nbytes < 1) {
    PyErr_SetString(PyExc_ValueError, "nbytes must be >= 1");
    return nullptr;
  }
  Py_buffer qb, gb, db, ib;
  if (PyObject_GetBuffer(qo, &qb, PyBUF_C_CONTIGUOUS) < 0) return nullptr;
  if (PyObject_GetBuffer(go, &gb, PyBUF_C_CONTIGUOUS) < 0) {
    PyBuffer_Release(&qb);
    return nullptr;
  }
  if (PyObject_GetBuffer(do_, &db, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) {
    PyBuffer_Release(&qb);
    PyBuffer_Release(&gb);
    return nullptr;
  }
  if (PyObject_GetBuffer(io, &ib, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) {
    PyBuffer_Release(&qb);
    PyBuffer_Release(&gb);
    PyBuffer_Release(&db);
    return nullptr;
  }
  const char* err = nullptr;
  const int64_t nq = qb.len / nbytes, ng = gb.len / nbytes;
  if (qb.len % nbytes || gb.len % nbytes) {
    err = "buffer sizes are not multiples of nbytes";
  } else if (db.len != (Py_ssize_t)(nq * k * 4) || ib.len != (Py_ssize_t)(nq * k * 4)) {
    err = "output buffers must hold nq * k int32";
  } else {
    Py_BEGIN_ALLOW_THREADS
    err = jhn::no_throw([&]() -> const char* { return jhn::hamming_topk((const uint8_t*)qb.buf, nq, (const uint8_t*)gb.buf, ng, nbytes, k,
                           num_threads, isa, split, items_per_thread, (int32_t*)db.buf, (int32_t*)ib.buf); });
    Py_END_ALLOW_THREADS
  }
  PyBuffer_Release(&qb);
  PyBuffer_Release(&gb);
  PyBuffer_Release(&db);
  PyBuffer_Release(&ib);
  if (err) {
    SetPyError(err);
    return nullptr;
  }
  Py_RETURN_NONE;
}

// Buffer-protocol view released on scope exit (nullptr object: no buffer).
namespace {
struct View {
  Py_buffer b{};
  bool held = false;
  ~View() {
    if (held) PyBuffer_Release(&b);
  }
  bool get(PyObject* o, bool writable) {
    if (o == Py_None) return true;
    held = PyObject_GetBuffer(o, &b, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) == 0;
    return held;
  }
  void* ptr() const { return held ? b.buf : nullptr; }
  Py_ssize_t len() const { return held ? b.len : 0; }
};
}  // namespace

// ctf_into(q_levels, g_levels, nbytes, nq, ng, thresholds, k, out_keys,
// out_idx, out_full, out_counts, num_threads, isa): the coarse-to-fine
// cascade (ctf.cc). q_levels / g_levels: tuples of C-contiguous byte buffers,
// short to long; nbytes: tuple of widths; thresholds: int32 buffer of n - 1;
// k >= 1 with out_keys / out_idx int32 [nq, k] (out_full None), or k == 0
// with out_full int32 [nq, ng]; out_counts int64 [nq, n].
static PyObject* py_ctf_into(PyObject*, PyObject* args) {
  PyObject *qo, *go, *no, *to, *ko, *io, *fo, *co;
  long long nq, ng, k;
  int num_threads, isa;
  if (!PyArg_ParseTuple(args, "OOOLLOLOOOOii", &qo, &go, &no, &nq, &ng, &to, &k, &ko, &io, &fo, &co,
                        &num_threads, &isa))
    return nullptr;
  if (!PyTuple_Check(qo) || !PyTuple_Check(go) || !PyTuple_Check(no)) {
    PyErr_SetString(PyExc_TypeError, "q_levels, g_levels and nbytes must be tuples");
    return nullptr;
  }
  const Py_ssize_t n = PyTuple_GET_SIZE(no);
  if (n < 1 || n > jhn::kCtfMaxLevels || PyTuple_GET_SIZE(qo) != n || PyTuple_GET_SIZE(go) != n) {
    PyErr_SetString(PyExc_ValueError, "q_levels, g_levels and nbytes must have the same length in [1, 16]");
    return nullptr;
  }
  View qv[jhn::kCtfMaxLevels], gv[jhn::kCtfMaxLevels], tv, kv, iv, fv, cv;
  const uint8_t* qp[jhn::kCtfMaxLevels];
  const uint8_t* gp[jhn::kCtfMaxLevels];
  int64_t nb[jhn::kCtfMaxLevels];
  for (Py_ssize_t s = 0; s < n; ++s) {
    nb[s] = PyLong_AsLongLong(PyTuple_GET_ITEM(no, s));
    if (PyErr_Occurred()) return nullptr;
    if (!qv[s].get(PyTuple_GET_ITEM(qo, s), false) || !gv[s].get(PyTuple_GET_ITEM(go, s), false)) return nullptr;
    if (!qv[s].held || !gv[s].held || nb[s] < 1 || qv[s].len() != nq * nb[s] || gv[s].len() != ng * nb[s]) {
      PyErr_SetString(PyExc_ValueError, "level buffers must hold nq (ng) rows of nbytes[s] bytes");
      return nullptr;
    }
    qp[s] = static_cast<const uint8_t*>(qv[s].ptr());
    gp[s] = static_cast<const uint8_t*>(gv[s].ptr());
  }
  if (!tv.get(to, false) || !kv.get(ko, true) || !iv.get(io, true) || !fv.get(fo, true) || !cv.get(co, true))
    return nullptr;
  const char* err = nullptr;
  if (tv.len() != (Py_ssize_t)(4 * (n - 1)) || cv.len() != (Py_ssize_t)(8 * nq * n)) {
    err = "thresholds must hold n - 1 int32 and out_counts nq * n int64";
  } else if (k > 0 && (kv.len() != (Py_ssize_t)(4 * nq * k) || iv.len() != (Py_ssize_t)(4 * nq * k))) {
    err = "out_keys and out_idx must hold nq * k int32";
  } else if (k == 0 && fv.len() != (Py_ssize_t)(4 * nq * ng)) {
    err = "out_full must hold nq * ng int32";
  } else {
    const int32_t* th = n > 1 ? static_cast<const int32_t*>(tv.ptr()) : nullptr;
    Py_BEGIN_ALLOW_THREADS
    err = jhn::no_throw([&]() -> const char* { return jhn::ctf_search((int)n, qp, gp, nb, nq, ng, th, k, num_threads, isa,
                          static_cast<int32_t*>(kv.ptr()), static_cast<int32_t*>(iv.ptr()),
                          static_cast<int32_t*>(fv.ptr()), static_cast<int64_t*>(cv.ptr())); });
    Py_END_ALLOW_THREADS
  }
  if (err) {
    SetPyError(err);
    return nullptr;
  }
  Py_RETURN_NONE;
}

// afr_into(qa, codes, start, items, nba, qi, gi, nbi, nq, ng, w, k, out_keys,
// out_idx, num_threads, isa): attribute-first top-k (afr.cc). codes: uint8
// [n_groups, nba]; start: int64 [n_groups + 1]; items: int32 [ng]; qa / qi:
// uint8 [nq, nba] / [nq, nbi]; gi: uint8 [ng, nbi]; out_*: int32 [nq, k].
static PyObject* py_afr_into(PyObject*, PyObject* args) {
  PyObject *qao, *co, *so, *io, *qio, *gio, *ko, *xo;
  long long nba, nbi, nq, ng, w, k;
  int num_threads, isa;
  if (!PyArg_ParseTuple(args, "OOOOLOOLLLLLOOii", &qao, &co, &so, &io, &nba, &qio, &gio, &nbi, &nq, &ng, &w, &k,
                        &ko, &xo, &num_threads, &isa))
    return nullptr;
  View qa, cv, sv, iv, qi, gi, kv, xv;
  if (!qa.get(qao, false) || !cv.get(co, false) || !sv.get(so, false) || !iv.get(io, false) ||
      !qi.get(qio, false) || !gi.get(gio, false) || !kv.get(ko, true) || !xv.get(xo, true))
    return nullptr;
  const char* err = nullptr;
  const Py_ssize_t n_groups = nba > 0 ? cv.len() / nba : 0;
  if (nba < 1 || nbi < 1 || cv.len() != n_groups * nba || sv.len() != 8 * (n_groups + 1) ||
      iv.len() != 4 * ng || qa.len() != nq * nba || qi.len() != nq * nbi || gi.len() != ng * nbi) {
    err = "buffer sizes do not match (codes [G, nba], start [G + 1] int64, items [ng] int32, qa, qi, gi)";
  } else if (k < 1 || kv.len() != 4 * nq * k || xv.len() != 4 * nq * k) {
    err = "out_keys and out_idx must hold nq * k int32";
  } else {
    Py_BEGIN_ALLOW_THREADS
    err = jhn::no_throw([&]() -> const char* { return jhn::afr_search(static_cast<const uint8_t*>(qa.ptr()), static_cast<const uint8_t*>(cv.ptr()),
                          static_cast<const int64_t*>(sv.ptr()), static_cast<const int32_t*>(iv.ptr()), n_groups,
                          nba, static_cast<const uint8_t*>(qi.ptr()), static_cast<const uint8_t*>(gi.ptr()), nbi,
                          nq, ng, w, k, num_threads, isa, static_cast<int32_t*>(kv.ptr()),
                          static_cast<int32_t*>(xv.ptr())); });
    Py_END_ALLOW_THREADS
  }
  if (err) {
    SetPyError(err);
    return nullptr;
  }
  Py_RETURN_NONE;
}

static PyObject* py_isa_supported(PyObject*, PyObject* args) {
  int isa;
  if (!PyArg_ParseTuple(args, "i", &isa)) return nullptr;
  bool ok = false;
  if (const char* err = jhn::no_throw([&]() -> const char* { ok = jhn::isa_supported(isa); return nullptr; })) {
    SetPyError(err);
    return nullptr;
  }
  return PyBool_FromLong(ok);
}

static PyObject* py_isa_error(PyObject*, PyObject* args) {
  int isa;
  if (!PyArg_ParseTuple(args, "i", &isa)) return nullptr;
  const char* e = nullptr;
  if (const char* err = jhn::no_throw([&]() -> const char* { e = jhn::isa_selftest_error(isa); return nullptr; })) {
    SetPyError(err);
    return nullptr;
  }
  if (!e) Py_RETURN_NONE;
  return PyUnicode_FromString(e);
}

static PyObject* py_default_isa(PyObject*, PyObject*) {
  int isa = 0;
  if (const char* err = jhn::no_throw([&]() -> const char* { isa = jhn::default_isa(); return nullptr; })) {
    SetPyError(err);
    return nullptr;
  }
  return PyLong_FromLong(isa);
}

static PyObject* py_default_num_threads(PyObject*, PyObject*) {
  return PyLong_FromLong(jhn::default_num_threads());
}

static PyObject* py_kernel_name(PyObject*, PyObject* args) {
  return KernelNameOf(args, &jhn::kernel_name);
}

static PyObject* py_build_info(PyObject*, PyObject*) {
#if defined(__clang__)
  const char* compiler = "clang " __clang_version__;
#elif defined(__GNUC__)
  const char* compiler = "gcc " __VERSION__;
#else
  const char* compiler = "unknown";
#endif
#if defined(JHASH_X86_DISPATCH)
  const int x86 = 1;
#else
  const int x86 = 0;
#endif
#if defined(JHASH_FFI_HEADERS_JAXLIB)
  const char* headers = JHASH_FFI_HEADERS_JAXLIB;
#else
  const char* headers = "";
#endif
  return Py_BuildValue("{s:s,s:O,s:s}", "compiler", compiler, "x86_dispatch",
                       x86 ? Py_True : Py_False, "ffi_headers_jaxlib", headers);
}

static PyMethodDef kMethods[] = {
    {"topk_capsule", py_topk_capsule, METH_NOARGS, "PyCapsule of the XLA FFI top-k handler."},
    {"topk_into", py_topk_into, METH_VARARGS,
     "topk_into(q, g, nbytes, k, out_dist, out_idx, num_threads, isa, split, items_per_thread)"},
    {"distance_capsule", py_distance_capsule, METH_NOARGS,
     "PyCapsule of the XLA FFI dense distance handler."},
    {"gather_capsule", py_gather_capsule, METH_NOARGS,
     "PyCapsule of the XLA FFI gathered distance handler."},
    {"distance_into", py_distance_into, METH_VARARGS,
     "distance_into(q, g, nbytes, out, num_threads, isa)"},
    {"gather_into", py_gather_into, METH_VARARGS,
     "gather_into(q, g, nbytes, idx, c, out, num_threads, isa)"},
    {"ctf_into", py_ctf_into, METH_VARARGS,
     "ctf_into(q_levels, g_levels, nbytes, nq, ng, thresholds, k, out_keys, out_idx, out_full, out_counts, "
     "num_threads, isa)"},
    {"afr_into", py_afr_into, METH_VARARGS,
     "afr_into(qa, codes, start, items, nba, qi, gi, nbi, nq, ng, w, k, out_keys, out_idx, num_threads, isa)"},
    {"dist_kernel_name", py_dist_kernel_name, METH_VARARGS,
     "dist_kernel_name(isa, nbytes) -> str (dense / gather kernel variant)"},
    {"isa_supported", py_isa_supported, METH_VARARGS,
     "isa_supported(isa) -> bool (CPU support and self-test passed)."},
    {"isa_error", py_isa_error, METH_VARARGS, "isa_error(isa) -> why an ISA is unusable, or None."},
    {"default_isa", py_default_isa, METH_NOARGS, "ISA used when isa=0."},
    {"default_num_threads", py_default_num_threads, METH_NOARGS,
     "Threads used when num_threads<=0."},
    {"kernel_name", py_kernel_name, METH_VARARGS, "kernel_name(isa, nbytes) -> str"},
    {"build_info", py_build_info, METH_NOARGS, "Compiler and dispatch info."},
    {nullptr, nullptr, 0, nullptr}};

static struct PyModuleDef kModule = {PyModuleDef_HEAD_INIT, "_jhash_native",
                                     "jhash native CPU kernels (exact Hamming top-k, dense and gathered distances, coarse-to-fine and attribute-first search).", -1,
                                     kMethods};

PyMODINIT_FUNC PyInit__jhash_native(void) { return PyModule_Create(&kModule); }
