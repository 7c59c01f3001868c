"""DVHN on your own images: configs/vehicleid/dvhn.py's network and training (ImageNet ResNet-50, hash layer
2048 -> 2048, pairwise likelihood + quantisation with the discrete W-/B-step after every epoch, CE + batch-hard
triplet, 16 identities x 6 images, 60 epochs) on the ``reid_folder`` data of configs/reid_folder/baseline.py
(its docstring lists the folder layout, the builder options and the defaults: 256x128 input, flip + pad/crop +
random erasing, 10% of the training identities held out as ``val``). DVHN needs identities only.

    python train.py --config configs/reid_folder/dvhn.py --workdir runs/mine_dvhn \
        --config.dataset.manual_dir=~/my_data --config.model.pretrained=~/weights/resnet50.safetensors
    python evaluate.py --workdir runs/mine_dvhn --tradeoff

The network step's quantisation weight is η·min(1, 64/L) (DVHN's default, ``quant_weight_scale='length'``: the paper's η up to 64 bits);
the paper's single η: --config.method.quant_weight_scale=none.
"""

import pathlib

from jhash import config as config_lib
from jhash.data import reid_folder


def get_config():
    c = config_lib.load_file(pathlib.Path(__file__).resolve().parents[1] / "vehicleid" / "dvhn.py")
    return reid_folder.experiment_config(c, image_size=(256, 128), val_fraction=0.1)
