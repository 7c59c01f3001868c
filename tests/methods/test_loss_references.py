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
    (16, {"quant_weight_scale": "none"}, 0.5, 1e-2),  # the paper: one η, θ = 1/2
    (128, {"quant_weight_scale": "none"}, 0.5, 1e-2),
    (128, {}, 0.5, 1e-2 * 64 / 128),  # the default: the network step's η scaled by 64 / L
    (1024, {"quant_weight_scale": "length"}, 0.5, 1e-2 * 64 / 1024),
    (128, {"quant_weight": 0.1, "theta": 0.25, "theta_scale": "length"}, 0.25 * 64 / 128, 0.1 * 64 / 128),
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


def _drsch_loss(z, w, labels, margin, beta, decay, quant=0.0):
    """DRSCH (Zhang et al. 2015): h = w ⊙ σ(z); mean over valid triplets (a, p, n) — y_a = y_p, a != p,
    y_n != y_a — of max(0, ||h_a - h_p||^2 - ||h_a - h_n||^2 + margin); + β tr(H L Hᵀ) with L = D - A,
    A_ij = [y_i = y_j, i != j]; + ½ λ ||w||^2; + (the quantisation option) quant × mean over i of
    Σ_k (σ(z_ik) − [z_ik > 0])²."""
    sig = 1.0 / (1.0 + np.exp(-z))
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
    q = sum(sum((sig[i, k] - (1.0 if z[i, k] > 0 else 0.0)) ** 2 for k in range(z.shape[1])) for i in range(n)) / n
    return total / max(count, 1) + beta * trace + 0.5 * decay * float(np.sum(w ** 2)) + quant * q


@pytest.mark.parametrize("beta,decay,quant", [(1e-3, 5e-4, 0.0), (0.0, 0.0, 0.0), (1e-3, 5e-4, 0.5)])
def test_drsch_loss_matches_the_paper_equations(beta, decay, quant):
    rng = np.random.default_rng(0)
    bits = 8
    z = rng.normal(size=(6, bits))
    sig = 1.0 / (1.0 + np.exp(-z))
    w = rng.uniform(0.5, 2.0, bits)
    labels = np.array([0, 0, 1, 1, 2, 2])
    c = config_lib.base_config()
    c.model.bits = bits
    c.method = drsch.method_config(margin=0.25, laplacian_weight=beta, bit_weight_decay=decay, quant_weight=quant)
    outputs = {"hash_pre": jnp.asarray(z, jnp.float32), "hash": jnp.asarray(sig, jnp.float32),
               "weighted": jnp.asarray(sig * w, jnp.float32), "bit_weights": jnp.asarray(np.tile(w, (6, 1)), jnp.float32)}
    total, _ = drsch.loss(outputs, {"label": jnp.asarray(labels)}, c, None)
    np.testing.assert_allclose(float(total), _drsch_loss(z, w, labels, 0.25 * bits, beta, decay, quant), rtol=1e-5)


dhmtl = methods.get("dhmtl")


def _softmax_ce(logits, y):
    """-log softmax(logits)[y] for one sample (stable: shift by the max)."""
    m = max(logits)
    return -(logits[y] - m - math.log(sum(math.exp(v - m) for v in logits)))


def _dhmtl_softmax_loss(logits, labels, aux_logits, aux_weight):
    """DHMTL eq. 1-2: Σ over heads of the mean softmax cross-entropy over the samples whose label for that
    head is known (>= 0); + aux_weight × the two GoogLeNet auxiliary classifiers' CE on the model labels."""
    total = 0.0
    for head, z in logits.items():
        known = [i for i in range(len(z)) if labels[head][i] >= 0]
        total += sum(_softmax_ce(z[i], labels[head][i]) for i in known) / max(len(known), 1)
    for z in aux_logits:
        known = [i for i in range(len(z)) if labels["model"][i] >= 0]
        total += aux_weight * sum(_softmax_ce(z[i], labels["model"][i]) for i in known) / max(len(known), 1)
    return total


def _dhmtl_triplet_loss(h, labels, model, color, margin):
    """DHMTL's triplet ranking baseline (§4.2): ĥ = h/‖h‖; for every anchor a, positive p (same ID, p ≠ a) and
    negative n — another ID with the anchor's model and colour (both known) when the batch has one for a,
    otherwise any other ID — max(0, m + ‖ĥ_a − ĥ_p‖² − ‖ĥ_a − ĥ_n‖²), averaged over those triplets."""
    x = [v / math.sqrt(float(np.sum(v * v))) for v in h]
    d = lambda i, j: float(np.sum((x[i] - x[j]) ** 2))  # noqa: E731
    n = len(x)
    total, count = 0.0, 0
    for a in range(n):
        others = [j for j in range(n) if labels[j] != labels[a]]
        same_kind = [j for j in others if model[a] >= 0 and color[a] >= 0 and model[j] == model[a] and color[j] == color[a]]
        negatives = same_kind or others
        for p in range(n):
            if p == a or labels[p] != labels[a]:
                continue
            for q in negatives:
                total += max(0.0, margin + d(a, p) - d(a, q))
                count += 1
    return total / max(count, 1)


def _dhmtl_config(**method):
    c = config_lib.base_config()
    c.model.bits = 8
    c.method = dhmtl.method_config(**method)
    return c


@pytest.mark.parametrize("heads,aux", [(("id", "model", "color"), True), (("id", "color"), False), (("model",), True)])
def test_dhmtl_softmax_loss_matches_the_paper_equations(heads, aux):
    rng = np.random.default_rng(len(heads))
    labels = {"id": np.array([0, 0, 1, 1, 4, 4]), "model": np.array([2, 2, 0, -1, 1, 1]),
              "color": np.array([1, 1, 0, 0, -1, 1])}
    sizes = {"id": 5, "model": 3, "color": 2}
    logits = {h: rng.normal(scale=2.0, size=(6, sizes[h])) for h in heads}
    aux_logits = [rng.normal(size=(6, 3)) for _ in range(2)] if aux else []
    outputs = {f"logits_{h}": jnp.asarray(z, jnp.float32) for h, z in logits.items()}
    outputs.update({k: jnp.asarray(z, jnp.float32) for k, z in zip(("aux1_logits", "aux2_logits"), aux_logits)})
    batch = {"label": jnp.asarray(labels["id"]), "model": jnp.asarray(labels["model"]), "color": jnp.asarray(labels["color"])}
    total, _ = dhmtl.loss(outputs, batch, _dhmtl_config(heads=heads, aux_weight=0.3), None)
    np.testing.assert_allclose(float(total), _dhmtl_softmax_loss(logits, labels, aux_logits, 0.3), rtol=1e-5)


def test_dhmtl_triplet_baseline_matches_the_paper_equation():
    rng = np.random.default_rng(7)
    h = np.maximum(rng.normal(size=(8, 8)), 0.0) + 0.05  # ReLU outputs (no zero row)
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    model = np.array([5, 5, 5, 5, 6, -1, 6, 6])
    color = np.array([0, 0, 0, 0, 1, 1, 1, 2])
    batch = {"label": jnp.asarray(labels), "model": jnp.asarray(model), "color": jnp.asarray(color)}
    total, _ = dhmtl.loss({"hash": jnp.asarray(h, jnp.float32)}, batch,
                          _dhmtl_config(loss="triplet", triplet_margin=0.2), None)
    np.testing.assert_allclose(float(total), _dhmtl_triplet_loss(h, labels, model, color, 0.2), rtol=1e-5)
