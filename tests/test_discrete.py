"""DVHN's discrete W-/B-steps (jhash.discrete) against numpy loops; monotonicity of the objective."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jhash import discrete

MU, NU, ETA = 1e-2, 1.0, 1e-2


def _problem(seed, n, length, classes, scale=1.0):
    rng = np.random.default_rng(seed)
    u = (scale * rng.normal(size=(n, length))).astype(np.float64)
    y = rng.integers(0, classes, n).astype(np.int32)
    b = np.where(rng.normal(size=(n, length)) >= 0, 1, -1).astype(np.int8)
    return u, y, b


def _np_objective(b, w, u, y, classes, mu=MU, nu=NU, eta=ETA):
    b = b.astype(np.float64)
    yy = np.eye(classes)[y]  # dense one-hot: fine on tiny sizes
    return mu * np.sum((yy - b @ w) ** 2) + nu * np.sum(w**2) + eta * np.sum((b - u) ** 2)


def _np_w_step(b, y, classes, mu=MU, nu=NU):
    bt = b.T.astype(np.float64)  # [L, N] as in DSDH
    yt = np.eye(classes)[y].T  # [C, N]
    return np.linalg.solve(bt @ bt.T + (nu / mu) * np.eye(bt.shape[0]), bt @ yt.T)


def _np_b_step(b, w, u, y, classes, mu=MU, eta=ETA, sweeps=1):
    """DSDH's discrete cyclic coordinate descent, literally: remove row k from B and W."""
    bt = b.T.astype(np.float64).copy()  # [L, N]
    yt = np.eye(classes)[y].T
    p = w @ yt + (eta / mu) * u.T
    for _ in range(sweeps):
        for k in range(bt.shape[0]):
            rest = [j for j in range(bt.shape[0]) if j != k]
            b_, w_ = bt[rest], w[rest]
            arg = p[k] - b_.T @ w_ @ w[k]
            bt[k] = np.where(arg >= 0, 1.0, -1.0)
    return bt.T.astype(np.int8)


@pytest.mark.parametrize("n,length,classes", [(1, 1, 1), (7, 3, 2), (40, 12, 5)])
def test_steps_equal_numpy_reference(n, length, classes):
    u, y, b = _problem(n * 100 + length, n, length, classes)
    with jax.enable_x64(True):
        w = discrete.w_step(b, y, classes, MU, NU, dtype=jnp.float64)
        np.testing.assert_allclose(w, _np_w_step(b, y, classes), rtol=1e-10, atol=1e-12)
        for sweeps in (1, 2):
            got = discrete.b_step(b, w, u, y, MU, ETA, sweeps=sweeps)
            assert got.dtype == jnp.int8
            np.testing.assert_array_equal(got, _np_b_step(b, np.asarray(w), u, y, classes, sweeps=sweeps))
        j = discrete.objective(b, w, u, y, classes, MU, NU, ETA)
        np.testing.assert_allclose(j, _np_objective(b, np.asarray(w), u, y, classes), rtol=1e-10)


@settings(max_examples=25, deadline=None)
@given(
    shape=st.sampled_from([(1, 1, 1), (23, 9, 7)]),
    scale=st.sampled_from([0.1, 1.0, 10.0]),
    seed=st.integers(0, 10**6),
)
def test_each_step_never_increases_the_objective(shape, scale, seed):
    n, length, classes = shape
    u, y, b = _problem(seed, n, length, classes, scale)
    u32 = u.astype(np.float32)
    w = np.zeros((length, classes))
    j = _np_objective(b, w, u, y, classes)
    for _ in range(3):
        w = np.asarray(discrete.w_step(b, y, classes, MU, NU), np.float64)
        j_w = _np_objective(b, w, u, y, classes)
        assert j_w <= j * (1 + 1e-5) + 1e-6, (j, j_w)
        b = np.asarray(discrete.b_step(b, w.astype(np.float32), u32, y, MU, ETA))
        assert b.dtype == np.int8 and set(np.unique(b)) <= {-1, 1}
        j_b = _np_objective(b, w, u, y, classes)
        assert j_b <= j_w * (1 + 1e-5) + 1e-6, (j_w, j_b)
        j = j_b


def test_alternate_and_exact_signs():
    u, y, b = _problem(0, 30, 8, 4)
    codes, w = discrete.alternate(jnp.asarray(b), jnp.asarray(u, jnp.float32), jnp.asarray(y), 4, MU, NU, ETA, iterations=3, sweeps=2)
    assert codes.dtype == jnp.int8 and set(np.unique(np.asarray(codes))) <= {-1, 1}
    assert w.shape == (8, 4)
    # sgn(0) -> +1: with W = 0 and U = 0 every argument is exactly 0
    zero = discrete.b_step(jnp.asarray(b), jnp.zeros((8, 4)), jnp.zeros((30, 8)), jnp.asarray(y), MU, ETA)
    np.testing.assert_array_equal(zero, np.ones((30, 8), np.int8))
    np.testing.assert_array_equal(discrete.sign(jnp.array([-0.5, 0.0, 2.0])), np.array([-1, 1, 1], np.int8))


def test_argument_errors():
    u, y, b = _problem(0, 6, 4, 2)
    with pytest.raises(ValueError, match="'outputs'"):
        discrete.b_step(b, np.zeros((4, 2)), u[:, :3], y, MU, ETA)
    with pytest.raises(ValueError, match="'labels'"):
        discrete.w_step(b, y[:3], 2, MU, NU)
    with pytest.raises(ValueError, match="'W'"):
        discrete.b_step(b, np.zeros((3, 2)), u, y, MU, ETA)


def test_vehicleid_state_fits_a_16gb_gpu():
    m = discrete.memory_footprint(num_train=110_178, num_classes=13_164, bits=2048)
    assert m["B"] == 110_178 * 2048  # int8
    assert m["U"] == 110_178 * 2048 * 4
    assert m["W"] == 2048 * 13_164 * 4
    assert m["state"] == m["B"] + m["U"] + m["W"]
    assert m["peak"] < 16e9 / 2  # leaves more than half of a 16 GB GPU to the network


@pytest.mark.parametrize("n, c, bits", [(4096, 128, 256), (110_178, 13_164, 2048)])  # small; VehicleID at 2048 b
def test_memory_footprint_bounds_what_xla_allocates_for_an_update(n, c, bits):
    """The documented update memory comes from XLA's own analysis of the compiled update (lowered on abstract
    shapes: nothing is allocated): its temporaries stay under ``update_temp`` (within 2 %), and arguments and
    outputs are the state's B and U in, B and W out."""
    f = jax.jit(lambda codes, outputs, labels: discrete.alternate(codes, outputs, labels, c, 1.0, 1.0, 0.1))
    compiled = f.lower(jax.ShapeDtypeStruct((n, bits), jnp.int8), jax.ShapeDtypeStruct((n, bits), jnp.float32),
                       jax.ShapeDtypeStruct((n,), jnp.int32)).compile()
    mem = compiled.memory_analysis()
    if mem is None:
        pytest.skip("memory_analysis unavailable on this backend")
    fp = discrete.memory_footprint(n, c, bits)
    assert 0.9 * fp["update_temp"] <= mem.temp_size_in_bytes <= fp["update_temp"]
    assert abs(mem.argument_size_in_bytes - (fp["B"] + fp["U"] + 4 * n)) < 1024  # (+ a tuple's few bytes)
    assert abs(mem.output_size_in_bytes - (fp["B"] + fp["W"])) < 1024
    if (n, bits) == (110_178, 2048):  # the figures the module docstring quotes
        assert round(mem.temp_size_in_bytes / 1e9, 2) == 2.71 and round(mem.argument_size_in_bytes / 1e9, 2) == 1.13
