"""Checkpoints in ``<workdir>/checkpoints`` with ``orbax.checkpoint.CheckpointManager``.

One step directory holds up to five items:

========== ============ =====================================================================
item       handler      contents
========== ============ =====================================================================
``model``  Standard     ``params``, ``batch_stats`` and the method's ``aux`` state (what evaluation needs)
``train``  Standard     ``opt_state``, ``rng``, ``step`` (what resuming training needs on top)
``data``   Json         the training iterator's ``get_state()`` (resume continues the same data order)
``meta``   Json         step, total steps, method, dataset, code length, the config as JSON
``search`` Json         the method's ``fit_search`` result (only in the final checkpoint, when the method has one)
========== ============ =====================================================================

Atomicity: orbax writes a step into ``<step>.orbax-checkpoint-tmp-<timestamp>`` and renames it to ``<step>``
only once every item is written (plus ``commit_success.txt`` on object stores). A save killed half way
leaves only a ``*.orbax-checkpoint-tmp-*`` directory, which :meth:`Checkpoints.latest_step` never returns
and which is removed at the next start; the previous step stays the latest.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import pathlib

import jax
import numpy as np
import orbax.checkpoint as ocp

ITEMS = ("model", "train", "data", "meta", "search")


class CheckpointNotFoundError(FileNotFoundError):
    """No (or not the requested) checkpoint in a workdir."""


def checkpoint_dir(workdir) -> pathlib.Path:
    return pathlib.Path(workdir).expanduser().absolute() / "checkpoints"


def _prune(tree):
    """Drop ``None`` and empty-dict subtrees (orbax cannot save empty trees)."""
    if isinstance(tree, dict):
        out = {k: _prune(v) for k, v in tree.items()}
        return {k: v for k, v in out.items() if v is not None and not (isinstance(v, dict) and not v)}
    return tree


def encode_data_state(state):
    """Iterator states may be bytes (grain DataLoader) or JSON-able dicts; store either as JSON."""
    if isinstance(state, (bytes, bytearray)):
        return {"__bytes_b64__": base64.b64encode(bytes(state)).decode("ascii")}
    return {"__json__": state}


def decode_data_state(stored):
    if "__bytes_b64__" in stored:
        return base64.b64decode(stored["__bytes_b64__"])
    return stored["__json__"]


def to_jsonable(tree):
    """numpy / jax leaves -> lists and Python scalars, for the Json items."""
    if isinstance(tree, dict):
        return {str(k): to_jsonable(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [to_jsonable(v) for v in tree]
    if isinstance(tree, (np.ndarray, jax.Array)):
        return np.asarray(tree).tolist()
    if isinstance(tree, np.generic):
        return tree.item()
    return tree


def abstract(tree, sharding=None):
    """``ShapeDtypeStruct`` leaves (with ``sharding``) to restore ``tree``'s structure."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding), tree)


class Checkpoints:
    """A thin wrapper over ``CheckpointManager`` for jhash's items; use as a context manager."""

    def __init__(self, workdir, *, keep: int | None = 3, async_save: bool = True, read_only: bool = False):
        self.directory = checkpoint_dir(workdir)
        self.workdir = pathlib.Path(workdir)
        if read_only and not self.directory.is_dir():
            raise CheckpointNotFoundError(
                f"no checkpoints in workdir {str(self.workdir)!r} (no {str(self.directory)!r}); train first with "
                f"train.py --workdir {self.workdir}"
            )
        options = ocp.CheckpointManagerOptions(
            max_to_keep=None if read_only else keep,
            save_interval_steps=0 if read_only else 1,
            create=not read_only,
            read_only=read_only,
            cleanup_tmp_directories=not read_only,
            enable_async_checkpointing=async_save,
        )
        quiet = logging.getLogger("absl")  # orbax warns "Given directory is read only" on every read-only open
        level = quiet.level
        if read_only:
            quiet.setLevel(logging.ERROR)
        try:
            self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=ITEMS)
        finally:
            quiet.setLevel(level)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()

    def wait(self):
        self.manager.wait_until_finished()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def has_item(self, step: int, item: str) -> bool:
        return (self.directory / str(step) / item).is_dir()

    def save(self, step: int, *, model: dict, train: dict | None = None, data_state=None, meta: dict | None = None,
             search: dict | None = None) -> None:
        args = {"model": ocp.args.StandardSave(_prune(model))}
        if train is not None:
            args["train"] = ocp.args.StandardSave(_prune(train))
        if data_state is not None:
            args["data"] = ocp.args.JsonSave(encode_data_state(data_state))
        if meta is not None:
            args["meta"] = ocp.args.JsonSave(to_jsonable(meta))
        if search:
            args["search"] = ocp.args.JsonSave(to_jsonable(search))
        self.manager.save(step, args=ocp.args.Composite(**args), force=True)

    def resolve_step(self, step: int | None) -> int:
        """``step`` if saved, the latest when ``None``; CheckpointNotFoundError naming workdir and steps found."""
        steps = self.all_steps()
        if not steps:
            raise CheckpointNotFoundError(
                f"no checkpoint found in workdir {str(self.workdir)!r} (looked in {str(self.directory)!r}; "
                f"steps found: none)"
            )
        if step is None:
            return max(steps)
        if step not in steps:
            raise CheckpointNotFoundError(
                f"no checkpoint for step {step} in workdir {str(self.workdir)!r}; steps found: "
                f"{', '.join(map(str, sorted(steps)))}"
            )
        return step

    def restore(self, step: int, *, model_like: dict, train_like: dict | None = None, sharding=None,
                data: bool = False, meta: bool = False, search: bool = False) -> dict:
        """Restore the requested items of ``step`` onto ``sharding``; absent optional items come back as None.

        ``model_like`` / ``train_like``: trees (arrays or ShapeDtypeStructs) with the structure to restore.
        """
        args = {"model": ocp.args.StandardRestore(abstract(_prune(model_like), sharding))}
        if train_like is not None:
            args["train"] = ocp.args.StandardRestore(abstract(_prune(train_like), sharding))
        for name, want in (("data", data), ("meta", meta), ("search", search)):
            if want and self.has_item(step, name):
                args[name] = ocp.args.JsonRestore()
        restored = self.manager.restore(step, args=ocp.args.Composite(**args))
        out = {name: restored[name] if name in args else None for name in ITEMS}
        if out["data"] is not None:
            out["data"] = decode_data_state(out["data"])
        return out


def write_json_atomic(path, obj) -> None:
    """Write JSON through a temporary file and a rename (never a half-written file)."""
    path = pathlib.Path(path)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(to_jsonable(obj), indent=2, sort_keys=True))
    os.replace(tmp, path)
