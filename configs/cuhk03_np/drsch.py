"""DRSCH on cuhk03_np: ImageNet ResNet-50 (the paper's own small CNN is not specified well enough to rebuild),
a 64-bit sigmoid hash layer × learnable bit weights, weighted triplet ranking loss (all valid triplets of
16 identities × 4 images, margin 0.25 per bit) + Laplacian regulariser β = 1e-3, SGD momentum 0.9, lr 1e-3
(×10 on the new layers), weight decay 5e-4 (Caffe settings of the public code), 256×128 input.
Bit-scalable evaluation: codes are ordered by |w|, the 16- and 32-bit prefixes are also reported.

Put the dataset archive / folder in --config.dataset.manual_dir and a torchvision ResNet-50 state_dict at
--config.model.pretrained, then:

    python train.py --config configs/cuhk03_np/drsch.py --workdir runs/cuhk03_np_drsch \
        --config.dataset.manual_dir=~/downloads --config.model.pretrained=~/weights/resnet50.safetensors
    python evaluate.py --workdir runs/cuhk03_np_drsch --tradeoff

DSCH: --config.method.laplacian_weight=0.
"""

import pathlib

from jhash import config as config_lib


def get_config():
    """market1501's DRSCH config on CUHK03-NP (labeled): the paper's settings are the same."""
    c = config_lib.load_file(pathlib.Path(__file__).resolve().parents[1] / "market1501" / "drsch.py")
    c.dataset.name = "cuhk03_np"
    c.dataset.config = "labeled"
    return c
