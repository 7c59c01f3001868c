"""Distillation losses of CtF (eqs. 3-4) and the light-reid variants, against numpy references written from
the definitions, and their gradient direction: the teacher never receives a gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jhash.losses import distillation as D

RNG = np.random.default_rng(0)


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _ref_prob(s, t, T):
    total = 0.0
    for n in range(s.shape[0]):
        p_t, p_s = _softmax(t[n : n + 1] / T)[0], _softmax(s[n : n + 1] / T)[0]
        total += -sum(p_t[c] * np.log(p_s[c]) for c in range(s.shape[1]))
    return total / s.shape[0]


def _ref_skl(s, t, T):
    total = 0.0
    for n in range(s.shape[0]):
        p_t, p_s = _softmax(t[n : n + 1] / T)[0], _softmax(s[n : n + 1] / T)[0]
        total += sum(p_t[c] * np.log(p_t[c] / p_s[c]) + p_s[c] * np.log(p_s[c] / p_t[c]) for c in range(s.shape[1]))
    return total / s.shape[0]


def _ref_hamming(u):
    b, length = u.shape
    g = np.zeros((b, b))
    for i in range(b):
        for j in range(b):
            g[i, j] = 0.5 * (length - sum(u[i, k] * u[j, k] for k in range(length))) / length
    return g


def _ref_gram(x):
    g = x @ x.T
    return g / np.linalg.norm(g, axis=1, keepdims=True)


S_LOGITS = RNG.normal(size=(6, 5)) * 3
T_LOGITS = RNG.normal(size=(6, 5)) * 3
S_CODES = np.tanh(RNG.normal(size=(6, 8)))
T_CODES = np.tanh(RNG.normal(size=(6, 16)))


@pytest.mark.parametrize("T", [1.0, 10.0])
def test_probability_distillation_matches_reference(T):
    got = D.probability_distillation_loss(jnp.asarray(S_LOGITS, jnp.float32), jnp.asarray(T_LOGITS, jnp.float32), T)
    np.testing.assert_allclose(got, _ref_prob(S_LOGITS, T_LOGITS, T), rtol=1e-5)


def test_symmetric_kl_matches_reference_and_vanishes_on_equal_inputs():
    got = D.symmetric_kl_distillation_loss(jnp.asarray(S_LOGITS, jnp.float32), jnp.asarray(T_LOGITS, jnp.float32), 2.0)
    np.testing.assert_allclose(got, _ref_skl(S_LOGITS, T_LOGITS, 2.0), rtol=1e-5)
    same = D.symmetric_kl_distillation_loss(jnp.asarray(T_LOGITS, jnp.float32), jnp.asarray(T_LOGITS, jnp.float32))
    assert abs(float(same)) < 1e-6


def test_relaxed_hamming_equals_hamming_on_binary_codes():
    b = RNG.choice([-1.0, 1.0], size=(5, 12))
    g = np.asarray(D.relaxed_hamming_matrix(jnp.asarray(b, jnp.float32), normalize=False))
    ref = np.array([[np.sum(b[i] != b[j]) for j in range(5)] for i in range(5)])
    np.testing.assert_allclose(g, ref, atol=1e-5)
    np.testing.assert_allclose(D.relaxed_hamming_matrix(jnp.asarray(S_CODES, jnp.float32)), _ref_hamming(S_CODES), rtol=1e-5)


def test_similarity_distillation_matches_reference():
    got = D.similarity_distillation_loss(jnp.asarray(S_CODES, jnp.float32), jnp.asarray(T_CODES, jnp.float32))
    ref = np.mean((_ref_hamming(S_CODES) - _ref_hamming(T_CODES)) ** 2)
    np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_gram_distillation_matches_reference():
    got = D.gram_distillation_loss(jnp.asarray(S_CODES, jnp.float32), jnp.asarray(T_CODES, jnp.float32))
    np.testing.assert_allclose(got, np.mean((_ref_gram(S_CODES) - _ref_gram(T_CODES)) ** 2), rtol=1e-5)


LOSSES = [
    (D.probability_distillation_loss, S_LOGITS, T_LOGITS),
    (D.symmetric_kl_distillation_loss, S_LOGITS, T_LOGITS),
    (D.similarity_distillation_loss, S_CODES, T_CODES),
    (D.gram_distillation_loss, S_CODES, T_CODES),
]


@pytest.mark.parametrize("fn,s,t", LOSSES, ids=lambda x: getattr(x, "__name__", ""))
def test_teacher_gets_no_gradient_and_student_step_descends(fn, s, t):
    s, t = jnp.asarray(s, jnp.float32), jnp.asarray(t, jnp.float32)
    g_s, g_t = jax.grad(fn, argnums=(0, 1))(s, t)
    assert np.all(np.asarray(g_t) == 0.0)  # exactly zero: the teacher is a label
    assert float(jnp.abs(g_s).sum()) > 0
    before = float(fn(s, t))
    after = float(fn(s - 1e-2 * g_s / jnp.linalg.norm(g_s), t))
    assert after < before  # the gradient moves the student toward the teacher


def test_pairs_and_argument_checks():
    assert D.pyramid_distillation_pairs(4) == [(1, 0), (2, 1), (3, 2)]
    assert D.pyramid_distillation_pairs(4, "first") == [(1, 0), (2, 0), (3, 0)]
    assert D.pyramid_distillation_pairs(1) == []
    with pytest.raises(ValueError, match="teacher"):
        D.pyramid_distillation_pairs(3, "last")
    with pytest.raises(ValueError, match="temperature"):
        D.probability_distillation_loss(jnp.zeros((2, 3)), jnp.zeros((2, 3)), 0.0)
    with pytest.raises((AssertionError, ValueError), match="student"):
        D.probability_distillation_loss(jnp.zeros((2, 3)), jnp.zeros((2, 4)))
    with pytest.raises((AssertionError, ValueError), match="batch"):
        D.similarity_distillation_loss(jnp.zeros((2, 3)), jnp.zeros((3, 3)))
    np.testing.assert_allclose(D.mean_over_pairs([1.0, 3.0]), 2.0)
    assert float(D.mean_over_pairs([])) == 0.0
