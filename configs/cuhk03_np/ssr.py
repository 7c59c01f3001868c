"""SSR + AAB (Jin et al. 2021) on CUHK03-NP (labeled boxes; --config.dataset.config=detected for the detected
ones) with the paper's hyperparameters: ResNet-50 (ImageNet weights converted from torchvision, last stride 1),
shared up to layer2, then a teacher and a student copy of layer3 + layer4; PCB descriptors 6 x 256 + 512 = 2048
bits with BN and the self-distilling smooth relaxation (alpha = 0.3), AAB (r = 8) on the global map, no
attribute heads (CUHK03 has no public attribute annotations, so AFR is off: exhaustive 2048-bit search),
batch-hard triplet (margin 0.3) + ID cross-entropy on all 14 vectors (eq. 14). 384x128 input, SGD momentum 0.9,
batch 64 (16 identities x 4 images), 350 epochs, linear warm-up over 20 epochs from 1e-3 to 1e-2 (the paper
gives no decay after the warm-up: the rate stays at 1e-2).

Put the dataset archive in --config.dataset.manual_dir and a torchvision ResNet-50 state_dict at
--config.model.pretrained (loaded into the trunk and both branches by ``jhash.methods.ssr.load_pretrained``), then:

    python train.py --config configs/cuhk03_np/ssr.py --workdir runs/cuhk03_np_ssr \
        --config.dataset.manual_dir=~/downloads --config.model.pretrained=~/weights/resnet50.safetensors
    python evaluate.py --workdir runs/cuhk03_np_ssr
"""

import pathlib

from jhash import config as config_lib


def get_config():
    """market1501's SSR config on CUHK03-NP, without the attribute heads and AFR (no public attributes)."""
    c = config_lib.load_file(pathlib.Path(__file__).resolve().parents[1] / "market1501" / "ssr.py")
    c.dataset.name = "cuhk03_np"
    del c.dataset["config"]  # Market's is a dict (val hold-out); CUHK03-NP's is the box type
    c.dataset.config = "labeled"
    c.dataset.val_split = None
    c.method.attributes = False
    c.method.afr = False
    return c
