"""``reid_folder``: your own images, as a folder per split or as CSV files.

**Folders** (the default)::

    <manual_dir>/train/0001_c1_0001.jpg      pid and camid parsed from each name by ``pattern``
    <manual_dir>/query/...                   sub-folders are searched too (``recursive=True``)
    <manual_dir>/gallery/...

``pattern`` is a Python regex with named groups ``pid`` and ``camid`` (both integers), applied with
``re.search`` to the file name (``match_on='name'``) or to the path relative to the split folder
(``match_on='relpath'``, e.g. ``r"^(?P<pid>\\d+)/c(?P<camid>\\d+)_"`` for one folder per identity).
Default: ``^(?P<pid>-?\\d+)(?:_c|-c?|_)(?P<camid>\\d+)``: the person id, then the camera after ``_c``, ``-``,
``-c`` or ``_``; it reads the Market-1501 convention (``0001_c1_0001.jpg`` -> pid 1, camera 1) and
``<pid>-<cam>-<n>.jpg`` (``12-3-7.jpg`` -> pid 12, camera 3; ``-1-2-1.jpg`` -> pid -1, junk).
A name that does not match is an error naming the file, the pattern and a valid example (the
``example`` you configured, else the first name that matched); ``skip_unmatched=True`` skips such
files with a warning instead.

**CSV files**: ``<manual_dir>/train.csv``, ``query.csv``, ``gallery.csv`` with a header row::

    path,pid,camid,male,backpack,model,color
    images/a.jpg,1,1,1,0,3,2

``path`` is relative to the CSV file's folder (or absolute); ``pid``/``camid`` integers; the optional
columns ``model`` and ``color`` are categorical labels (-1 unknown); every other column is a binary
attribute (0/1, -1 unknown), stored in the ``attributes`` feature in column order (names in the
metadata and in ``info.attribute_names``). ``source='auto'`` (default) uses the CSV files when any
exists, else the folders.

**Splits**: ``splits`` maps split names to folder names (CSV: file stems), default
``{"train": "train", "query": "query", "gallery": "gallery"}``; every mapped folder/CSV must exist (a
missing one is an error naming it), and the protocol's splits (train, query, gallery) must be mapped. A
``val`` split of held-out training identities comes from ``val_fraction`` (or map a folder to ``val``).

**Pids**: ``ignore_pids`` (default ``(-1,)``) are never training classes (junk); pid 0 is an
ordinary identity here (unlike Market-1501). ``protocol`` and ``image_size`` (height, width) are
passed to :class:`jhash.data.info.DatasetInfo`.

Configs are given as a dict, e.g. ``load("reid_folder", "train", data_dir=..., manual_dir=...,
config={"pattern": r"^(?P<pid>\\d+)-(?P<camid>\\d+)", "example": "12-3.jpg"})``; each distinct set of
options is stored in its own folder under ``data_dir`` (the name is derived from the options). The
prepared dataset records a fingerprint of the files it was built from: after adding, removing or
changing images (or pointing ``manual_dir`` elsewhere) the next ``prepare``/``load`` rebuilds it.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import re
from collections.abc import Mapping
from pathlib import Path

from jhash.data import common
from jhash.data.common import Listing, ReidBuilder, ReidConfig

log = logging.getLogger(__name__)

DEFAULT_PATTERN = r"^(?P<pid>-?\d+)(?:_c|-c?|_)(?P<camid>\d+)"
DEFAULT_SPLITS = {"train": "train", "query": "query", "gallery": "gallery"}
CATEGORICAL = ("model", "color")
REQUIRED_COLUMNS = ("path", "pid", "camid")


@dataclasses.dataclass(eq=False)
class ReidFolderConfig(ReidConfig):
    """Options of :class:`ReidFolder` (see the module docstring)."""

    source: str = "auto"  # 'auto' | 'folders' | 'csv'
    pattern: str = DEFAULT_PATTERN
    example: str = ""  # a valid file name, shown in errors (default: the first name that matched)
    match_on: str = "name"  # 'name' | 'relpath'
    recursive: bool = True
    skip_unmatched: bool = False
    splits: Mapping[str, str] = dataclasses.field(default_factory=lambda: dict(DEFAULT_SPLITS))
    ignore_pids: tuple[int, ...] = (-1,)
    protocol: str = "market"
    image_size: tuple[int, int] = (256, 128)


def experiment_config(c, image_size=(256, 128), val_fraction: float = 0.1):
    """Point the experiment config ``c`` (an ``ml_collections.ConfigDict``) at your own images: the dataset part
    every ``configs/reid_folder/*.py`` shares. Sets ``dataset.name='reid_folder'``, ``dataset.config='default'``,
    ``dataset.options`` with every builder option a user may change from the command line
    (``--config.dataset.options.<name>=<value>``: pattern, example, match_on, splits.<split>, val_fraction,
    skip_unmatched; documented above), ``dataset.val_split='val'`` (``val_fraction`` of the training identities,
    held out from training), ``input.image_size`` and the default training augmentation. Returns ``c``."""
    import ml_collections

    if "config" in c.dataset:
        del c.dataset["config"]  # a config may have made it a dict
    c.dataset.name = "reid_folder"
    c.dataset.config = "default"
    c.dataset.options = ml_collections.ConfigDict(dict(
        pattern=DEFAULT_PATTERN,
        example="",
        match_on="name",
        splits=dict(DEFAULT_SPLITS),
        val_fraction=float(val_fraction),
        skip_unmatched=False,
    ))
    c.dataset.val_split = "val"
    c.input.image_size = tuple(image_size)
    c.input.augment = None  # jhash.data.augment.AugmentConfig's defaults
    return c


class ReidFolder(ReidBuilder, skip_registration=True):
    """A user's own ReID images: folders with a filename rule, or CSV files."""

    name = "reid_folder"
    BUILDER_CONFIGS = [ReidFolderConfig(name="default", description="Folders train/, query/, gallery/ or CSV files.")]
    VARIABLE_ATTRIBUTES = True
    HAS_MODEL = True
    HAS_COLOR = True
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Put your images in manual_dir, one folder per split, with the identity and camera in each name:

        <manual_dir>/train/0001_c1_0001.jpg     (or 1-1-1.jpg: <pid>-<camera>-<n>; the default pattern
        <manual_dir>/query/0100_c2_0001.jpg      is ^(?P<pid>-?\\d+)(?:_c|-c?|_)(?P<camid>\\d+))
        <manual_dir>/gallery/0100_c1_0002.jpg

    or describe them in CSV files <manual_dir>/{train,query,gallery}.csv with a header
    path,pid,camid[,attribute columns...][,model][,color] (paths relative to the CSV file).
    Options (pattern, example, match_on, splits, ...): --option KEY=VALUE here, --config.dataset.options.KEY=VALUE
    for train.py; see jhash/data/reid_folder.py.
    Then: python -m jhash.data prepare reid_folder --manual_dir <manual_dir>
    """

    # The constants the base class reads come from the config.
    @property
    def IGNORE_PIDS(self):  # noqa: N802
        return tuple(int(p) for p in self.builder_config.ignore_pids)

    @property
    def PROTOCOL(self):  # noqa: N802
        return self.builder_config.protocol

    @property
    def IMAGE_SIZE(self):  # noqa: N802
        return tuple(int(x) for x in self.builder_config.image_size)

    # ---- listing ------------------------------------------------------------------------------

    def _list_records(self, dl_manager):
        cfg = self.builder_config
        root = common.manual_dir_of(dl_manager).expanduser()
        instructions = self.MANUAL_DOWNLOAD_INSTRUCTIONS
        if not root.is_dir() or not any(root.iterdir()):
            state = "does not exist" if not root.exists() else ("is not a folder" if not root.is_dir() else "is empty")
            raise common.ManualDirError(f"{self.name}: the manual_dir {root} {state}.\n\n{common.how_to(instructions)}")
        if cfg.source not in ("auto", "folders", "csv"):
            raise common.DatasetError(f"{self.name}: source must be 'auto', 'folders' or 'csv', got {cfg.source!r}")
        if cfg.match_on not in ("name", "relpath"):
            raise common.DatasetError(f"{self.name}: match_on must be 'name' or 'relpath', got {cfg.match_on!r}")
        csvs = {s: root / f"{f}.csv" for s, f in cfg.splits.items()}
        use_csv = cfg.source == "csv" or (cfg.source == "auto" and any(p.is_file() for p in csvs.values()))
        if use_csv:
            found = {s: p for s, p in csvs.items() if p.is_file()}
            what = ", ".join(str(p) for p in csvs.values())
        else:
            found = {s: root / f for s, f in cfg.splits.items() if (root / f).is_dir()}
            what = ", ".join(str(root / f) + "/" for f in cfg.splits.values())
        if not found:
            raise common.ManualDirError(
                f"{self.name}: none of the split {'CSV files' if use_csv else 'folders'} exists: {what}.\n"
                f"{root} holds: {common._preview(sorted(p.name for p in root.iterdir()))}\n\n"
                f"{common.how_to(instructions)}"
            )
        missing = sorted(set(cfg.splits) - set(found))
        if missing:
            paths = ", ".join(str(csvs[s]) if use_csv else f"{root / cfg.splits[s]}/" for s in missing)
            raise common.ManualDirError(
                f"{self.name}: no {'CSV file' if use_csv else 'folder'} for the {', '.join(missing)} split(s): {paths} "
                f"not found. {root} holds: {common._preview(sorted(p.name for p in root.iterdir()))}. "
                "Create it, or map the split to another folder with the 'splits' option"
            )
        if use_csv:
            return self._from_csv(found)
        return self._from_folders(found)

    def _pattern(self) -> re.Pattern:
        cfg = self.builder_config
        try:
            rx = re.compile(cfg.pattern)
        except re.error as e:
            raise common.DatasetError(f"{self.name}: pattern {cfg.pattern!r} is not a valid regular expression: {e}") from e
        missing = [g for g in ("pid", "camid") if g not in rx.groupindex]
        if missing:
            raise common.DatasetError(
                f"{self.name}: pattern {cfg.pattern!r} needs the named groups (?P<pid>...) and (?P<camid>...); "
                f"missing: {', '.join(missing)}. Example: {DEFAULT_PATTERN!r} reads '0001_c1_0001.jpg' and '12-3-1.jpg'. "
                "Images without a camera: use a CSV with a constant camid column"
            )
        if cfg.example and rx.search(cfg.example) is None:
            raise common.DatasetError(f"{self.name}: the configured example {cfg.example!r} does not match pattern {cfg.pattern!r}")
        return rx

    def _from_folders(self, found: dict[str, Path]) -> Listing:
        cfg = self.builder_config
        rx = self._pattern()
        splits, unmatched = {}, []
        example = cfg.example
        for split, folder in found.items():
            tree = common.FolderTree(folder)
            parsed, bad = [], []
            for rel in tree.images(recursive=cfg.recursive):
                key = rel if cfg.match_on == "relpath" else rel.rsplit("/", 1)[-1]
                m = rx.search(key)
                if m is None:
                    bad.append(rel)
                    continue
                example = example or key
                try:
                    pid, camid = int(m.group("pid")), int(m.group("camid"))
                except (TypeError, ValueError) as e:
                    raise common.FilenameError(
                        f"{tree.locate(rel)}: the pattern {cfg.pattern!r} matched {key!r} but pid/camid "
                        f"{m.group('pid')!r}/{m.group('camid')!r} are not integers"
                    ) from e
                r = tree.record(rel, pid, camid)
                r.path = f"{cfg.splits[split].strip('/')}/{rel}"
                parsed.append(r)
            if bad and not cfg.skip_unmatched:
                first = bad[0] if cfg.match_on == "relpath" else bad[0].rsplit("/", 1)[-1]
                raise common.FilenameError(
                    f"{self.name}: {len(bad)} image(s) in {folder} do not match the naming pattern "
                    f"{cfg.pattern!r} (applied to the {'path relative to the split folder' if cfg.match_on == 'relpath' else 'file name'}), "
                    f"first: {tree.locate(bad[0])} ({first!r}). "
                    + (f"Example of a valid name: {example!r}. " if example else
                       "Example of a valid name for the default pattern: '0001_c1_0001.jpg'. ")
                    + "Set 'pattern' (named groups pid and camid) or skip_unmatched=True."
                )
            unmatched += [str(folder / b) for b in bad]
            if not parsed:
                raise common.ManualDirError(
                    f"{self.name}: no usable image in {folder} (split {split!r}; extensions {', '.join(common.IMAGE_EXTENSIONS)})"
                )
            splits[split] = parsed
        if unmatched:
            log.warning("%s: skipped %d file(s) not matching %r, e.g. %s", self.name, len(unmatched), cfg.pattern, unmatched[0])
        return Listing(splits=splits, attribute_names=(), num_models=0, num_colors=0,
                       extra={"unmatched_skipped": len(unmatched)})

    def _from_csv(self, found: dict[str, Path]) -> Listing:
        header_ref, splits = None, {}
        models, colors = set(), set()
        for split, path in found.items():
            text = path.read_text(encoding="utf-8-sig")
            rows = list(csv.reader(io.StringIO(text)))
            rows = [r for r in rows if any(c.strip() for c in r)]
            if not rows:
                raise common.DatasetError(f"{path} is empty: expected a header 'path,pid,camid[,...]' and one row per image")
            header = [h.strip() for h in rows[0]]
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise common.DatasetError(
                    f"{path}: the header {','.join(header)!r} lacks {', '.join(missing)}; "
                    "expected a first line like 'path,pid,camid' (+ attribute columns, model, color)"
                )
            if len(set(header)) != len(header):
                raise common.DatasetError(f"{path}: duplicate column names in the header {header}")
            extra = [h for h in header if h not in REQUIRED_COLUMNS]
            if header_ref is None:
                header_ref = (path, extra)
            elif sorted(extra) != sorted(header_ref[1]):
                raise common.DatasetError(
                    f"{path}: columns {extra} differ from {header_ref[0]}'s {header_ref[1]}; all CSV files need the same columns"
                )
            attr_cols = [h for h in header_ref[1] if h not in CATEGORICAL]
            col = {h: i for i, h in enumerate(header)}
            recs = []
            for no, row in enumerate(rows[1:], 2):
                if len(row) != len(header):
                    raise common.DatasetError(f"{path}, line {no}: {len(row)} fields, the header has {len(header)}: {row}")

                def integer(name, lo=None, allowed=None):
                    v = row[col[name]].strip()
                    try:
                        x = int(v)
                    except ValueError:
                        raise common.DatasetError(f"{path}, line {no}: {name} {v!r} is not an integer") from None
                    if allowed is not None and x not in allowed:
                        raise common.DatasetError(f"{path}, line {no}: {name} must be one of {allowed}, got {x}")
                    if lo is not None and x < lo:
                        raise common.DatasetError(f"{path}, line {no}: {name} must be >= {lo}, got {x}")
                    return x

                rel = row[col["path"]].strip()
                if not rel:
                    raise common.DatasetError(f"{path}, line {no}: empty path")
                file = Path(rel) if Path(rel).is_absolute() else path.parent / rel
                if not file.is_file():
                    raise common.DatasetError(f"{path}, line {no}: image {rel!r} not found (looked for {file})")
                attrs = [integer(a, allowed=(-1, 0, 1)) for a in attr_cols]
                model = integer("model", lo=-1) if "model" in col else -1
                color = integer("color", lo=-1) if "color" in col else -1
                models.add(model)
                colors.add(color)
                recs.append(common.Record(path=rel, pid=integer("pid"), camid=integer("camid"), source=file,
                                          attributes=attrs, model=model, color=color))
            if not recs:
                raise common.DatasetError(f"{path}: a header but no image rows")
            splits[split] = sorted(recs, key=lambda r: r.path)
        attr_names = tuple(h for h in header_ref[1] if h not in CATEGORICAL)
        return Listing(
            splits=splits,
            attribute_names=attr_names,
            num_models=max(models) + 1 if "model" in header_ref[1] else 0,
            num_colors=max(colors) + 1 if "color" in header_ref[1] else 0,
        )
