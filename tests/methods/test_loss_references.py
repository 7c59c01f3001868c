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


def _log_softmax(logits):
    """log softmax of one row of logits, as a list (stable: shift by the max)."""
    m = max(float(v) for v in logits)
    log_z = m + math.log(sum(math.exp(float(v) - m) for v in logits))
    return [float(v) - log_z for v in logits]


def _softmax_ce(logits, y, smoothing=0.0):
    """-Σ_c q_c log softmax(logits)_c for one sample, q_c = (1 - ε)[c = y] + ε / K (ε = 0: -log p_y)."""
    logp = _log_softmax(logits)
    k = len(logp)
    return -sum(((1.0 - smoothing) * (c == y) + smoothing / k) * logp[c] for c in range(k))


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


def _batch_hard_triplet(x, labels, margin):
    """Batch-hard triplet loss (Hermans, Beyer & Leibe 2017, eq. 5) on the Euclidean distance: for every anchor
    a that has a positive (y_p = y_a, p != a) and a negative (y_n != y_a) in the batch,
    [margin + max_p ||x_a - x_p|| - min_n ||x_a - x_n||]_+, averaged over those anchors (0 if there is none)."""
    n = len(x)
    dist = lambda i, j: math.sqrt(sum((float(x[i][k]) - float(x[j][k])) ** 2 for k in range(len(x[i]))))  # noqa: E731
    hinges = []
    for a in range(n):
        pos = [dist(a, p) for p in range(n) if p != a and labels[p] == labels[a]]
        neg = [dist(a, q) for q in range(n) if labels[q] != labels[a]]
        if pos and neg:
            hinges.append(max(0.0, margin + max(pos) - min(neg)))
    return sum(hinges) / len(hinges) if hinges else 0.0


def _mean_ce(logits, labels, smoothing=0.0):
    """The batch mean of :func:`_softmax_ce` (one classifier's identity loss)."""
    return sum(_softmax_ce(logits[i], labels[i], smoothing) for i in range(len(labels))) / len(labels)


ctf = methods.get("ctf")


def _ctf_probability_distillation(student_logits, teacher_logits, temperature):
    """CtF eq. 3 for one (student, teacher) pair: the cross-entropy of the student's softened class distribution
    softmax(z / T) against the teacher's softmax(ẑ / T), -Σ_c p̂_c log p_c, averaged over the batch (no T²)."""
    total = 0.0
    for zs, zt in zip(student_logits, teacher_logits):
        p_teacher = [math.exp(v) for v in _log_softmax([v / temperature for v in zt])]
        logp_student = _log_softmax([v / temperature for v in zs])
        total -= sum(p * lp for p, lp in zip(p_teacher, logp_student))
    return total / len(student_logits)


def _ctf_similarity_distillation(student_codes, teacher_codes):
    """CtF eq. 4 for one (student, teacher) pair, read as docs/methods.md does (the extracted text has no square):
    1/B² Σ_ij (G_s^ij / l_s - Ĝ_t^ij / l_t)², with G^ij = ½ (l - u_i·u_j) the relaxed Hamming distance of the
    tanh codes (§3.2: sgn relaxed by tanh, the Hamming distance by the inner product)."""
    def g(u, i, j):
        length = len(u[i])
        return 0.5 * (length - sum(float(u[i][k]) * float(u[j][k]) for k in range(length))) / length

    b = len(student_codes)
    return sum((g(student_codes, i, j) - g(teacher_codes, i, j)) ** 2 for i in range(b) for j in range(b)) / b ** 2


def _symmetric_kl_distillation(student_logits, teacher_logits, temperature):
    """The public code's variant of eq. 3: KL(p_t || p_s) + KL(p_s || p_t) of the softened distributions
    p = softmax(z / T), averaged over the batch."""
    total = 0.0
    for zs, zt in zip(student_logits, teacher_logits):
        log_s = _log_softmax([v / temperature for v in zs])
        log_t = _log_softmax([v / temperature for v in zt])
        total += sum((math.exp(a) - math.exp(b)) * (a - b) for a, b in zip(log_t, log_s))
    return total / len(student_logits)


def _gram_distillation(student, teacher):
    """The public code's variant of eq. 4 (Tung & Mori 2019): 1/B² Σ_ij (G̃_s^ij - G̃_t^ij)², G̃ = X Xᵀ with every
    row divided by its L2 norm."""
    def rows(x):
        b = len(x)
        g = [[sum(float(x[i][k]) * float(x[j][k]) for k in range(len(x[i]))) for j in range(b)] for i in range(b)]
        return [[v / math.sqrt(sum(w * w for w in row)) for v in row] for row in g]

    gs, gt = rows(student), rows(teacher)
    b = len(student)
    return sum((gs[i][j] - gt[i][j]) ** 2 for i in range(b) for j in range(b)) / b ** 2


def ctf_reference_loss(outputs, labels, lengths, *, smoothing, margin, pairs, ce_weight=1.0, triplet_weight=1.0,
                       prob_weight=1.0, sim_weight=1000.0, temperature=10.0, public_code=False):
    """CtF's training loss (Wang et al. 2020, eq. 5, with the per-level sums of docs/methods.md):
    Σ_k [ce_weight · CE_ε(z_k, y) + triplet_weight · L_BH(u_k / sqrt(l_k); margin)]
    + prob_weight · 1/|pairs| Σ_(s,t) L_pro (eq. 3) + sim_weight · 1/|pairs| Σ_(s,t) L_sim (eq. 4), where
    ``pairs`` lists (student, teacher) level indices (long to short; the paper: each code's teacher is the
    next-longer one; none: no distillation). ``public_code``: the light-reid distillation terms instead
    (:func:`_symmetric_kl_distillation`, :func:`_gram_distillation`). Returns the total and its terms, keyed as
    the method logs them."""
    prob_fn = _symmetric_kl_distillation if public_code else _ctf_probability_distillation
    sim_fn = _gram_distillation if public_code else _ctf_similarity_distillation
    codes = [np.asarray(outputs[f"l{n}/code"], np.float64) for n in lengths]
    logits = [np.asarray(outputs[f"l{n}/logits"], np.float64) for n in lengths]
    terms = {"ce": sum(_mean_ce(z, labels, smoothing) for z in logits),
             "triplet": sum(_batch_hard_triplet(u / math.sqrt(u.shape[1]), labels, margin) for u in codes)}
    total = ce_weight * terms["ce"] + triplet_weight * terms["triplet"]
    if pairs:
        terms["prob_distill"] = sum(prob_fn(logits[s], logits[t], temperature) for s, t in pairs) / len(pairs)
        terms["sim_distill"] = sum(sim_fn(codes[s], codes[t]) for s, t in pairs) / len(pairs)
        total += prob_weight * terms["prob_distill"] + sim_weight * terms["sim_distill"]
    return total, terms


def _ctf_outputs(lengths, seed, batch=8, classes=5):
    """Random pyramid outputs as AiONet gives them: ``pre``, ``code = tanh(pre)`` and ID logits per level."""
    rng = np.random.default_rng(seed)
    out = {}
    for n in lengths:
        pre = rng.normal(size=(batch, n))
        out[f"l{n}/pre"] = jnp.asarray(pre, jnp.float32)
        out[f"l{n}/code"] = jnp.tanh(out[f"l{n}/pre"])
        out[f"l{n}/logits"] = jnp.asarray(rng.normal(scale=2.0, size=(batch, classes)), jnp.float32)
    return out


PK_LABELS = np.array([0, 0, 1, 1, 2, 2, 3, 3])
SINGLETON_LABELS = np.array([0, 0, 1, 1, 1, 2, 2, 4])  # identity 4 has no positive: not an anchor


@pytest.mark.parametrize("lengths,method,ref", [
    # the paper's setting on three levels: distillation from the next-longer code, λ1 = 1, λ2 = 1000, T = 10
    ((64, 32, 16), {}, dict(pairs=[(1, 0), (2, 1)])),
    ((32, 8), dict(label_smoothing=0.0, triplet_margin=0.2, ce_weight=0.7, triplet_weight=1.3, prob_weight=0.5,
                   sim_weight=100.0, temperature=4.0),
     dict(smoothing=0.0, margin=0.2, pairs=[(1, 0)], ce_weight=0.7, triplet_weight=1.3, prob_weight=0.5,
          sim_weight=100.0, temperature=4.0)),
    ((64, 32, 16), dict(prob_weight=0.0), dict(pairs=[(1, 0), (2, 1)], prob_weight=0.0)),  # λ1 = 0: eq. 4 alone
    ((64, 32, 16), dict(teacher="first"), dict(pairs=[(1, 0), (2, 0)])),  # the longest code teaches every other
    # the public code's options: the longest code teaches, symmetric KL at T = 1, row-normalised Gram MSE
    ((64, 32, 16), dict(teacher="first", prob_kind="symmetric_kl", sim_kind="gram", temperature=1.0),
     dict(pairs=[(1, 0), (2, 0)], temperature=1.0, public_code=True)),
    ((64, 32, 16), dict(variant="pyramid"), dict(pairs=[])),  # Table 5's CP: no self-distillation
    ((32, 8), dict(distill=False), dict(pairs=[])),
    ((16,), {}, dict(pairs=[])),  # one level: nothing to distil
])
@pytest.mark.parametrize("labels", [PK_LABELS, SINGLETON_LABELS], ids=["pk", "singleton"])
def test_ctf_loss_matches_the_paper_equations(lengths, method, ref, labels):
    c = config_lib.base_config()
    c.method = ctf.method_config(lengths=lengths, **method)
    out = _ctf_outputs(lengths, seed=len(lengths) + len(method))
    total, logs = ctf.loss(out, {"label": jnp.asarray(labels)}, c, None)
    want, terms = ctf_reference_loss(out, labels, lengths, **{"smoothing": 0.1, "margin": 0.3, **ref})
    assert set(terms) <= set(logs) and ("prob_distill" in logs) == bool(ref["pairs"])
    for name, value in terms.items():
        np.testing.assert_allclose(float(logs[name]), value, rtol=1e-5, err_msg=name)
    np.testing.assert_allclose(float(total), want, rtol=1e-5)


ssr = methods.get("ssr")
SSR_BRANCHES = ("teacher", "student")


def _ssr_distillation(student, teacher, reduction):
    """SSR eqs. 1-2 for one teacher/student vector pair: the teacher quantised by eq. 1 (s' = 1 if s > 0, else -1)
    and ||S'^t - S^s||_1; ``reduction='sum'``: that L1 norm per image, averaged over the batch (eq. 2 literally);
    ``'mean'``: the mean absolute difference over all elements (docs/methods.md's choice)."""
    rows = [sum(abs((1.0 if t > 0 else -1.0) - s) for s, t in zip(s_row, t_row))
            for s_row, t_row in zip(student, teacher)]
    per_image = sum(rows) / len(rows)
    return per_image if reduction == "sum" else per_image / len(student[0])


def _ssr_attribute_loss(logits, attributes):
    """SSR eqs. 3-4: each attribute a two-way softmax p(j) = e^{z_j} / (e^{z_0} + e^{z_1}), and
    -1/|V| Σ_(n,v) log p_nv(y_nv) over the annotated (image, attribute) pairs V (label >= 0); with every pair
    annotated this is eq. 4's 1/30 Σ_v averaged over the batch."""
    nll = [-_log_softmax(logits[n][v])[attributes[n][v]]
           for n in range(len(attributes)) for v in range(len(attributes[n])) if attributes[n][v] >= 0]
    return sum(nll) / max(len(nll), 1)


def ssr_reference_loss(outputs, labels, attributes, parts, *, alpha, beta=0.3, margin=0.3, normalize=True,
                       smoothing=0.0, reduction="mean"):
    """SSR's total loss, eq. 14 (Jin et al. 2021):
    1/14 Σ_d L_Tri (eq. 11, batch-hard, on u / sqrt(dim) with ``normalize``) + 1/14 Σ_d L_ID (eqs. 12-13)
    + α/7 Σ_d L_d (eq. 2, teacher/student pairs) + β/2 Σ L_attr (eq. 4, the two global vectors; when the
    model predicts attributes). 14 = the 2 × (parts + 1) vectors, 7 = their parts + 1 pairs. Eq. 11 as extracted
    sums over the anchors and drops the hinge; this is the cited batch-hard loss, [·]_+ averaged over the anchors
    (:func:`_batch_hard_triplet`). Returns the total and its terms, keyed as the method logs them."""
    names = [f"p{i}" for i in range(parts)] + ["g"]
    arr = lambda key: np.asarray(outputs[key], np.float64)  # noqa: E731
    vectors = [(b, v) for b in SSR_BRANCHES for v in names]
    scale = lambda u: u / math.sqrt(u.shape[1]) if normalize else u  # noqa: E731
    tri = [_batch_hard_triplet(scale(arr(f"{b}/{v}/code")), labels, margin) for b, v in vectors]
    ce = [_mean_ce(arr(f"{b}/{v}/logits"), labels, smoothing) for b, v in vectors]
    terms = {"triplet": sum(tri) / len(vectors), "ce": sum(ce) / len(vectors),
             "ssr_distill": sum(_ssr_distillation(arr(f"student/{v}/pre"), arr(f"teacher/{v}/pre"), reduction)
                                for v in names) / len(names)}
    total = terms["triplet"] + terms["ce"] + alpha * terms["ssr_distill"]
    if attributes is not None:
        terms["attr"] = sum(_ssr_attribute_loss(arr(f"{b}/attr_logits"), attributes) for b in SSR_BRANCHES) / 2
        total += beta * terms["attr"]
    return total, terms


def _ssr_outputs(parts, num_attributes, seed, batch=8, classes=5, local_bits=2):
    """Random SSR outputs as SSRNet gives them (relaxation 'ssr': code = pre): ``parts`` stripes of
    ``local_bits`` and a global vector of twice that per branch, ID logits per vector, ``[B, A, 2]`` attribute
    logits per branch. One teacher value is exactly 0 (eq. 1 quantises it to -1)."""
    rng = np.random.default_rng(seed)
    out = {}
    for b in SSR_BRANCHES:
        for v in [f"p{i}" for i in range(parts)] + ["g"]:
            pre = rng.normal(size=(batch, 2 * local_bits if v == "g" else local_bits))
            if b == "teacher" and v == "p0":
                pre[0, 0] = 0.0
            out[f"{b}/{v}/pre"] = out[f"{b}/{v}/code"] = jnp.asarray(pre, jnp.float32)
            out[f"{b}/{v}/logits"] = jnp.asarray(rng.normal(scale=2.0, size=(batch, classes)), jnp.float32)
        if num_attributes:
            out[f"{b}/attr_logits"] = jnp.asarray(rng.normal(size=(batch, num_attributes, 2)), jnp.float32)
    return out


@pytest.mark.parametrize("parts,num_attributes,method,ref", [
    # the paper's setting: 6 stripes, BN, α = 0.3, β = 0.3, margin 0.3
    (6, 5, {}, dict(alpha=0.3)),
    (6, 5, dict(bn=False), dict(alpha=0.7)),  # without BN the paper's α is 0.7
    (6, 5, dict(ssr_reduction="sum", alpha=0.5, beta=0.2, triplet_normalize=False, label_smoothing=0.1,
                triplet_margin=0.5),
     dict(alpha=0.5, beta=0.2, reduction="sum", normalize=False, smoothing=0.1, margin=0.5)),
    (6, 0, dict(attributes=False), dict(alpha=0.3)),  # a dataset without attributes: no L_attr
    (6, 5, dict(alpha=0.0), dict(alpha=0.0)),  # α = 0: no self-distillation
    (3, 3, {}, dict(alpha=0.3)),  # 3 stripes: 8 vectors and 4 pairs in the denominators
])
def test_ssr_loss_matches_eq14(parts, num_attributes, method, ref):
    out = _ssr_outputs(parts, num_attributes, seed=parts + num_attributes)
    batch = {"label": jnp.asarray(PK_LABELS)}
    attributes = None
    if num_attributes:
        attributes = np.random.default_rng(3).integers(0, 2, (8, num_attributes))
        attributes[1, 0] = attributes[5, num_attributes - 1] = -1  # not annotated: left out of eq. 4's mean
        batch["attributes"] = jnp.asarray(attributes, jnp.int32)
    c = config_lib.base_config()
    c.method = ssr.method_config(parts=parts, **method)
    total, logs = ssr.loss(out, batch, c, None)
    want, terms = ssr_reference_loss(out, PK_LABELS, attributes, parts, **ref)
    assert set(terms) <= set(logs) and ("attr" in logs) == bool(num_attributes)
    for name, value in terms.items():
        np.testing.assert_allclose(float(logs[name]), value, rtol=1e-5, err_msg=name)
    np.testing.assert_allclose(float(total), want, rtol=1e-5)
