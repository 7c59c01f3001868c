"""Method losses against independent references: plain numpy loops written from the papers' equations
(nothing from jhash.losses), so a wrong sign, scale, reduction or mask in the library makes them fail."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from jhash import config as config_lib
from jhash import methods

dvhn = methods.get("dvhn")
drsch = methods.get("drsch")


def _dsdh_network_loss(u, labels, b, theta, quant_weight):
    """DSDH / DVHN network step (eqs. 2-5), averaged as the reference code does:
    mean over pairs i != j of [log(1 + e^Ψ) - s_ij Ψ], Ψ = θ u_i·u_j, s_ij = [y_i = y_j];
    plus quant_weight * mean over i of sum_k (b_ik - u_ik)^2."""
    n = len(u)
    nll, pairs = 0.0, 0
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            psi = theta * float(np.dot(u[i], u[j]))
            s = 1.0 if labels[i] == labels[j] else 0.0
            nll += math.log1p(math.exp(psi)) - s * psi
            pairs += 1
    quant = sum(float(np.sum((b[i] - u[i]) ** 2)) for i in range(n)) / n
    return nll / pairs + quant_weight * quant, quant


def _dvhn_config(bits, **method):
    c = config_lib.base_config()
    c.model.bits = bits
    c.method = dvhn.method_config(**method)
    return c


@pytest.mark.parametrize("bits,method,theta,qw", [
    (16, {}, 0.5, 1e-2),  # the paper: one η, θ = 1/2
    (128, {"quant_weight_scale": "length"}, 0.5, 1e-2 * 64 / 128),
    (128, {"quant_weight": 0.1, "theta": 0.25, "theta_scale": "length"}, 0.25 * 64 / 128, 0.1),
])
def test_dvhn_network_loss_matches_the_dsdh_equations(bits, method, theta, qw):
    rng = np.random.default_rng(bits)
    u = rng.normal(scale=0.3, size=(6, bits)).astype(np.float32)
    labels = np.array([0, 0, 1, 1, 2, 2])
    index = np.array([3, 7, 1, 0, 11, 5])
    B = np.where(rng.random((12, bits)) < 0.5, -1, 1).astype(np.int8)
    aux = {"B": jnp.asarray(B), "updates": jnp.ones((), jnp.int32)}
    c = _dvhn_config(bits, **method)
    total, logs = dvhn.loss({"hash": jnp.asarray(u)}, {"label": jnp.asarray(labels), "index": jnp.asarray(index)}, c, aux)
    want, quant = _dsdh_network_loss(u.astype(np.float64), labels, B[index].astype(np.float64), theta, qw)
    np.testing.assert_allclose(float(logs["quant"]), quant, rtol=1e-5)
    np.testing.assert_allclose(float(total), want, rtol=1e-5)


def test_dvhn_length_options_reject_unknown_scales():
    with pytest.raises(config_lib.ConfigError, match="quant_weight_scale"):
        dvhn.quant_weight(_dvhn_config(64, quant_weight_scale="sqrt"), 64)
    with pytest.raises(config_lib.ConfigError, match="theta"):
        dvhn.theta(_dvhn_config(64, theta=0.0), 64)


def _drsch_loss(sig, w, labels, margin, beta, decay):
    """DRSCH (Zhang et al. 2015): h = w ⊙ σ(z); mean over valid triplets (a, p, n) — y_a = y_p, a != p,
    y_n != y_a — of max(0, ||h_a - h_p||^2 - ||h_a - h_n||^2 + margin); + β tr(H L Hᵀ) with L = D - A,
    A_ij = [y_i = y_j, i != j]; + ½ λ ||w||^2."""
    h = sig * w[None, :]
    n = len(h)
    d = lambda i, j: float(np.sum((h[i] - h[j]) ** 2))  # noqa: E731
    total, count = 0.0, 0
    for a in range(n):
        for p in range(n):
            if p == a or labels[p] != labels[a]:
                continue
            for q in range(n):
                if labels[q] == labels[a]:
                    continue
                total += max(0.0, d(a, p) - d(a, q) + margin)
                count += 1
    A = np.array([[1.0 if i != j and labels[i] == labels[j] else 0.0 for j in range(n)] for i in range(n)])
    lap = np.diag(A.sum(1)) - A
    trace = float(np.trace(h.T @ lap @ h))  # H = hᵀ (codes as columns): tr(H L Hᵀ)
    return total / max(count, 1) + beta * trace + 0.5 * decay * float(np.sum(w ** 2))


@pytest.mark.parametrize("beta,decay", [(1e-3, 5e-4), (0.0, 0.0)])
def test_drsch_loss_matches_the_paper_equations(beta, decay):
    rng = np.random.default_rng(0)
    bits = 8
    sig = 1.0 / (1.0 + np.exp(-rng.normal(size=(6, bits))))
    w = rng.uniform(0.5, 2.0, bits)
    labels = np.array([0, 0, 1, 1, 2, 2])
    c = config_lib.base_config()
    c.model.bits = bits
    c.method = drsch.method_config(margin=0.25, laplacian_weight=beta, bit_weight_decay=decay)
    outputs = {"weighted": jnp.asarray(sig * w, jnp.float32), "bit_weights": jnp.asarray(np.tile(w, (6, 1)), jnp.float32)}
    total, _ = drsch.loss(outputs, {"label": jnp.asarray(labels)}, c, None)
    np.testing.assert_allclose(float(total), _drsch_loss(sig, w, labels, 0.25 * bits, beta, decay), rtol=1e-5)
