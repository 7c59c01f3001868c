"""PKU VehicleID (Liu et al., CVPR 2016): 26,267 vehicles, model and colour labels, no cameras.

Layout (``manual_dir`` holds ``VehicleID_V1.0/``, ``VehicleID_V1.0.zip``, or is the folder)::

    VehicleID_V1.0/
      image/<image>.jpg                          221,763 images
      train_test_split/train_list.txt            113,346 lines, 13,164 vehicles  -> ``train``
      train_test_split/test_list_800.txt           6,493 lines,    800 vehicles  -> config ``small``
      train_test_split/test_list_1600.txt         13,377 lines,  1,600 vehicles  -> config ``medium``
      train_test_split/test_list_2400.txt         19,777 lines,  2,400 vehicles  -> config ``large``
      attribute/model_attr.txt, attribute/color_attr.txt    (optional) lines ``<vehicle id> <label>``

List lines are ``<image name without .jpg> <vehicle id>``, e.g. ``0000001 1``.

Splits and protocol. ``train`` is the training list; ``test`` is the configured test list (all its
images). The VehicleID protocol (``protocol='vehicleid'``) draws, per repeat, one random image per
vehicle into the gallery and uses the rest as queries, ten seeded repeats: the metrics do that
on ``test``. For convenience ``query`` / ``gallery`` are also written as one fixed draw: records sorted
by path, then for each vehicle (in increasing id) ``numpy.random.default_rng(draw_seed)`` picks the
gallery image (``draw_seed`` = 0 by default); every other image of the vehicle is a query.
There are no cameras: ``camid`` is 0 everywhere (the protocol has no camera filter).

Labels: ``model`` (250 models) and ``color`` (7 colours) per vehicle from ``attribute/``, stored as
given (0-based); only about half of the vehicles are labelled: unlabelled ones carry -1. ``num_models``
/ ``num_colors`` are the largest label + 1 found (0 when a file is absent).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jhash.data import common
from jhash.data.common import Listing, ReidBuilder, ReidConfig

TEST_LISTS = {"small": 800, "medium": 1600, "large": 2400}


@dataclasses.dataclass(eq=False)
class VehicleidConfig(ReidConfig):
    """``test_size``: 800 / 1600 / 2400 test vehicles; ``draw_seed``: the fixed query/gallery draw."""

    test_size: int = 800
    draw_seed: int = 0


class Vehicleid(ReidBuilder, skip_registration=True):
    """PKU VehicleID vehicle re-identification (13,164 train vehicles; 800/1,600/2,400 test)."""

    name = "vehicleid"
    BUILDER_CONFIGS = [
        VehicleidConfig(name=k, test_size=n, description=f"VehicleID, test list of {n} vehicles.")
        for k, n in TEST_LISTS.items()
    ]
    PROTOCOL = "vehicleid"
    IGNORE_PIDS = (-1,)
    IMAGE_SIZE = (256, 256)
    HAS_MODEL = True
    HAS_COLOR = True
    HOMEPAGE = "https://www.pkuml.org/resources/pku-vehicleid.html"
    CITATION = "Liu et al., Deep Relative Distance Learning: Tell the Difference Between Similar Vehicles, CVPR 2016."
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Obtain PKU VehicleID (VehicleID_V1.0, by request from its authors) and put the extracted folder,
    or a zip of it (VehicleID_V1.0.zip), in manual_dir:

        <manual_dir>/VehicleID_V1.0/image/*.jpg
        <manual_dir>/VehicleID_V1.0/train_test_split/{train_list.txt,test_list_800.txt,test_list_1600.txt,test_list_2400.txt}
        <manual_dir>/VehicleID_V1.0/attribute/{model_attr.txt,color_attr.txt}   (optional)

    Then: python -m jhash.data prepare vehicleid --config small --manual_dir <manual_dir> --data_dir <data_dir>
    """

    def _labels(self, tree, rel) -> dict[int, int] | None:
        if not tree.exists(rel):
            return None
        where = tree.locate(rel)
        out = {}
        for vid, label, *_ in common.read_list_file(tree.read_text(rel), where, example="1 17"):
            try:
                out[int(vid)] = int(label)
            except ValueError:
                raise common.DatasetError(f"{where}: expected '<vehicle id> <label>' integers, got {vid!r} {label!r}") from None
        return out

    def _read_list(self, tree, rel, models, colors) -> list[common.Record]:
        tree.require(rel, "a VehicleID list file")
        where = tree.locate(rel)
        recs = []
        for img, vid_s, *_ in common.read_list_file(tree.read_text(rel), where, example="0000001 1"):
            try:
                vid = int(vid_s)
            except ValueError:
                raise common.DatasetError(f"{where}: vehicle id {vid_s!r} of image {img!r} is not an integer") from None
            path = f"image/{img}" if img.lower().endswith(common.IMAGE_EXTENSIONS) else f"image/{img}.jpg"
            if not tree.exists(path):
                raise common.DatasetError(f"{where} lists image {img!r}, but {tree.locate(path)} does not exist")
            recs.append(tree.record(path, vid, 0, model=(models or {}).get(vid, -1), color=(colors or {}).get(vid, -1)))
        if not recs:
            raise common.DatasetError(f"{where} lists no images")
        return sorted(recs, key=lambda r: r.path)

    def _list_records(self, dl_manager):
        test_list = f"train_test_split/test_list_{self.builder_config.test_size}.txt"
        tree = common.find_tree(
            common.manual_dir_of(dl_manager), markers=("image", "train_test_split/train_list.txt", test_list),
            folders=("VehicleID_V1.0", "VehicleID", "vehicleid"), archives=("VehicleID_V1.0.zip",),
            dataset=self.name, instructions=self.MANUAL_DOWNLOAD_INSTRUCTIONS,
        )
        models = self._labels(tree, "attribute/model_attr.txt")
        colors = self._labels(tree, "attribute/color_attr.txt")
        train = self._read_list(tree, "train_test_split/train_list.txt", models, colors)
        test = self._read_list(tree, test_list, models, colors)
        query, gallery = draw_query_gallery(test, self.builder_config.draw_seed)
        return Listing(
            splits={"train": train, "test": test, "query": query, "gallery": gallery},
            num_models=max(models.values()) + 1 if models else 0,
            num_colors=max(colors.values()) + 1 if colors else 0,
        )


def draw_query_gallery(records: list[common.Record], seed: int) -> tuple[list, list]:
    """One image per vehicle to the gallery (seeded), the rest to the query; both keep path order."""
    by_pid: dict[int, list[int]] = {}
    for i, r in enumerate(records):
        by_pid.setdefault(r.pid, []).append(i)
    rng = np.random.default_rng(seed)
    chosen = {idx[int(rng.integers(len(idx)))] for _, idx in sorted(by_pid.items())}
    gallery = [r for i, r in enumerate(records) if i in chosen]
    query = [r for i, r in enumerate(records) if i not in chosen]
    return query, gallery
