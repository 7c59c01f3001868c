"""Reporting: JSONL metric logs, the progress bar, result tables, rank-list grids and trade-off plots.

Plots use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import io
import json
import math
import pathlib
import sys
from typing import Sequence

import numpy as np

TABLE_COLUMNS = (
    ("R1", "{:.2f}"), ("R5", "{:.2f}"), ("R10", "{:.2f}"), ("mAP", "{:.2f}"), ("mINP", "{:.2f}"),
    ("bits", "{:d}"), ("bytes/img", "{:d}"), ("ms/query", "{:.3f}"),
)


class JsonlWriter:
    """Append one JSON object per line, flushed at once (a crash loses at most the current line)."""

    def __init__(self, path):
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a", encoding="utf-8")

    def write(self, row: dict) -> None:
        self._f.write(json.dumps(row, sort_keys=False, default=_json_default) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def read_jsonl(path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _json_default(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def write_json(path, obj) -> None:
    pathlib.Path(path).write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")


class _NoBar:
    n = 0

    def update(self, k=1):
        self.n += k

    def set_postfix(self, **kw):
        pass

    def close(self):
        pass


def progress(total: int, initial: int = 0, enabled: bool = True, desc: str = "train"):
    """A tqdm bar (to stderr) or a silent stand-in."""
    if not enabled:
        bar = _NoBar()
        bar.n = initial
        return bar
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True, file=sys.stderr,
                mininterval=1.0)


def format_table(rows: Sequence[dict], columns=TABLE_COLUMNS, label: str = "method") -> str:
    """A fixed-width text table; metrics in [0, 1] are printed as percentages."""
    head = [label] + [c for c, _ in columns]
    lines = []
    for r in rows:
        cells = [str(r.get(label, ""))]
        for c, fmt in columns:
            v = r.get(c)
            if v is None or (isinstance(v, float) and math.isnan(v)):
                cells.append("-")
            elif c in ("R1", "R5", "R10", "mAP", "mINP"):
                cells.append(fmt.format(100.0 * float(v)))
            elif fmt == "{:d}":
                cells.append(fmt.format(int(v)))
            else:
                cells.append(fmt.format(float(v)))
        lines.append(cells)
    widths = [max(len(h), *(len(l[i]) for l in lines)) if lines else len(h) for i, h in enumerate(head)]
    fmt_row = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([fmt_row(head), sep, *(fmt_row(l) for l in lines)])


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _decode(image) -> np.ndarray:
    from PIL import Image

    if isinstance(image, (bytes, bytearray, np.bytes_)):
        with Image.open(io.BytesIO(bytes(image))) as im:
            return np.asarray(im.convert("RGB"))
    if isinstance(image, np.ndarray) and image.dtype == object:
        return _decode(image.item())
    return np.asarray(image)


def rank_grid(path, query_images, ranked_images, matches, *, query_titles=None, ranked_titles=None, top: int = 10) -> None:
    """PNG grid: one row per query (query image, then its top ``top`` results).

    ``query_images[i]``: an image (encoded bytes or HxWx3 array); ``ranked_images[i][j]`` likewise;
    ``matches[i][j]``: True for a true match (framed green), False (framed red).
    """
    plt = _plt()
    n = len(query_images)
    cols = top + 1
    fig, axes = plt.subplots(n, cols, figsize=(1.2 * cols, 2.3 * n), squeeze=False)
    for i in range(n):
        ax = axes[i][0]
        ax.imshow(_decode(query_images[i]))
        ax.set_title(query_titles[i] if query_titles else "query", fontsize=7)
        for side in ax.spines.values():
            side.set_edgecolor("black")
            side.set_linewidth(2)
        for j in range(top):
            ax = axes[i][j + 1]
            if j < len(ranked_images[i]):
                ax.imshow(_decode(ranked_images[i][j]))
                color = "#1a9e1a" if matches[i][j] else "#d62020"
                for side in ax.spines.values():
                    side.set_edgecolor(color)
                    side.set_linewidth(4)
                if ranked_titles:
                    ax.set_title(ranked_titles[i][j], fontsize=6, color=color)
            else:
                ax.axis("off")
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def tradeoff_plot(path, points: Sequence[dict], *, title: str = "mAP vs search time") -> None:
    """Scatter + labels of ``points`` (dicts with 'label', 'ms_per_query', 'mAP', optional 'series')."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    series = {}
    for p in points:
        series.setdefault(p.get("series", ""), []).append(p)
    for name, pts in series.items():
        pts = sorted(pts, key=lambda p: p["ms_per_query"])
        ax.plot([p["ms_per_query"] for p in pts], [100 * p["mAP"] for p in pts], "o-", label=name or None)
        for p in pts:
            ax.annotate(p["label"], (p["ms_per_query"], 100 * p["mAP"]), fontsize=7, xytext=(4, 3),
                        textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("ms per query (log scale)")
    ax.set_ylabel("mAP (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if any(series):
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
