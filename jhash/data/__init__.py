"""Datasets: TFDS builders (one module per dataset), the synthetic dataset and the input pipeline.

The loading API used by the rest of jhash::

    from jhash import data
    builder = data.prepare("market1501", data_dir="~/tfds", manual_dir="~/downloads")
    source, info = data.load("market1501", "train", data_dir="~/tfds", manual_dir="~/downloads")
    len(source); source[0]["image"]  # encoded JPEG bytes; also pid, camid, path, ...
    source.pids, source.camids       # int32 arrays, one per record, without reading any image

``config`` is a config name (``"500k"``), a dict (``{"base": "default", "val_fraction": 0.1}``,
see :func:`jhash.data.common.make_config`) or a BuilderConfig instance. Builders are imported
lazily: importing :mod:`jhash.data` does not import TensorFlow Datasets.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from jhash.data.errors import DATA_ERRORS, DatasetError, ManualDirError
from jhash.data.info import DatasetInfo

# name -> "module:Class"; modules are imported on first use.
BUILDERS: dict[str, str] = {
    "market1501": "jhash.data.market1501:Market1501",
    "dukemtmc_reid": "jhash.data.dukemtmc_reid:DukemtmcReid",
    "cuhk03": "jhash.data.cuhk03:Cuhk03",
    "cuhk03_np": "jhash.data.cuhk03_np:Cuhk03Np",
    "msmt17": "jhash.data.msmt17:Msmt17",
    "veri776": "jhash.data.veri776:Veri776",
    "vehicleid": "jhash.data.vehicleid:Vehicleid",
    "reid_folder": "jhash.data.reid_folder:ReidFolder",
    "synthetic_reid": "jhash.data.synthetic:SyntheticReid",
}

__all__ = ["BUILDERS", "DATA_ERRORS", "DatasetError", "DatasetInfo", "ManualDirError", "ReidSource", "available", "builder_class", "dataset_info", "default_data_dir", "load",
           "prepare", "with_options"]


def available() -> list[str]:
    """Registered dataset names."""
    return sorted(BUILDERS)


def builder_class(name: str) -> type:
    """The builder class registered as ``name``; ``ValueError`` listing the valid names otherwise."""
    if name not in BUILDERS:
        raise DatasetError(f"unknown dataset {name!r}; valid names: {', '.join(available())}")
    module, cls = BUILDERS[name].split(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        raise DatasetError(f"dataset {name!r} is registered but its module {module} is not available") from e
    try:
        return getattr(mod, cls)
    except AttributeError as e:
        raise DatasetError(f"dataset {name!r}: module {module} has no builder class {cls}") from e


def default_data_dir(data_dir=None) -> str:
    """``data_dir`` if given, else $JHASH_DATA_DIR, else ~/tensorflow_datasets (the rule of
    :func:`jhash.config.data_dir`, shared by train.py, evaluate.py and ``python -m jhash.data``)."""
    import ml_collections

    from jhash import config as config_lib

    return config_lib.data_dir(ml_collections.ConfigDict({"dataset": {"data_dir": data_dir}}))


def with_options(config, options=None):
    """``config`` (None, a config name or a dict) with the builder fields ``options`` set on top: the value
    :func:`load` takes for ``config.dataset.config`` + ``config.dataset.options``."""
    options = dict(options.to_dict() if hasattr(options, "to_dict") else (options or {}))
    if not options:
        return config
    if config is None:
        return options
    if isinstance(config, str):
        return {"base": config, **options}
    return {**dict(config), **options}


def _builder(name, *, data_dir, config=None, **kwargs):
    from jhash.data.common import make_config

    cls = builder_class(name)
    data_dir = os.fspath(Path(default_data_dir(data_dir)).expanduser())
    with _quiet_tfds():  # no "Using custom data configuration ..." warning for every config variant
        return cls(data_dir=data_dir, config=make_config(cls, config), file_format="array_record", **kwargs)


@contextlib.contextmanager
def _quiet_tfds():
    """TFDS's informational warnings (absl logger) off for the duration; errors still show."""
    import logging

    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def prepare(name: str, *, data_dir=None, manual_dir=None, config=None, progress: bool = True, **kwargs):
    """Build the dataset into ``data_dir`` unless it is prepared from the same source; return the TFDS builder.

    ``data_dir``: None means $JHASH_DATA_DIR or ~/tensorflow_datasets. ``manual_dir`` holds the official
    archive or its extracted folder, or your own images (see each builder's ``MANUAL_DOWNLOAD_INSTRUCTIONS``);
    None means the folder the dataset was prepared from, else TFDS's default ``<data_dir>/downloads/manual``.
    Extra keyword arguments go to the builder (e.g. ``skip_corrupt=True``). ``progress``: short progress lines
    on stderr (TFDS's own messages and bars are silenced either way).

    Never stale: a prepared dataset records a fingerprint of its source (every file's path, labels, size and
    modification time, and the options; see :func:`jhash.data.common.source_fingerprint`). When the source now
    differs (another manual_dir, files added, removed or changed) the dataset is rebuilt, saying why; the old one
    is kept until the new one is complete. When the recorded source is gone the prepared data is used, saying so.
    Preparations of one dataset config are serialised by a lock file, and the ``incomplete.*`` folders a killed
    preparation leaves are removed by the next one.
    """
    say = _stderr if progress else (lambda msg: None)
    builder = _builder(name, data_dir=data_dir, config=config, **kwargs)
    with _locked(builder):
        _remove_leftovers(builder, say)
        if _is_prepared(builder):
            reason = _stale(builder, manual_dir, say)
            if reason is None:
                return builder
            say(f"{_full_name(builder)}: {reason}; rebuilding")
            if ((builder.info.metadata or {}).get("source") or {}).get("skip_corrupt"):
                kwargs.setdefault("skip_corrupt", True)  # as it was prepared
            aside = _set_aside(builder)
            builder = _builder(name, data_dir=data_dir, config=config, **kwargs)
            try:
                _build(builder, manual_dir, say if progress else None)
            except BaseException:
                _restore(aside, builder)
                raise
            _rmtree(aside)
        else:
            _build(builder, manual_dir, say if progress else None)
    return builder


def _stderr(msg: str) -> None:
    import sys

    print(msg, file=sys.stderr, flush=True)


def _full_name(builder) -> str:
    return f"{builder.name}/{builder.builder_config.name}"


def _manual_dir(builder, manual_dir) -> Path:
    """The resolved manual_dir: the given one, else the one the dataset was prepared from, else TFDS's default."""
    if manual_dir is None:
        recorded = ((builder.info.metadata or {}).get("source") or {}).get("manual_dir") if _is_prepared(builder) else None
        manual_dir = recorded or Path(os.fspath(builder.data_dir_root)) / "downloads" / "manual"
    return Path(os.fspath(manual_dir)).expanduser().resolve()


def _stale(builder, manual_dir, say) -> str | None:
    """Why the prepared dataset no longer matches its source (None: it matches, or cannot be checked)."""
    from jhash.data.common import ReidBuilder
    from jhash.data.errors import ManualDirError

    if not isinstance(builder, ReidBuilder) or not builder.FINGERPRINT_SOURCE:
        return None
    recorded = (builder.info.metadata or {}).get("source")
    where = _manual_dir(builder, manual_dir)
    try:
        now = builder.source_state(where)
    except ManualDirError:
        was = (recorded or {}).get("manual_dir")
        if manual_dir is not None and was is not None and Path(was) != where:
            raise
        say(f"{_full_name(builder)}: its source {was or where} is not available; using the dataset prepared from it "
            f"in {builder.data_path}")
        return None
    if not recorded:
        return "the prepared dataset records no source fingerprint (prepared by an older jhash)"
    if now["digest"] == recorded.get("digest"):
        return None
    if Path(recorded.get("manual_dir", "")) != where:
        return f"it was prepared from {recorded.get('manual_dir')}, the source is now {where}"
    return (f"its source {where} changed since preparation ({recorded.get('num_images')} images, "
            f"{recorded.get('num_bytes')} bytes then; {now['num_images']} images, {now['num_bytes']} bytes now)")


def _build(builder, manual_dir, say) -> None:
    """``download_and_prepare`` with TFDS's own output silenced and jhash's progress lines instead."""
    import contextlib
    import io
    import time

    import tensorflow_datasets as tfds

    dl_config = tfds.download.DownloadConfig(
        manual_dir=None if manual_dir is None else os.fspath(Path(os.fspath(manual_dir)).expanduser())
    )
    tfds.disable_progress_bar()
    start = time.monotonic()
    if say is not None:  # the first line once the source is listed and checked (an error comes alone)
        builder.progress = _Progress(say, header=f"preparing {_full_name(builder)} into {builder.data_path} ...")
    with contextlib.redirect_stdout(io.StringIO()), _quiet_tfds():
        builder.download_and_prepare(download_config=dl_config)
    builder.progress = None
    if say is not None:
        say(f"prepared {_full_name(builder)} in {time.monotonic() - start:.1f} s")


class _Progress:
    """``progress(split, done, total)`` for the builders: ``header`` before the first image, one line per finished
    split; on a terminal, a counter updated in place at most every half second."""

    def __init__(self, say, header: str = ""):
        import sys

        self.say, self.tty, self.last, self.header = say, sys.stderr.isatty(), 0.0, header

    def __call__(self, split: str, done: int, total: int) -> None:
        import sys
        import time

        if self.header:
            self.say(self.header)
            self.header = ""
        if done >= total:
            self.say(("\r" if self.tty else "") + f"  {split:8s} {total:8d} images written")
        elif self.tty and time.monotonic() - self.last > 0.5:
            self.last = time.monotonic()
            sys.stderr.write(f"\r  {split:8s} {done:8d}/{total} images")
            sys.stderr.flush()


def _config_dir(builder) -> Path:
    return Path(os.fspath(builder.data_path)).parent


@contextlib.contextmanager
def _locked(builder):
    """An exclusive ``fcntl`` lock on ``<config dir>/.jhash-prepare.lock`` (waits for another preparation). In a
    read-only data_dir (a shared, prepared copy) there is nothing to lock: nothing can be written there."""
    import fcntl

    d = _config_dir(builder)
    try:
        d.mkdir(parents=True, exist_ok=True)
        f = open(d / ".jhash-prepare.lock", "a")
    except OSError:
        yield
        return
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _remove_leftovers(builder, say) -> None:
    """Delete the ``incomplete.*`` folders of killed preparations and a set-aside copy of an interrupted rebuild
    (only called under the preparation lock, so none belongs to a running preparation)."""
    d = _config_dir(builder)
    for p in sorted(d.glob("incomplete.*")) + sorted(d.glob(f"{_ASIDE}*")):
        if p.is_dir():
            say(f"{_full_name(builder)}: removing {p} left by an interrupted preparation")
            _rmtree(p)


_ASIDE = ".previous."


def _set_aside(builder) -> Path:
    path = Path(os.fspath(builder.data_path))
    aside = path.parent / f"{_ASIDE}{path.name}"
    path.rename(aside)
    return aside


def _restore(aside: Path, builder) -> None:
    path = Path(os.fspath(builder.data_path))
    if aside.is_dir() and not (path / "dataset_info.json").is_file():
        _rmtree(path)
        aside.rename(path)


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _is_prepared(builder) -> bool:
    # builder.is_prepared() logs a warning for every folder not yet built: check the file TFDS writes last.
    return (Path(os.fspath(builder.data_path)) / "dataset_info.json").is_file()


class RecordParser:
    """Records of a TFDS ArrayRecord source read straight from their ``tf.train.Example`` bytes.

    TFDS's generic numpy deserialisation costs ~0.2 ms a record in Python, a fifth of the whole per-image cost
    of a training batch; the records of jhash's builders are flat dicts of fixed-shape tensors (``int32`` scalars
    and arrays, ``bytes`` strings), which this reads in ~15 us: ``int`` / ``float`` / ``bytes`` for a scalar,
    a numpy array of the declared dtype and shape otherwise, exactly what TFDS returns.
    :meth:`for_source` gives ``None`` (use TFDS's reading) for any other kind of feature.
    """

    def __init__(self, raw, specs: dict[str, tuple[str, np.dtype, tuple[int, ...]]]):
        self._raw = raw  # the array_record data source: index -> serialized bytes
        self._specs = specs  # feature -> (proto list field, numpy dtype, shape)

    @classmethod
    def for_source(cls, source) -> "RecordParser | None":
        """A parser for a TFDS data source when all its features are plain fixed-shape tensors and it reads
        its first record exactly as TFDS does; else ``None``."""
        raw = getattr(source, "data_source", None)
        features = getattr(getattr(source, "dataset_info", None), "features", None)
        if raw is None or features is None or getattr(source, "decoders", None) or not len(source):
            return None
        from tensorflow_datasets.core.features import tensor_feature

        specs = {}
        for name, feature in getattr(features, "items", lambda: ())():
            if (not isinstance(feature, tensor_feature.Tensor) or getattr(feature, "_encoded_to_bytes", True)
                    or getattr(feature, "_encoder", None) is not None or any(d is None for d in feature.shape)):
                return None
            dtype = np.dtype(feature.np_dtype)
            field = ("bytes_list" if dtype.kind in "OSU" else "float_list" if dtype.kind == "f"
                     else "int64_list" if dtype.kind in "iub" else None)
            if field is None:
                return None
            specs[name] = (field, dtype, tuple(feature.shape))
        if not specs:
            return None
        parser = cls(raw, specs)
        try:
            same = _same_record(parser[0], source[0])
        except Exception:  # noqa: BLE001 - any surprise in the stored format: keep TFDS's reading
            return None
        return parser if same else None

    def parse(self, serialized: bytes) -> dict:
        """One record from its serialized ``tf.train.Example``."""
        from tensorflow_datasets.proto import tf_example_pb2

        feature = tf_example_pb2.Example.FromString(serialized).features.feature
        out = {}
        for name, (field, dtype, shape) in self._specs.items():
            values = getattr(feature[name], field).value
            if shape:
                out[name] = np.array(values, dtype).reshape(shape)
            elif dtype.kind == "O":
                out[name] = values[0]
            elif dtype.kind in "iu" and dtype.itemsize == 8:
                out[name] = int(values[0])  # as stored: no narrowing to round or wrap
            else:  # narrowed to the declared dtype (int32, float32, bool) as TFDS does
                out[name] = dtype.type(values[0]).item()
        return out

    def __len__(self) -> int:
        return len(self._raw)

    def __getitem__(self, i):
        return self.parse(self._raw[int(i)])

    def __getitems__(self, indices):
        return [self.parse(r) for r in self._raw.__getitems__([int(i) for i in indices])]


def _same_record(a: dict, b: dict) -> bool:
    """Whether two records have the same keys, value types and values."""
    return a.keys() == b.keys() and all(
        type(a[k]) is type(b[k]) and (np.array_equal(a[k], b[k]) and a[k].dtype == b[k].dtype
                                      if isinstance(a[k], np.ndarray) else a[k] == b[k]) for k in a)


class ReidSource:
    """Random-access records of one split: ``len``, ``[i]`` (a dict of numpy values), ``pids``, ``camids``.

    Wraps the TFDS ArrayRecord data source; ``pids`` / ``camids`` come from the dataset's metadata
    (no image is read). Also provides ``__getitems__`` for batched reads (grain uses it). Records are parsed
    by :class:`RecordParser` where it applies (the same values as TFDS's reading, several times faster).
    """

    def __init__(self, source, *, split: str, pids=None, camids=None, ignore_pids=None, fast: bool = True):
        self._source = source
        self._reader = (RecordParser.for_source(source) if fast else None) or source
        self.split = split
        # pids that are never training classes (junk, distractors); dataset-specific (pid 0 is real on MSMT17)
        self.ignore_pids = (-1, 0) if ignore_pids is None else tuple(int(p) for p in ignore_pids)
        self._pids = None if pids is None else np.asarray(pids, np.int32)
        self._camids = None if camids is None else np.asarray(camids, np.int32)

    def __len__(self) -> int:
        return len(self._reader)

    def __getitem__(self, i):
        return self._reader[i]

    def __getstate__(self):
        """What a worker process needs: with a :class:`RecordParser`, not the TFDS source (whose unpickling
        re-registers the builder, which fails for a builder's own named configs such as ``tiny``)."""
        state = dict(self.__dict__)
        if isinstance(self._reader, RecordParser):
            state["_source"] = None
        return state

    def __getitems__(self, indices):
        get = getattr(self._reader, "__getitems__", None)
        return list(get(indices)) if get is not None else [self._reader[i] for i in indices]

    def _scan(self):
        recs = [self[i] for i in range(len(self))]
        self._pids = np.array([r["pid"] for r in recs], np.int32)
        self._camids = np.array([r["camid"] for r in recs], np.int32)

    @property
    def pids(self) -> np.ndarray:
        if self._pids is None:
            self._scan()
        return self._pids

    @property
    def camids(self) -> np.ndarray:
        if self._camids is None:
            self._scan()
        return self._camids

    def __repr__(self):
        return f"ReidSource(split={self.split!r}, len={len(self)})"


def dataset_info(builder) -> DatasetInfo:
    """The jhash :class:`DatasetInfo` of a prepared builder (from its saved metadata)."""
    md = builder.info.metadata or {}
    num_classes = int(md.get("num_classes", 0))
    if num_classes <= 0:
        raise DatasetError(
            f"{builder.name}/{builder.builder_config.name}: the prepared dataset has no training "
            f"identities (train split: {md.get('splits', {}).get('train', {}).get('num_examples', 0)} images); "
            "a train split is needed to size the classifier"
        )
    names = tuple(md.get("attribute_names", ()))
    return DatasetInfo(
        name=builder.name,
        num_classes=num_classes,
        image_size=tuple(int(x) for x in md.get("image_size", (256, 128))),
        protocol=str(md.get("protocol", "market")),
        num_attributes=len(names),
        attribute_names=names,
        num_models=int(md.get("num_models", 0)),
        num_colors=int(md.get("num_colors", 0)),
        num_train_images=int(md.get("num_train_images", 0)),
    )


def load(name: str, split: str, *, data_dir=None, manual_dir=None, config=None, progress: bool = True
         ) -> tuple[ReidSource, Any]:
    """``(source, info)`` for ``split`` of dataset ``name``, preparing (or rebuilding) the dataset first if
    needed (:func:`prepare`)."""
    builder = prepare(name, data_dir=data_dir, manual_dir=manual_dir, config=config, progress=progress)
    splits = builder.info.splits
    if split not in splits:
        raise DatasetError(
            f"{name}/{builder.builder_config.name} has no split {split!r}; splits: {', '.join(sorted(splits))}"
        )
    md = (builder.info.metadata or {}).get("splits", {}).get(split, {})
    src = builder.as_data_source(split=split)
    source = ReidSource(
        src,
        split=split,
        pids=md.get("pids"),
        camids=md.get("camids"),
        ignore_pids=(builder.info.metadata or {}).get("ignore_pids"),
    )
    return source, dataset_info(builder)
