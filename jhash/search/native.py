"""Native CPU kernels for exact Hamming top-k and Hamming distances, callable from JAX (also inside ``jit``).

The kernel (``csrc/``, built by the package's normal ``pip install`` as the
optional extension ``jhash.search._jhash_native``) fuses the XOR/popcount
distance and the top-k selection into a single pass over the gallery:

* the gallery is cut into L1-sized tiles; every query of a block is scanned
  against a tile while it is hot, so the gallery is read from memory once per
  block of up to 256 queries;
* per query the selection keeps a threshold ``T`` (a row enters only if its
  distance is ``< T``), a histogram of accepted distances (distances are small
  integers in ``[0, L]``) and a small key buffer, so the hot loop is "distance,
  compare with a register" and the result is exact and ordered by
  ``(distance, gallery index)``;
* popcount: AVX2 nibble-LUT (Mula) and scalar ``POPCNT`` interleaved on x86-64
  with AVX2, AVX-512 ``VPOPCNTQ`` where available (8 gallery rows per step for
  64-256-bit codes), a portable fallback elsewhere; the instruction set is
  chosen at run time (one binary runs on every CPU) after a self-test against a
  reference; :func:`kernel_for` names the kernel a code width gets;
* threads: ``std::thread`` over gallery chunks and query blocks
  (``JHASH_NUM_THREADS`` or ``num_threads=``; default: the CPUs this process may
  use); the chunks of one query share their selection thresholds while they
  scan, so splitting the gallery costs few extra accepted rows (``split=`` and
  ``items_per_thread=`` override the split, for benchmarks:
  ``bench/search_threads.py``);
* failures: a thread the system refuses to start raises ``RuntimeError``, a
  buffer that cannot be allocated ``MemoryError`` (inside ``jit``: XLA's
  runtime error, a ``RuntimeError``); the process is never aborted.

It is exposed to JAX as the XLA FFI custom call ``jhash_hamming_topk`` (CPU
platform only). Use :func:`hamming_topk`; ``jhash.search.hamming_topk(...,
backend="native")`` dispatches here.

Two more kernels share the popcount code, the ISA dispatch (and self-test) and
the threading:

* :func:`hamming_distance` -- the dense ``int32 [nq, ng]`` matrix
  ``d_H(q_i, g_j) = popcount(q_i XOR g_j)`` (FFI target
  ``jhash_hamming_distance``; the gallery is tiled so it is read from memory
  once per block of 64 queries, threads split queries and gallery);
* :func:`hamming_distance_gather` -- ``int32 [nq, c]`` distances from each
  query to its own candidate list ``candidates [nq, c]`` of gallery indices,
  the re-ranking step of coarse-to-fine / attribute-first search (FFI target
  ``jhash_hamming_distance_gather``; gathered rows are prefetched). Candidate
  entries ``< 0`` are padding and get the sentinel distance
  :func:`padding_distance` ``= L + 1`` (``L = 8 * q.shape[1]`` bits), larger
  than every real distance.

``jhash.search.hamming_distance`` / ``hamming_distance_gather`` dispatch here
with ``backend="native"`` (and ``"auto"`` on the CPU).
"""

from __future__ import annotations

import operator
import threading
from typing import Any, Sequence

import numpy as np

__all__ = [
    "is_available",
    "unavailable_reason",
    "hamming_topk",
    "hamming_topk_numpy",
    "hamming_distance",
    "hamming_distance_numpy",
    "hamming_distance_gather",
    "hamming_distance_gather_numpy",
    "padding_distance",
    "available_isas",
    "kernel_for",
    "info",
]

FFI_TARGET = "jhash_hamming_topk"
FFI_TARGET_DISTANCE = "jhash_hamming_distance"
FFI_TARGET_GATHER = "jhash_hamming_distance_gather"
_ISAS = {"auto": 0, "baseline": 1, "avx2": 2, "avx512": 3}
_ISA_NAMES = {v: k for k, v in _ISAS.items()}
# How the top-k divides its work between threads (csrc/topk.h, Split); None: the automatic rule.
_SPLITS = {None: 0, "queries": 1, "gallery": 2}
_MAX_ROWS = 2**31 - 1

_ext: Any = None
_reason: str | None = None
_checked = False
_registered = False
_lock = threading.Lock()


def _version_tuple(v: str) -> tuple[int, ...]:
    out = []
    for part in v.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def _build_error_text() -> str | None:
    import importlib.resources

    try:
        f = importlib.resources.files("jhash.search").joinpath("_jhash_native_build_error.txt")
        if f.is_file():
            return f.read_text(encoding="utf-8").strip()
    except Exception:  # noqa: BLE001 - best effort
        return None
    return None


def _check() -> None:
    global _ext, _reason, _checked
    if _checked:
        return
    with _lock:
        if _checked:
            return
        try:
            from jhash.search import _jhash_native as ext  # type: ignore[attr-defined]
        except ImportError as exc:
            why = _build_error_text()
            _reason = (
                "the native extension jhash.search._jhash_native is not built "
                f"({exc})"
                + (f"; build error: {why}" if why else "")
                + ". It is compiled by `pip install -e .` when a C++17 compiler "
                "(GCC or Clang) and the jaxlib headers are available."
            )
            _checked = True
            return
        try:
            import jaxlib

            built = ext.build_info().get("ffi_headers_jaxlib") or ""
            if built and _version_tuple(jaxlib.__version__) < _version_tuple(built):
                _reason = (
                    f"the native extension was built against the XLA FFI headers of jaxlib "
                    f"{built} but jaxlib {jaxlib.__version__} is running; reinstall jhash "
                    "(pip install -e .) to rebuild it"
                )
                _checked = True
                return
            ext.default_isa()  # runs the kernel self-test of the chosen ISA
            if not ext.isa_supported(_ISAS["baseline"]):
                _reason = f"native kernel self-test failed: {ext.isa_error(_ISAS['baseline'])}"
                _checked = True
                return
        except Exception as exc:  # noqa: BLE001
            _reason = f"the native extension failed to initialise: {exc!r}"
            _checked = True
            return
        _ext = ext
        _checked = True


def is_available() -> bool:
    """True if the compiled kernel is importable and passed its self-test."""
    _check()
    return _ext is not None


def unavailable_reason() -> str | None:
    """Why :func:`is_available` is False (None when it is available)."""
    _check()
    return None if _ext is not None else _reason


def _require() -> Any:
    if not is_available():
        raise RuntimeError(f"jhash native kernel unavailable: {unavailable_reason()}")
    return _ext


def _register() -> None:
    global _registered
    if _registered:
        return
    ext = _require()
    with _lock:
        if _registered:
            return
        import jax

        jax.ffi.register_ffi_target(FFI_TARGET, ext.topk_capsule(), platform="cpu")
        jax.ffi.register_ffi_target(FFI_TARGET_DISTANCE, ext.distance_capsule(), platform="cpu")
        jax.ffi.register_ffi_target(FFI_TARGET_GATHER, ext.gather_capsule(), platform="cpu")
        _registered = True


def available_isas() -> list[str]:
    """Instruction sets usable on this CPU (supported and self-tested), best last."""
    ext = _require()
    return [name for name, v in _ISAS.items() if v and ext.isa_supported(v)]


def kernel_for(width_bytes: int, isa: str | None = None) -> str:
    """The top-k scan kernel used for codes of ``width_bytes`` bytes, e.g. ``"avx2-mula"``.

    ``isa``: as :func:`hamming_topk` (default: the best instruction set that passed its self-test here).
    """
    if isinstance(width_bytes, bool) or not isinstance(width_bytes, (int, np.integer)) or width_bytes < 1:
        raise ValueError(f"width_bytes: expected a positive int (code bits / 8), got {width_bytes!r}")
    code = _isa_code(isa) or _require().default_isa()
    return _ext.kernel_name(code, int(width_bytes))


def info() -> dict:
    """Build and dispatch information: chosen ISA, threads, compiler, kernel per width."""
    ext = _require()
    d = dict(ext.build_info())
    isa = ext.default_isa()
    d.update(
        isa=_ISA_NAMES[isa],
        available_isas=available_isas(),
        num_threads=ext.default_num_threads(),
        kernels={bits: kernel_for(bits // 8) for bits in (64, 128, 256, 512, 1024, 2048)},
        distance_kernels={
            bits: ext.dist_kernel_name(isa, bits // 8) for bits in (64, 128, 256, 512, 1024, 2048)
        },
    )
    return d


def _isa_code(isa: str | None) -> int:
    if isa is None:
        return 0
    if isa not in _ISAS:
        raise ValueError(f"isa: expected one of {sorted(_ISAS)}, got {isa!r}")
    code = _ISAS[isa]
    if code and not _require().isa_supported(code):
        raise ValueError(
            f"isa: {isa!r} is not usable on this CPU ({_ext.isa_error(code)}); "
            f"available: {available_isas()}"
        )
    return code


def _positive_or_none(name: str, value: int | None) -> int:
    """``value`` as a positive int, 0 for None (the kernel's "default"); ValueError naming ``name`` otherwise."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected a positive int or None, got {value!r}")
    try:
        n = operator.index(value)
    except TypeError:
        raise ValueError(f"{name}: expected a positive int or None, got {value!r}") from None
    if n < 1:
        raise ValueError(f"{name}: expected a positive int or None, got {n}")
    return n


def _threads(num_threads: int | None) -> int:
    return _positive_or_none("num_threads", num_threads)


def _split_codes(split: str | None, items_per_thread: int | None) -> tuple[int, int]:
    """The kernel's codes for :func:`hamming_topk`'s ``split`` and ``items_per_thread`` (0: default)."""
    if not (split is None or isinstance(split, str)) or split not in _SPLITS:
        raise ValueError(f"split: expected 'queries', 'gallery' or None (automatic), got {split!r}")
    return _SPLITS[split], _positive_or_none("items_per_thread", items_per_thread)


def _validate_codes(q: Any, g: Any) -> tuple[Any, Any, int, int, int]:
    """Checks packed code shapes/dtypes (numpy arrays, jax arrays and tracers); ``g`` may be empty."""
    if not hasattr(q, "shape") or not hasattr(q, "dtype"):
        q = np.asarray(q)
    if not hasattr(g, "shape") or not hasattr(g, "dtype"):
        g = np.asarray(g)
    for name, a in (("q", q), ("g", g)):
        if len(a.shape) != 2:
            raise ValueError(
                f"{name}: expected packed codes of rank 2 [n, L/8] (uint8), got shape {tuple(a.shape)}"
            )
        if np.dtype(a.dtype) != np.uint8:
            raise ValueError(
                f"{name}: expected dtype uint8 (bit-packed codes from pack_codes), got {a.dtype}"
            )
    nq, wq = int(q.shape[0]), int(q.shape[1])
    ng, wg = int(g.shape[0]), int(g.shape[1])
    if wq < 1:
        raise ValueError(f"q: code width must be at least 1 byte, got shape {tuple(q.shape)}")
    if wq != wg:
        raise ValueError(
            f"g: code length mismatch: q has {8 * wq} bits ({wq} bytes) per code, "
            f"g has {8 * wg} bits ({wg} bytes)"
        )
    if ng > _MAX_ROWS:
        raise ValueError(
            f"g: {ng} gallery rows exceed the native kernel's int32 index range "
            f"(at most {_MAX_ROWS}); split the gallery and merge the per-part results"
        )
    return q, g, nq, ng, wq


def _validate(q: Any, g: Any, k: Any) -> tuple[Any, Any, int, int, int, int]:
    """Checks shapes/dtypes and k (works on numpy arrays, jax arrays and tracers)."""
    q, g, nq, ng, wq = _validate_codes(q, g)
    if ng < 1:
        raise ValueError("g: the gallery is empty (0 rows); expected at least k rows")
    if isinstance(k, bool) or isinstance(k, (float, np.floating)):
        raise ValueError(f"k: expected a positive int, got {k!r}")
    try:
        k = operator.index(k)
    except TypeError:
        raise ValueError(f"k: expected a positive int (static), got {k!r}") from None
    if k < 1:
        raise ValueError(f"k: expected k >= 1, got {k}")
    if k > ng:
        raise ValueError(f"k: expected k <= number of gallery rows ({ng}), got {k}")
    return q, g, nq, ng, wq, k


def hamming_topk(
    q: Any,
    g: Any,
    k: int,
    *,
    num_threads: int | None = None,
    isa: str | None = None,
    split: str | None = None,
    items_per_thread: int | None = None,
) -> tuple[Any, Any]:
    """Exact Hamming top-k of packed codes on the CPU, as a JAX operation.

    Args:
      q: uint8 ``[nq, L/8]`` packed query codes (numpy or jax array, or a tracer
        inside ``jax.jit``). Any positive byte width is accepted.
      g: uint8 ``[ng, L/8]`` packed gallery codes, ``1 <= ng < 2**31``.
      k: number of neighbours, ``1 <= k <= ng`` (a static Python int).
      num_threads: worker threads (default: ``JHASH_NUM_THREADS`` or every CPU
        this process may use).
      isa: force an instruction set ("baseline", "avx2", "avx512"); default: the
        best available.
      split: how the work is divided between threads, a tuning knob that never
        changes the result: ``"queries"`` (superblocks of queries, each
        scanning the whole gallery), ``"gallery"`` (gallery chunks of at least
        ``max(4096, 2k)`` rows that share their selection thresholds, merged at
        the end) or None, the automatic rule: queries with at least 8 per
        thread and more than one thread, else the gallery (one pass on one
        thread). A forced split applies on one thread too.
      items_per_thread: work items per thread: query superblocks when the
        queries are split (default 2 below 512-bit codes, 1 from 512 bits up;
        the automatic rule keeps at least 8 queries per superblock), gallery
        chunks when the gallery is (default 4); None: the default.
        ``bench/search_threads.py`` times the settings.

    Returns:
      ``(distances, indices)``, both int32 ``[nq, k]`` jax arrays, each row
      ordered by (distance, gallery index) — exactly the first k entries of a
      stable sort of the distances.

    Runs through the XLA FFI custom call ``jhash_hamming_topk`` on the CPU
    platform (usable inside ``jit``; under ``vmap`` it loops sequentially).
    """
    q, g, nq, ng, _, k = _validate(q, g, k)
    nt = _threads(num_threads)
    isa_code = _isa_code(isa)
    split_code, items = _split_codes(split, items_per_thread)
    _register()
    import jax
    import jax.numpy as jnp

    out = (
        jax.ShapeDtypeStruct((nq, k), jnp.int32),
        jax.ShapeDtypeStruct((nq, k), jnp.int32),
    )
    call = jax.ffi.ffi_call(FFI_TARGET, out, vmap_method="sequential")
    dist, idx = call(q, g, k=np.int64(k), num_threads=np.int64(nt), isa=np.int64(isa_code),
                     split=np.int64(split_code), items_per_thread=np.int64(items))
    return dist, idx


def hamming_topk_numpy(
    q: Any,
    g: Any,
    k: int,
    *,
    num_threads: int | None = None,
    isa: str | None = None,
    split: str | None = None,
    items_per_thread: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Same as :func:`hamming_topk` on numpy arrays, without JAX (releases the GIL)."""
    q, g, nq, _, w, k = _validate(q, g, k)
    nt = _threads(num_threads)
    isa_code = _isa_code(isa)
    split_code, items = _split_codes(split, items_per_thread)
    ext = _require()
    q = np.ascontiguousarray(q, dtype=np.uint8)
    g = np.ascontiguousarray(g, dtype=np.uint8)
    dist = np.empty((nq, k), dtype=np.int32)
    idx = np.empty((nq, k), dtype=np.int32)
    if nq:
        ext.topk_into(q, g, w, k, dist, idx, nt, isa_code, split_code, items)
    return dist, idx


def padding_distance(code_bytes: int) -> int:
    """The distance :func:`hamming_distance_gather` returns for padding candidates: ``L + 1``.

    ``L = 8 * code_bytes`` is the code length in bits, so the sentinel is larger than every real
    Hamming distance and sorts after all real candidates.
    """
    return 8 * int(code_bytes) + 1


def hamming_distance(
    q: Any,
    g: Any,
    *,
    num_threads: int | None = None,
    isa: str | None = None,
) -> Any:
    """All-pairs Hamming distances ``d_H(q_i, g_j) = popcount(q_i XOR g_j)`` on the CPU, as a JAX op.

    Args:
      q: uint8 ``[nq, L/8]`` packed query codes (numpy or jax array, or a tracer inside ``jax.jit``);
        any positive byte width.
      g: uint8 ``[ng, L/8]`` packed gallery codes, ``0 <= ng < 2**31``.
      num_threads: worker threads (default: ``JHASH_NUM_THREADS`` or every CPU this process may use;
        small problems run on the calling thread).
      isa: force an instruction set ("baseline", "avx2", "avx512"); default: the best available.

    Returns:
      int32 ``[nq, ng]`` jax array. Runs through the XLA FFI custom call ``jhash_hamming_distance``
      (CPU platform; usable inside ``jit``; under ``vmap`` it loops sequentially).
    """
    q, g, nq, ng, _ = _validate_codes(q, g)
    nt = _threads(num_threads)
    isa_code = _isa_code(isa)
    _register()
    import jax
    import jax.numpy as jnp

    if nq == 0 or ng == 0:
        return jnp.zeros((nq, ng), jnp.int32)
    call = jax.ffi.ffi_call(
        FFI_TARGET_DISTANCE, jax.ShapeDtypeStruct((nq, ng), jnp.int32), vmap_method="sequential"
    )
    return call(q, g, num_threads=np.int64(nt), isa=np.int64(isa_code))


def hamming_distance_numpy(
    q: Any,
    g: Any,
    *,
    num_threads: int | None = None,
    isa: str | None = None,
) -> np.ndarray:
    """Same as :func:`hamming_distance` on numpy arrays, without JAX (releases the GIL)."""
    q, g, nq, ng, w = _validate_codes(q, g)
    nt = _threads(num_threads)
    isa_code = _isa_code(isa)
    ext = _require()
    q = np.ascontiguousarray(q, dtype=np.uint8)
    g = np.ascontiguousarray(g, dtype=np.uint8)
    out = np.empty((nq, ng), dtype=np.int32)
    if nq and ng:
        ext.distance_into(q, g, w, out, nt, isa_code)
    return out


def hamming_distance_gather(
    q: Any,
    g: Any,
    candidates: Any,
    *,
    num_threads: int | None = None,
    isa: str | None = None,
) -> Any:
    """Distances from each query to its own candidate gallery rows, on the CPU, as a JAX op.

    ``out[i, t] = popcount(q_i XOR g[candidates[i, t]])``; entries ``candidates[i, t] < 0`` are padding
    and give :func:`padding_distance` ``= L + 1`` (``L = 8 * q.shape[1]``).

    Args:
      q: uint8 ``[nq, L/8]`` packed query codes (numpy, jax array or tracer).
      g: uint8 ``[ng, L/8]`` packed gallery codes.
      candidates: integer ``[nq, c]`` gallery indices, ``< ng`` (concrete arrays are checked:
        ``ValueError``; inside ``jit`` an out-of-range entry is treated like padding).
      num_threads, isa: as :func:`hamming_distance`.

    Returns:
      int32 ``[nq, c]`` jax array (FFI custom call ``jhash_hamming_distance_gather``).
    """
    from jhash.search.hamming import check_candidates

    q, g, nq, ng, _ = _validate_codes(q, g)
    candidates = check_candidates(candidates, nq, ng)
    nt = _threads(num_threads)
    isa_code = _isa_code(isa)
    _register()
    import jax
    import jax.numpy as jnp

    c = int(candidates.shape[1])
    if nq == 0 or c == 0:
        return jnp.zeros((nq, c), jnp.int32)
    call = jax.ffi.ffi_call(
        FFI_TARGET_GATHER, jax.ShapeDtypeStruct((nq, c), jnp.int32), vmap_method="sequential"
    )
    return call(q, g, candidates, num_threads=np.int64(nt), isa=np.int64(isa_code))


def hamming_distance_gather_numpy(
    q: Any,
    g: Any,
    candidates: Any,
    *,
    num_threads: int | None = None,
    isa: str | None = None,
) -> np.ndarray:
    """Same as :func:`hamming_distance_gather` on numpy arrays, without JAX (releases the GIL)."""
    from jhash.search.hamming import check_candidates

    q, g, nq, ng, w = _validate_codes(q, g)
    candidates = check_candidates(np.asarray(candidates), nq, ng)
    nt = _threads(num_threads)
    isa_code = _isa_code(isa)
    ext = _require()
    q = np.ascontiguousarray(q, dtype=np.uint8)
    g = np.ascontiguousarray(g, dtype=np.uint8)
    idx = np.ascontiguousarray(candidates, dtype=np.int32)
    c = int(idx.shape[1])
    out = np.empty((nq, c), dtype=np.int32)
    if nq and c:
        ext.gather_into(q, g, w, idx, c, out, nt, isa_code)
    return out


def coarse_to_fine_numpy(
    levels_q: Sequence[np.ndarray],
    levels_g: Sequence[np.ndarray],
    thresholds: Sequence[int],
    k: int,
    *,
    num_threads: int | None = None,
    isa: str | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, np.ndarray]:
    """The coarse-to-fine cascade (CtF §3.3; :mod:`jhash.search.coarse_to_fine` defines the keys) on the CPU.

    Args:
      levels_q, levels_g: packed codes per level, short to long (uint8 ``[nq, L_s/8]`` / ``[ng, L_s/8]``).
      thresholds: ``N - 1`` integer thresholds ``0 <= t_s <= L_s``.
      k: ``1 <= k <= ng`` for the top-``k`` of every query, or ``0`` for the CtF key of every pair.

    Returns:
      ``(keys int32 [nq, k], indices int32 [nq, k], None, counts int64 [nq, N])`` for ``k >= 1``,
      ``(None, None, keys int32 [nq, ng], counts)`` for ``k == 0`` (``counts`` as
      :class:`jhash.search.coarse_to_fine.CtFTopK`'s ``num_candidates``). Releases the GIL.
    """
    ext = _require()
    q = tuple(np.ascontiguousarray(a, dtype=np.uint8) for a in levels_q)
    g = tuple(np.ascontiguousarray(a, dtype=np.uint8) for a in levels_g)
    if not q or len(q) != len(g):
        raise ValueError(f"levels_q / levels_g: expected the same non-zero number of levels, got {len(q)} and {len(g)}")
    nq, ng = q[0].shape[0], g[0].shape[0]
    for s, (a, b) in enumerate(zip(q, g)):
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or a.shape[0] != nq or b.shape[0] != ng:
            raise ValueError(f"level {s}: expected packed codes [{nq}, W] and [{ng}, W] of one width W, "
                             f"got {a.shape} and {b.shape}")
    th = np.ascontiguousarray(np.asarray(thresholds, np.int32).reshape(-1))
    if th.shape[0] != len(q) - 1:
        raise ValueError(f"thresholds: expected {len(q) - 1} values, got {th.shape[0]}")
    if isinstance(k, bool) or not 0 <= int(k) <= ng:
        raise ValueError(f"k: expected an int in [0, {ng}] (0: every key), got {k!r}")
    k = int(k)
    counts = np.zeros((nq, len(q)), np.int64)
    keys = idx = full = None
    if k:
        keys, idx = np.empty((nq, k), np.int32), np.empty((nq, k), np.int32)
    else:
        full = np.empty((nq, ng), np.int32)
    if nq:
        ext.ctf_into(q, g, tuple(a.shape[1] for a in g), nq, ng, th, k, keys, idx, full, counts,
                     _threads(num_threads), _isa_code(isa))
    return keys, idx, full, counts


def attribute_first_numpy(
    q_attr: np.ndarray,
    group_codes: np.ndarray,
    group_start: np.ndarray,
    group_items: np.ndarray,
    q_id: np.ndarray,
    g_id_grouped: np.ndarray,
    w: int,
    k: int,
    *,
    num_threads: int | None = None,
    isa: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Attribute-first top-``k`` (AFR, Jin et al. 2021 eqs. 6-7; keys as
    :func:`jhash.search.attribute_first.attribute_first_distances`) on the CPU, over a gallery grouped by
    attribute code (:class:`jhash.search.attribute_first.AFRIndex` builds the groups).

    Args:
      q_attr: uint8 ``[nq, A/8]`` packed query attribute codes.
      group_codes: uint8 ``[G, A/8]`` the distinct gallery attribute codes.
      group_start: int64 ``[G + 1]``; group ``u`` owns the positions ``group_start[u]:group_start[u + 1]``.
      group_items: int32 ``[ng]``: position ``p`` is gallery item ``group_items[p]`` (increasing within a group).
      q_id: uint8 ``[nq, L/8]`` packed query ID codes.
      g_id_grouped: uint8 ``[ng, L/8]`` the gallery's ID codes in the grouped order (row ``p`` is the code of
        item ``group_items[p]``), so that a window of whole groups is read sequentially.
      w, k: window and result sizes, ``1 <= w, k <= ng``.

    Returns ``(keys int32 [nq, k], indices int32 [nq, k])``. Releases the GIL.
    """
    ext = _require()
    qa = np.ascontiguousarray(q_attr, dtype=np.uint8)
    codes = np.ascontiguousarray(group_codes, dtype=np.uint8)
    start = np.ascontiguousarray(group_start, dtype=np.int64)
    items = np.ascontiguousarray(group_items, dtype=np.int32)
    qi = np.ascontiguousarray(q_id, dtype=np.uint8)
    gi = np.ascontiguousarray(g_id_grouped, dtype=np.uint8)
    nq, ng = qa.shape[0], gi.shape[0]
    if qa.ndim != 2 or codes.ndim != 2 or qa.shape[1] != codes.shape[1]:
        raise ValueError(f"q_attr / group_codes: expected packed codes of one width, got {qa.shape} and {codes.shape}")
    if qi.ndim != 2 or gi.ndim != 2 or qi.shape[1] != gi.shape[1] or qi.shape[0] != nq:
        raise ValueError(f"q_id / g_id_grouped: expected [{nq}, W] and [ng, W] packed codes, got {qi.shape} and {gi.shape}")
    if codes.shape[1] > 31:
        raise ValueError(f"group_codes: attribute codes of at most 248 bits, got {8 * codes.shape[1]}")
    if start.shape != (codes.shape[0] + 1,) or items.shape != (ng,):
        raise ValueError(f"group_start / group_items: expected [{codes.shape[0] + 1}] and [{ng}], "
                         f"got {start.shape} and {items.shape}")
    for name, v in (("w", w), ("k", k)):
        if isinstance(v, bool) or not 1 <= int(v) <= ng:
            raise ValueError(f"{name}: expected an int in [1, {ng}] (the gallery size), got {v!r}")
    keys, idx = np.empty((nq, int(k)), np.int32), np.empty((nq, int(k)), np.int32)
    if nq:
        ext.afr_into(qa, codes, start, items, qa.shape[1], qi, gi, qi.shape[1], nq, ng, int(w), int(k), keys, idx,
                     _threads(num_threads), _isa_code(isa))
    return keys, idx

