"""Evaluation of a trained workdir: ``evaluate(workdir, ...)``.

1. Load the config (``<workdir>/config.json`` unless one is given), build the method's model and restore a
   checkpoint (the latest, or ``step``) through :mod:`jhash.workdir` — a missing one raises
   :class:`jhash.checkpoints.CheckpointNotFoundError` naming the workdir and the steps found.
2. Encode the query and gallery splits (``train=False``) and pack every code with
   :func:`jhash.search.pack_codes`; saved as ``<out>/codes/step_<N>/{query,gallery}_<code>.npy`` with
   ``{query,gallery}_{pids,camids}.npy`` beside them (uint8 ``np.packbits`` rows: faiss' binary layout).
3. Search: a method module may define ``search(q_codes, g_codes, search_params, config) -> dict`` returning
   ``reid_metrics`` keyword inputs (``ranking=`` or ``distances=``) plus an optional ``topk`` timing function;
   otherwise the method's ``SEARCH == 'exhaustive'`` runs exact Hamming search on the code ``config.eval.code``.
   ``ms/query`` is the wall time of the top-k search (k = 10 results per query), divided by the queries.
4. Metrics: the dataset's protocol (``info.protocol``): Market-style CMC / mAP / mINP via
   :func:`jhash.metrics.reid_metrics`; VehicleID through :mod:`jhash.metrics`' protocol function. Equal Hamming
   distances follow ``config.eval.ties``: ``'stable'`` (gallery order) or ``'expected'`` (the expectation over
   random orders inside ties); the report and the JSON state which.
5. A table (R1, R5, R10, mAP, mINP, bits, bytes per image, ms per query) and ``<out>/eval_step_<N>.json`` with
   the units of its numbers, where ``<out>`` is ``output_dir`` or the workdir; an earlier result is never
   overwritten (the next run writes ``eval_step_<N>_2.json``, ...).
   ``visualize=N``: ``<out>/ranklist_step_<N>.png`` (top-10 of N queries: header with method, dataset and step;
   rank, Hamming distance, identity and camera of every result; true matches green, false red; a legend).
   ``tradeoff=True``: ``<out>/tradeoff_step_<N>.png`` (mAP vs ms per query over the method's codes, their
   prefixes ``config.eval.tradeoff_bits`` and float features as a reference; the title gives the gallery size).
"""

from __future__ import annotations

import pathlib
import time

import jax
import numpy as np

from jhash import config as config_lib
from jhash import encode as encode_lib
from jhash import engine, parallel, reporting
from jhash import workdir as workdir_lib

TOPK = 10
VEHICLEID_SPLIT = "test"


# A workdir's config and trained model are loaded by jhash.workdir (names kept here for existing callers).
Trained = workdir_lib.Trained
load_trained = workdir_lib.load_trained
workdir_config = workdir_lib.read_config


# --------------------------------------------------------------------------------------------------


def encode_splits(trained: Trained, data, protocol: str, *, with_features: bool = False) -> dict[str, dict]:
    """``{'query': {...}, 'gallery': {...}}``: run_split outputs of each role (codes unpacked, features, meta).

    Each role also gets ``split``: the dataset split its ``index`` refers to. Under the VehicleID protocol
    the whole ``test`` split is encoded once (``'test'``) and query / gallery are its first random draw.
    """
    c = trained.config
    mesh = parallel.make_mesh()
    fn = encode_lib.codes_fn(trained.model, trained.method, c, mesh, with_features=with_features)

    def run(split):
        out = encode_lib.run_split(fn, trained.variables, data.eval_batches(split, c.eval.batch_size), mesh,
                                   c.eval.batch_size)
        out["split"] = split
        return out

    if protocol == "vehicleid":
        from jhash import metrics

        test = run(VEHICLEID_SPLIT)
        qi, gi = metrics.vehicleid_split(test["pid"], c.seed, 0)
        pick = lambda rows: {k: (v if k == "split" else v[rows]) for k, v in test.items()}
        return {"test": test, "query": pick(qi), "gallery": pick(gi)}
    return {"query": run(c.dataset.query_split), "gallery": run(c.dataset.gallery_split)}


def save_codes(directory, enc: dict) -> None:
    """``<dir>/<role>_<code>.npy`` (packed uint8) and ``<role>_{pids,camids,index}.npy`` for every role."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for role, part in enc.items():
        for name, codes in part["packed"].items():
            np.save(directory / f"{role}_{name}.npy", codes)
        for meta in ("pid", "camid", "index"):
            if meta in part:
                np.save(directory / f"{role}_{meta}{'' if meta == 'index' else 's'}.npy", part[meta])


def time_topk(q, g, k=TOPK, repeats: int = 3) -> float:
    """Milliseconds per query of exact Hamming top-k (:func:`jhash.search.hamming_topk`): the median of
    ``repeats`` timed searches of all queries, after one untimed warm-up (compilation)."""
    from jhash import search

    k = min(k, len(g))
    jax.block_until_ready(search.hamming_topk(q, g, k))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(search.hamming_topk(q, g, k))
        times.append(time.perf_counter() - t)
    return 1000.0 * float(np.median(times)) / max(len(q), 1)


def _summary(m) -> dict:
    out = {"R1": m.rank(1), "R5": m.rank(5), "R10": m.rank(10), "mAP": float(m.mAP), "mINP": float(m.mINP)}
    for k in ("num_valid_queries", "num_skipped_queries", "num_repeats", "mAP_std"):
        if hasattr(m, k):
            out[k] = getattr(m, k)
    return out


TIES_TEXT = {
    "stable": "stable (equal distances ordered by gallery index)",
    "expected": "expected (mean over uniformly random orders of equal distances)",
}


def effective_ties(protocol: str, ties: str, inputs: dict) -> str:
    """The tie rule the metrics can use: ``ties``, or ConfigError when the protocol or a method's ranking cannot."""
    if ties == "expected" and protocol == "cuhk03":
        raise config_lib.ConfigError("config.eval.ties='expected' is not available under the cuhk03 classic protocol "
                                     "(it draws one gallery image per identity); use 'stable'")
    if ties == "expected" and "ranking" in inputs:
        raise config_lib.ConfigError("config.eval.ties='expected' needs distances, but this method's search returns a "
                                     "ranking; use 'stable'")
    return ties


def protocol_metrics(protocol: str, enc: dict, code: str, *, seed: int = 0, ties: str = "stable", **inputs) -> dict:
    """Metrics of ``protocol`` (R1, R5, R10, mAP, mINP, ...) for the packed codes ``code`` of ``enc``.

    ``inputs`` replaces the codes by ``distances=`` / ``ranking=`` (a method's own search, float features);
    ``ties`` is ``jhash.metrics.reid_metrics``'s rule for equal distances (market and vehicleid protocols).
    """
    from jhash import metrics

    ties = effective_ties(protocol, ties, inputs)
    q, g = enc["query"], enc["gallery"]
    if protocol == "vehicleid":
        t = enc["test"]
        given = inputs or {"codes": t["packed"][code]}
        return _summary(metrics.vehicleid_eval(**given, pids=t["pid"], seed=seed, max_rank=TOPK, ties=ties))
    given = inputs or {"q_codes": q["packed"][code], "g_codes": g["packed"][code]}
    ids = dict(q_pids=q["pid"], g_pids=g["pid"], q_camids=q.get("camid"), g_camids=g.get("camid"))
    if protocol == "market":
        return _summary(metrics.reid_metrics(**given, **ids, max_rank=TOPK, ties=ties))
    if protocol == "cuhk03":
        return _summary(metrics.cuhk03_classic_eval(**given, **ids, seed=seed, max_rank=TOPK))
    raise ValueError(f"unknown evaluation protocol {protocol!r}; known: market, cuhk03, vehicleid")


HASHING_METRICS = config_lib.HASHING_METRICS
parse_hashing_metric = config_lib.parse_hashing_metric


def hashing_metrics(protocol: str, enc: dict, code: str, names, *, seed: int = 0) -> dict[str, float]:
    """The hashing literature's metrics of the packed code ``code`` (``jhash.metrics.map_at_k`` /
    ``precision_at_k`` / ``precision_at_radius``, identities as labels): ``{name: value}``.

    Query and gallery are the protocol's (VehicleID: repeat 0 of its random one-image-per-identity gallery).
    """
    from jhash import metrics

    parsed = [(str(n), *parse_hashing_metric(n)) for n in names]
    if protocol == "vehicleid":
        t = enc["test"]
        qi, gi = metrics.vehicleid_split(t["pid"], seed=seed)
        q, g, qp, gp = t["packed"][code][qi], t["packed"][code][gi], t["pid"][qi], t["pid"][gi]
    else:
        q, g = enc["query"]["packed"][code], enc["gallery"]["packed"][code]
        qp, gp = enc["query"]["pid"], enc["gallery"]["pid"]
    out = {}
    for name, kind, n in parsed:
        if kind == "map":
            out[name] = metrics.map_at_k(q, g, qp, gp, k=min(n, len(g)))
        elif kind == "precision":
            out[name] = metrics.precision_at_k(q, g, qp, gp, k=min(n, len(g)))
        else:
            out[name] = metrics.precision_at_radius(q, g, qp, gp, radius=n)
    return out


def _row(label, metrics, bits, ms):
    return {"method": label, **metrics, "bits": int(bits), "bytes/img": int(-(-bits // 8)), "ms/query": ms}


#: what the numbers of an evaluation JSON mean
UNITS = {
    "R1, R5, R10, mAP, mINP, hashing": "fractions in [0, 1] (the printed table shows percent)",
    "bits": "code length in bits",
    "bytes/img": "bytes per packed code",
    "ms/query": "milliseconds of wall time per query of the top-10 search (median of 3 timed runs)",
    "tradeoff.ms_per_query": "milliseconds per query, as ms/query",
}

RESULT_FILES = ("eval_{tag}.json", "ranklist_{tag}.png", "tradeoff_{tag}.png", "codes/{tag}")


def has_search(method) -> bool:
    """Whether a method module defines its own ``search(q_codes, g_codes, params, config)`` function."""
    return callable(getattr(method, "search", None))


def evaluate(workdir, *, config=None, step: int | None = None, visualize: int = 0, tradeoff: bool = False,
             compare_untrained: bool = False, data=None, print_fn=print, output_dir=None) -> dict:
    """Evaluate a trained workdir (see the module docstring); returns the results written as JSON.

    Results go to ``output_dir`` (default: the workdir); an earlier result of the same step is never overwritten
    (the new files get the next free tag ``step_<N>_2``, ...).
    """
    parallel.initialize()
    reporter = jax.process_index() == 0  # every process computes the same results; process 0 reports them
    print_fn = print_fn if reporter else (lambda *a, **k: None)
    workdir = pathlib.Path(workdir).expanduser()
    out_dir = workdir if output_dir is None else pathlib.Path(output_dir).expanduser()
    trained = load_trained(workdir, step=step, config=config)
    c = trained.config
    data = engine.Data(c) if data is None else data
    protocol = getattr(data.info, "protocol", trained.info.protocol)
    effective_ties(protocol, c.eval.ties, {})

    runs = [("trained", trained)]
    if compare_untrained:
        runs.append(("untrained", load_trained(workdir, config=c, untrained=True, data=data)))
    rows, extra = [], {}
    for label, t in runs:
        enc = encode_splits(t, data, protocol, with_features=tradeoff and label == "trained")
        for part in enc.values():
            part["packed"] = encode_lib.pack_all(part)
        names = sorted(enc["query"]["packed"])
        code = c.eval.code if c.eval.code in names else names[0]
        q, g = enc["query"]["packed"][code], enc["gallery"]["packed"][code]
        bits = int(enc["query"][f"code/{code}"].shape[1])
        timing, inputs = None, {}
        if has_search(t.method):
            inputs = dict(t.method.search(enc["query"]["packed"], enc["gallery"]["packed"], t.search_params, c))
            timing = inputs.pop("ms_per_query", None)
        elif t.method.SEARCH != "exhaustive":
            raise NotImplementedError(
                f"method {c.method.name!r} uses search {t.method.SEARCH!r} but defines no search() hook")
        m = protocol_metrics(protocol, enc, code, seed=c.seed, ties=c.eval.ties, **inputs)
        ms = timing if timing is not None else time_topk(q, g)
        name = f"{c.method.name} ({label})" if compare_untrained else c.method.name
        rows.append(_row(name, m, bits, ms))
        if label == "trained":
            extra = {"enc": enc, "code": code, "bits": bits}
            names = tuple(c.eval.get("hashing_metrics", ()) or ())
            if names:
                extra["hashing"] = hashing_metrics(protocol, enc, code, names, seed=c.seed)

    tag = reporting.fresh_tag(out_dir, f"step_{trained.step}", RESULT_FILES)
    codes_dir = out_dir / "codes" / tag
    if reporter:  # every process holds the same results; process 0 writes them
        out_dir.mkdir(parents=True, exist_ok=True)
        save_codes(codes_dir, extra["enc"])
    nq, ng = len(extra["enc"]["query"]["pid"]), len(extra["enc"]["gallery"]["pid"])
    print_fn(f"{c.dataset.name} ({protocol} protocol), {nq} queries, {ng} gallery images, "
             f"checkpoint step {trained.step}; ties: {TIES_TEXT[c.eval.ties]}")
    print_fn(reporting.format_table(rows))
    result = {"workdir": str(workdir), "step": trained.step, "dataset": c.dataset.name, "protocol": protocol,
              "method": c.method.name, "code": extra["code"], "ties": c.eval.ties, "num_query": nq,
              "num_gallery": ng, "rows": rows, "units": UNITS, "codes_dir": str(codes_dir)}
    if "hashing" in extra:
        result["hashing"] = extra["hashing"]
        print_fn(f"hashing metrics ({extra['code']} code, {extra['bits']} bits): "
                 + "  ".join(f"{k} {100 * v:.2f}" for k, v in extra["hashing"].items()))
    if visualize and reporter:
        path = out_dir / f"ranklist_{tag}.png"
        write_ranklist(path, data, c, extra, visualize, step=trained.step)
        result["ranklist_png"] = str(path)
        print_fn(f"rank lists of {visualize} queries: {path}")
    if tradeoff:
        points = tradeoff_points(extra, protocol, c, rows[0])
        path = out_dir / f"tradeoff_{tag}.png"
        if reporter:
            reporting.tradeoff_plot(path, points, title=f"{c.method.name} on {c.dataset.name}, step {trained.step}: "
                                                    f"mAP vs search time\n{nq} queries, gallery of {ng} images")
        result["tradeoff"] = points
        result["tradeoff_png"] = str(path)
        print_fn(f"trade-off plot: {path}")
    out = out_dir / f"eval_{tag}.json"
    if reporter:
        reporting.write_json(out, result)
    print_fn(f"results: {out}")
    return result


# --------------------------------------------------------------------------------------------------


def _ranked(q, g, k):
    from jhash import search

    out = search.hamming_topk(q, g, min(k, len(g)))
    idx = out[1] if isinstance(out, tuple) else out
    return np.asarray(idx)


def _hamming(a: np.ndarray, b: np.ndarray) -> int:
    """Hamming distance of two packed codes."""
    return int(np.unpackbits(np.bitwise_xor(a, b)).sum())


def write_ranklist(path, data, config, extra, n: int, *, step=None) -> None:
    """Top-10 rank lists of ``n`` queries (spread evenly over the query set) as a PNG grid, with a header (method,
    dataset, step), the rank, Hamming distance, identity and camera of every result, and a legend.

    As in the protocol, junk (pid -1) and the query's own same-camera matches are not shown as results.
    """
    q, g = extra["enc"]["query"], extra["enc"]["gallery"]
    code = extra["code"]
    qsel = np.linspace(0, len(q["pid"]) - 1, num=min(n, len(q["pid"]))).astype(int)
    idx = _ranked(q["packed"][code][qsel], g["packed"][code], min(len(g["pid"]), TOPK + 64))
    q_src, g_src = data.source(q["split"]), data.source(g["split"])
    has_cam = q.get("camid") is not None and g.get("camid") is not None
    cam = (lambda part, i: f" c{int(part['camid'][i])}") if has_cam else (lambda part, i: "")
    q_imgs, r_imgs, matches, titles = [], [], [], []
    for row, qi in enumerate(qsel):
        keep = []
        for gi in idx[row]:
            same = g["pid"][gi] == q["pid"][qi]
            if g["pid"][gi] == -1 or (has_cam and same and g["camid"][gi] == q["camid"][qi]):
                continue
            keep.append(int(gi))
            if len(keep) == TOPK:
                break
        q_imgs.append(q_src[int(q["index"][qi])]["image"])
        r_imgs.append([g_src[int(g["index"][gi])]["image"] for gi in keep])
        matches.append([bool(g["pid"][gi] == q["pid"][qi]) for gi in keep])
        titles.append([f"#{r + 1} d={_hamming(q['packed'][code][qi], g['packed'][code][gi])}\n"
                       f"id {int(g['pid'][gi])}{cam(g, gi)}" for r, gi in enumerate(keep)])
    header = (f"{config.method.name} on {config.dataset.name}" + (f", step {step}" if step is not None else "")
              + f": top {TOPK} of {len(qsel)} queries, {extra['bits']}-bit '{code}' code, gallery of {len(g['pid'])}")
    legend = ("green frame: same identity as the query   red frame: another identity   "
              "#r rank   d Hamming distance   id identity   c camera"
              + ("" if not has_cam else "   (same-camera matches of the query's identity are not shown)"))
    reporting.rank_grid(path, q_imgs, r_imgs, matches,
                        query_titles=[f"query\nid {int(q['pid'][i])}{cam(q, i)}" for i in qsel],
                        ranked_titles=titles, header=header, legend=legend)


def tradeoff_points(extra, protocol, config, main_row) -> list[dict]:
    """(mAP, ms/query) for every code of the method, prefixes of the searched code, and float features."""
    from jhash import search

    enc = extra["enc"]
    points = []
    for name in sorted(enc["query"]["packed"]):
        bits = enc["query"][f"code/{name}"].shape[1]
        if name == extra["code"]:
            m, ms = main_row, main_row["ms/query"]
        else:
            m = protocol_metrics(protocol, enc, name, seed=config.seed, ties=config.eval.ties)
            ms = time_topk(enc["query"]["packed"][name], enc["gallery"]["packed"][name])
        points.append({"label": f"{name} {bits}b", "series": "hamming", "bits": bits, "mAP": m["mAP"], "ms_per_query": ms})
    full = f"code/{extra['code']}"
    for b in config.eval.tradeoff_bits:
        b = int(b)
        if 0 < b < enc["query"][full].shape[1]:
            for part in enc.values():
                part["packed"]["_prefix"] = np.asarray(search.pack_codes(np.asarray(part[full])[:, :b]))
            m = protocol_metrics(protocol, enc, "_prefix", seed=config.seed, ties=config.eval.ties)
            ms = time_topk(enc["query"]["packed"]["_prefix"], enc["gallery"]["packed"]["_prefix"])
            points.append({"label": f"{b}b prefix", "series": "hamming (prefix)", "bits": b, "mAP": m["mAP"],
                           "ms_per_query": ms})
    for part in enc.values():
        part["packed"].pop("_prefix", None)
    if "feature" in enc["query"] and protocol != "vehicleid":
        fq, fg = _l2n(enc["query"]["feature"]), _l2n(enc["gallery"]["feature"])
        if fq.shape[0] * fg.shape[0] <= 5 * 10**7:  # a dense reference only for moderate sizes
            t = time.perf_counter()
            dist = 1.0 - fq @ fg.T
            np.argpartition(dist, min(TOPK, dist.shape[1] - 1), axis=1)
            ms = 1000.0 * (time.perf_counter() - t) / len(fq)
            m = protocol_metrics(protocol, enc, extra["code"], seed=config.seed, ties=config.eval.ties, distances=dist)
            points.append({"label": f"float {fq.shape[1]}d", "series": "float cosine", "bits": 32 * fq.shape[1],
                           "mAP": m["mAP"], "ms_per_query": ms})
    return points


def _l2n(x):
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
