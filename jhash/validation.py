"""Validation during training on held-out identities (``dataset.val_split``), and model selection.

The rule that splits ``val`` into queries and gallery (fixed, independent of the model): in stored order, the
first image of every (identity, camera) pair is a query; every other image of the split is gallery. Scoring
follows the Market-1501 protocol of :func:`jhash.metrics.reid_metrics` on packed codes (gallery images of the
query's identity *and* camera are not counted), so a query whose identity has no image from another camera is
skipped. The codes are the method's ``config.eval.code`` codes, searched exhaustively by Hamming distance;
no dense matrix is built.

The test splits (``query``, ``gallery``, ``test``) are never opened here: selection cannot see test labels.

Selection (``train.select``): ``last`` keeps the usual behaviour; ``best_val_map`` saves a checkpoint at every
validation that improves the best validation mAP, never prunes that step, and records it in
``<workdir>/selection.json`` — which ``evaluate.py`` uses by default. ``train.patience`` > 0 ends training
after that many validations in a row without improvement. The selection state travels in every checkpoint's
``meta`` item, so a resumed run continues with exactly the state of the checkpoint it resumed from.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np

SELECTION_FILE = "selection.json"


def query_gallery_split(pids, camids) -> tuple[np.ndarray, np.ndarray]:
    """``(query_rows, gallery_rows)`` of a validation split: the first row of each (pid, camid) is a query."""
    pids, camids = np.asarray(pids), np.asarray(camids)
    seen: set[tuple[int, int]] = set()
    query = []
    for i, key in enumerate(zip(pids.tolist(), camids.tolist())):
        if key not in seen:
            seen.add(key)
            query.append(i)
    query = np.asarray(query, np.int64)
    gallery = np.setdiff1d(np.arange(len(pids)), query)
    return query, gallery


def score(packed_codes: np.ndarray, pids, camids) -> dict[str, float]:
    """``{'val/R1', 'val/mAP', 'val/mINP', 'val/queries'}`` of one split's packed codes (fractions in [0, 1], as in
    ``eval_step_<N>.json``; ``val/queries`` counts the queries scored). A split with no scorable query (no gallery
    image, or no query whose identity the gallery holds from another camera) scores NaN with ``val/queries`` 0."""
    from jhash import metrics

    q, g = query_gallery_split(pids, camids)
    pids, camids = np.asarray(pids), np.asarray(camids)
    if len(q) == 0 or len(g) == 0:  # e.g. one image per identity and camera: nothing to score
        return {"val/R1": float("nan"), "val/mAP": float("nan"), "val/mINP": float("nan"), "val/queries": 0}
    m = metrics.reid_metrics(packed_codes[q], packed_codes[g], q_pids=pids[q], g_pids=pids[g],
                             q_camids=camids[q], g_camids=camids[g])
    return {"val/R1": float(m.rank(1)), "val/mAP": float(m.mAP), "val/mINP": float(m.mINP),
            "val/queries": int(getattr(m, "num_valid_queries", len(q)))}


def validate(method, model, state, data, config, mesh, *, codes_fn=None) -> dict[str, float]:
    """Encode ``config.dataset.val_split`` with the current weights and :func:`score` its ``eval.code`` codes.

    ``codes_fn``: the jitted encoder of :func:`jhash.encode.codes_fn` for this model, built once per run by the
    caller so that every validation after the first reuses its compiled program (built here when None)."""
    from jhash import encode as encode_lib

    bs = config.eval.batch_size
    fn = codes_fn if codes_fn is not None else encode_lib.codes_fn(model, method, config, mesh)
    out = encode_lib.run_split(fn, state.variables(),
                               data.eval_batches(config.dataset.val_split, bs), mesh, bs)
    key = f"code/{config.eval.code}"
    if key not in out:
        raise ValueError(f"config.eval.code={config.eval.code!r} is not a code of method {config.method.name!r}; "
                         f"it has {sorted(k[5:] for k in out if k.startswith('code/'))}")
    return score(encode_lib.pack(out[key]), out["pid"], out["camid"])


@dataclasses.dataclass
class Selection:
    """Model-selection state: the best validation mAP so far, its step, and validations since it."""

    best_step: int | None = None
    best_val_map: float | None = None
    since_best: int = 0
    stopped_early: bool = False

    def update(self, step: int, val_map: float) -> bool:
        """Record a validation; return whether it is a new best (NaN never is)."""
        if np.isfinite(val_map) and (self.best_val_map is None or val_map > self.best_val_map):
            self.best_step, self.best_val_map, self.since_best = int(step), float(val_map), 0
            return True
        self.since_best += 1
        return False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "Selection":
        return cls(**{k: v for k, v in (d or {}).items() if k in {f.name for f in dataclasses.fields(cls)}})


def read_selection(workdir) -> dict | None:
    """``<workdir>/selection.json`` as written by training with ``train.select='best_val_map'``, or None."""
    path = pathlib.Path(workdir).expanduser() / SELECTION_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None


def selected_step(workdir, steps) -> int | None:
    """The step ``selection.json`` names (``train.select='best_val_map'``) when it is among ``steps``, else None.

    Says on stderr which step is used and why, or why the record is not used.
    """
    import sys

    sel = read_selection(workdir)
    if not sel or sel.get("select") != "best_val_map" or sel.get("best_step") is None:
        return None
    best = int(sel["best_step"])
    if best not in steps:
        print(f"note: {SELECTION_FILE} names step {best} (best validation mAP) but it is not saved; using the latest "
              f"checkpoint", file=sys.stderr)
        return None
    print(f"note: evaluating step {best}: the best validation mAP ({sel['best_val_map']:.4f} on the val split) of "
          f"train.select='best_val_map'; pass --step for another", file=sys.stderr)
    return best
