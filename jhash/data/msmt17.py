"""MSMT17 (Wei et al., CVPR 2018): 4,101 identities, 15 cameras, list files.

Layout (``manual_dir`` holds ``MSMT17_V1/`` or ``MSMT17_V2/``, their zip, or is that folder)::

    MSMT17_V1/                             MSMT17_V2/ (faces blurred)
      train/<pid>/<name>.jpg                 mask_train_v2/<pid>/<name>.jpg
      test/<pid>/<name>.jpg                  mask_test_v2/<pid>/<name>.jpg
      list_train.txt   30,248 lines  }
      list_val.txt      2,373 lines  }  paths relative to train/ (or mask_train_v2/)
      list_query.txt   11,659 lines  }
      list_gallery.txt 82,161 lines  }  paths relative to test/ (or mask_test_v2/)

Each list line is ``<relative path> <pid>``, e.g. ``0000/0000_000_01_0303morning_0015_0.jpg 0``.
The file name is ``<pid>_<index>_<camera>_<date+time of day>_<frame>_<n>.jpg``; the camera is its
third ``_``-separated field (``01``..``15``) and is stored as is (1-based, as on Market). The pid is
taken from the list.

Splits. The released lists number training identities 0..1,040 and test identities again from 0; here
query/gallery pids are shifted by the number of training identities (1,041) so that every pid names
one person across splits (as fast-reid does). ``list_val.txt`` holds more images of the *training*
identities (not new people):

- config ``default``: ``train`` = list_train + list_val (32,621 images, 1,041 ids, the training set
  of the MSMT17 paper); ``val`` only through ``val_fraction`` (held-out identities).
- config ``official_val``: ``train`` = list_train (30,248), ``val`` = list_val (2,373) as released.
"""

from __future__ import annotations

import dataclasses

from jhash.data import common
from jhash.data.common import FilenamePattern, Listing, ReidBuilder, ReidConfig

VERSIONS = {"MSMT17_V1": ("train", "test"), "MSMT17_V2": ("mask_train_v2", "mask_test_v2")}
LISTS = ("list_train.txt", "list_val.txt", "list_query.txt", "list_gallery.txt")


@dataclasses.dataclass(eq=False)
class Msmt17Config(ReidConfig):
    """``official_val``: keep ``list_val.txt`` as a separate ``val`` split (else it joins ``train``)."""

    official_val: bool = False


class Msmt17(ReidBuilder, skip_registration=True):
    """MSMT17 person re-identification (1,041 train / 3,060 test ids, 15 cameras)."""

    name = "msmt17"
    BUILDER_CONFIGS = [
        Msmt17Config(name="default", description="MSMT17: train = list_train + list_val; query; gallery."),
        Msmt17Config(name="official_val", official_val=True,
                     description="MSMT17: train = list_train, val = list_val (same ids), query, gallery."),
    ]
    IGNORE_PIDS = ()  # pid 0 is a real identity on MSMT17
    IMAGE_SIZE = (256, 128)
    PATTERN = FilenamePattern(r"^(\d+)_\d+_(\d+)_", "0000_000_01_0303morning_0015_0.jpg", cameras=(1, 15))
    CITATION = "Wei et al., Person Transfer GAN to Bridge Domain Gap for Person Re-Identification, CVPR 2018."
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Obtain MSMT17 from its authors (MSMT17_V1.tar.gz / MSMT17_V2, by request) and put the extracted
    folder, or a zip of it (MSMT17_V1.zip / MSMT17_V2.zip), in manual_dir:

        <manual_dir>/MSMT17_V1/{train,test}/<pid>/*.jpg
        <manual_dir>/MSMT17_V1/list_{train,val,query,gallery}.txt
      or
        <manual_dir>/MSMT17_V2/{mask_train_v2,mask_test_v2}/... and the same four list files

    Then: python -m jhash.data prepare msmt17 --manual_dir <manual_dir> --data_dir <data_dir>
    """

    def _tree(self, manual_dir) -> tuple[common.Tree, str, str]:
        errors = []
        for version, (train_dir, test_dir) in VERSIONS.items():
            try:
                tree = common.find_tree(
                    manual_dir, markers=(train_dir, test_dir, *LISTS), folders=(version,),
                    archives=(f"{version}.zip",), dataset=self.name, instructions=self.MANUAL_DOWNLOAD_INSTRUCTIONS,
                )
                return tree, train_dir, test_dir
            except common.ManualDirError as e:
                errors.append(e)
        raise errors[0]

    def _read_list(self, tree, list_name, image_dir, pid_offset=0):
        where = tree.locate(list_name)
        rows = common.read_list_file(tree.read_text(list_name), where, example="0000/0000_000_01_0303morning_0015_0.jpg 0")
        recs = []
        for rel, pid_s, *_ in rows:
            name = rel.rsplit("/", 1)[-1]
            _, camid = self.PATTERN.parse(name, where)
            try:
                pid = int(pid_s)
            except ValueError:
                raise common.DatasetError(f"{where}: pid {pid_s!r} of {rel!r} is not an integer") from None
            path = f"{image_dir}/{rel}"
            if not tree.exists(path):
                raise common.DatasetError(f"{where} lists {rel!r}, but {tree.locate(path)} does not exist")
            recs.append(tree.record(path, pid + pid_offset, camid))
        return sorted(recs, key=lambda r: r.path)

    def _list_records(self, dl_manager):
        tree, train_dir, test_dir = self._tree(common.manual_dir_of(dl_manager))
        train = self._read_list(tree, "list_train.txt", train_dir)
        val = self._read_list(tree, "list_val.txt", train_dir)
        offset = max(r.pid for r in train + val) + 1 if train or val else 0
        splits = {
            "query": self._read_list(tree, "list_query.txt", test_dir, offset),
            "gallery": self._read_list(tree, "list_gallery.txt", test_dir, offset),
        }
        if self.builder_config.official_val:
            splits["train"], splits["val"] = train, val
        else:
            splits["train"] = sorted(train + val, key=lambda r: r.path)
        return Listing(splits=splits, extra={"test_pid_offset": offset})
