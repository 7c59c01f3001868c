"""Every jitted program of jhash lowers for GPU and TPU, proven on a CPU-only machine with ``jax.export``.

``jax.export.export(fn, platforms=("cuda", "tpu"))`` traces and lowers a program to StableHLO for those
platforms without a device: it fails for an op with no lowering there (e.g. a CPU-only custom call) and
records the target platforms in the artifact. Where the program also exports for ``"cpu"``, the exported
artifact is run here and compared with the direct call (the multi-platform program computes the same).
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jhash import config as config_lib
from jhash import encode as encode_lib
from jhash import methods as methods_lib
from jhash import optim, parallel, trainer
from jhash.data import pipeline, synthetic
from jhash.search import native

ROOT = pathlib.Path(__file__).resolve().parents[2]
ACCEL = ("cuda", "tpu")


def _module_text(exported) -> str:
    return exported.mlir_module()


def _assert_portable(exported, platforms=ACCEL):
    assert tuple(exported.platforms) == tuple(platforms)
    # The native kernel's FFI targets (jhash_hamming_topk, ...) are registered for the CPU only.
    assert "jhash_" not in _module_text(exported), "a CPU-only jhash custom call was lowered for an accelerator"


# Exporting the "auto" search for the CPU too keeps the kernel's custom call in the CPU branch (it is jhash's
# own, with no cross-version guarantee, so jax.export asks for it to be named).
CPU_KERNELS = [jax.export.DisabledSafetyCheck.custom_call(t)
               for t in ("jhash_hamming_topk", "jhash_hamming_distance", "jhash_hamming_distance_gather")]


def _with_cpu(f, *args):
    """``f`` exported for the CPU and the accelerators, and its result called here on the CPU."""
    exported = jax.export.export(f, platforms=("cpu", *ACCEL), disabled_checks=CPU_KERNELS)(*args)
    return exported, exported.call(*args)


def _spec(tree):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), tree)


def _method_config(name: str, compute_dtype: str = "float32"):
    """The synthetic_reid config of ``name`` with a tiny P x K and no pretrained weights."""
    c = config_lib.load_file(ROOT / "configs" / "synthetic_reid" / f"{name}.py")
    c.dataset.config = "tiny"
    c.model.pretrained = ""
    c.train.batch_p, c.train.batch_k = 4, 2
    c.train.compute_dtype = compute_dtype
    return c


def _train_batch(c, info):
    source = synthetic.SyntheticSource("train", "tiny")
    it = pipeline.train_loader(source, info, batch_p=c.train.batch_p, batch_k=c.train.batch_k,
                               image_size=tuple(c.input.image_size), seed=0, prefetch=0)
    try:
        return next(it)
    finally:
        it.close()


def _programs(name: str, compute_dtype: str = "float32"):
    """(jitted train step, state spec, batch spec, jitted encode fn, variables spec, images spec) of a method."""
    c = _method_config(name, compute_dtype)
    info = synthetic.dataset_info("tiny")
    method = methods_lib.get(c.method.name)
    model = method.build_model(c, info)
    mesh = parallel.make_mesh(jax.devices()[:1])
    image_size = tuple(c.input.image_size)
    variables = trainer.init_variables(model, c, image_size, jax.random.PRNGKey(0), pretrained=False)
    tx, schedule = optim.make_optimizer(c, variables["params"], info)
    state = trainer.create_state(c, info, method, variables, tx, jax.random.PRNGKey(1))
    batch = _train_batch(c, info)
    step = trainer.jit_train_step(trainer.make_train_step(model, method, c, tx, schedule), mesh)
    enc = encode_lib.codes_fn(model, method, c, mesh)
    return c, step, _spec(state), _spec(batch), enc, _spec(state.variables()), _spec(batch["image"])


@pytest.mark.parametrize("name", methods_lib.available())
def test_train_step_and_encode_export_for_gpu_and_tpu(name):
    c, step, state, batch, enc, variables, images = _programs(name)
    exported = jax.export.export(step, platforms=ACCEL)(state, batch)
    _assert_portable(exported)
    new_state, metrics = exported.out_tree.unflatten(exported.out_avals)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), new_state) == jax.tree.map(lambda a: (a.shape, a.dtype), state)
    assert metrics["loss"].shape == ()

    exported = jax.export.export(enc, platforms=ACCEL)(variables, images)
    _assert_portable(exported)
    codes = exported.out_tree.unflatten(exported.out_avals)
    assert codes and all(k.startswith("code/") and v.shape[0] == images.shape[0] for k, v in codes.items())


def test_bf16_train_step_exports_for_gpu_and_tpu():
    _, step, state, batch, *_ = _programs("baseline", "bfloat16")
    exported = jax.export.export(step, platforms=ACCEL)(state, batch)
    _assert_portable(exported)
    assert "bf16" in _module_text(exported)  # the convolutions really run in bfloat16


def test_dvhn_discrete_update_exports_and_matches_on_cpu():
    from jhash import discrete

    rng = np.random.default_rng(0)
    n, bits, classes = 24, 16, 4
    outputs = jnp.asarray(rng.normal(size=(n, bits)).astype(np.float32))
    labels = jnp.asarray(rng.integers(0, classes, n).astype(np.int32))
    codes = discrete.sign(outputs)

    def update(codes, outputs, labels):
        return discrete.alternate(codes, outputs, labels, classes, 1e-2, 1.0, 1e-2, iterations=2, sweeps=2)

    _assert_portable(jax.export.export(jax.jit(update), platforms=ACCEL)(codes, outputs, labels))
    exported = jax.export.export(jax.jit(update), platforms=("cpu", *ACCEL))(codes, outputs, labels)
    got_b, got_w = exported.call(codes, outputs, labels)
    want_b, want_w = update(codes, outputs, labels)
    np.testing.assert_array_equal(np.asarray(got_b), np.asarray(want_b))
    np.testing.assert_allclose(np.asarray(got_w), np.asarray(want_w), rtol=1e-6)


def _codes(n, nbytes, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, nbytes), dtype=np.uint8)


def _topk_reference(q, g, k):
    """Exact top-k by (distance, index) from the definition: popcount of XOR, stable sort."""
    d = np.array([[bin(int.from_bytes((a ^ b).tobytes(), "big")).count("1") for b in g] for a in q])
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, idx, axis=1), idx


@pytest.mark.parametrize("backend", ["xla", "auto"])
def test_hamming_search_exports_for_gpu_and_tpu(backend):
    from jhash import search

    q, g, k = _codes(5, 8, 1), _codes(300, 8, 2), 7

    def topk(q, g):
        return search.hamming_topk(q, g, k, backend=backend)

    _assert_portable(jax.export.export(jax.jit(topk), platforms=ACCEL)(q, g))
    want_d, want_i = _topk_reference(q, g, k)
    exported, (d, i) = _with_cpu(jax.jit(topk), q, g)
    if backend == "auto" and native.is_available():  # the CPU branch still runs the native kernel
        assert "jhash_hamming_topk" in exported.mlir_module()
    np.testing.assert_array_equal(np.asarray(d), want_d)
    np.testing.assert_array_equal(np.asarray(i), want_i)


@pytest.mark.parametrize("fn", ["hamming_distance", "hamming_distance_gather"])
def test_auto_distances_never_lower_a_cpu_call_for_an_accelerator(fn):
    from jhash import search

    q, g = _codes(3, 8, 3), _codes(20, 8, 4)
    cand = np.tile(np.arange(5, dtype=np.int32), (3, 1))
    args = (q, g) if fn == "hamming_distance" else (q, g, cand)
    f = jax.jit(lambda *a: getattr(search, fn)(*a, backend="auto"))
    _assert_portable(jax.export.export(f, platforms=ACCEL)(*args))
    _, got = _with_cpu(f, *args)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(getattr(search, fn)(*args, backend="xla")))
