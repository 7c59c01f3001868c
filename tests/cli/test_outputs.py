"""Readable outputs: rank lists name method, dataset and step and label every result with its rank, Hamming
distance, identity and camera; the trade-off plot's tick labels never overlap."""

from __future__ import annotations

import numpy as np
import pytest

from jhash import config as config_lib
from jhash import evaluator, reporting


def _points(ms_values):
    return [{"label": f"p{i}", "series": "hamming", "ms_per_query": ms, "mAP": 0.1 + 0.01 * i}
            for i, ms in enumerate(ms_values)]


@pytest.mark.parametrize("ms", [
    [0.0123, 0.0456],  # within one decade
    [0.0009, 0.02, 0.3, 4.0, 55.0, 700.0],  # six decades
    list(np.geomspace(1e-4, 1e3, 40)),  # many points over seven decades
])
def test_tradeoff_tick_labels_never_overlap(ms):
    fig = reporting.tradeoff_figure(_points(ms), title="t\ngallery of 10 images")
    try:
        assert not reporting.tick_labels_overlap(fig)
        labelled = [t for t in fig.axes[0].xaxis.get_ticklabels(which="both") if t.get_visible() and t.get_text()]
        assert len(labelled) >= 2
    finally:
        reporting._plt().close(fig)


def test_tick_overlap_check_detects_overlap():
    plt = reporting._plt()
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.set_xticks(np.linspace(0, 1, 40))
    ax.set_xticklabels([f"label {i}" for i in range(40)])
    try:
        assert reporting.tick_labels_overlap(fig)
    finally:
        plt.close(fig)


def test_ranklist_labels(monkeypatch, tmp_path):
    rng = np.random.default_rng(0)
    nq, ng = 3, 14
    q_codes = rng.integers(0, 2, (nq, 16)).astype(np.uint8)
    g_codes = rng.integers(0, 2, (ng, 16)).astype(np.uint8)
    enc = {
        "query": {"packed": {"id": np.packbits(q_codes, axis=1)}, "pid": np.array([1, 2, 3]),
                  "camid": np.array([1, 1, 1]), "index": np.arange(nq), "split": "query"},
        "gallery": {"packed": {"id": np.packbits(g_codes, axis=1)}, "pid": np.arange(ng) % 4,
                    "camid": np.full(ng, 2), "index": np.arange(ng), "split": "gallery"},
    }

    class Data:
        def source(self, split):
            return [{"image": np.full((8, 4, 3), i, np.uint8)} for i in range(ng)]

    captured = {}
    monkeypatch.setattr(reporting, "rank_grid", lambda path, *a, **kw: captured.update(args=a, **kw))
    c = config_lib.base_config()
    c.method.name, c.dataset.name = "drsch", "market1501"
    evaluator.write_ranklist(tmp_path / "r.png", Data(), c, {"enc": enc, "code": "id", "bits": 16}, 3, step=40)
    assert "drsch on market1501, step 40" in captured["header"] and "gallery of 14" in captured["header"]
    assert "Hamming distance" in captured["legend"] and "camera" in captured["legend"]
    qsel = np.linspace(0, nq - 1, num=nq).astype(int)
    for row, qi in enumerate(qsel):
        titles = captured["ranked_titles"][row]
        assert len(titles) == 10
        distances = []
        for r, title in enumerate(titles):
            head, ident = title.split("\n")
            rank, dist = head.split()
            assert rank == f"#{r + 1}"
            d = int(dist.removeprefix("d="))
            pid, cam = ident.removeprefix("id ").split(" c")
            gi = [j for j in range(ng) if int(enc["gallery"]["pid"][j]) == int(pid)]
            # the caption's distance is the Hamming distance to one gallery item of that identity
            assert any(int(np.sum(q_codes[qi] != g_codes[j])) == d for j in gi) and cam == "2"
            distances.append(d)
        assert distances == sorted(distances)
        assert f"id {int(enc['query']['pid'][qi])} c1" in captured["query_titles"][row]
