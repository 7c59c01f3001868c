"""Machinery shared by every jhash TFDS builder: features, records, trees, checks, metadata.

A builder lists its images as :class:`Record` s per split; :class:`ReidBuilder` does the rest —
optional ``val`` hold-out of training identities, reading and validating each image, writing
ArrayRecord files in a fixed, documented order, and saving the facts the rest of jhash needs
(``num_classes``, per-record ``pid``/``camid`` arrays, attribute names, ...) in the dataset's
``metadata.json``.  No TensorFlow is needed: images are stored as their original encoded bytes
(JPEG/PNG) and decoded with Pillow by the input pipeline.

Example layout of one stored example (what ``source[i]`` returns, all numpy values)::

    image       bytes (object scalar)  the encoded JPEG/PNG exactly as found on disk
    pid         int32                  identity (-1 junk, 0 distractor on Market-style sets)
    camid       int32                  camera number as in the file name (1-based on most sets)
    path        bytes                  path of the image relative to the dataset root
    attributes  int32 [A]              0/1 per attribute, -1 unknown (only builders with attributes)
    model       int32                  vehicle model/type class, -1 unknown (vehicle builders)
    color       int32                  colour class, -1 unknown (vehicle builders)

Order: within a split, examples are stored in the order the builder lists them, which is sorted by
``path`` for every builder here (TFDS ``disable_shuffling=True``); ``source[i]`` is the i-th path.
"""

from __future__ import annotations

import abc
import dataclasses
import io
import logging
import os
import re
import textwrap
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Union

import numpy as np

import tensorflow_datasets as tfds

# The errors live in jhash.data.errors (importable without TFDS); re-exported here for the builders.
from jhash.data.errors import CorruptImageError, DatasetError, FilenameError, ManualDirError  # noqa: F401

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
METADATA_FORMAT = 1
MAX_LISTED_SKIPS = 100


# --------------------------------------------------------------------------------------------------
# Features.


def reid_features(
    num_attributes: int | None = 0, *, with_model: bool = False, with_color: bool = False
) -> tfds.features.FeaturesDict:
    """The feature spec of every jhash ReID dataset (see the module docstring).

    ``num_attributes``: width of the ``attributes`` feature; 0 leaves it out, ``None`` makes it
    variable-length (a user's CSV decides the width; the names are in the metadata).
    """
    spec: dict[str, Any] = {
        "image": tfds.features.Tensor(shape=(), dtype=np.object_),
        "pid": tfds.features.Scalar(dtype=np.int32),
        "camid": tfds.features.Scalar(dtype=np.int32),
        "path": tfds.features.Text(),
    }
    if num_attributes is None or num_attributes > 0:
        spec["attributes"] = tfds.features.Tensor(shape=(num_attributes,), dtype=np.int32)
    if with_model:
        spec["model"] = tfds.features.Scalar(dtype=np.int32)
    if with_color:
        spec["color"] = tfds.features.Scalar(dtype=np.int32)
    return tfds.features.FeaturesDict(spec)


# --------------------------------------------------------------------------------------------------
# Records.

ImageSource = Union[str, os.PathLike, bytes, Callable[[], bytes]]


@dataclasses.dataclass
class Record:
    """One image of a split, before it is read.

    ``source`` says where the encoded bytes come from: a filesystem path, the bytes themselves, or a
    zero-argument callable returning them (a zip member, a lazily rendered synthetic image).
    ``path`` is what gets stored (relative to the dataset root, posix separators) and shown in errors
    next to ``where`` (a human-readable location; defaults to ``path``).
    """

    path: str
    pid: int
    camid: int
    source: ImageSource
    attributes: Sequence[int] | np.ndarray | None = None
    model: int = -1
    color: int = -1
    where: str | None = None

    def read(self) -> bytes:
        src = self.source
        if isinstance(src, bytes):
            return src
        if callable(src):
            return src()
        return read_image_file(Path(src))

    @property
    def location(self) -> str:
        if self.where:
            return self.where
        if isinstance(self.source, (str, os.PathLike)):
            return str(self.source)
        return self.path


@dataclasses.dataclass
class Listing:
    """What a builder's :meth:`ReidBuilder._list_records` returns.

    ``attribute_names``: the attributes actually annotated (``()`` when the annotation file is
    absent; ``None`` means the builder's ``ATTRIBUTE_NAMES``). ``num_models`` / ``num_colors``:
    class counts actually found (``None`` means the builder's class constants).
    """

    splits: dict[str, list[Record]]
    attribute_names: tuple[str, ...] | None = None
    num_models: int | None = None
    num_colors: int | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def read_image_file(path: Path) -> bytes:
    """The bytes of the image file ``path``; :class:`CorruptImageError` naming a broken symbolic link, a folder
    or another non-regular entry (a pipe, a socket) that is named like an image."""
    if not path.is_file():
        if path.is_symlink() and not path.exists():
            raise CorruptImageError(f"{path} is a broken symbolic link (it points to {os.readlink(path)!r}, which does not exist)")
        if path.is_dir():
            raise CorruptImageError(f"{path} is a folder named like an image, not an image file")
        if not path.exists():
            raise CorruptImageError(f"{path} disappeared while the dataset was being prepared")
        raise CorruptImageError(f"{path} is not a regular file (a pipe, socket or device named like an image)")
    return path.read_bytes()


# --------------------------------------------------------------------------------------------------
# Trees: a dataset root that is either a folder or a folder inside a zip archive.


class Tree(abc.ABC):
    """Read-only view of a dataset root addressed with posix relative paths."""

    @abc.abstractmethod
    def exists(self, rel: str) -> bool: ...

    @abc.abstractmethod
    def is_dir(self, rel: str) -> bool: ...

    @abc.abstractmethod
    def files(self, rel: str = "", *, recursive: bool = False) -> list[str]:
        """Sorted relative paths of the files under ``rel`` (only direct children unless recursive)."""

    @abc.abstractmethod
    def read_bytes(self, rel: str) -> bytes: ...

    @abc.abstractmethod
    def locate(self, rel: str = "") -> str:
        """Human-readable location of ``rel`` for messages."""

    def source(self, rel: str) -> ImageSource:
        """What to put in :attr:`Record.source` for the file ``rel``."""
        return lambda: self.read_bytes(rel)

    def images(self, rel: str = "", *, recursive: bool = False) -> list[str]:
        """Sorted relative paths of the image files (by extension) under ``rel``."""
        return [f for f in self.files(rel, recursive=recursive) if f.lower().endswith(IMAGE_EXTENSIONS)]

    def read_text(self, rel: str, encoding: str = "utf-8") -> str:
        return self.read_bytes(rel).decode(encoding)

    def record(self, rel: str, pid: int, camid: int, **kw) -> Record:
        return Record(path=rel, pid=pid, camid=camid, source=self.source(rel), where=self.locate(rel), **kw)

    def require(self, rel: str, what: str = "") -> None:
        """Raise :class:`ManualDirError` naming ``rel`` when it is absent."""
        if not self.exists(rel):
            raise ManualDirError(
                f"{self.locate(rel)} not found{(' (' + what + ')') if what else ''}. "
                f"The dataset root {self.locate()} holds: {_preview(self.children())}"
            )

    @abc.abstractmethod
    def children(self) -> list[str]:
        """Names directly inside the root (for messages)."""


class FolderTree(Tree):
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def _p(self, rel: str) -> Path:
        return self.root / rel if rel else self.root

    def exists(self, rel):
        return self._p(rel).exists()

    def is_dir(self, rel):
        return self._p(rel).is_dir()

    def files(self, rel="", *, recursive=False):
        base = self._p(rel)
        if not base.is_dir():
            return []
        it = base.rglob("*") if recursive else base.iterdir()
        out = [p.relative_to(self.root).as_posix() for p in it if p.is_file()]
        return sorted(out)

    def read_bytes(self, rel):
        return self._p(rel).read_bytes()

    def locate(self, rel=""):
        return str(self._p(rel))

    def source(self, rel):
        return self._p(rel)

    def images(self, rel="", *, recursive=False):
        """Every entry named like an image (by extension), also broken symbolic links and folders so named:
        reading those raises :class:`CorruptImageError` naming them (skipped only with ``skip_corrupt``)."""
        base = self._p(rel)
        if not base.is_dir():
            return []
        it = base.rglob("*") if recursive else base.iterdir()
        return sorted(p.relative_to(self.root).as_posix() for p in it if p.name.lower().endswith(IMAGE_EXTENSIONS))

    def children(self):
        return sorted(p.name for p in self.root.iterdir()) if self.root.is_dir() else []


@dataclasses.dataclass(frozen=True)
class ZipMember:
    """A file inside a zip archive, read on call (a :attr:`Record.source`); ``archive`` is the zip file."""

    tree: "ZipTree"
    name: str

    def __call__(self) -> bytes:
        return self.tree.read_bytes(self.name)

    @property
    def archive(self) -> Path:
        return self.tree.archive


class ZipTree(Tree):
    """A folder inside a zip archive (``prefix`` is the folder's path inside the archive)."""

    def __init__(self, archive: str | os.PathLike, prefix: str = ""):
        self.archive = Path(archive)
        self.prefix = prefix.strip("/")
        self._zip = zipfile.ZipFile(self.archive)
        self._names = [n for n in self._zip.namelist() if not n.endswith("/")]
        self._files = set(self._names)
        self._dirs = {""}
        for n in self._names:
            parts = PurePosixPath(n).parts
            self._dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))

    def _full(self, rel: str) -> str:
        return "/".join(p for p in (self.prefix, rel.strip("/")) if p)

    def exists(self, rel):
        full = self._full(rel)
        return full in self._dirs or full in self._files

    def is_dir(self, rel):
        return self._full(rel) in self._dirs

    def files(self, rel="", *, recursive=False):
        full = self._full(rel)
        start = full + "/" if full else ""
        k = len(self.prefix) + 1 if self.prefix else 0
        return sorted(n[k:] for n in self._names
                      if n.startswith(start) and (recursive or "/" not in n[len(start):]))

    def read_bytes(self, rel):
        return self._zip.read(self._full(rel))

    def source(self, rel):
        return ZipMember(self, rel)

    def locate(self, rel=""):
        full = self._full(rel)
        return f"{self.archive}:{full}" if full else str(self.archive)

    def children(self):
        start = self.prefix + "/" if self.prefix else ""
        return sorted({n[len(start):].split("/")[0] for n in self._names if n.startswith(start)})

    def roots(self, markers: Sequence[str], prefer: Sequence[str] = ()) -> list[str]:
        """Folders inside the archive that contain all ``markers``: those ending with one of
        ``prefer`` first (in that order), then the others by depth."""
        have = self._dirs | self._files
        found = [d for d in self._dirs if all("/".join(p for p in (d, m.strip("/")) if p) in have for m in markers)]

        def rank(d: str):
            pref = [i for i, f in enumerate(prefer) if d == f or d.endswith("/" + f)]
            return (min(pref) if pref else len(prefer), d.count("/"), d)

        return sorted(found, key=rank)


def how_to(instructions: str) -> str:
    """The 'How to prepare it' paragraph of an error message (dedented instructions)."""
    return f"How to prepare it:\n{textwrap.dedent(instructions).strip()}\n"


def _preview(names: Sequence[str], limit: int = 12) -> str:
    if not names:
        return "(nothing)"
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} entries)" if len(names) > limit else "")


def manual_dir_of(dl_manager, data_dir: str | os.PathLike | None = None) -> Path:
    """The manual_dir passed to ``download_and_prepare`` (TFDS's default when none was passed)."""
    md = getattr(dl_manager, "_manual_dir", None)
    if md is None:
        md = dl_manager.manual_dir  # raises TFDS's own message
    return Path(os.fspath(md))


def find_tree(
    manual_dir: str | os.PathLike,
    *,
    markers: Sequence[str],
    folders: Sequence[str] = (),
    archives: Sequence[str] = (),
    dataset: str,
    instructions: str,
) -> Tree:
    """Locate a dataset root in ``manual_dir``: the folder itself, a named subfolder, or a zip.

    ``markers`` are relative paths that all must exist in the root (e.g. ``bounding_box_train``).
    Search order: ``manual_dir`` itself, ``manual_dir/<folder>`` for each of ``folders``, then each
    of ``archives`` found in ``manual_dir`` (the root inside the archive is found by the markers).
    Raises :class:`ManualDirError` naming the path, what it holds, and the instructions.
    """
    md = Path(manual_dir).expanduser()

    def fail(problem: str) -> ManualDirError:
        return ManualDirError(f"{dataset}: {problem}\n\n{how_to(instructions)}")

    if not md.exists():
        raise fail(f"the manual_dir {md} does not exist.")
    if not md.is_dir():
        raise fail(f"the manual_dir {md} is not a folder.")
    entries = sorted(p.name for p in md.iterdir())
    if not entries:
        raise fail(f"the manual_dir {md} is empty.")

    def has_all(root: Path) -> bool:
        return all((root / m).exists() for m in markers)

    if has_all(md):
        return FolderTree(md)
    for f in folders:
        if has_all(md / f):
            return FolderTree(md / f)
    for a in archives:
        path = md / a
        if path.is_file():
            try:
                tree = ZipTree(path)
            except zipfile.BadZipFile as e:
                raise fail(f"{path} is not a readable zip archive ({e}); download it again.") from e
            roots = tree.roots(markers, prefer=folders)
            if roots:
                return ZipTree(path, roots[0])
            raise fail(f"the archive {path} does not contain {', '.join(markers)}.")
    looked = [str(md)] + [str(md / f) for f in folders] + [str(md / a) for a in archives]
    raise fail(
        f"the manual_dir {md} does not hold the expected layout: none of "
        f"{', '.join(looked)} contains {', '.join(markers)}.\n"
        f"{md} holds: {_preview(entries)}"
    )


# --------------------------------------------------------------------------------------------------
# Names, lists and images.


class FilenamePattern:
    """A naming rule: a regex with groups ``pid`` and ``camid`` (named or the first two groups).

    ``cameras``: optional inclusive range of valid camera numbers, checked by :meth:`parse`.

    >>> FilenamePattern(r"([-\\d]+)_c(\\d)", "0002_c1s1_000451_03.jpg").parse("0002_c1s1_000451_03.jpg")
    (2, 1)
    """

    def __init__(self, regex: str | re.Pattern, example: str, *, cameras: tuple[int, int] | None = None,
                 what: str = "image name"):
        self.regex = re.compile(regex) if isinstance(regex, str) else regex
        self.example = example
        self.cameras = cameras
        self.what = what
        if self.regex.search(example) is None:  # a programming error in the builder
            raise AssertionError(f"example {example!r} does not match its own pattern {self.regex.pattern!r}")

    def parse(self, name: str, where: str = "") -> tuple[int, int]:
        m = self.regex.search(name)
        if m is None:
            raise FilenameError(
                f"{self.what} {name!r}{(' in ' + where) if where else ''} does not match the naming "
                f"pattern {self.regex.pattern!r}. Example of a valid name: {self.example!r}."
            )
        g = m.groupdict()
        try:
            if "pid" in g:
                pid, camid = int(g["pid"]), int(g["camid"])
            else:
                pid, camid = int(m.group(1)), int(m.group(2))
        except (ValueError, IndexError, KeyError) as e:
            raise FilenameError(
                f"{self.what} {name!r}{(' in ' + where) if where else ''}: cannot read pid/camid as "
                f"integers with the pattern {self.regex.pattern!r} ({e}). Example: {self.example!r}."
            ) from e
        if self.cameras and not self.cameras[0] <= camid <= self.cameras[1]:
            lo, hi = self.cameras
            raise FilenameError(
                f"{self.what} {name!r}{(' in ' + where) if where else ''}: camera {camid} is outside {lo}..{hi} "
                f"(pattern {self.regex.pattern!r}, example of a valid name: {self.example!r})."
            )
        return pid, camid


def read_list_file(text: str, where: str, *, columns: int = 2, example: str = "") -> list[list[str]]:
    """Parse a whitespace-separated list file; blank lines are skipped, a short line is an error."""
    rows = []
    for no, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < columns:
            raise DatasetError(
                f"{where}, line {no}: expected {columns} whitespace-separated fields, got {line!r}."
                + (f" Example of a valid line: {example!r}." if example else "")
            )
        rows.append(parts)
    return rows


def check_image(data: bytes, where: str) -> None:
    """Decode ``data`` fully with Pillow; raise :class:`CorruptImageError` naming ``where``."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.width <= 0 or im.height <= 0:
                raise ValueError(f"empty image {im.size}")
    except Exception as e:  # Pillow raises many types (OSError, SyntaxError, ValueError, ...)
        raise CorruptImageError(f"cannot decode image {where}: {type(e).__name__}: {e}") from e


def pick_identities(pids: Iterable[int], fraction: float, seed: int) -> set[int]:
    """A deterministic subset of ``round(fraction * n)`` identities (at least 1 when fraction > 0)."""
    uniq = np.array(sorted(set(int(p) for p in pids)), dtype=np.int64)
    if fraction <= 0 or uniq.size == 0:
        return set()
    if not 0 < fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {fraction}")
    n = max(1, int(round(fraction * uniq.size)))
    n = min(n, uniq.size - 1) if uniq.size > 1 else 0
    rng = np.random.default_rng(seed)
    return set(int(p) for p in rng.permutation(uniq)[:n])


# --------------------------------------------------------------------------------------------------
# Source fingerprints: what a prepared dataset was built from.


def _stat_key(source: ImageSource, cache: dict) -> str:
    """``size:mtime_ns`` of the file an image is read from (for a source with an ``archive`` attribute, such as a
    :class:`ZipMember`, that file); '' for bytes and generated images (their content follows from the config)."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
    elif getattr(source, "archive", None) is not None:  # a zip member (ZipMember), an array in a .mat file
        path = Path(source.archive)
    else:
        return ""
    key = os.fspath(path)
    if key not in cache:
        try:
            st = path.stat()
        except OSError:  # a broken link or a vanished file: its own state is the link's
            try:
                st = path.lstat()
            except OSError:
                cache[key] = "missing"
                return cache[key]
        cache[key] = f"{st.st_size}:{st.st_mtime_ns}"
    return cache[key]


def config_fields(config: tfds.core.BuilderConfig) -> dict[str, Any]:
    """The fields of a builder config that decide the dataset's content (JSON-able; no description/notes)."""
    skip = {"description", "release_notes", "supported_versions", "tags", "version"}
    out = {}
    for f in dataclasses.fields(config):
        if f.name in skip:
            continue
        v = getattr(config, f.name)
        out[f.name] = dict(v) if isinstance(v, Mapping) else (list(v) if isinstance(v, (tuple, list)) else v)
    return out


def source_fingerprint(splits: Mapping[str, Sequence[Record]], options: Mapping[str, Any]) -> dict[str, Any]:
    """A digest of everything a preparation reads: per record its split, stored path, labels and the size and
    modification time of its file, plus the builder options. Equal digests mean the same dataset would be
    written again; any added, removed, renamed, relabelled, resized or touched file changes it."""
    import hashlib
    import json

    h = hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode())
    cache: dict[str, str] = {}
    num, total = 0, 0
    for split in sorted(splits):
        for r in splits[split]:
            stat = _stat_key(r.source, cache)
            attrs = "" if r.attributes is None else ",".join(str(int(a)) for a in np.asarray(r.attributes).ravel())
            h.update(f"{split}\t{r.path}\t{r.pid}\t{r.camid}\t{attrs}\t{r.model}\t{r.color}\t{stat}\n".encode())
            num += 1
            size = stat.split(":")[0]
            total += int(size) if size.isdigit() else 0
    return {"digest": h.hexdigest(), "num_images": num, "num_bytes": total}


class _ManualDirOnly:
    """The part of a TFDS download manager the jhash builders use: the manual_dir."""

    def __init__(self, manual_dir: str | os.PathLike):
        self._manual_dir = Path(manual_dir)
        self.manual_dir = self._manual_dir


# --------------------------------------------------------------------------------------------------
# The base builder.

# The splits each evaluation protocol needs besides ``train`` (see jhash.evaluator).
PROTOCOL_SPLITS: dict[str, tuple[str, ...]] = {
    "market": ("query", "gallery"),
    "cuhk03": ("query", "gallery"),
    "vehicleid": ("test",),
}


@dataclasses.dataclass(eq=False)
class ReidConfig(tfds.core.BuilderConfig):
    """Config of a jhash ReID builder.

    ``val_fraction``: fraction of *training identities* held out (all their images) as a ``val``
    split, chosen with ``numpy.random.default_rng(val_seed)`` over the sorted distinct training
    pids; 0 (the default for real datasets) means no ``val`` split.
    """

    val_fraction: float = 0.0
    val_seed: int = 0


class ReidBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base class: subclasses implement :meth:`_list_records` and set the class constants.

    Builder keyword argument ``skip_corrupt`` (default False): an undecodable image, a broken symbolic link or
    a folder named like an image raises :class:`CorruptImageError` naming the file; with ``skip_corrupt=True``
    it is skipped with a warning, and the count and names are saved in the metadata (``skipped``).

    ``progress`` (keyword argument, default None): ``progress(split, done, total)`` is called while a split is
    written (every image and once at the end).

    The splits the protocol needs (:data:`PROTOCOL_SPLITS`, plus ``train``) are checked before anything is
    written. The metadata's ``source`` records a :func:`source_fingerprint` of what was read (and the
    manual_dir), so :func:`jhash.data.prepare` can tell a changed source from the prepared one.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [ReidConfig(name="default")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = "(none)"

    PROTOCOL = "market"  # see jhash.metrics
    IMAGE_SIZE: tuple[int, int] = (256, 128)  # (height, width) the pipeline resizes to
    ATTRIBUTE_NAMES: tuple[str, ...] = ()  # width of the ``attributes`` feature (0: no feature)
    VARIABLE_ATTRIBUTES = False  # True: the width is decided when listing (Listing.attribute_names)
    HAS_MODEL = False
    HAS_COLOR = False
    NUM_MODELS = 0
    NUM_COLORS = 0
    IGNORE_PIDS: tuple[int, ...] = (-1, 0)  # never counted as training classes (junk, distractors)
    VALIDATE_IMAGES = True  # decode every image with Pillow while writing (False: trusted generated bytes)
    FINGERPRINT_SOURCE = True  # False: the content follows from the config alone (generated datasets)
    DESCRIPTION = ""
    HOMEPAGE = ""
    CITATION = ""

    def __init__(self, *, skip_corrupt: bool = False, progress: Callable[[str, int, int], None] | None = None,
                 **kwargs):
        self.skip_corrupt = bool(skip_corrupt)
        self.progress = progress
        super().__init__(**kwargs)

    # ---- to implement ----------------------------------------------------------------------------

    @abc.abstractmethod
    def _list_records(self, dl_manager) -> Listing | dict[str, list[Record]]:
        """All records per split (without ``val``; the base derives it from ``val_fraction``)."""

    # ---- TFDS hooks ------------------------------------------------------------------------------

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=self.DESCRIPTION or (self.__doc__ or "").strip().split("\n")[0],
            features=reid_features(
                None if self.VARIABLE_ATTRIBUTES else len(self.ATTRIBUTE_NAMES),
                with_model=self.HAS_MODEL,
                with_color=self.HAS_COLOR,
            ),
            homepage=self.HOMEPAGE or None,
            citation=self.CITATION or None,
            metadata=tfds.core.MetadataDict(),
            disable_shuffling=True,  # keep the listed (sorted-by-path) order
        )

    def _listing(self, dl_manager) -> Listing:
        listing = self._list_records(dl_manager)
        return listing if isinstance(listing, Listing) else Listing(splits=dict(listing))

    def source_options(self) -> dict[str, Any]:
        """What besides the listed files decides the prepared content: the builder, its version and config."""
        return {"builder": self.name, "version": str(self.VERSION), "config": config_fields(self.builder_config)}

    def source_state(self, manual_dir: str | os.PathLike) -> dict[str, Any] | None:
        """The fingerprint (:func:`source_fingerprint`) of what preparing from ``manual_dir`` would read now,
        with ``manual_dir``; None for a builder whose content follows from its config. Raises
        :class:`ManualDirError` when the source is not there."""
        if not self.FINGERPRINT_SOURCE:
            return None
        listing = self._listing(_ManualDirOnly(manual_dir))
        return {**source_fingerprint(listing.splits, self.source_options()), "manual_dir": os.fspath(manual_dir)}

    def _check_splits(self, splits: Mapping[str, Sequence[Record]]) -> None:
        needed = ("train", *PROTOCOL_SPLITS.get(self.PROTOCOL, ()))
        missing = [s for s in needed if not splits.get(s)]
        if missing:
            have = ", ".join(f"{k} ({len(v)} images)" for k, v in splits.items()) or "none"
            raise ManualDirError(
                f"{self.name}/{self.builder_config.name}: no {' and no '.join(missing)} split; the {self.PROTOCOL} "
                f"protocol needs {', '.join(needed)}. Splits found: {have}"
            )

    def _split_generators(self, dl_manager):
        listing = self._listing(dl_manager)
        splits = {k: list(v) for k, v in listing.splits.items()}
        self._check_splits(splits)
        cfg = self.builder_config
        source = None
        if self.FINGERPRINT_SOURCE:
            manual_dir = os.fspath(manual_dir_of(dl_manager).expanduser().resolve())
            source = {**source_fingerprint(splits, self.source_options()), "manual_dir": manual_dir,
                      "skip_corrupt": self.skip_corrupt}
        frac = float(getattr(cfg, "val_fraction", 0.0) or 0.0)
        if frac > 0:
            if "val" in splits:
                raise ValueError(f"{self.name}: config {cfg.name!r} already has a val split; set val_fraction=0")
            train = splits.get("train", [])
            held = pick_identities(
                (r.pid for r in train if r.pid not in self.IGNORE_PIDS), frac, getattr(cfg, "val_seed", 0)
            )
            splits["train"] = [r for r in train if r.pid not in held]
            splits["val"] = [r for r in train if r.pid in held]
        attr_names = self.ATTRIBUTE_NAMES if listing.attribute_names is None else tuple(listing.attribute_names)
        md = self.info.metadata
        md.update(
            format=METADATA_FORMAT,
            protocol=self.PROTOCOL,
            image_size=list(self.IMAGE_SIZE),
            attribute_names=list(attr_names),
            num_models=int(self.NUM_MODELS if listing.num_models is None else listing.num_models),
            num_colors=int(self.NUM_COLORS if listing.num_colors is None else listing.num_colors),
            ignore_pids=list(self.IGNORE_PIDS),
            val_fraction=frac,
            splits={},
            skipped={"count": 0, "files": []},
            source=source,
            **listing.extra,
        )
        width = len(attr_names) if self.VARIABLE_ATTRIBUTES else len(self.ATTRIBUTE_NAMES)
        return {name: self._generate_examples(name, recs, width) for name, recs in splits.items()}

    def _generate_examples(self, split: str, records: list[Record], width: int) -> Iterator[tuple[int, dict]]:
        has_attributes = self.VARIABLE_ATTRIBUTES or width > 0
        unknown = np.full((width,), -1, np.int32)
        pids, camids = [], []
        skipped = self.info.metadata["skipped"]
        total = len(records)
        for key, r in enumerate(records):
            if self.progress is not None:
                self.progress(split, key, total)
            try:
                data = r.read()
                if self.VALIDATE_IMAGES:
                    check_image(data, r.location)
            except (CorruptImageError, OSError) as e:
                if not isinstance(e, CorruptImageError):
                    e = CorruptImageError(f"cannot read image {r.location}: {e}")
                if not self.skip_corrupt:
                    raise CorruptImageError(f"{e} (--skip_corrupt, or skip_corrupt=True, skips such files)") from e
                log.warning("%s (skipped: skip_corrupt=True)", e)
                skipped["count"] += 1
                if len(skipped["files"]) < MAX_LISTED_SKIPS:
                    skipped["files"].append(r.location)
                continue
            ex: dict[str, Any] = {"image": data, "pid": int(r.pid), "camid": int(r.camid), "path": r.path}
            if has_attributes:
                a = unknown if r.attributes is None else np.asarray(r.attributes, np.int32)
                if a.shape != (width,):
                    raise DatasetError(f"{r.location}: {a.shape[0]} attributes, expected {width}")
                ex["attributes"] = a
            if self.HAS_MODEL:
                ex["model"] = int(r.model)
            if self.HAS_COLOR:
                ex["color"] = int(r.color)
            pids.append(int(r.pid))
            camids.append(int(r.camid))
            yield key, ex
        if skipped["count"]:
            log.warning("%s/%s: skipped %d corrupt image(s) so far", self.name, split, skipped["count"])
        ids = sorted(set(pids) - set(self.IGNORE_PIDS))
        self.info.metadata["splits"][split] = {
            "num_examples": len(pids),
            "num_ids": len(ids),
            "pids": pids,
            "camids": camids,
        }
        if split == "train":
            self.info.metadata["num_classes"] = len(ids)
            self.info.metadata["num_train_images"] = len(pids)
        if self.progress is not None:
            self.progress(split, total, total)


def make_config(builder_cls: type[ReidBuilder], config: Any) -> Any:
    """Resolve ``config`` for ``builder_cls``: None, a config name, a BuilderConfig, or a dict.

    A dict starts from the predefined config named by its ``base`` key (default: the builder's
    default config) and replaces the given fields; fields equal to the base's are dropped. Its name is
    ``<base>-<field><value>...`` so each variant is stored in its own folder (e.g. ``default-val_fraction0.1``);
    a name longer than :data:`MAX_CONFIG_NAME` becomes ``<base>-<10 hex digits of the options' hash>``.
    A ``name`` key sets the name explicitly.
    """
    if config is None or isinstance(config, tfds.core.BuilderConfig):
        return config
    configs = {c.name: c for c in builder_cls.BUILDER_CONFIGS}
    if isinstance(config, str):
        if config not in configs:
            raise DatasetError(
                f"{builder_cls.name}: unknown config {config!r}; available: {', '.join(configs)} "
                "(builder options go in a dict, or in config.dataset.options.<name> on the command line)"
            )
        return configs[config]
    if isinstance(config, Mapping):
        over = dict(config)
        base_name = over.pop("base", None) or (builder_cls.DEFAULT_BUILDER_CONFIG_NAME or builder_cls.BUILDER_CONFIGS[0].name)
        if base_name not in configs:
            raise DatasetError(
                f"{builder_cls.name}: unknown base config {base_name!r}; available: {', '.join(configs)}"
            )
        base = configs[base_name]
        fields = {f.name for f in dataclasses.fields(base)}
        bad = sorted(set(over) - fields)
        if bad:
            raise DatasetError(
                f"{builder_cls.name}: unknown config field(s) {bad}; "
                f"fields of {type(base).__name__}: {sorted(fields - {'release_notes', 'supported_versions', 'tags'})}"
            )
        name = over.pop("name", None)
        over = {k: _like(getattr(base, k), v) for k, v in over.items()}
        over = {k: v for k, v in over.items() if not _same(getattr(base, k), v)}
        if not over and name is None:
            return base
        if name is None:
            name = base.name + "".join(f"-{k}{_compact(v)}" for k, v in sorted(over.items()))
            if len(name) > MAX_CONFIG_NAME:
                import hashlib
                import json

                digest = hashlib.sha1(json.dumps(over, sort_keys=True, default=str).encode()).hexdigest()[:10]
                name = f"{base.name}-{digest}"
        if name in configs:
            raise DatasetError(f"{builder_cls.name}: a custom config cannot reuse the name {name!r}")
        return dataclasses.replace(base, name=name, **over)
    raise TypeError(f"config must be None, a name, a dict or a BuilderConfig, got {type(config).__name__}")


MAX_CONFIG_NAME = 64


def _like(default: Any, value: Any) -> Any:
    """``value`` in the container type of the field's default (a list for a tuple field becomes a tuple)."""
    if isinstance(default, tuple) and isinstance(value, list):
        return tuple(value)
    if isinstance(default, Mapping) and isinstance(value, Mapping):
        return dict(value)
    return value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return dict(a) == dict(b)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return list(a) == list(b)
    return type(a) is type(b) and a == b


def _compact(v: Any) -> str:
    s = re.sub(r"[^A-Za-z0-9._]+", "_", str(v)).strip("_")
    if len(s) > 24:
        import hashlib

        s = hashlib.sha1(str(v).encode()).hexdigest()[:10]
    return s
