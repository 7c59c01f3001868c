"""DRSCH on your own images: configs/market1501/drsch.py's network and training (ImageNet ResNet-50, 64-bit
sigmoid hash layer x learnable bit weights, weighted triplet ranking loss with margin 0.25 per bit + Laplacian
regulariser 1e-3, SGD lr 1e-3) on the ``reid_folder`` data of configs/reid_folder/baseline.py (its docstring
lists the folder layout, the builder options and the defaults: 256x128 input, flip + pad/crop + random erasing,
10% of the training identities held out as ``val``). DRSCH needs identities only.

    python train.py --config configs/reid_folder/drsch.py --workdir runs/mine_drsch \
        --config.dataset.manual_dir=~/my_data --config.model.pretrained=~/weights/resnet50.safetensors
    python evaluate.py --workdir runs/mine_drsch --tradeoff
"""

import pathlib

from jhash import config as config_lib
from jhash.data import reid_folder


def get_config():
    c = config_lib.load_file(pathlib.Path(__file__).resolve().parents[1] / "market1501" / "drsch.py")
    return reid_folder.experiment_config(c, image_size=(256, 128), val_fraction=0.1)
