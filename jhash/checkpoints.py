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

Integrity: once orbax has finished a step, :class:`Checkpoints` *seals* it: ``<step>/jhash_manifest.json``
lists the size and SHA-256 of every file of the step and is written last, through a temporary file, an fsync
and a rename. :meth:`Checkpoints.verify` compares the files with it; a missing, shortened or changed file is a
:class:`CheckpointDamagedError` naming the step and the file. A step without a manifest (saved by an older
jhash, or stopped between orbax's rename and the seal) is *unsealed*: it loads with a warning, and training
seals it once it has restored it. Restored weights are checked for NaN / inf as well.

Retention: orbax prunes nothing; after each seal the steps beyond the newest ``keep`` are deleted, except a
final step (the end of a run, flagged in its manifest) and the steps in :attr:`Checkpoints.protected`.

One writer: :class:`WorkdirLock` holds an ``fcntl`` lock on ``<workdir>/lock`` for a whole training run.
"""

from __future__ import annotations

import base64
import concurrent.futures
import errno
import fcntl
import hashlib
import json
import logging
import os
import pathlib
import shutil
import socket


import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from jhash import parallel

ITEMS = ("model", "train", "data", "meta", "search")
MANIFEST = "jhash_manifest.json"
MANIFEST_FORMAT = 1
DAMAGED_DIR = "checkpoints.damaged"
LOCK_FILE = "lock"

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """Base class of the checkpoint and workdir errors (the CLIs print them as one ``error:`` line)."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No (or not the requested) checkpoint in a workdir."""


class CheckpointDamagedError(CheckpointError):
    """A checkpoint whose files do not match its manifest, cannot be read, or holds NaN / inf values."""

    def __init__(self, message: str, *, step: int, reason: str):
        super().__init__(message)
        self.step, self.reason = step, reason


class WorkdirInUseError(CheckpointError):
    """Another process holds the workdir's lock (one trainer per workdir)."""


class AlreadyTrainedError(CheckpointError):
    """The workdir holds a checkpoint past the requested number of steps; nothing was changed."""


def checkpoint_dir(workdir) -> pathlib.Path:
    return pathlib.Path(workdir).expanduser().absolute() / "checkpoints"


def saved_steps(workdir) -> list[int]:
    """Steps with a finished (renamed) step directory in ``<workdir>/checkpoints``, without opening orbax."""
    d = checkpoint_dir(workdir)
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit() and p.is_dir()) if d.is_dir() else []


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


# --------------------------------------------------------------------------------------------------
# NaN / inf checks


@jax.jit
def _finite_flags(parts: dict) -> dict:
    """``{name: all floating leaves of parts[name] finite}``, one on-device reduction per part."""
    def ok(tree):
        flags = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
        return jnp.all(jnp.stack(flags)) if flags else jnp.asarray(True)

    return {k: ok(v) for k, v in parts.items()}


def nonfinite_parts(parts: dict) -> list[str]:
    """Names of the entries of ``parts`` (e.g. ``params``, ``opt_state``) that hold a NaN or an infinity.

    The check runs on the arrays' devices; only one boolean per part comes back to the host.
    """
    flags = jax.device_get(_finite_flags({k: v for k, v in parts.items() if v is not None}))
    return [k for k, v in flags.items() if not bool(v)]


def first_nonfinite_leaf(tree) -> str | None:
    """The path (``['params']['conv']['kernel']``) of the first leaf of ``tree`` holding NaN / inf, or None."""
    for path, x in jax.tree_util.tree_leaves_with_path(tree):
        x = np.asarray(jax.device_get(x))
        if np.issubdtype(x.dtype, np.inexact) and not np.isfinite(x).all():
            return jax.tree_util.keystr(path)
    return None


# --------------------------------------------------------------------------------------------------
# Manifests: size and SHA-256 of every file of a step, written last


def _sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _step_files(step_dir: pathlib.Path) -> list[str]:
    """Every file below ``step_dir`` (POSIX relative paths, sorted), the manifest and its temporaries excluded."""
    out = []
    for root, _, files in os.walk(step_dir):
        for name in files:
            if not name.startswith(MANIFEST):
                out.append((pathlib.Path(root) / name).relative_to(step_dir).as_posix())
    return sorted(out)


def build_manifest(step_dir, step: int, *, final: bool = False) -> dict:
    """The manifest of the files now in ``step_dir``: ``{format, step, final, files: {path: {size, sha256}}}``."""
    step_dir = pathlib.Path(step_dir)
    files = {rel: {"size": (step_dir / rel).stat().st_size, "sha256": _sha256(step_dir / rel)}
             for rel in _step_files(step_dir)}
    return {"format": MANIFEST_FORMAT, "step": int(step), "final": bool(final), "files": files}


def _fsync_dir(path: pathlib.Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(step_dir, manifest: dict) -> None:
    """Write ``<step_dir>/jhash_manifest.json`` atomically: a temporary file, fsync, rename, fsync of the dir."""
    step_dir = pathlib.Path(step_dir)
    tmp = step_dir / f"{MANIFEST}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, step_dir / MANIFEST)
    _fsync_dir(step_dir)


def read_manifest(step_dir) -> dict | None:
    """The step's manifest, None when it has none; ValueError when it is unreadable."""
    path = pathlib.Path(step_dir) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(manifest.get("files"), dict):
            raise ValueError("no 'files' table")
        return manifest
    except (OSError, ValueError, AttributeError) as e:
        raise ValueError(f"its manifest {MANIFEST} is unreadable ({e})") from None


def manifest_damage(step_dir) -> tuple[bool, str | None]:
    """``(sealed, damage)`` of a step directory: ``damage`` describes the first file that is missing, has
    another size or another SHA-256 than its manifest says (None when all match or there is no manifest)."""
    step_dir = pathlib.Path(step_dir)
    try:
        manifest = read_manifest(step_dir)
    except ValueError as e:
        return True, str(e)
    if manifest is None:
        return False, None
    problems = []
    entries = sorted(manifest["files"].items())
    for rel, want in entries:  # sizes first: cheap, and they catch truncation and deletion
        path = step_dir / rel
        if not path.is_file():
            problems.append(f"file {rel} is missing")
        elif path.stat().st_size != want["size"]:
            n = path.stat().st_size
            problems.append(f"file {rel} has {n} bytes, {want['size']} when written "
                            f"({'truncated' if n < want['size'] else 'extended'})")
    if not problems:
        for rel, want in entries:
            if _sha256(step_dir / rel) != want["sha256"]:
                problems.append(f"file {rel} changed since it was written (SHA-256 mismatch)")
    if not problems:
        return True, None
    more = f" (and {len(problems) - 1} more damaged file{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
    return True, problems[0] + more


def manifest_is_final(step_dir) -> bool:
    try:
        manifest = read_manifest(step_dir)
    except ValueError:
        return False
    return bool(manifest and manifest.get("final"))


# --------------------------------------------------------------------------------------------------
# One writer per workdir


class WorkdirLock:
    """An exclusive ``fcntl.flock`` on ``<workdir>/lock`` for as long as the context is open.

    The file holds the owner's ``pid on host``. The kernel drops the lock when its process dies, so a lock file
    left by a killed run is simply taken over. A second owner gets :class:`WorkdirInUseError` at once.
    """

    def __init__(self, workdir):
        self.workdir = pathlib.Path(workdir)
        self.path = self.workdir / LOCK_FILE
        self._fd: int | None = None

    @staticmethod
    def _holder(fd: int) -> str:
        return os.pread(fd, 200, 0).decode("utf-8", "replace").strip()

    def __enter__(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = self._holder(fd)
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise WorkdirInUseError(
                f"workdir {str(self.workdir)!r} is in use by process {holder or '(starting)'}: one trainer per "
                f"workdir; wait for it to finish, stop it, or pass another --workdir"
            ) from None
        stale = self._holder(fd)
        if stale:
            log.info("took over the lock of %s in %s (that process no longer holds it)", stale, self.workdir)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc):
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


# --------------------------------------------------------------------------------------------------


class Checkpoints:
    """A thin wrapper over ``CheckpointManager`` for jhash's items; use as a context manager.

    ``keep``: how many of the newest steps survive pruning (>= 1; None keeps all); final steps and the steps in
    :attr:`protected` are never pruned. Saves are sealed (manifest, then pruning) in a background thread once
    orbax has finished them; :meth:`wait` and :meth:`close` wait for that too.
    """

    def __init__(self, workdir, *, keep: int | None = 3, async_save: bool = True, read_only: bool = False):
        self.directory = checkpoint_dir(workdir)
        self.workdir = pathlib.Path(workdir)
        if not read_only and keep is not None and keep < 1:
            raise ValueError(f"keep must be >= 1 (the newest checkpoint is always kept), got {keep}")
        if read_only and not self.directory.is_dir():
            raise CheckpointNotFoundError(
                f"no checkpoints in workdir {str(self.workdir)!r} (no {str(self.directory)!r}); train first with "
                f"train.py --workdir {self.workdir}"
            )
        self.keep = keep
        self.protected: set[int] = set()
        self._checked: dict[int, bool] = {}  # step -> sealed, for steps verified in this session
        self._sealer = None if read_only else concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="jhash-seal")
        self._pending: concurrent.futures.Future | None = None
        options = ocp.CheckpointManagerOptions(
            max_to_keep=None,  # pruning is ours (_prune_old): only after a seal, never a final or protected step
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
        try:
            self.wait()
        finally:
            if self._sealer is not None:
                self._sealer.shutdown(wait=True)
            self.manager.close()

    def wait(self):
        """Block until the last save is written, sealed and old steps pruned (re-raising a failure of either)."""
        self.manager.wait_until_finished()
        pending, self._pending = self._pending, None
        if isinstance(pending, tuple):
            self._seal_when_written(*pending)
        elif pending is not None:
            pending.result()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def has_item(self, step: int, item: str) -> bool:
        return (self.directory / str(step) / item).is_dir()

    def save(self, step: int, *, model: dict, train: dict | None = None, data_state=None, meta: dict | None = None,
             search: dict | None = None, final: bool = False) -> None:
        """Start saving ``step`` (asynchronously); it is sealed, flagged ``final`` or not, once written."""
        self.wait()
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
        if jax.process_count() > 1:
            # Several processes: sealing and pruning wait for the next wait() in the calling thread. Pruning
            # (orbax's delete) is a cross-process barrier, so every process must prune the same steps at the
            # same point of its program; a background thread would interleave it with the training step's
            # collectives differently on each process (a deadlock), and could prune before process 0 sealed.
            self._pending = (step, final)
        else:
            self._pending = self._sealer.submit(self._seal_when_written, step, final)

    def _seal_when_written(self, step: int, final: bool) -> None:
        self.manager.wait_until_finished()
        if jax.process_index() == 0:
            self.seal(step, final=final)
        if jax.process_count() > 1:
            parallel.barrier()  # every process reads the manifest process 0 just wrote (is the step final?)
        self._prune_old()

    def seal(self, step: int, *, final: bool = False) -> None:
        """Write the manifest of ``step`` (its files as they are now)."""
        step_dir = self.directory / str(step)
        write_manifest(step_dir, build_manifest(step_dir, step, final=final or manifest_is_final(step_dir)))
        self._checked[step] = True

    def _prune_old(self) -> None:
        if self.keep is None:
            return
        steps = sorted(self.all_steps())
        keep = set(steps[-self.keep:]) | self.protected
        for s in steps:
            if s not in keep and not manifest_is_final(self.directory / str(s)):
                self.manager.delete(s)
                self._checked.pop(s, None)

    # ---- integrity

    def _damaged(self, step: int, damage: str, intact: bool = True) -> CheckpointDamagedError:
        others = f"; intact steps: {self._intact_list(exclude=step)}" if intact else ""
        return CheckpointDamagedError(
            f"checkpoint step {step} in {str(self.workdir)!r} is damaged: {damage}{others}", step=step, reason=damage)

    def _intact_list(self, exclude: int) -> str:
        steps = [s for s in sorted(self.all_steps(), reverse=True) if s != exclude and self.is_intact(s)]
        return ", ".join(map(str, steps)) if steps else "none"

    def is_intact(self, step: int) -> bool:
        """Whether ``step`` matches its manifest (an unsealed step counts as intact)."""
        try:
            self.verify(step)
            return True
        except CheckpointDamagedError:
            return False

    def verify(self, step: int, *, name_intact: bool = False) -> bool:
        """Check ``step``'s files against its manifest; return whether it is sealed.

        Raises :class:`CheckpointDamagedError` naming the step and the damage (and, with ``name_intact``, the
        steps that are intact). An unsealed step logs a warning and returns False.
        """
        if step not in self._checked:
            sealed, damage = manifest_damage(self.directory / str(step))
            if damage is not None:
                raise self._damaged(step, damage, intact=name_intact)
            if not sealed:
                log.warning("checkpoint step %d in %s has no manifest (saved by an older jhash, or stopped before "
                            "it was sealed): its files cannot be verified", step, self.workdir)
            self._checked[step] = sealed
        return self._checked[step]

    def quarantine(self, step: int) -> pathlib.Path:
        """Move ``step`` out of the checkpoint directory to ``<workdir>/checkpoints.damaged/<step>[-n]``."""
        self.wait()
        target_dir = self.directory.parent / DAMAGED_DIR
        target_dir.mkdir(exist_ok=True)
        target = target_dir / str(step)
        n = 1
        while target.exists():
            target, n = target_dir / f"{step}-{n}", n + 1
        shutil.move(str(self.directory / str(step)), str(target))
        self.refresh()
        return target

    def refresh(self) -> None:
        """Read the step directories again (after another process moved or deleted some)."""
        self.manager.reload()
        self._checked.clear()

    def resolve_step(self, step: int | None) -> int:
        """``step`` if saved, the latest when ``None``; CheckpointNotFoundError naming workdir and steps found;
        CheckpointDamagedError naming the damage and the intact steps when its files fail the manifest."""
        steps = self.all_steps()
        if not steps:
            raise CheckpointNotFoundError(
                f"no checkpoint found in workdir {str(self.workdir)!r} (looked in {str(self.directory)!r}; "
                f"steps found: none)"
            )
        if step is None:
            step = max(steps)
        elif step not in steps:
            raise CheckpointNotFoundError(
                f"no checkpoint for step {step} in workdir {str(self.workdir)!r}; steps found: "
                f"{', '.join(map(str, sorted(steps)))}"
            )
        self.verify(step, name_intact=True)
        return step

    def restore(self, step: int, *, model_like: dict, train_like: dict | None = None, sharding=None,
                data: bool = False, meta: bool = False, search: bool = False, name_intact: bool = True) -> dict:
        """Restore the requested items of ``step`` onto ``sharding``; absent optional items come back as None.

        ``model_like`` / ``train_like``: trees (arrays or ShapeDtypeStructs) with the structure to restore.
        The step is verified against its manifest first, and the restored parameters, batch statistics,
        ``aux`` and optimizer state must be finite: :class:`CheckpointDamagedError` otherwise (a sealed, intact
        step that orbax cannot restore into ``model_like`` is reported as saved with another config).
        """
        sealed = self.verify(step, name_intact=name_intact)
        args = {"model": ocp.args.StandardRestore(abstract(_prune(model_like), sharding))}
        if train_like is not None:
            args["train"] = ocp.args.StandardRestore(abstract(_prune(train_like), sharding))
        for name, want in (("data", data), ("meta", meta), ("search", search)):
            if want and self.has_item(step, name):
                args[name] = ocp.args.JsonRestore()
        try:
            restored = self.manager.restore(step, args=ocp.args.Composite(**args))
        except Exception as e:  # orbax / tensorstore raise many types; the first line says what failed
            what = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:400]
            if sealed:
                raise CheckpointError(
                    f"checkpoint step {step} in {str(self.workdir)!r} is intact but does not fit the model of this "
                    f"config (was it saved with another config? compare {str(self.workdir / 'config.json')!r}): {what}"
                ) from None
            raise self._damaged(step, f"it cannot be read ({what})", intact=name_intact) from None
        out = {name: restored[name] if name in args else None for name in ITEMS}
        parts = dict(out["model"] or {})
        if out["train"] is not None:
            parts["opt_state"] = out["train"].get("opt_state")
        bad = nonfinite_parts(parts)
        if bad:
            where = first_nonfinite_leaf({k: parts[k] for k in bad})
            raise self._damaged(step, f"it holds NaN or infinite values in {', '.join(bad)} (first: {where})",
                                intact=name_intact)
        if out["data"] is not None:
            out["data"] = decode_data_state(out["data"])
        return out


def write_json_atomic(path, obj) -> None:
    """Write JSON through a temporary file and a rename (never a half-written file)."""
    path = pathlib.Path(path)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(to_jsonable(obj), indent=2, sort_keys=True))
    os.replace(tmp, path)
