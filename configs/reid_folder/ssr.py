"""SSR on your own images: configs/market1501/ssr.py's two-branch PCB network (ImageNet ResNet-50, 6 x 256 + 512
= 2048 bits, self-distilling smooth relaxation, alpha 0.3, AAB attention, triplet + ID loss on all 14 vectors,
SGD 1e-2, 350 epochs) at 384x128 on the ``reid_folder`` data of configs/reid_folder/baseline.py (its docstring
lists the folder layout, the builder options and the defaults: flip + pad/crop + random erasing, 10% of the
training identities held out as ``val``).

Attributes: a folder of images has none, so this config turns SSR's attribute parts off explicitly
(``method.attributes=False``: no attribute heads and no attribute loss, beta unused; ``method.afr=False``:
exhaustive Hamming search instead of attribute-first search). The AAB attention module is kept; without
attribute supervision it is trained by the ID and triplet losses only. With per-image binary attributes, describe
your images in CSV files instead (train.csv, query.csv, gallery.csv with a header path,pid,camid,<attribute
columns>; see jhash/data/reid_folder.py) and add --config.method.attributes=True --config.method.afr=True.

    python train.py --config configs/reid_folder/ssr.py --workdir runs/mine_ssr \
        --config.dataset.manual_dir=~/my_data --config.model.pretrained=~/weights/resnet50.safetensors
    python evaluate.py --workdir runs/mine_ssr
"""

import pathlib

from jhash import config as config_lib
from jhash.data import reid_folder


def get_config():
    c = config_lib.load_file(pathlib.Path(__file__).resolve().parents[1] / "market1501" / "ssr.py")
    c = reid_folder.experiment_config(c, image_size=(384, 128), val_fraction=0.1)
    c.method.attributes = False  # a folder of images has no attribute labels
    c.method.afr = False  # attribute-first search needs them too
    return c
