"""VeRi-776 (Liu et al., ICME 2016 / ECCV 2016): 776 vehicles, 20 cameras, colour and type labels.

Layout (``manual_dir`` holds ``VeRi/``, ``VeRi.zip``, or is the folder)::

    VeRi/
      image_train/   37,778 images, 576 vehicles   -> split ``train``
      image_query/    1,678 images                  -> split ``query``
      image_test/    11,579 images, 200 vehicles    -> split ``gallery``
      train_label.xml, test_label.xml               colour and type labels (optional)

Names: ``0002_c002_00030600_0.jpg`` -> vehicle 2, camera 2 (rule ``^(\\d+)_c(\\d{3})``, cameras 1..20).
Evaluated with the Market protocol (same-vehicle same-camera gallery images ignored).

Labels: the XML files list ``<Item imageName="..." vehicleID="0002" cameraID="c002" colorID="1"
typeID="4"/>``; the real files are GB2312-encoded (declared in the XML header), which Python's XML
parser does not decode by itself: they are decoded here (as GB18030, a superset) before parsing.
``color`` = colorID - 1 (10 classes: :data:`COLOR_NAMES`) and ``model`` = typeID - 1 (9 classes:
:data:`TYPE_NAMES`). Colour and type are properties of the vehicle: an image missing from the XML
(e.g. a query image) takes its vehicle's labels from the other images; -1 when unknown. Without the
XML files, ``num_models`` / ``num_colors`` are 0 and every label is -1.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from jhash.data import common
from jhash.data.common import FilenamePattern, Listing, ReidBuilder, ReidConfig

COLOR_NAMES = ("yellow", "orange", "green", "gray", "red", "blue", "white", "golden", "brown", "black")
TYPE_NAMES = ("sedan", "suv", "van", "hatchback", "mpv", "pickup", "bus", "truck", "estate")
LABEL_FILES = ("train_label.xml", "test_label.xml")


def parse_label_xml(data: bytes, where: str) -> dict[str, dict[str, str]]:
    """``{imageName: item attributes}`` from a VeRi label file in any declared encoding."""
    head = data[:200].decode("ascii", "replace")
    m = re.search(r"encoding=[\"']([\w.-]+)[\"']", head)
    enc = (m.group(1) if m else "utf-8").lower()
    if enc in ("gb2312", "gbk", "gb18030"):
        enc = "gb18030"
    try:
        text = data.decode(enc)
    except (LookupError, UnicodeDecodeError) as e:
        raise common.DatasetError(f"{where}: cannot decode the XML as {enc} ({e})") from e
    text = re.sub(r"^\s*<\?xml[^>]*\?>", "", text)
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise common.DatasetError(f"{where}: malformed XML ({e})") from e
    return {item.attrib["imageName"]: dict(item.attrib) for item in root.iter("Item") if "imageName" in item.attrib}


class Veri776(ReidBuilder, skip_registration=True):
    """VeRi-776 vehicle re-identification (576 train / 200 test vehicles, 20 cameras, colour, type)."""

    name = "veri776"
    BUILDER_CONFIGS = [ReidConfig(name="default", description="VeRi-776: train / query / gallery (image_test).")]
    SPLIT_DIRS = {"train": "image_train", "query": "image_query", "gallery": "image_test"}
    PATTERN = FilenamePattern(r"^(\d+)_c(\d{3})", "0002_c002_00030600_0.jpg", cameras=(1, 20))
    IGNORE_PIDS = (-1,)
    IMAGE_SIZE = (256, 256)
    HAS_MODEL = True
    HAS_COLOR = True
    NUM_MODELS = len(TYPE_NAMES)
    NUM_COLORS = len(COLOR_NAMES)
    HOMEPAGE = "https://vehiclereid.github.io/VeRi/"
    CITATION = "Liu et al., A Deep Learning-Based Approach to Progressive Vehicle Re-identification for Urban Surveillance, ECCV 2016."
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Obtain VeRi-776 from its authors (VeRi.zip, by request) and put the zip, or the folder it
    extracts to, in manual_dir:

        <manual_dir>/VeRi.zip
      or
        <manual_dir>/VeRi/{image_train,image_query,image_test}/*.jpg
        <manual_dir>/VeRi/{train_label.xml,test_label.xml}   (colour and type labels, optional)

    Then: python -m jhash.data prepare veri776 --manual_dir <manual_dir> --data_dir <data_dir>
    """

    def _list_records(self, dl_manager):
        tree = common.find_tree(
            common.manual_dir_of(dl_manager), markers=tuple(self.SPLIT_DIRS.values()),
            folders=("VeRi", "VeRi-776", "VeRi776"), archives=("VeRi.zip",),
            dataset=self.name, instructions=self.MANUAL_DOWNLOAD_INSTRUCTIONS,
        )
        labels: dict[str, dict[str, str]] = {}
        for f in LABEL_FILES:
            if tree.exists(f):
                labels.update(parse_label_xml(tree.read_bytes(f), tree.locate(f)))
        per_vehicle: dict[int, tuple[int, int]] = {}
        for item in labels.values():
            try:
                per_vehicle.setdefault(int(item["vehicleID"]), (int(item["typeID"]) - 1, int(item["colorID"]) - 1))
            except (KeyError, ValueError):
                continue
        splits = {}
        for split, folder in self.SPLIT_DIRS.items():
            recs = []
            for rel in tree.images(folder):
                name = rel.rsplit("/", 1)[-1]
                pid, camid = self.PATTERN.parse(name, tree.locate(folder))
                item = labels.get(name)
                if item is not None and "typeID" in item and "colorID" in item:
                    model, color = int(item["typeID"]) - 1, int(item["colorID"]) - 1
                else:
                    model, color = per_vehicle.get(pid, (-1, -1))
                recs.append(tree.record(rel, pid, camid, model=model, color=color))
            if not recs:
                raise common.ManualDirError(f"{self.name}: no images in {tree.locate(folder)} (split {split!r})")
            splits[split] = recs
        if labels:
            return Listing(splits=splits)
        return Listing(splits=splits, num_models=0, num_colors=0)
