"""Method tests. :func:`run_config` trains any config for two steps on CPU (tiny images, a small CNN)."""

from __future__ import annotations

import pathlib

import ml_collections

from jhash import config as config_lib
from jhash import methods, trainer

ROOT = pathlib.Path(__file__).resolve().parents[2]

#: overrides that make any config run a few steps on CPU in seconds
TINY = {
    "train.epochs": "0", "train.steps": "2", "train.batch_p": "2", "train.batch_k": "2", "train.log_every": "1",
    "train.ckpt_every": "100", "input.image_size": "(16, 8)", "input.num_workers": "0", "eval.batch_size": "8",
    "optimizer.warmup": "0", "optimizer.milestones": "()", "model.bits": "16", "train.eval_every_epochs": "0",
}


def run_config(path: str, tmp_path, *, manual_dir=None, extra: dict | None = None):
    """Load ``configs/...`` ``path`` with :data:`TINY` overrides and the small CNN, train it; return the result."""
    overrides = dict(TINY, **{"dataset.data_dir": str(tmp_path / "data")})
    if manual_dir is not None:
        overrides["dataset.manual_dir"] = str(manual_dir)
    overrides.update(extra or {})
    c = config_lib.load(ROOT / path, [f"{k}={v}" for k, v in overrides.items()])
    c.unlock()
    c.model.backbone = "small_cnn"
    c.model.backbone_kwargs = ml_collections.ConfigDict({"widths": (8, 16)})
    c.model.pretrained = None
    c.lock()
    return trainer.train(c, tmp_path / "run", method=methods.get(c.method.name), progress=False,
                         async_checkpoints=False)
