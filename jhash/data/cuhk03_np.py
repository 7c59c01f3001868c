"""CUHK03-NP: CUHK03 under the new protocol of Zhong et al. (CVPR 2017), Market layout.

767 training and 700 test identities; two configs for the two kinds of boxes:

- ``labeled``:  7,368 train / 1,400 query / 5,328 gallery images (hand-drawn boxes)
- ``detected``: 7,365 train / 1,400 query / 5,332 gallery images (DPM detections)

Layout (``manual_dir`` holds the folder, is the folder, or holds ``cuhk03-np.zip``)::

    cuhk03-np/{labeled,detected}/{bounding_box_train,query,bounding_box_test}/*.png

Names: ``0001_c1_1.png`` -> pid 1, camera 1 (rule ``([-\\d]+)_c(\\d)``, cameras 1..2). Evaluated with
the Market protocol (``protocol='market'``).
"""

from __future__ import annotations

import dataclasses

from jhash.data.common import FilenamePattern, ReidConfig
from jhash.data.market1501 import MarketStyleBuilder


@dataclasses.dataclass(eq=False)
class Cuhk03Config(ReidConfig):
    """``kind``: ``labeled`` or ``detected`` — the subfolder of ``cuhk03-np/`` to read."""

    kind: str = "labeled"


class Cuhk03Np(MarketStyleBuilder, skip_registration=True):
    """CUHK03-NP person re-identification (new protocol, 767 train / 700 test ids, 2 cameras)."""

    name = "cuhk03_np"
    BUILDER_CONFIGS = [
        Cuhk03Config(name="labeled", kind="labeled", description="CUHK03-NP, labeled boxes."),
        Cuhk03Config(name="detected", kind="detected", description="CUHK03-NP, detected boxes."),
    ]
    PATTERN = FilenamePattern(r"([-\d]+)_c(\d)", "0001_c1_1.png", cameras=(1, 2))
    ARCHIVES = ("cuhk03-np.zip", "CUHK03-NP.zip")
    IMAGE_SIZE = (256, 128)
    HOMEPAGE = "https://github.com/zhunzhong07/person-re-ranking/tree/master/CUHK03-NP"
    CITATION = "Zhong et al., Re-ranking Person Re-identification with k-reciprocal Encoding, CVPR 2017."
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Obtain the CUHK03-NP release (Zhong et al., "CUHK03-NP" in the person-re-ranking repository; it
    holds the CUHK03 images re-organised for the new 767/700 protocol) and put the folder, or its zip
    cuhk03-np.zip, in manual_dir:

        <manual_dir>/cuhk03-np/labeled/{bounding_box_train,query,bounding_box_test}/*.png
        <manual_dir>/cuhk03-np/detected/{bounding_box_train,query,bounding_box_test}/*.png

    Then: python -m jhash.data prepare cuhk03_np --config labeled --manual_dir <manual_dir> --data_dir <data_dir>
    """

    @property
    def ROOT_FOLDERS(self):  # noqa: N802 - depends on the config
        k = self.builder_config.kind
        return (f"cuhk03-np/{k}", f"CUHK03-NP/{k}", f"cuhk03_np/{k}", k)

