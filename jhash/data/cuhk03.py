"""CUHK03, original release (Li et al., DeepReID, CVPR 2014) with its 20 classic test splits.

The release ``cuhk03_release.zip`` holds ``cuhk03_release/cuhk-03.mat``, a MATLAB v7.3 file (HDF5), read with
h5py. Its layout (MATLAB cell arrays are HDF5 datasets of object references, stored transposed)::

    labeled, detected   1 x 5 references, one per camera pair; each points to a 10 x N_p reference array
                        (MATLAB: N_p x 10): person i of pair p, images 0-4 from the pair's first camera,
                        5-9 from its second; an image is a 3 x W x H uint8 array (MATLAB: H x W x 3), an
                        absent one an empty array (some people have fewer than 10 images, a few none from
                        one camera). N_p = 843, 440, 77, 58, 49 (1,467 people).
    testsets            1 x 20 references to 2 x 100 arrays (MATLAB: 100 x 2): the (pair, person) numbers,
                        1-based, of the 100 test identities of each classic split.

Each config reads one kind of box and one split: ``labeled`` (hand-drawn boxes) or ``detected`` (DPM), with
``split`` (0..19, default 0) choosing the classic test split: e.g. ``config={"base": "labeled", "split": 7}``,
or ``--config.dataset.options.split=7`` with configs/cuhk03/drsch.py. Splits written:

- ``train``: every image of the people not in the test split (about 1,367 identities, both cameras);
- ``query`` and ``gallery``: the same images, those of the 100 test identities. The ``cuhk03`` protocol
  (:func:`jhash.metrics.cuhk03_classic_eval`) removes each query's own-camera images and draws one gallery
  image per identity (single-shot), as in the original evaluation.

Identities: ``pid = 1000 * pair + person`` (``2017``: pair 2, person 17); cameras: ``camid = 2 * (pair - 1) +
view`` (1..10, view 1 or 2 of the pair). Stored paths: ``<kind>/<pair>_<person:03d>_<view>_<image:02d>.png``
(the image number 1..10 as in the cell array). Images are stored losslessly as PNG.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import numpy as np

from jhash.data import common
from jhash.data.common import Listing, ReidBuilder, ReidConfig

MAT_NAME = "cuhk-03.mat"
FOLDERS = ("cuhk03_release", "cuhk03", "CUHK03")
ARCHIVE = "cuhk03_release.zip"
KINDS = ("labeled", "detected")
NUM_SPLITS = 20
IMAGES_PER_VIEW = 5


@dataclasses.dataclass(eq=False)
class Cuhk03ClassicConfig(ReidConfig):
    """``kind``: ``labeled`` or ``detected`` boxes; ``split``: the classic test split, 0..19."""

    kind: str = "labeled"
    split: int = 0


class MatImage:
    """One image of ``cuhk-03.mat``, read and PNG-encoded on call (a :attr:`Record.source`); ``archive`` is the
    .mat file (its size and modification time go into the source fingerprint)."""

    def __init__(self, mat: "MatFile", ref: Any):
        self.mat, self.ref = mat, ref

    @property
    def archive(self) -> Path:
        return self.mat.path

    def __call__(self) -> bytes:
        from PIL import Image

        array = self.mat.array(self.ref)
        buf = io.BytesIO()
        Image.fromarray(array).save(buf, format="PNG")
        return buf.getvalue()


class MatFile:
    """``cuhk-03.mat`` opened with h5py on first use (kept open while the builder lists and writes)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._file = None

    @property
    def file(self):
        if self._file is None:
            try:
                import h5py
            except ModuleNotFoundError as e:  # a declared dependency; only a broken install lacks it
                raise common.DatasetError("cuhk03: reading cuhk-03.mat needs h5py (pip install h5py)") from e
            try:
                self._file = h5py.File(self.path, "r")
            except OSError as e:
                raise common.DatasetError(
                    f"cuhk03: {self.path} is not a readable MATLAB v7.3 (HDF5) file ({e}); download the release again"
                ) from e
        return self._file

    def cell(self, name: str) -> list:
        """The references of a top-level 1 x n cell array (``labeled``, ``detected``, ``testsets``)."""
        f = self.file
        if name not in f:
            raise common.DatasetError(f"cuhk03: {self.path} has no {name!r} array; it holds {sorted(f.keys())}")
        return list(np.asarray(f[name]).ravel())

    def deref(self, ref) -> np.ndarray:
        """The array a reference points to, in MATLAB's orientation (transposed back)."""
        return np.asarray(self.file[ref]).T

    def is_image(self, ref) -> bool:
        """True for a non-empty H x W x 3 image (MATLAB stores an empty cell as a 2-element uint64 array)."""
        ds = self.file[ref]
        return len(ds.shape) == 3 and int(np.prod(ds.shape)) > 0

    def array(self, ref) -> np.ndarray:
        a = self.deref(ref)
        if a.ndim != 3 or a.shape[2] != 3:
            raise common.CorruptImageError(f"{self.path}: an image of shape {a.shape}, expected H x W x 3")
        return np.ascontiguousarray(a.astype(np.uint8))


def classic_test_ids(mat: MatFile, split: int) -> set[tuple[int, int]]:
    """The (pair, person) numbers (1-based) of classic split ``split``'s 100 test identities."""
    refs = mat.cell("testsets")
    if not 0 <= split < len(refs):
        raise common.DatasetError(f"cuhk03: split {split} does not exist; {mat.path} has splits 0..{len(refs) - 1}")
    rows = mat.deref(refs[split])
    if rows.ndim != 2 or rows.shape[1] != 2:
        raise common.DatasetError(f"cuhk03: testsets[{split}] has shape {rows.shape}, expected (100, 2)")
    return {(int(p), int(i)) for p, i in rows}


class Cuhk03(ReidBuilder, skip_registration=True):
    """CUHK03 (original release, classic 20 splits, single-shot CMC): 1,467 people in 5 camera pairs."""

    name = "cuhk03"
    BUILDER_CONFIGS = [
        Cuhk03ClassicConfig(name="labeled", kind="labeled", description="CUHK03, labeled boxes, classic split 0."),
        Cuhk03ClassicConfig(name="detected", kind="detected", description="CUHK03, detected boxes, classic split 0."),
    ]
    PROTOCOL = "cuhk03"
    IMAGE_SIZE = (256, 128)
    IGNORE_PIDS = (-1, 0)
    VALIDATE_IMAGES = False  # PNG bytes written by MatImage from the arrays
    HOMEPAGE = "https://www.ee.cuhk.edu.hk/~xgwang/CUHK_identification.html"
    CITATION = "Li et al., DeepReID: Deep Filter Pairing Neural Network for Person Re-identification, CVPR 2014."
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Request the CUHK03 release from its authors (cuhk03_release.zip) and extract it in manual_dir, so that
    one of these exists:

        <manual_dir>/cuhk03_release/{MAT_NAME}
        <manual_dir>/{MAT_NAME}

    (h5py reads the MATLAB v7.3 file; it cannot be read from inside the zip.) Then:
    python -m jhash.data prepare cuhk03 --config labeled --manual_dir <manual_dir> [--option split=0..19]
    """

    def _mat_path(self, manual_dir: Path) -> Path:
        candidates = [manual_dir / MAT_NAME] + [manual_dir / f / MAT_NAME for f in FOLDERS]
        for c in candidates:
            if c.is_file():
                return c
        instructions = common.how_to(self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        if not manual_dir.is_dir():
            raise common.ManualDirError(f"cuhk03: the manual_dir {manual_dir} does not exist.\n\n{instructions}")
        if (manual_dir / ARCHIVE).is_file():
            raise common.ManualDirError(
                f"cuhk03: found {manual_dir / ARCHIVE} but not the extracted {MAT_NAME}; extract it first "
                f"(unzip {manual_dir / ARCHIVE} -d {manual_dir}).\n\n{instructions}")
        raise common.ManualDirError(
            f"cuhk03: none of {', '.join(str(c) for c in candidates)} exists. {manual_dir} holds: "
            f"{common._preview(sorted(p.name for p in manual_dir.iterdir()))}\n\n{instructions}")

    def _list_records(self, dl_manager) -> Listing:
        cfg = self.builder_config
        if cfg.kind not in KINDS:
            raise common.DatasetError(f"cuhk03: kind must be one of {KINDS}, got {cfg.kind!r}")
        mat = MatFile(self._mat_path(common.manual_dir_of(dl_manager).expanduser()))
        test = classic_test_ids(mat, int(cfg.split))
        splits: dict[str, list[common.Record]] = {"train": [], "query": [], "gallery": []}
        found = set()
        for pair, pair_ref in enumerate(mat.cell(cfg.kind), start=1):
            people = mat.deref(pair_ref)  # [N_p, 10] references
            if people.ndim != 2:
                raise common.DatasetError(f"cuhk03: {cfg.kind}[{pair - 1}] has shape {people.shape}, expected N x 10")
            for person, row in enumerate(people, start=1):
                records = [self._record(mat, cfg.kind, pair, person, k, ref)
                           for k, ref in enumerate(row) if mat.is_image(ref)]
                found.add((pair, person))
                if (pair, person) in test:
                    splits["query"] += records
                    splits["gallery"] += [dataclasses.replace(r) for r in records]
                else:
                    splits["train"] += records
        absent = sorted(test - found)
        if absent:
            raise common.DatasetError(f"cuhk03: testsets[{cfg.split}] names (pair, person) {absent[:5]} which "
                                      f"{cfg.kind} does not have; is {mat.path} the original release?")
        return Listing(splits={k: sorted(v, key=lambda r: r.path) for k, v in splits.items()})

    @staticmethod
    def _record(mat: MatFile, kind: str, pair: int, person: int, k: int, ref) -> common.Record:
        view = 1 if k < IMAGES_PER_VIEW else 2
        path = f"{kind}/{pair}_{person:03d}_{view}_{k + 1:02d}.png"
        return common.Record(path=path, pid=1000 * pair + person, camid=2 * (pair - 1) + view,
                             source=MatImage(mat, ref), where=f"{mat.path}:{kind}[{pair - 1}][{person - 1},{k}]")
