"""The grain input pipeline: P x K training batches and fixed-order evaluation batches.

A *source* is anything with ``len(source)`` and ``source[i]`` returning a record dict (``image``:
encoded bytes, ``pid``, ``camid``, ``path``, optionally ``attributes``, ``model``, ``color``) — the
TFDS data sources of :func:`jhash.data.load` and :class:`jhash.data.synthetic.SyntheticSource`
alike. ``source.pids`` (an int array) is used when present, so listing identities reads no image.

Batches follow the contract in :mod:`jhash.data.info`::

    from jhash import data
    from jhash.data import pipeline
    train, info = data.load("synthetic_reid", "train", data_dir="~/tfds")
    it = pipeline.train_loader(train, info, batch_p=16, batch_k=4, image_size=info.image_size, seed=0)
    batch = next(it)                 # dict of numpy arrays; batch["image"]: float32 [64, H, W, 3]
    state = it.get_state()           # JSON-serialisable; store it with the model checkpoint
    it.set_state(state)              # ... later: the same next batches as an uninterrupted run

**Training** (:func:`train_loader`): an endless stream of batches. Batch ``s`` (the global step) is
a pure function of ``(seed, s)``: :class:`~jhash.data.sampler.PKSampler` picks its records and
``numpy.random.default_rng((seed, s))`` draws its augmentation. Batches are made in ``num_workers``
processes (grain ``mp_prefetch``; worker ``w`` makes batches ``w, w + n, ...`` and they are merged
back in order), or, with ``num_workers=0``, in one background thread when ``prefetch > 0``.
Results are therefore identical for any number of workers and any prefetch depth, and the iterator
state is just the next step. ``it.epoch`` / ``it.step`` / ``it.steps_per_epoch`` tell where it is.
After ``it.send_uint8()`` (what the trainer does) batches carry uint8 images and their random-erasing
boxes, normalised and erased on the device inside the training step (:mod:`jhash.data.device`): a quarter
of the bytes to move between the worker processes and to the device, the same float32 images in the model.

**Evaluation** (:func:`eval_loader`): the records in their stored order, resized and normalised,
``batch_size`` at a time. The last batch is smaller unless ``pad_last=True``, in which case every
batch has ``batch_size`` rows and a bool ``mask`` key marks the real ones (padding rows are zero
images with ``pid = camid = index = -1``): one shape for a jitted model.

Images that cannot be decoded raise :class:`jhash.data.common.CorruptImageError` naming the
record's ``path`` and index.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import Any, Iterator, Mapping, Sequence

import grain
import numpy as np
from absl import flags

from jhash.data import augment
from jhash.data.augment import AugmentConfig
from jhash.data.sampler import PKSampler, process_rows

STATE_VERSION = 1
_AUG_STREAM = 0xA06
DEFAULT_IGNORE_PIDS = (-1, 0)  # junk and distractors are never training classes


# ------------------------------------------------------------------------------------------------
# Identities and labels


def source_pids(source) -> np.ndarray:
    """The pid of every record (``source.pids`` when available, else read record by record)."""
    pids = getattr(source, "pids", None)
    if pids is None:
        pids = [int(source[i]["pid"]) for i in range(len(source))]
    return np.asarray(pids, np.int64)


def label_map(source, ignore_pids: Sequence[int] | None = None) -> dict[int, int]:
    """``pid -> label``: the source's identities, sorted, numbered 0..C-1 (for the training split).

    Pids in ``ignore_pids`` are no class (default: ``source.ignore_pids`` if the source has it, else
    -1 junk and 0 distractors).
    """
    if ignore_pids is None:
        ignore_pids = getattr(source, "ignore_pids", DEFAULT_IGNORE_PIDS)
    ignore = {int(p) for p in ignore_pids}
    ids = sorted({int(p) for p in np.unique(source_pids(source))} - ignore)
    return {p: i for i, p in enumerate(ids)}


def _labels_of(pids: np.ndarray, labels: Mapping[int, int]) -> np.ndarray:
    return np.array([labels.get(int(p), -1) for p in pids], np.int64)


# ------------------------------------------------------------------------------------------------
# Making one batch (runs in the workers; everything here is picklable)


def _where(rec: Mapping[str, Any], index: int) -> str:
    path = rec.get("path", b"")
    path = path.decode("utf-8", "replace") if isinstance(path, bytes) else str(path)
    return f"{path or '(no path)'} (record {index})"


def _read(source, indices: Sequence[int]) -> list:
    get = getattr(source, "__getitems__", None)
    return list(get(list(indices))) if get is not None else [source[int(i)] for i in indices]


def _meta(records: Sequence[Mapping[str, Any]], indices: Sequence[int], extras: Sequence[str]) -> dict:
    """The non-image keys of a batch (pid, camid, index and the present extras), int32."""
    out = {
        "pid": np.array([r["pid"] for r in records], np.int32),
        "camid": np.array([r["camid"] for r in records], np.int32),
        "index": np.asarray(indices, np.int32),
    }
    for key in extras:
        out[key] = np.array([r[key] for r in records], np.int32)
    return out


def _extras(record: Mapping[str, Any], wanted: Sequence[str] = ("attributes", "model", "color")) -> tuple:
    return tuple(k for k in wanted if k in record)


@dataclasses.dataclass(frozen=True)
class _TrainBatch:
    source: Any
    sampler: PKSampler
    labels: Mapping[int, int]
    image_size: tuple[int, int]
    aug: AugmentConfig
    seed: int
    extras: tuple[str, ...]
    share: tuple[int, int] = (0, 1)  # (process index, process count): this process's rows of the global batch
    uint8: bool = False  # uint8 images + erase boxes (normalised on the device) instead of float32 images

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        step = int(step)
        everything = self.sampler.batch(step)
        rows = process_rows(len(everything), *self.share)
        indices = everything[rows]
        records = _read(self.source, indices)
        images = [augment.decode_pil(r["image"], self.image_size, where=_where(r, int(i)))
                  for r, i in zip(records, indices)]
        rng = np.random.default_rng([self.seed, _AUG_STREAM, step])
        params = _rows_of(augment.sample_params(rng, len(everything), self.image_size, self.aug), rows)
        if self.uint8:
            image, boxes = augment.train_batch_uint8(images, params, self.aug)
            batch = {"image": image, "erase": boxes}
        else:
            batch = {"image": augment.train_batch(images, params, self.aug)}
        batch.update(_meta(records, indices, self.extras))
        batch["label"] = np.array([self.labels[int(p)] for p in batch["pid"]], np.int32)
        return batch


def _rows_of(params: augment.BatchParams, rows: slice) -> augment.BatchParams:
    """The augmentation choices of some rows of a batch (a share starting at row r > 0 seeds its erase noise
    with the batch's seed + r, so shares do not repeat each other's noise)."""
    if rows == slice(0, len(params.flip)):
        return params
    return dataclasses.replace(params, flip=params.flip[rows], crop=params.crop[rows], boxes=params.boxes[rows],
                               noise_seed=params.noise_seed + (rows.start or 0))


@dataclasses.dataclass(frozen=True)
class _EvalBatch:
    source: Any
    batch_size: int
    image_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pad_last: bool
    extras: tuple[str, ...]
    labels: Mapping[int, int] | None

    def __call__(self, b: int) -> dict[str, np.ndarray]:
        start = int(b) * self.batch_size
        indices = list(range(start, min(start + self.batch_size, len(self.source))))
        records = _read(self.source, indices)
        images = [augment.decode_pil(r["image"], self.image_size, where=_where(r, i))
                  for r, i in zip(records, indices)]
        batch = {"image": augment.eval_batch(images, self.mean, self.std)}
        batch.update(_meta(records, indices, self.extras))
        if self.labels is not None:
            batch["label"] = np.array([self.labels.get(int(p), -1) for p in batch["pid"]], np.int32)
        if self.pad_last:
            n, pad = len(indices), self.batch_size - len(indices)
            if pad:
                batch = {k: np.concatenate([v, np.full((pad,) + v.shape[1:], 0 if k == "image" else -1, v.dtype)])
                         for k, v in batch.items()}
            batch["mask"] = np.arange(self.batch_size) < n
        return batch


def _iter_dataset(ds: grain.MapDataset, num_workers: int, prefetch: int) -> grain.IterDataset:
    if num_workers < 0 or prefetch < 0:
        raise ValueError(f"num_workers and prefetch must be >= 0, got {num_workers}, {prefetch}")
    if not flags.FLAGS.is_parsed():  # grain reads absl flags; outside absl.app use their defaults
        flags.FLAGS.mark_as_parsed()
    if num_workers == 0:
        # One background thread keeps `prefetch` batches ready (0: made on demand).
        opts = grain.ReadOptions(num_threads=1 if prefetch else 0, prefetch_buffer_size=prefetch)
        return ds.to_iter_dataset(opts)
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
    return it.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers,
                                                       per_worker_buffer_size=max(1, prefetch)))


# ------------------------------------------------------------------------------------------------
# Training


class TrainIterator(Iterator[dict]):
    """Endless P x K batches; ``get_state()`` / ``set_state()`` to save and resume; ``close()``."""

    def __init__(self, make_batch: _TrainBatch, *, num_workers: int, prefetch: int, step: int = 0):
        self._make = make_batch
        self._num_workers, self._prefetch = int(num_workers), int(prefetch)
        self._step = int(step)
        self._it = None

    # Where the stream is.
    @property
    def step(self) -> int:
        """The global step of the next batch."""
        return self._step

    @property
    def steps_per_epoch(self) -> int:
        return self._make.sampler.steps_per_epoch

    @property
    def epoch(self) -> int:
        """The epoch of the next batch."""
        return self._step // self.steps_per_epoch

    def send_uint8(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """From the next batch on, yield uint8 images and their ``erase`` boxes (int32 ``[n, 4]``) instead of
        float32 images: a quarter of the bytes between the worker processes and to the device, which
        normalises and erases them (:func:`jhash.data.device.train_images` with the returned ``(mean, std)``)
        into the same float32 images. ``None``, and nothing changes, with ``erase_fill='random'``."""
        aug = self._make.aug
        if aug.erase_fill != "mean":
            return None
        if not self._make.uint8:
            self.close()  # the workers restart at the next step with the new batch maker
            self._make = dataclasses.replace(self._make, uint8=True)
        return tuple(aug.mean), tuple(aug.std)

    def batch_at(self, step: int) -> dict[str, np.ndarray]:
        """The batch of global step ``step``, made here (does not move the iterator)."""
        return self._make(step)

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self._it is None:
            ds = grain.MapDataset.range(self._step, sys.maxsize).map(self._make)
            self._it = iter(_iter_dataset(ds, self._num_workers, self._prefetch))
        batch = next(self._it)
        self._step += 1
        return batch

    def get_state(self) -> dict[str, Any]:
        """JSON-serialisable state: the next step and what the stream depends on (checked on restore)."""
        m = self._make
        return {"version": STATE_VERSION, "step": self._step, "seed": m.seed, "batch_p": m.sampler.p,
                "batch_k": m.sampler.k, "num_images": m.sampler.num_images,
                "num_identities": m.sampler.num_identities, "steps_per_epoch": m.sampler.steps_per_epoch}

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Resume at ``state["step"]``; ``ValueError`` if the state belongs to another stream."""
        if int(state.get("version", -1)) != STATE_VERSION:
            raise ValueError(f"iterator state version {state.get('version')!r} is not {STATE_VERSION}")
        mine = self.get_state()
        diff = {k: (state.get(k), v) for k, v in mine.items() if k != "step" and state.get(k) != v}
        if diff:
            raise ValueError(f"the iterator state is for another input stream: (saved, this) = {diff}")
        self.close()
        self._step = int(state["step"])

    def close(self) -> None:
        """Stop the workers (the iterator restarts them if used again)."""
        it, self._it = self._it, None
        if it is not None and hasattr(it, "close"):
            it.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 (interpreter shutdown)
            pass


def train_loader(source, info, *, batch_p: int, batch_k: int, image_size: Sequence[int], seed: int,
                 augment_config: AugmentConfig | Mapping[str, Any] | None = None, num_workers: int = 0,
                 prefetch: int = 2, steps_per_epoch: int | None = None,
                 labels: Mapping[int, int] | None = None, process_index: int = 0,
                 process_count: int = 1) -> TrainIterator:
    """Endless P x K training batches of ``source`` (see the module docstring).

    With ``process_count > 1`` every process draws the same global P x K batch (same ``seed``) and yields
    its share of rows (:func:`jhash.data.sampler.process_rows`): the global batch holds exactly P
    identities, as in a one-process run. (With ``erase_fill='random'`` each share draws its own erase noise.)

    ``info``: the dataset's :class:`~jhash.data.info.DatasetInfo`; ``attributes`` / ``model`` /
    ``color`` are in the batches when it declares them. ``labels``: ``pid -> label`` (default
    :func:`label_map` of ``source``; it must have ``info.num_classes`` entries). ``steps_per_epoch``:
    default ``len(usable records) // (P * K)``. ``prefetch``: batches kept ready (per worker).
    """
    labels = dict(label_map(source) if labels is None else labels)
    if info is not None and len(labels) != info.num_classes:
        raise ValueError(f"{getattr(info, 'name', 'dataset')}: the training source has {len(labels)} identities "
                         f"but info.num_classes is {info.num_classes} (is this the train split?)")
    sampler = PKSampler(_labels_of(source_pids(source), labels), p=batch_p, k=batch_k, seed=seed,
                        steps_per_epoch=steps_per_epoch)
    first = source[int(sampler.groups[0][0])]
    wanted = []
    if info is None or info.num_attributes > 0:
        wanted.append("attributes")
    if info is None or info.num_models > 0:
        wanted.append("model")
    if info is None or info.num_colors > 0:
        wanted.append("color")
    make = _TrainBatch(source=source, sampler=sampler, labels=labels, image_size=_size(image_size),
                       aug=AugmentConfig.from_any(augment_config), seed=int(seed),
                       extras=_extras(first, wanted),
                       share=(int(process_index), int(process_count)))
    process_rows(sampler.batch_size, process_index, process_count)  # a clear error now for a bad share
    return TrainIterator(make, num_workers=num_workers, prefetch=prefetch)


# ------------------------------------------------------------------------------------------------
# Evaluation


class EvalLoader:
    """Batches of a source in stored order; iterate as many times as needed; ``len()`` batches."""

    def __init__(self, make_batch: _EvalBatch, *, num_workers: int, prefetch: int):
        self._make = make_batch
        self._num_workers, self._prefetch = num_workers, prefetch
        self.num_batches = math.ceil(len(make_batch.source) / make_batch.batch_size)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        if self.num_batches == 0:
            return iter(())
        ds = grain.MapDataset.range(self.num_batches).map(self._make)
        return _closing(iter(_iter_dataset(ds, self._num_workers, self._prefetch)))


def _closing(it):
    try:
        yield from it
    finally:
        if hasattr(it, "close"):
            it.close()


def eval_loader(source, *, batch_size: int, image_size: Sequence[int], num_workers: int = 0, prefetch: int = 2,
                pad_last: bool = False, mean: Sequence[float] = augment.IMAGENET_MEAN,
                std: Sequence[float] = augment.IMAGENET_STD, labels: Mapping[int, int] | None = None) -> EvalLoader:
    """All records of ``source`` in stored order, resized to ``image_size`` and normalised.

    The last batch is smaller, or (``pad_last=True``) padded to ``batch_size`` with a ``mask`` key.
    ``labels`` (``pid -> label``, e.g. :func:`label_map` of the train split) adds a ``label`` key
    (-1 for other pids), for passes over the training set.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    extras = _extras(source[0]) if len(source) else ()
    make = _EvalBatch(source=source, batch_size=int(batch_size), image_size=_size(image_size),
                      mean=tuple(mean), std=tuple(std), pad_last=bool(pad_last), extras=extras,
                      labels=None if labels is None else dict(labels))
    return EvalLoader(make, num_workers=num_workers, prefetch=prefetch)


def _size(image_size: Sequence[int]) -> tuple[int, int]:
    size = tuple(int(x) for x in image_size)
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"image_size must be (height, width) > 0, got {image_size}")
    return size
