"""Evaluation of a trained workdir: ``evaluate(workdir, ...)``.

1. Load the config (``<workdir>/config.json`` unless one is given), build the method's model and restore a
   checkpoint (the latest, or ``step``) — a missing one raises
   :class:`jhash.checkpoints.CheckpointNotFoundError` naming the workdir and the steps found.
2. Encode the query and gallery splits (``train=False``) and pack every code with
   :func:`jhash.search.pack_codes`; saved as ``<workdir>/codes/step_<N>/{query,gallery}_<code>.npy`` with
   ``{query,gallery}_{pids,camids}.npy`` beside them (uint8 ``np.packbits`` rows: faiss' binary layout).
3. Search: a method module may define ``search(q_codes, g_codes, search_params, config) -> dict`` returning
   ``reid_metrics`` keyword inputs (``ranking=`` or ``distances=``) plus an optional ``topk`` timing function;
   otherwise the method's ``SEARCH == 'exhaustive'`` runs exact Hamming search on the code ``config.eval.code``.
   ``ms/query`` is the wall time of the top-k search (k = 10 results per query), divided by the queries.
4. Metrics: the dataset's protocol (``info.protocol``): Market-style CMC / mAP / mINP via
   :func:`jhash.metrics.reid_metrics`; VehicleID through :mod:`jhash.metrics`' protocol function.
5. A table (R1, R5, R10, mAP, mINP, bits, bytes per image, ms per query) and ``<workdir>/eval_step_<N>.json``.
   ``visualize=N``: ``<workdir>/ranklist_step_<N>.png`` (top-10 of N queries, true matches green, false red).
   ``tradeoff=True``: ``<workdir>/tradeoff_step_<N>.png`` (mAP vs ms per query over the method's codes, their
   prefixes ``config.eval.tradeoff_bits`` and float features as a reference).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from jhash import checkpoints as ckpt_lib
from jhash import config as config_lib
from jhash import encode as encode_lib
from jhash import methods as methods_lib
from jhash import parallel, reporting
from jhash.data.info import DatasetInfo

TOPK = 10
VEHICLEID_SPLIT = "test"


@dataclasses.dataclass
class Trained:
    config: Any
    method: Any
    model: Any
    variables: dict
    aux: Any
    search_params: dict | None
    step: int | None
    info: DatasetInfo
    image_size: tuple[int, int]


def workdir_config(workdir) -> ml_collections.ConfigDict:
    """The config a workdir was trained with (``<workdir>/config.json``)."""
    path = pathlib.Path(workdir).expanduser() / "config.json"
    if not path.is_file():
        raise ckpt_lib.CheckpointNotFoundError(
            f"workdir {str(workdir)!r} has no config.json (was it trained with train.py --workdir {workdir}?); "
            f"pass --config explicitly"
        )
    return _as_config(json.loads(path.read_text()))


def _as_config(d) -> ml_collections.ConfigDict:
    c = config_lib.base_config()
    c.method = ml_collections.ConfigDict()
    _merge(c, d)
    c.lock()
    return c


def _merge(c, d):
    for k, v in d.items():
        if isinstance(v, dict) and isinstance(c.get(k), ml_collections.ConfigDict) and k not in ("backbone_kwargs", "lr_mult", "augment"):
            _merge(c[k], v)
        elif isinstance(v, dict):
            c[k] = ml_collections.ConfigDict(v)
        else:
            c[k] = tuple(v) if isinstance(v, list) else v


def _info_from_meta(meta) -> DatasetInfo:
    i = meta.get("info") or {}
    return DatasetInfo(**{**i, "image_size": tuple(i["image_size"]), "attribute_names": tuple(i.get("attribute_names", ()))})


def load_trained(workdir, *, step: int | None = None, config=None, untrained: bool = False, data=None) -> Trained:
    """Config, method, model and restored variables of a workdir's checkpoint (latest, or ``step``).

    ``untrained=True`` returns the freshly initialised network instead (same seed as training started from),
    for comparison; then ``data`` (or the config's dataset) supplies the dataset info.
    """
    from jhash import trainer

    config = workdir_config(workdir) if config is None else config
    method = methods_lib.get(config.method.name)
    if untrained:
        info = (data or trainer.Data(config)).info
        meta, step, restored = None, None, None
    else:
        ckpts = ckpt_lib.Checkpoints(workdir, read_only=True)
        try:
            step = ckpts.resolve_step(step)
            meta = ckpts.manager.restore(step, args=ckpt_lib.ocp.args.Composite(meta=ckpt_lib.ocp.args.JsonRestore()))["meta"]
            info = _info_from_meta(meta)
        except BaseException:
            ckpts.close()
            raise
    image_size = tuple(config.input.image_size or info.image_size)
    model = method.build_model(config, info)
    init_rng, _ = jax.random.split(jax.random.PRNGKey(config.seed))
    like = jax.eval_shape(lambda: trainer.init_variables(model, config, image_size, init_rng, pretrained=False))
    aux_like = None
    if hasattr(method, "init_aux"):
        aux_like = jax.eval_shape(lambda: method.init_aux(config, info, int(info.num_train_images)))
    mesh = parallel.make_mesh()
    search_params = None
    if untrained:
        variables = trainer.init_variables(model, config, image_size, init_rng, method=method)
        aux = method.init_aux(config, info, int(info.num_train_images)) if hasattr(method, "init_aux") else None
    else:
        with ckpts:
            restored = ckpts.restore(step, model_like={"params": like["params"], "batch_stats": like.get("batch_stats", {}),
                                                      "aux": aux_like},
                                     sharding=parallel.replicated(mesh), search=True)
        m = restored["model"]
        variables = {"params": m["params"]}
        if m.get("batch_stats"):
            variables["batch_stats"] = m["batch_stats"]
        aux, search_params = m.get("aux"), restored["search"]
    variables = parallel.replicate(variables, mesh)
    return Trained(config=config, method=method, model=model, variables=variables, aux=aux,
                   search_params=search_params, step=step, info=info, image_size=image_size)


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


def protocol_metrics(protocol: str, enc: dict, code: str, *, seed: int = 0, **inputs) -> dict:
    """Metrics of ``protocol`` (R1, R5, R10, mAP, mINP, ...) for the packed codes ``code`` of ``enc``.

    ``inputs`` replaces the codes by ``distances=`` / ``ranking=`` (a method's own search, float features).
    """
    from jhash import metrics

    q, g = enc["query"], enc["gallery"]
    if protocol == "vehicleid":
        t = enc["test"]
        given = inputs or {"codes": t["packed"][code]}
        return _summary(metrics.vehicleid_eval(**given, pids=t["pid"], seed=seed, max_rank=TOPK))
    given = inputs or {"q_codes": q["packed"][code], "g_codes": g["packed"][code]}
    ids = dict(q_pids=q["pid"], g_pids=g["pid"], q_camids=q.get("camid"), g_camids=g.get("camid"))
    if protocol == "market":
        return _summary(metrics.reid_metrics(**given, **ids, max_rank=TOPK))
    if protocol == "cuhk03":
        return _summary(metrics.cuhk03_classic_eval(**given, **ids, seed=seed, max_rank=TOPK))
    raise ValueError(f"unknown evaluation protocol {protocol!r}; known: market, cuhk03, vehicleid")


HASHING_METRICS = ("map", "precision", "precision_radius")


def parse_hashing_metric(name: str) -> tuple[str, int]:
    """``'map@1000'`` -> ``('map', 1000)``; the kinds are :data:`HASHING_METRICS` (``precision_radius@R``: precision
    within Hamming radius ``R``, empty balls count as zero)."""
    kind, _, n = str(name).partition("@")
    if kind not in HASHING_METRICS or not n.isdigit() or (kind != "precision_radius" and int(n) < 1):
        raise ValueError(f"config.eval.hashing_metrics: expected names like 'map@1000', 'precision@500' or "
                         f"'precision_radius@2' (kinds {HASHING_METRICS}), got {name!r}")
    return kind, int(n)


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


def evaluate(workdir, *, config=None, step: int | None = None, visualize: int = 0, tradeoff: bool = False,
             compare_untrained: bool = False, data=None, print_fn=print) -> dict:
    """Evaluate a trained workdir (see the module docstring); returns the results written as JSON."""
    from jhash import trainer

    parallel.initialize()
    reporter = jax.process_index() == 0  # every process computes the same results; process 0 reports them
    print_fn = print_fn if reporter else (lambda *a, **k: None)
    workdir = pathlib.Path(workdir).expanduser()
    trained = load_trained(workdir, step=step, config=config)
    c = trained.config
    data = trainer.Data(c) if data is None else data
    protocol = getattr(data.info, "protocol", trained.info.protocol)

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
        if hasattr(t.method, "search"):
            inputs = dict(t.method.search(enc["query"]["packed"], enc["gallery"]["packed"], t.search_params, c))
            timing = inputs.pop("ms_per_query", None)
        elif t.method.SEARCH != "exhaustive":
            raise NotImplementedError(
                f"method {c.method.name!r} uses search {t.method.SEARCH!r} but defines no search() hook")
        m = protocol_metrics(protocol, enc, code, seed=c.seed, **inputs)
        ms = timing if timing is not None else time_topk(q, g)
        name = f"{c.method.name} ({label})" if compare_untrained else c.method.name
        rows.append(_row(name, m, bits, ms))
        if label == "trained":
            if reporter:
                save_codes(workdir / "codes" / f"step_{t.step}", enc)
            extra = {"enc": enc, "code": code, "bits": bits}
            names = tuple(c.eval.get("hashing_metrics", ()) or ())
            if names:
                extra["hashing"] = hashing_metrics(protocol, enc, code, names, seed=c.seed)

    tag = f"step_{trained.step}"
    nq, ng = len(extra["enc"]["query"]["pid"]), len(extra["enc"]["gallery"]["pid"])
    print_fn(f"{c.dataset.name} ({protocol} protocol), {nq} queries, {ng} gallery images, "
             f"checkpoint step {trained.step}")
    print_fn(reporting.format_table(rows))
    result = {"workdir": str(workdir), "step": trained.step, "dataset": c.dataset.name, "protocol": protocol,
              "method": c.method.name, "code": extra["code"], "num_query": nq, "num_gallery": ng, "rows": rows,
              "codes_dir": str(workdir / "codes" / tag)}
    if "hashing" in extra:
        result["hashing"] = extra["hashing"]
        print_fn(f"hashing metrics ({extra['code']} code, {extra['bits']} bits): "
                 + "  ".join(f"{k} {100 * v:.2f}" for k, v in extra["hashing"].items()))
    if visualize:
        path = workdir / f"ranklist_{tag}.png"
        write_ranklist(path, data, c, extra, visualize)
        result["ranklist_png"] = str(path)
        print_fn(f"rank lists of {visualize} queries: {path}")
    if tradeoff:
        points = tradeoff_points(extra, protocol, c, rows[0])
        path = workdir / f"tradeoff_{tag}.png"
        reporting.tradeoff_plot(path, points, title=f"{c.method.name} on {c.dataset.name}: mAP vs search time")
        result["tradeoff"] = points
        result["tradeoff_png"] = str(path)
        print_fn(f"trade-off plot: {path}")
    out = workdir / f"eval_{tag}.json"
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


def write_ranklist(path, data, config, extra, n: int) -> None:
    """Top-10 rank lists of ``n`` queries (spread evenly over the query set) as a PNG grid.

    As in the protocol, junk (pid -1) and the query's own same-camera matches are not shown as results.
    """
    q, g = extra["enc"]["query"], extra["enc"]["gallery"]
    code = extra["code"]
    qsel = np.linspace(0, len(q["pid"]) - 1, num=min(n, len(q["pid"]))).astype(int)
    idx = _ranked(q["packed"][code][qsel], g["packed"][code], min(len(g["pid"]), TOPK + 64))
    q_src, g_src = data.source(q["split"]), data.source(g["split"])
    has_cam = q.get("camid") is not None and g.get("camid") is not None
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
        titles.append([f"{int(g['pid'][gi])}" for gi in keep])
    reporting.rank_grid(path, q_imgs, r_imgs, matches, query_titles=[f"q {int(q['pid'][i])}" for i in qsel],
                        ranked_titles=titles)


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
            m = protocol_metrics(protocol, enc, name, seed=config.seed)
            ms = time_topk(enc["query"]["packed"][name], enc["gallery"]["packed"][name])
        points.append({"label": f"{name} {bits}b", "series": "hamming", "bits": bits, "mAP": m["mAP"], "ms_per_query": ms})
    full = f"code/{extra['code']}"
    for b in config.eval.tradeoff_bits:
        b = int(b)
        if 0 < b < enc["query"][full].shape[1]:
            for part in enc.values():
                part["packed"]["_prefix"] = np.asarray(search.pack_codes(np.asarray(part[full])[:, :b]))
            m = protocol_metrics(protocol, enc, "_prefix", seed=config.seed)
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
            m = protocol_metrics(protocol, enc, extra["code"], seed=config.seed, distances=dist)
            points.append({"label": f"float {fq.shape[1]}d", "series": "float cosine", "bits": 32 * fq.shape[1],
                           "mAP": m["mAP"], "ms_per_query": ms})
    return points


def _l2n(x):
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
