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


def trajectory(rows: list[dict]) -> list[dict]:
    """The rows of the run's final history: a row whose step is not past the previous one starts a resumed run,
    which replaces every earlier row at or past its step (what a killed run logged after its last checkpoint)."""
    kept: list[dict] = []
    for row in rows:
        if "step" not in row:
            continue
        while kept and kept[-1]["step"] >= row["step"]:
            kept.pop()
        kept.append(row)
    return kept


def plot_curves(metrics_path, out_png, *, best_step: int | None = None, title: str | None = None) -> pathlib.Path:
    """Write ``out_png``: training loss, learning rate and validation mAP (when logged) against the step.

    ``best_step``: the selected checkpoint (``train.select=best_val_map``), marked on every panel.
    Raises ``FileNotFoundError`` (naming the file) when ``metrics_path`` does not exist, ``ValueError`` when it holds
    no row with a step.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics_path = pathlib.Path(metrics_path)
    if not metrics_path.is_file():
        raise FileNotFoundError(f"no metrics file {metrics_path}: curves need a workdir that has trained")
    rows = trajectory(read_rows(metrics_path))
    if not rows:
        raise ValueError(f"{metrics_path} holds no metrics row with a 'step': nothing to plot")
    panels = [("loss", "training loss"), ("lr", "learning rate"), ("val/mAP", "validation mAP")]
    panels = [(k, title) for k, title in panels if any(k in r for r in rows)]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(4.5 * max(len(panels), 1), 3.4), squeeze=False)
    for ax, (key, panel_title) in zip(axes[0], panels):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o" if key == "val/mAP" else None, ms=3)
        if best_step is not None:
            ax.axvline(best_step, color="tab:red", ls="--", lw=1, label=f"selected step {best_step}")
            ax.legend(fontsize=8)
        ax.set_title(panel_title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out_png = pathlib.Path(out_png)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


def write_workdir_curves(workdir, out_png=None) -> pathlib.Path:
    """``curves.png`` of a training workdir (default ``<workdir>/curves.png``): its ``metrics.jsonl``, titled with
    the method and dataset of its ``config.json``, with the step ``train.select`` chose (``selection.json``) marked."""
    from jhash import validation

    workdir = pathlib.Path(workdir)
    selection = validation.read_selection(workdir) or {}
    title = None
    config_path = workdir / "config.json"
    if config_path.is_file():
        try:
            stored = json.loads(config_path.read_text(encoding="utf-8"))
            title = f"{stored['method']['name']} on {stored['dataset']['name']} ({workdir.name})"
        except (ValueError, KeyError, TypeError):
            title = None
    return plot_curves(workdir / "metrics.jsonl", out_png or workdir / "curves.png",
                       best_step=selection.get("best_step") if selection.get("select") == "best_val_map" else None,
                       title=title)
