"""Learning curves: TensorBoard event files (tensorboardX, no TensorFlow) and ``curves.png``.

Training writes every ``metrics.jsonl`` row as scalars to ``<workdir>/tensorboard/`` (``tensorboard --logdir
<workdir>``) and, at the end, ``<workdir>/curves.png``: loss, learning rate and validation mAP against the step.
"""

from __future__ import annotations

import json
import math
import pathlib

NOT_SCALARS = ("step", "epoch", "time")


class EventWriter:
    """Scalars of ``metrics.jsonl`` rows into TensorBoard event files under ``logdir``.

    ``purge_step``: on resume, the step after the checkpoint; TensorBoard then drops the events a previous run
    wrote at or past it, so the curves show the trajectory of the checkpoints.
    """

    def __init__(self, logdir, purge_step: int | None = None):
        from tensorboardX import SummaryWriter

        self._writer = SummaryWriter(logdir=str(logdir), purge_step=purge_step)

    def write(self, row: dict) -> None:
        step = int(row["step"])
        for key, value in row.items():
            if key not in NOT_SCALARS and isinstance(value, (int, float)) and math.isfinite(value):
                self._writer.add_scalar(key, float(value), step)

    def close(self) -> None:
        self._writer.close()


def read_rows(metrics_path) -> list[dict]:
    """The parseable rows of a ``metrics.jsonl`` (a line cut by a crash is skipped)."""
    rows = []
    for line in pathlib.Path(metrics_path).read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def plot_curves(metrics_path, out_png) -> pathlib.Path:
    """Write ``out_png``: training loss, learning rate and validation mAP (when logged) against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_rows(metrics_path)
    panels = [("loss", "training loss"), ("lr", "learning rate"), ("val/mAP", "validation mAP")]
    panels = [(k, title) for k, title in panels if any(k in r for r in rows)]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(4.5 * max(len(panels), 1), 3.4), squeeze=False)
    for ax, (key, title) in zip(axes[0], panels):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o" if key == "val/mAP" else None, ms=3)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out_png = pathlib.Path(out_png)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
