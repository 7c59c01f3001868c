"""Reporting: JSONL metric logs, the progress bar, the start / end summaries of a training run, result tables,
rank-list grids and trade-off plots.

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

from jhash import config as config_lib

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


def fresh_tag(directory, tag: str, names: Sequence[str]) -> str:
    """``tag`` if no ``name.format(tag=tag)`` exists in ``directory``, else the first free ``<tag>_2``, ``<tag>_3``,
    ... (results of an earlier run are never overwritten)."""
    directory = pathlib.Path(directory)
    candidate, n = tag, 1
    while any((directory / name.format(tag=candidate)).exists() for name in names):
        n += 1
        candidate = f"{tag}_{n}"
    return candidate


# --------------------------------------------------------------------------------------------------
# Training summaries


def count_parameters(params) -> int:
    """Number of scalars in a parameter tree."""
    import jax

    return int(sum(int(np.prod(np.shape(x))) for x in jax.tree.leaves(params)))


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 10**5 else f"{n:,}"


def start_summary(config, info, image_size, params, total: int, per_epoch: int, workdir, resume_step, changes=None,
                  notes=()) -> str:
    """What a run is about to do: dataset, identities, images, model and parameter count, length, devices,
    resume point, accepted config changes and warnings (one fact per line)."""
    import jax

    ds = config.dataset
    name = ds.name + (f"/{ds.config}" if isinstance(ds.config, str) else "")
    h, w = image_size
    t = config.train
    length = f"{total} steps"
    if t.steps <= 0:
        length += f" ({t.epochs} epochs of {per_epoch} steps)"
    else:
        length += f" ({total / per_epoch:.1f} epochs of {per_epoch} steps)"
    devices = jax.devices()
    kinds = sorted({d.platform for d in devices})
    lines = [
        f"dataset   {name}: {int(info.num_classes)} training identities, {int(info.num_train_images)} training images, "
        f"{h}x{w} input",
        f"model     {config.method.name} on {config.model.backbone}, {config.model.bits} bits, "
        f"{_millions(count_parameters(params))} parameters",
        f"training  {length}, batch {t.batch_p} identities x {t.batch_k} images, {config.optimizer.name} "
        f"lr {config.optimizer.lr:g}",
        f"devices   {len(devices)} x {'/'.join(kinds)}",
        f"workdir   {workdir}",
    ]
    period = config_lib.validation_period(config, info)
    if period:
        select = "keeping the best val mAP" if t.select == "best_val_map" else "keeping the last step"
        lines.insert(3, f"validate  every {period} steps on the {ds.val_split!r} split (R1/mAP/mINP in "
                        f"metrics.jsonl), {select}" + (f", patience {t.patience}" if t.patience else ""))
    if changes:
        lines.append("warning: config changed since the stored config.json (recorded in its history): "
                     + ", ".join(f"{k}: {json.dumps(o)} -> {json.dumps(n)}" for k, (o, n) in changes.items()))
    lines += [f"warning: {n}" for n in notes]
    if resume_step is None:
        lines.append("compiling the training step ...")
    elif resume_step >= total:
        lines.append(f"already trained to step {resume_step}")
    else:
        lines.append(f"resuming from step {resume_step}; compiling the training step ...")
    return "\n".join(lines)


def end_summary(*, method: str, step: int, elapsed_s: float, final_loss: float | None, workdir, resumed_from=None) -> str:
    """What a finished run did and where its files are."""
    workdir = pathlib.Path(workdir)
    minutes, seconds = divmod(int(round(elapsed_s)), 60)
    hours, minutes = divmod(minutes, 60)
    took = f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"
    note = f" (resumed from step {resumed_from})" if resumed_from is not None else ""
    loss = f"final loss {final_loss:.4f}" if final_loss is not None else "no new steps"
    lines = [
        f"trained {method} to step {step}{note} in {took}; {loss}",
        f"checkpoints  {workdir / 'checkpoints'}",
        f"metrics      {workdir / 'metrics.jsonl'}",
        f"config       {workdir / 'config.json'}",
    ]
    if (workdir / "curves.png").is_file():
        lines.append(f"curves       {workdir / 'curves.png'} (tensorboard --logdir {workdir / 'tensorboard'})")
    lines.append(f"evaluate     jhash-eval --workdir {workdir}")
    return "\n".join(lines)


def last_logged(path, key: str = "loss", after_step: int | None = None):
    """``key`` of the last line of a metrics.jsonl (None if absent, or if that line is not past ``after_step``)."""
    path = pathlib.Path(path)
    if not path.is_file():
        return None
    rows = read_jsonl(path)
    if not rows or key not in rows[-1]:
        return None
    if after_step is not None and rows[-1].get("step", 0) <= after_step:
        return None
    return float(rows[-1][key])


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


MATCH_COLOR, MISMATCH_COLOR = "#1a9e1a", "#d62020"


def rank_grid(path, query_images, ranked_images, matches, *, query_titles=None, ranked_titles=None, top: int = 10,
              header: str | None = None, legend: str | None = None) -> None:
    """PNG grid: one row per query (query image, then its top ``top`` results).

    ``query_images[i]``: an image (encoded bytes or HxWx3 array); ``ranked_images[i][j]`` likewise;
    ``matches[i][j]``: True for a true match (framed green), False (framed red); ``ranked_titles[i][j]`` the
    caption of a result (e.g. rank, distance, camera). ``header`` is printed above the grid, ``legend`` below it.
    """
    plt = _plt()
    n = len(query_images)
    cols = top + 1
    fig, axes = plt.subplots(n, cols, figsize=(1.25 * cols, 2.8 * n + 0.9), squeeze=False)
    for i in range(n):
        ax = axes[i][0]
        ax.imshow(_decode(query_images[i]))
        ax.set_title(query_titles[i] if query_titles else "query", fontsize=7, fontweight="bold")
        for side in ax.spines.values():
            side.set_edgecolor("black")
            side.set_linewidth(2)
        for j in range(top):
            ax = axes[i][j + 1]
            if j < len(ranked_images[i]):
                ax.imshow(_decode(ranked_images[i][j]))
                color = MATCH_COLOR if matches[i][j] else MISMATCH_COLOR
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
    top_margin = 1.0
    if header:
        fig.suptitle(header, fontsize=9)
        top_margin = 1.0 - 0.5 / fig.get_figheight()
    bottom_margin = 0.0
    if legend:
        fig.text(0.5, 0.15 / fig.get_figheight(), legend, ha="center", va="bottom", fontsize=7)
        bottom_margin = 0.45 / fig.get_figheight()
    fig.tight_layout(rect=(0, bottom_margin, 1, top_margin))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def tradeoff_plot(path, points: Sequence[dict], *, title: str = "mAP vs search time") -> None:
    """Scatter + labels of ``points`` (dicts with 'label', 'ms_per_query', 'mAP', optional 'series') as a PNG.

    The x axis is logarithmic with labelled major ticks only (at most about six), so tick labels never overlap.
    """
    fig = tradeoff_figure(points, title=title)
    fig.savefig(path, dpi=120)
    _plt().close(fig)


def tradeoff_figure(points: Sequence[dict], *, title: str = "mAP vs search time"):
    """The matplotlib figure of :func:`tradeoff_plot`."""
    from matplotlib import ticker

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
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
    ax.xaxis.set_major_locator(ticker.LogLocator(base=10, numticks=6))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_locator(ticker.LogLocator(base=10, subs=tuple(range(2, 10)), numticks=12))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    xs = [p["ms_per_query"] for p in points if p["ms_per_query"] > 0]
    if xs:  # whole decades, so that at least two labelled ticks show
        lo, hi = np.floor(np.log10(min(xs))), np.ceil(np.log10(max(xs)))
        ax.set_xlim(10 ** lo, 10 ** max(hi, lo + 1))
    ax.set_xlabel("ms per query (log scale)")
    ax.set_ylabel("mAP (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    if any(series):
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def tick_labels_overlap(fig) -> bool:
    """Whether any two visible tick labels of any axis of a drawn figure overlap (for tests and checks)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            boxes = [t.get_window_extent(renderer) for t in axis.get_ticklabels(which="both")
                     if t.get_visible() and t.get_text()]
            for a in range(len(boxes)):
                for b in range(a + 1, len(boxes)):
                    if boxes[a].overlaps(boxes[b]):
                        return True
    return False
