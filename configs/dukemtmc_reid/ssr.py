"""SSR + AAB + AFR (Jin et al. 2021) on DukeMTMC-reID with the paper's hyperparameters: ResNet-50 (ImageNet weights
converted from torchvision, last stride 1), shared up to layer2, then a teacher and a student copy of
layer3 + layer4; PCB descriptors 6 x 256 + 512 = 2048 bits with BN and the self-distilling smooth relaxation
(alpha = 0.3), AAB (r = 8) on the global map, binary attribute heads (beta = 0.3) for
the binary attributes of duke_attribute.mat,
batch-hard triplet (margin 0.3) + ID cross-entropy on all 14 vectors (eq. 14). 384x128 input, SGD momentum 0.9,
batch 64 (16 identities x 4 images), 350 epochs, linear warm-up over 20 epochs from 1e-3 to 1e-2 (the paper
gives no decay after the warm-up: the rate stays at 1e-2).
The AFR window is fitted after training on a ``val`` split of 10% of the training identities
(w rule: attribute-only rank-w accuracy >= 97%; never the test split) and used by evaluate.py.

Put the dataset archive in --config.dataset.manual_dir and a torchvision ResNet-50 state_dict at
--config.model.pretrained (loaded into the trunk and both branches by ``jhash.methods.ssr.load_pretrained``), then:

    python train.py --config configs/dukemtmc_reid/ssr.py --workdir runs/dukemtmc_reid_ssr \
        --config.dataset.manual_dir=~/downloads --config.model.pretrained=~/weights/resnet50.safetensors
    python evaluate.py --workdir runs/dukemtmc_reid_ssr
"""

import pathlib

from jhash import config as config_lib


def get_config():
    """market1501's config with this dataset: the paper's settings are the same."""
    c = config_lib.load_file(pathlib.Path(__file__).resolve().parents[1] / "market1501" / "ssr.py")
    c.dataset.name = "dukemtmc_reid"
    return c
