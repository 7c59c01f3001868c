"""Market-1501 (Zheng et al., ICCV 2015), optionally with the 500k distractors and APR attributes.

Layout (``manual_dir`` holds the zip, the extracted folder, or is the extracted folder)::

    Market-1501-v15.09.15/            or Market-1501-v15.09.15.zip
      bounding_box_train/  12,936 images, 751 ids      -> split ``train``
      query/                3,368 images, 750 ids      -> split ``query``
      bounding_box_test/   19,732 images               -> split ``gallery``
    market_attribute.mat              optional (in manual_dir or in the dataset folder)
    distractors_500k/  or distractors_500k.zip         config ``500k`` only

Names: ``0002_c1s1_000451_03.jpg`` -> pid 2, camera 1 (rule ``([-\\d]+)_c(\\d)``). In the gallery,
pid ``-1`` marks junk boxes and ``0000`` distractors; both are kept with those pids (the metrics drop
-1 and keep 0 as negatives). The 500k distractor images are added to the gallery with pid 0 (camera
parsed from the name when it follows the rule, else 0).

Attributes (``market_attribute.mat``, Lin et al., "Improving person re-identification by attribute
and identity learning"): read with ``scipy.io.loadmat(..., squeeze_me=True, struct_as_record=False)``
as a struct ``market_attribute`` with fields ``train`` (751 ids) and ``test`` (750 ids), each a struct
with one vector per attribute (one value per identity) and ``image_index`` (the identity strings,
e.g. ``'0002'``). Values are 1/2 for no/yes (``age`` 1..4). They become 30 binary attributes in the
order of :data:`MARKET_ATTRIBUTES`: ``age`` one-hot into four, then each other attribute as
``value - 1`` (so 1 means the name: ``female``, ``long_hair``, ``short_sleeve``, ``short_lower``,
``pants``, ``hat``, ``backpack``, ``bag``, ``handbag``, upper colours, lower colours).
Images of identities without annotation (junk, distractors) carry -1 for every attribute.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np

from jhash.data import common
from jhash.data.common import FilenamePattern, Listing, ReidBuilder, ReidConfig

# (stored name, .mat field, value meaning 1 after "value - 1")
_MARKET_BINARY = (
    ("female", "gender"),
    ("long_hair", "hair"),
    ("short_sleeve", "up"),
    ("short_lower", "down"),
    ("pants", "clothes"),
    ("hat", "hat"),
    ("backpack", "backpack"),
    ("bag", "bag"),
    ("handbag", "handbag"),
    *((c, c) for c in ("upblack", "upwhite", "upred", "uppurple", "upyellow", "upgray", "upblue", "upgreen")),
    *((c, c) for c in ("downblack", "downwhite", "downpink", "downpurple", "downyellow", "downgray",
                        "downblue", "downgreen", "downbrown")),
)
MARKET_AGES = ("age_young", "age_teenager", "age_adult", "age_old")
MARKET_ATTRIBUTES = MARKET_AGES + tuple(n for n, _ in _MARKET_BINARY)
assert len(MARKET_ATTRIBUTES) == 30


def read_attribute_mat(data: bytes, key: str, where: str) -> dict[int, dict[str, int]]:
    """``{pid: {field: value}}`` from a Market/Duke attribute .mat (see the module docstring)."""
    try:
        from scipy.io import loadmat
    except ImportError as e:  # scipy is an optional dependency
        raise ImportError(f"reading the attribute file {where} needs scipy: pip install scipy") from e
    try:
        mat = loadmat(io.BytesIO(data), squeeze_me=True, struct_as_record=False)
        root = mat[key]
    except Exception as e:
        raise common.DatasetError(f"{where}: cannot read a struct {key!r} from the .mat file ({e})") from e
    out: dict[int, dict[str, int]] = {}
    for part in ("train", "test"):
        s = getattr(root, part, None)
        if s is None:
            raise common.DatasetError(f"{where}: struct {key!r} has no field {part!r}")
        index = [int(str(x).strip()) for x in np.atleast_1d(s.image_index)]
        fields = {f: np.atleast_1d(getattr(s, f)) for f in s._fieldnames if f != "image_index"}
        for f, v in fields.items():
            if v.shape[0] != len(index):
                raise common.DatasetError(
                    f"{where}: {key}.{part}.{f} has {v.shape[0]} values for {len(index)} identities"
                )
        for j, pid in enumerate(index):
            out[pid] = {f: int(v[j]) for f, v in fields.items()}
    return out


def market_attribute_vector(a: dict[str, int]) -> np.ndarray:
    """30 binary attributes in :data:`MARKET_ATTRIBUTES` order from one identity's .mat values."""
    age = np.zeros(4, np.int32)
    age[int(a["age"]) - 1] = 1
    return np.concatenate([age, np.array([int(a[f]) - 1 for _, f in _MARKET_BINARY], np.int32)])


class MarketStyleBuilder(ReidBuilder, skip_registration=True):
    """Datasets in the Market-1501 layout: one folder per split, pid and camera in the file name."""

    ROOT_FOLDERS: tuple[str, ...] = ()
    ARCHIVES: tuple[str, ...] = ()
    SPLIT_DIRS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
    PATTERN = FilenamePattern(r"([-\d]+)_c(\d)", "0002_c1s1_000451_03.jpg", cameras=(1, 6))
    ATTRIBUTE_FILE = ""  # e.g. market_attribute.mat, looked up in manual_dir and the dataset root
    ATTRIBUTE_KEY = ""

    def _root(self, manual_dir: Path) -> common.Tree:
        return common.find_tree(
            manual_dir,
            markers=tuple(self.SPLIT_DIRS.values()),
            folders=self.ROOT_FOLDERS,
            archives=self.ARCHIVES,
            dataset=self.name,
            instructions=self.MANUAL_DOWNLOAD_INSTRUCTIONS,
        )

    def _attribute_vector(self, values: dict[str, int]) -> np.ndarray:
        return market_attribute_vector(values)

    def _attributes(self, manual_dir: Path, tree: common.Tree) -> dict[int, np.ndarray] | None:
        if not self.ATTRIBUTE_FILE:
            return None
        beside = manual_dir / self.ATTRIBUTE_FILE
        if beside.is_file():
            data, where = beside.read_bytes(), str(beside)
        elif tree.exists(self.ATTRIBUTE_FILE):
            data, where = tree.read_bytes(self.ATTRIBUTE_FILE), tree.locate(self.ATTRIBUTE_FILE)
        else:
            return None
        table = read_attribute_mat(data, self.ATTRIBUTE_KEY, where)
        try:
            return {pid: self._attribute_vector(v) for pid, v in table.items()}
        except (KeyError, IndexError, ValueError) as e:
            raise common.DatasetError(f"{where}: unexpected attribute layout ({type(e).__name__}: {e})") from e

    def _split_records(self, tree: common.Tree, attrs) -> dict[str, list[common.Record]]:
        splits = {}
        for split, folder in self.SPLIT_DIRS.items():
            recs = []
            for rel in tree.images(folder):
                pid, camid = self.PATTERN.parse(rel.rsplit("/", 1)[-1], tree.locate(folder))
                a = None if attrs is None else attrs.get(pid)
                recs.append(tree.record(rel, pid, camid, attributes=a))
            if not recs:
                raise common.ManualDirError(
                    f"{self.name}: no images in {tree.locate(folder)} (split {split!r}).\n\n"
                    f"{common.how_to(self.MANUAL_DOWNLOAD_INSTRUCTIONS)}"
                )
            splits[split] = recs
        return splits

    def _list_records(self, dl_manager):
        manual_dir = common.manual_dir_of(dl_manager)
        tree = self._root(manual_dir)
        attrs = self._attributes(manual_dir, tree)
        splits = self._split_records(tree, attrs)
        names = None if (attrs is not None or not self.ATTRIBUTE_NAMES) else ()
        return Listing(splits=splits, attribute_names=names)


@dataclasses.dataclass(eq=False)
class MarketConfig(ReidConfig):
    """``distractors_500k``: add the Market-1501+500k distractor images to the gallery with pid 0."""

    distractors_500k: bool = False


class Market1501(MarketStyleBuilder, skip_registration=True):
    """Market-1501 person re-identification (Market layout, 751 train / 750 test ids, 6 cameras)."""

    name = "market1501"
    BUILDER_CONFIGS = [
        MarketConfig(name="default", description="Market-1501: train / query / gallery."),
        MarketConfig(
            name="500k",
            description="Market-1501+500k: the 500k distractors added to the gallery (pid 0).",
            distractors_500k=True,
        ),
    ]
    ROOT_FOLDERS = ("Market-1501-v15.09.15", "Market-1501", "market1501")
    ARCHIVES = ("Market-1501-v15.09.15.zip",)
    ATTRIBUTE_FILE = "market_attribute.mat"
    ATTRIBUTE_KEY = "market_attribute"
    ATTRIBUTE_NAMES = MARKET_ATTRIBUTES
    IMAGE_SIZE = (256, 128)
    HOMEPAGE = "https://zheng-lab.cecs.anu.edu.au/Project/project_reid.html"
    CITATION = "Zheng et al., Scalable Person Re-identification: A Benchmark, ICCV 2015."
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Obtain Market-1501-v15.09.15.zip from the dataset authors' page (Market-1501, Zheng et al.) and
    put the zip, or the folder it extracts to, in manual_dir:

        <manual_dir>/Market-1501-v15.09.15.zip
      or
        <manual_dir>/Market-1501-v15.09.15/{bounding_box_train,query,bounding_box_test}/*.jpg

    Optional: market_attribute.mat (the Market-1501 attribute annotations, Lin et al.) in
    <manual_dir>/ or in the Market-1501-v15.09.15/ folder, for the 30 binary attributes.
    Config 500k: also put the 500k distractor set as <manual_dir>/distractors_500k/ (images, any
    depth) or <manual_dir>/distractors_500k.zip.
    Then: python -m jhash.data prepare market1501 --manual_dir <manual_dir> --data_dir <data_dir>
    """

    def _distractors(self, manual_dir: Path, tree: common.Tree) -> list[common.Record]:
        folder, archive = "distractors_500k", "distractors_500k.zip"
        if (manual_dir / folder).is_dir():
            found: common.Tree = common.FolderTree(manual_dir / folder)
        elif tree.is_dir(folder):
            found = (common.ZipTree(tree.archive, f"{tree.prefix}/{folder}".strip("/"))
                     if isinstance(tree, common.ZipTree) else common.FolderTree(tree.locate(folder)))
        elif (manual_dir / archive).is_file():
            found = common.ZipTree(manual_dir / archive)
        else:
            raise common.ManualDirError(
                f"{self.name}/{self.builder_config.name}: the 500k distractor set was not found: looked for "
                f"{manual_dir / folder}, {tree.locate(folder)} and {manual_dir / archive}.\n\n"
                f"{common.how_to(self.MANUAL_DOWNLOAD_INSTRUCTIONS)}"
            )
        recs = []
        for rel in found.images(recursive=True):
            m = self.PATTERN.regex.search(rel.rsplit("/", 1)[-1])
            r = found.record(rel, 0, int(m.group(2)) if m else 0)
            r.path = f"{folder}/{rel}"
            recs.append(r)
        if not recs:
            raise common.ManualDirError(f"{self.name}: no images in the distractor set {found.locate()}")
        return recs

    def _list_records(self, dl_manager):
        listing = super()._list_records(dl_manager)
        if self.builder_config.distractors_500k:
            manual_dir = common.manual_dir_of(dl_manager)
            listing.splits["gallery"] += self._distractors(manual_dir, self._root(manual_dir))
        return listing
