"""Tiny fake dataset trees in each dataset's real layout, for tests anywhere in jhash.

Each ``make_*_tree(root)`` writes a few 16x8 images (JPEG, PNG for CUHK03-NP) with the dataset's real
naming rules and side files under ``root`` and returns the path to pass as ``manual_dir``. The
module-level ``EXPECTED`` dict gives the split sizes and counts each tree yields, so tests don't
repeat the arithmetic.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = (8, 16)  # PIL (width, height): 16 high x 8 wide


def image_bytes(seed: int, fmt: str = "JPEG") -> bytes:
    """A deterministic tiny image, encoded."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(SIZE[1], SIZE[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def write_image(path: Path, seed: int = 0, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt is None:
        fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    path.write_bytes(image_bytes(seed, fmt))
    return path


def corrupt_image(path: Path) -> Path:
    """Overwrite ``path`` with bytes no decoder accepts (a truncated JPEG header)."""
    path.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return path


# ---------------------------------------------------------------------------------------------------
# Market-1501 style (also DukeMTMC-reID and CUHK03-NP).

# Market-1501: train ids 2, 7, 11 (2 images each: cams 1 and 2); test ids 3 and 5 (query 1 image each
# on cam 1, gallery 2 each on cams 2 and 3) plus gallery junk (-1) and distractors (0000).
MARKET_TRAIN = [(2, 1), (2, 2), (7, 1), (7, 3), (11, 4), (11, 6)]
MARKET_QUERY = [(3, 1), (5, 1)]
MARKET_GALLERY = [(3, 2), (3, 3), (5, 2), (5, 3), (-1, 1), (-1, 4), (0, 5), (0, 2)]


def _market_name(pid: int, cam: int, k: int, ext: str = ".jpg") -> str:
    p = "-1" if pid == -1 else f"{pid:04d}"
    return f"{p}_c{cam}s1_{k * 25 + 100:06d}_0{k % 3}{ext}"


def _write_market_split(folder: Path, items, seed: int, ext=".jpg", name=_market_name) -> list[str]:
    names = []
    for k, (pid, cam) in enumerate(items):
        n = name(pid, cam, k, ext)
        write_image(folder / n, seed * 1000 + k)
        names.append(n)
    return names


def _attribute_struct(pids, fields, rng, ranges=None):
    ranges = ranges or {}
    s = {f: rng.integers(1, ranges.get(f, 2) + 1, size=len(pids)).astype(np.float64) for f in fields}
    s["image_index"] = np.array([f"{p:04d}" for p in pids], dtype=object)
    return s


MARKET_MAT_FIELDS = (
    "age", "backpack", "bag", "handbag", "downblack", "downblue", "downbrown", "downgray", "downgreen",
    "downpink", "downpurple", "downwhite", "downyellow", "upblack", "upblue", "upgreen", "upgray",
    "uppurple", "upred", "upwhite", "upyellow", "clothes", "down", "up", "hair", "hat", "gender",
)
DUKE_MAT_FIELDS = (
    "backpack", "bag", "handbag", "boots", "gender", "hat", "shoes", "top", "downblack", "downwhite",
    "downred", "downgray", "downblue", "downgreen", "downbrown", "upblack", "upwhite", "upred",
    "uppurple", "upgray", "upblue", "upgreen", "upbrown",
)


def write_attribute_mat(path: Path, key: str, fields, train_pids, test_pids, seed=0) -> dict:
    """Write a Market/Duke-style attribute .mat; return ``{pid: {field: value}}`` as written."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    ranges = {"age": 4}
    train = _attribute_struct(sorted(train_pids), fields, rng, ranges)
    test = _attribute_struct(sorted(test_pids), fields, rng, ranges)
    savemat(path, {key: {"train": train, "test": test}})
    table = {}
    for s in (train, test):
        for j, p in enumerate(s["image_index"]):
            table[int(p)] = {f: int(s[f][j]) for f in fields}
    return table


def make_market1501_tree(root, *, attributes: bool = True, distractors_500k: int = 0, zipped: bool = False) -> Path:
    """``root/Market-1501-v15.09.15/{bounding_box_train,query,bounding_box_test}`` (+ extras).

    ``attributes``: also ``root/market_attribute.mat``; ``distractors_500k``: that many images in
    ``root/distractors_500k/``; ``zipped``: the folder is replaced by ``Market-1501-v15.09.15.zip``.
    """
    root = Path(root)
    base = root / "Market-1501-v15.09.15"
    _write_market_split(base / "bounding_box_train", MARKET_TRAIN, 1)
    _write_market_split(base / "query", MARKET_QUERY, 2)
    _write_market_split(base / "bounding_box_test", MARKET_GALLERY, 3)
    (base / "bounding_box_test" / "Thumbs.db").write_bytes(b"not an image")  # the real zip has these
    if attributes:
        write_attribute_mat(root / "market_attribute.mat", "market_attribute", MARKET_MAT_FIELDS,
                            {p for p, _ in MARKET_TRAIN}, {3, 5})
    for k in range(distractors_500k):
        write_image(root / "distractors_500k" / f"{k // 2:04d}" / f"0000_c{k % 6 + 1}s9_{k:06d}_00.jpg", 9000 + k)
    if zipped:
        _zip_folder(base, root / "Market-1501-v15.09.15.zip")
    return root


def _zip_folder(folder: Path, archive: Path) -> None:
    import shutil
    import zipfile

    with zipfile.ZipFile(archive, "w") as z:
        for p in sorted(folder.rglob("*")):
            z.write(p, p.relative_to(folder.parent).as_posix())
    shutil.rmtree(folder)


# DukeMTMC-reID: cameras 1..8, names like 0001_c2_f0046182.jpg; no junk/0000, gallery distractor ids.
DUKE_TRAIN = [(1, 1), (1, 2), (4, 7), (4, 8)]
DUKE_QUERY = [(5, 1), (6, 8)]
DUKE_GALLERY = [(5, 3), (6, 2), (9, 5)]


def _duke_name(pid, cam, k, ext=".jpg"):
    return f"{pid:04d}_c{cam}_f{46182 + k * 7:07d}{ext}"


def make_dukemtmc_reid_tree(root, *, attributes: bool = True) -> Path:
    root = Path(root)
    base = root / "DukeMTMC-reID"
    _write_market_split(base / "bounding_box_train", DUKE_TRAIN, 1, name=_duke_name)
    _write_market_split(base / "query", DUKE_QUERY, 2, name=_duke_name)
    _write_market_split(base / "bounding_box_test", DUKE_GALLERY, 3, name=_duke_name)
    if attributes:
        write_attribute_mat(root / "duke_attribute.mat", "duke_attribute", DUKE_MAT_FIELDS, {1, 4}, {5, 6, 9})
    return root


# CUHK03-NP: PNG images named 0001_c1_1.png, cameras 1..2, both labeled and detected.
CUHK_TRAIN = [(1, 1), (1, 2), (3, 1), (3, 2), (8, 2)]
CUHK_QUERY = [(10, 1), (12, 2)]
CUHK_GALLERY = [(10, 2), (12, 1), (14, 1)]


def _cuhk_name(pid, cam, k, ext=".png"):
    return f"{pid:04d}_c{cam}_{k + 1}{ext}"


def make_cuhk03_np_tree(root) -> Path:
    root = Path(root)
    for i, kind in enumerate(("labeled", "detected")):
        base = root / "cuhk03-np" / kind
        _write_market_split(base / "bounding_box_train", CUHK_TRAIN, 10 + i, ".png", _cuhk_name)
        _write_market_split(base / "query", CUHK_QUERY, 20 + i, ".png", _cuhk_name)
        _write_market_split(base / "bounding_box_test", CUHK_GALLERY, 30 + i, ".png", _cuhk_name)
    return root


# MSMT17: MSMT17_V1/{train,test}/<pid>/<pid>_<idx>_<cam>_<daytime>_<frame>_<n>.jpg and four list files.
MSMT_TRAIN = [(0, 1), (0, 3), (1, 15), (1, 2), (2, 5)]
MSMT_VAL = [(0, 7), (2, 9)]
MSMT_QUERY = [(0, 1), (1, 4)]  # test pids, numbered from 0 in the release
MSMT_GALLERY = [(0, 2), (1, 5), (2, 6)]


def _msmt_name(pid, cam, k):
    return f"{pid:04d}/{pid:04d}_{k:03d}_{cam:02d}_0303morning_{15 + k:04d}_0.jpg"


def make_msmt17_tree(root, *, version: str = "MSMT17_V1") -> Path:
    root = Path(root)
    base = root / version
    train_dir, test_dir = {"MSMT17_V1": ("train", "test"), "MSMT17_V2": ("mask_train_v2", "mask_test_v2")}[version]
    k = 0
    for list_name, folder, items in (("list_train.txt", train_dir, MSMT_TRAIN), ("list_val.txt", train_dir, MSMT_VAL),
                                     ("list_query.txt", test_dir, MSMT_QUERY), ("list_gallery.txt", test_dir, MSMT_GALLERY)):
        lines = []
        for pid, cam in items:
            rel = _msmt_name(pid, cam, k)
            write_image(base / folder / rel, 500 + k)
            lines.append(f"{rel} {pid}\n")
            k += 1
        (base / list_name).write_text("".join(lines))
    return root


# VeRi-776: VeRi/image_{train,query,test}/0002_c002_00030600_0.jpg, GB2312 XML labels.
VERI_TRAIN = [(2, 1), (2, 2), (7, 3), (7, 20), (9, 5)]
VERI_QUERY = [(20, 1), (21, 4)]
VERI_TEST = [(20, 2), (20, 3), (21, 5), (22, 6)]
VERI_LABELS = {2: (4, 1), 7: (1, 10), 9: (9, 3), 20: (2, 6), 21: (3, 7), 22: (5, 2)}  # vid: (typeID, colorID)


def _veri_name(pid, cam, k):
    return f"{pid:04d}_c{cam:03d}_{30600 + k * 5:08d}_{k % 2}.jpg"


def _veri_xml(root_tag, names_items) -> bytes:
    items = "".join(
        f'<Item imageName="{n}" vehicleID="{p:04d}" cameraID="c{c:03d}" colorID="{VERI_LABELS[p][1]}" typeID="{VERI_LABELS[p][0]}" />\n'
        for n, p, c in names_items
    )
    text = (f'<?xml version="1.0" encoding="gb2312"?>\n<{root_tag} Version="1.0">\n'
            f'<Items number="{len(names_items)}">\n{items}</Items>\n<!-- 车辆标注 -->\n</{root_tag}>\n')
    return text.encode("gb2312")


def make_veri776_tree(root, *, labels: bool = True) -> Path:
    root = Path(root)
    base = root / "VeRi"
    written = {}
    for folder, items, seed in (("image_train", VERI_TRAIN, 40), ("image_query", VERI_QUERY, 41), ("image_test", VERI_TEST, 42)):
        written[folder] = []
        for k, (pid, cam) in enumerate(items):
            n = _veri_name(pid, cam, k)
            write_image(base / folder / n, seed * 100 + k)
            written[folder].append((n, pid, cam))
    if labels:
        (base / "train_label.xml").write_bytes(_veri_xml("TrainingImages", written["image_train"]))
        (base / "test_label.xml").write_bytes(_veri_xml("TestImages", written["image_test"]))  # no query items
    return root


# VehicleID: VehicleID_V1.0/image/<7 digits>.jpg, train_test_split lists, attribute files.
VEHICLEID_TRAIN = [(1, 3), (2, 2), (5, 2)]  # (vehicle id, number of images)
VEHICLEID_TEST = {800: [(11, 3), (12, 2)], 1600: [(11, 3), (12, 2), (13, 2)], 2400: [(11, 3), (12, 2), (13, 2), (14, 1)]}
VEHICLEID_MODELS = {1: 0, 2: 17, 11: 4, 13: 249}  # vehicles 5, 12, 14 unlabelled
VEHICLEID_COLORS = {1: 6, 2: 0, 11: 3, 13: 1}


def make_vehicleid_tree(root, *, attributes: bool = True) -> Path:
    root = Path(root)
    base = root / "VehicleID_V1.0"
    counter = [0]

    def lines_for(items):
        out = []
        for vid, n in items:
            for _ in range(n):
                counter[0] += 1
                img = f"{counter[0]:07d}"
                write_image(base / "image" / f"{img}.jpg", 700 + counter[0])
                out.append(f"{img} {vid}\n")
        return out

    split = base / "train_test_split"
    split.mkdir(parents=True, exist_ok=True)
    (split / "train_list.txt").write_text("".join(lines_for(VEHICLEID_TRAIN)))
    test_lines = {vid: lines_for([(vid, n)]) for vid, n in VEHICLEID_TEST[2400]}
    for size, items in VEHICLEID_TEST.items():
        (split / f"test_list_{size}.txt").write_text("".join(l for vid, _ in items for l in test_lines[vid]))
    if attributes:
        (base / "attribute").mkdir(exist_ok=True)
        (base / "attribute" / "model_attr.txt").write_text("".join(f"{v} {m}\n" for v, m in VEHICLEID_MODELS.items()))
        (base / "attribute" / "color_attr.txt").write_text("".join(f"{v} {c}\n" for v, c in VEHICLEID_COLORS.items()))
    return root


# reid_folder: the user's own data.
FOLDER_SPLITS = {
    "train": [(1, 1), (1, 2), (4, 1), (4, 3), (0, 2)],  # pid 0 is an ordinary identity here
    "query": [(10, 1), (11, 2)],
    "gallery": [(10, 2), (11, 1), (-1, 3)],
}


def make_reid_folder_tree(root) -> Path:
    """``root/{train,query,gallery}/0001_c1_0000.jpg`` (the default pattern), one sub-folder deep in train."""
    root = Path(root)
    for s, (split, items) in enumerate(FOLDER_SPLITS.items()):
        for k, (pid, cam) in enumerate(items):
            name = f"{'-1' if pid < 0 else f'{pid:04d}'}_c{cam}_{k:04d}.jpg"
            sub = f"{max(pid, 0):04d}/" if split == "train" else ""
            write_image(root / split / f"{sub}{name}", 800 + s * 10 + k)
    return root


# <pid>-<cam>-<n>.jpg: 6 training people (2 cameras x 2 images), 3 test people (query: camera 1; gallery:
# camera 2, 2 images each) plus a junk (-1) and a distractor (0) image in the gallery.
PCN_TRAIN = [(pid, cam, n) for pid in (1, 2, 3, 4, 5, 6) for cam in (1, 2) for n in (1, 2)]
PCN_QUERY = [(pid, 1, 1) for pid in (21, 22, 23)]
PCN_GALLERY = [(pid, 2, n) for pid in (21, 22, 23) for n in (1, 2)] + [(-1, 3, 1), (0, 3, 1)]


def make_pid_cam_n_tree(root, *, seed: int = 0, train=None) -> Path:
    """``root/{train,query,gallery}/<pid>-<cam>-<n>.jpg`` (the naming the README's own-data recipe uses)."""
    root = Path(root)
    for s, (split, items) in enumerate((("train", PCN_TRAIN if train is None else train), ("query", PCN_QUERY),
                                        ("gallery", PCN_GALLERY))):
        for k, (pid, cam, n) in enumerate(items):
            write_image(root / split / f"{pid}-{cam}-{n}.jpg", seed + 1000 * s + k)
    return root


CSV_ATTRIBUTES = ("male", "backpack")


def make_reid_csv_tree(root) -> Path:
    """``root/{train,query,gallery}.csv`` with columns path,pid,camid,male,backpack,model,color."""
    root = Path(root)
    for s, (split, items) in enumerate(FOLDER_SPLITS.items()):
        rows = ["path,pid,camid,male,backpack,model,color"]
        for k, (pid, cam) in enumerate(items):
            rel = f"images/{split}_{k}.png"
            write_image(root / rel, 900 + s * 10 + k)
            rows.append(f"{rel},{pid},{cam},{(pid + k) % 2},{-1 if pid < 0 else pid % 2},{max(pid, -1) % 5 if pid >= 0 else -1},{k % 3}")
        (root / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return root


EXPECTED = {
    "market1501": {"train": len(MARKET_TRAIN), "query": len(MARKET_QUERY), "gallery": len(MARKET_GALLERY), "num_classes": 3},
    "dukemtmc_reid": {"train": len(DUKE_TRAIN), "query": len(DUKE_QUERY), "gallery": len(DUKE_GALLERY), "num_classes": 2},
    "cuhk03_np": {"train": len(CUHK_TRAIN), "query": len(CUHK_QUERY), "gallery": len(CUHK_GALLERY), "num_classes": 3},
    "msmt17": {"train": len(MSMT_TRAIN) + len(MSMT_VAL), "query": len(MSMT_QUERY), "gallery": len(MSMT_GALLERY), "num_classes": 3},
    "veri776": {"train": len(VERI_TRAIN), "query": len(VERI_QUERY), "gallery": len(VERI_TEST), "num_classes": 3},
    "vehicleid": {"train": 7, "test": 5, "query": 3, "gallery": 2, "num_classes": 3},
    "reid_folder": {"train": 5, "query": 2, "gallery": 3, "num_classes": 3},
}

MAKERS = {
    "market1501": make_market1501_tree,
    "dukemtmc_reid": make_dukemtmc_reid_tree,
    "cuhk03_np": make_cuhk03_np_tree,
    "msmt17": make_msmt17_tree,
    "veri776": make_veri776_tree,
    "vehicleid": make_vehicleid_tree,
    "reid_folder": make_reid_folder_tree,
}


# ---------------------------------------------------------------------------------------------------
# CUHK03, original release: cuhk03_release/cuhk-03.mat (MATLAB v7.3 = HDF5), written with h5py in the real
# layout: top-level 1 x n object-reference arrays, cells stored transposed, images 3 x W x H uint8, an empty
# cell as MATLAB writes it (a 2-element uint64 array with the attribute MATLAB_empty = 1).

# people per camera pair and, per person, the image slots (0-4 first camera, 5-9 second) that hold an image
CUHK03_PAIRS = {
    1: [(0, 1, 5, 6), (0, 5), (0, 1, 2, 5, 6, 7), (1, 6)],
    2: [(0, 5, 6), (0, 1, 5), (2,)],  # pair 2 person 3: one camera only
}
CUHK03_TESTSETS = [[(1, 2), (2, 1)], [(1, 4), (2, 2)]]  # 2 classic splits of 2 test identities (real: 20 of 100)


def _matlab_empty(group, name):
    import numpy as _np

    ds = group.create_dataset(name, data=_np.zeros(2, _np.uint64))
    ds.attrs["MATLAB_empty"] = _np.uint8(1)
    return ds


def _cell(f, name, refs):
    """A top-level 1 x len(refs) MATLAB cell of references (HDF5 shape (1, n))."""
    import h5py

    ds = f.create_dataset(name, (1, len(refs)), dtype=h5py.ref_dtype)
    for j, r in enumerate(refs):
        ds[0, j] = r
    ds.attrs["MATLAB_class"] = np.bytes_(b"cell")
    return ds


def cuhk03_image(kind: str, pair: int, person: int, slot: int) -> np.ndarray:
    """The H x W x 3 image the fake .mat holds at (kind, pair, person, slot): sizes vary as in the release."""
    rng = np.random.default_rng([KIND_SEED[kind], pair, person, slot])
    return rng.integers(0, 256, size=(12 + slot % 3, 6 + slot % 2, 3), dtype=np.uint8)


KIND_SEED = {"labeled": 1, "detected": 2}


def make_cuhk03_tree(root, *, pairs=None, testsets=None) -> Path:
    """``root/cuhk03_release/cuhk-03.mat`` with ``labeled`` and ``detected`` (``pairs``: people per camera pair as
    in :data:`CUHK03_PAIRS`; detected boxes drop each person's last image) and ``testsets``; returns ``root``."""
    import h5py

    pairs = CUHK03_PAIRS if pairs is None else pairs
    testsets = CUHK03_TESTSETS if testsets is None else testsets
    root = Path(root)
    (root / "cuhk03_release").mkdir(parents=True, exist_ok=True)
    with h5py.File(root / "cuhk03_release" / "cuhk-03.mat", "w") as f:
        refs = f.create_group("#refs#")
        n = iter(range(10**6))
        for kind in ("labeled", "detected"):
            pair_refs = []
            for pair, people in sorted(pairs.items()):
                grid = np.empty((10, len(people)), dtype=h5py.ref_dtype)  # MATLAB N x 10, stored transposed
                for person, slots in enumerate(people, start=1):
                    kept = slots if kind == "labeled" else slots[:-1] or slots
                    for slot in range(10):
                        if slot in kept:
                            img = cuhk03_image(kind, pair, person, slot)
                            ds = refs.create_dataset(f"i{next(n)}", data=img.T)  # stored 3 x W x H
                        else:
                            ds = _matlab_empty(refs, f"e{next(n)}")
                        grid[slot, person - 1] = ds.ref
                pair_refs.append(refs.create_dataset(f"p{next(n)}", data=grid).ref)
            _cell(f, kind, pair_refs)
        split_refs = [refs.create_dataset(f"t{next(n)}", data=np.asarray(t, np.float64).T).ref for t in testsets]
        _cell(f, "testsets", split_refs)
    return root


def cuhk03_expected(kind: str = "labeled", split: int = 0, pairs=None, testsets=None) -> dict[str, list[tuple]]:
    """Per split, the sorted (path, pid, camid) the cuhk03 builder must write for the fake tree (from the layout
    above, independently of the builder)."""
    pairs = CUHK03_PAIRS if pairs is None else pairs
    test = {tuple(t) for t in (CUHK03_TESTSETS if testsets is None else testsets)[split]}
    out: dict[str, list[tuple]] = {"train": [], "query": [], "gallery": []}
    for pair, people in pairs.items():
        for person, slots in enumerate(people, start=1):
            kept = slots if kind == "labeled" else slots[:-1] or slots
            for slot in kept:
                view = 1 if slot < 5 else 2
                item = (f"{kind}/{pair}_{person:03d}_{view}_{slot + 1:02d}.png", 1000 * pair + person,
                        2 * (pair - 1) + view)
                for s in (("query", "gallery") if (pair, person) in test else ("train",)):
                    out[s].append(item)
    return {k: sorted(v) for k, v in out.items()}
