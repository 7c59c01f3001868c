"""DHMTL on your own images: configs/vehicleid/dhmtl.py's network and training (GoogLeNet from scratch, a
1024-unit ReLU hash layer, softmax heads, SGD lr 1e-3, 15 identities x 4 images, 100k iterations) on the
``reid_folder`` data of configs/reid_folder/baseline.py (its docstring lists the folder layout, the builder
options and the defaults: flip + pad/crop + random erasing, 10% of the training identities held out as
``val``), at 256x128 (people, not the vehicles' 224x224).

Labels: DHMTL's multi-task heads learn vehicle model and colour next to the identity; a folder of images has
neither, so this config uses the identity head alone (``method.heads=('id',)``) and no auxiliary classifiers
(``method.aux_heads=False``: GoogLeNet's aux heads are supervised with model labels). With model/colour labels,
describe your images in CSV files (train.csv, query.csv, gallery.csv with a header path,pid,camid,model,color;
see jhash/data/reid_folder.py) and add --config.method.heads="('id', 'model', 'color')" --config.method.aux_heads=True.

    python train.py --config configs/reid_folder/dhmtl.py --workdir runs/mine_dhmtl --config.dataset.manual_dir=~/my_data
    python evaluate.py --workdir runs/mine_dhmtl
"""

import pathlib

from jhash import config as config_lib
from jhash.data import reid_folder


def get_config():
    c = config_lib.load_file(pathlib.Path(__file__).resolve().parents[1] / "vehicleid" / "dhmtl.py")
    c = reid_folder.experiment_config(c, image_size=(256, 128), val_fraction=0.1)
    c.method.heads = ("id",)  # a folder of images has no model / colour labels
    c.method.aux_heads = False  # GoogLeNet's auxiliary classifiers learn model labels
    return c
