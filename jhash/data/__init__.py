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

import importlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from jhash.data.info import DatasetInfo

# name -> "module:Class"; modules are imported on first use.
BUILDERS: dict[str, str] = {
    "market1501": "jhash.data.market1501:Market1501",
    "dukemtmc_reid": "jhash.data.dukemtmc_reid:DukemtmcReid",
    "cuhk03_np": "jhash.data.cuhk03_np:Cuhk03Np",
    "msmt17": "jhash.data.msmt17:Msmt17",
    "veri776": "jhash.data.veri776:Veri776",
    "vehicleid": "jhash.data.vehicleid:Vehicleid",
    "reid_folder": "jhash.data.reid_folder:ReidFolder",
    "synthetic_reid": "jhash.data.synthetic:SyntheticReid",
}

__all__ = ["BUILDERS", "DatasetInfo", "ReidSource", "available", "builder_class", "dataset_info", "load", "prepare"]


def available() -> list[str]:
    """Registered dataset names."""
    return sorted(BUILDERS)


def builder_class(name: str) -> type:
    """The builder class registered as ``name``; ``ValueError`` listing the valid names otherwise."""
    if name not in BUILDERS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(available())}")
    module, cls = BUILDERS[name].split(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        raise ValueError(f"dataset {name!r} is registered but its module {module} is not available") from e
    try:
        return getattr(mod, cls)
    except AttributeError as e:
        raise ValueError(f"dataset {name!r}: module {module} has no builder class {cls}") from e


def _builder(name, *, data_dir, config=None, **kwargs):
    from jhash.data.common import make_config

    cls = builder_class(name)
    data_dir = os.fspath(Path(os.fspath(data_dir)).expanduser())
    return cls(data_dir=data_dir, config=make_config(cls, config), file_format="array_record", **kwargs)


def prepare(name: str, *, data_dir, manual_dir=None, config=None, **kwargs):
    """Build the dataset into ``data_dir`` unless already prepared; return the TFDS builder.

    ``manual_dir`` holds the official archive or its extracted folder (see each builder's
    ``MANUAL_DOWNLOAD_INSTRUCTIONS``); by TFDS's default it is ``<data_dir>/downloads/manual``.
    Extra keyword arguments go to the builder (e.g. ``skip_corrupt=True``).
    A failed preparation leaves nothing that loads as prepared (TFDS writes into an
    ``incomplete.*`` folder and renames it at the end).
    """
    import tensorflow_datasets as tfds

    builder = _builder(name, data_dir=data_dir, config=config, **kwargs)
    if not _is_prepared(builder):
        dl_config = tfds.download.DownloadConfig(
            manual_dir=None if manual_dir is None else os.fspath(Path(os.fspath(manual_dir)).expanduser())
        )
        builder.download_and_prepare(download_config=dl_config)
    return builder


def _is_prepared(builder) -> bool:
    # builder.is_prepared() logs a warning for every folder not yet built: check the file TFDS writes last.
    return (Path(os.fspath(builder.data_path)) / "dataset_info.json").is_file()


class ReidSource:
    """Random-access records of one split: ``len``, ``[i]`` (a dict of numpy values), ``pids``, ``camids``.

    Wraps the TFDS ArrayRecord data source; ``pids`` / ``camids`` come from the dataset's metadata
    (no image is read). Also provides ``__getitems__`` for batched reads (grain uses it).
    """

    def __init__(self, source, *, split: str, pids=None, camids=None, ignore_pids=None):
        self._source = source
        self.split = split
        # pids that are never training classes (junk, distractors); dataset-specific (pid 0 is real on MSMT17)
        self.ignore_pids = (-1, 0) if ignore_pids is None else tuple(int(p) for p in ignore_pids)
        self._pids = None if pids is None else np.asarray(pids, np.int32)
        self._camids = None if camids is None else np.asarray(camids, np.int32)

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, i):
        return self._source[i]

    def __getitems__(self, indices):
        get = getattr(self._source, "__getitems__", None)
        return list(get(indices)) if get is not None else [self._source[i] for i in indices]

    def _scan(self):
        recs = [self._source[i] for i in range(len(self._source))]
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
        raise ValueError(
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


def load(name: str, split: str, *, data_dir, manual_dir=None, config=None) -> tuple[ReidSource, Any]:
    """``(source, info)`` for ``split`` of dataset ``name``, preparing the dataset first if needed."""
    builder = prepare(name, data_dir=data_dir, manual_dir=manual_dir, config=config)
    splits = builder.info.splits
    if split not in splits:
        raise ValueError(
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
