"""CtF on your own images: configs/market1501/ctf.py's network, losses and schedule (ImageNet ResNet-50,
All-in-One code pyramid 2048 -> 512 -> 128 -> 32, CE + triplet on every code with probability and similarity
distillation) on the ``reid_folder`` data of configs/reid_folder/baseline.py (its docstring lists the folder
layout, the builder options and the defaults: 256x128 input, flip + pad/crop + random erasing).
CtF fits its coarse-to-fine thresholds (DTO) after training on the ``val`` split: 10% of *your training
identities*, held out from training (--config.dataset.options.val_fraction=0.4 for the paper's 6:4 split).
CtF needs identities only; its code lengths come from --config.method.lengths, not model.bits.

    python train.py --config configs/reid_folder/ctf.py --workdir runs/mine_ctf \
        --config.dataset.manual_dir=~/my_data --config.model.pretrained=~/weights/resnet50.safetensors
    python evaluate.py --workdir runs/mine_ctf --tradeoff
"""

import pathlib

from jhash import config as config_lib
from jhash.data import reid_folder


def get_config():
    c = config_lib.load_file(pathlib.Path(__file__).resolve().parents[1] / "market1501" / "ctf.py")
    return reid_folder.experiment_config(c, image_size=(256, 128), val_fraction=0.1)
