"""CtF (Wang et al., ECCV 2020) on MSMT17 with the paper's hyperparameters: ResNet-50 (ImageNet weights
converted from torchvision) -> All-in-One code pyramid 2048 -> 512 -> 128 -> 32 (BN, tanh in training, sign at
test), CE (label smoothing 0.1) + batch-hard triplet (margin 0.3) on every code, probability distillation
(T = 10, lambda_1 = 1) and similarity distillation (lambda_2 = 1000) from the next-longer code; 256x128 input,
16 identities x 4 images, Adam 3.5e-4 with a 10-epoch warm-up and x0.1 at epochs 40 and 70, 120 epochs.

DTO (beta = 2) is fitted after training on a ``val`` split of *training identities* (10% of them, held out
from training; never the test split). The paper holds out 40% (a 6:4 split); set
--config.dataset.config.val_fraction=0.4 for that. The thresholds are saved with the final checkpoint and
evaluate.py runs the coarse-to-fine search with them.

Put the MSMT17_V1 (or MSMT17_V2) archive in --config.dataset.manual_dir and a torchvision ResNet-50 state_dict at
--config.model.pretrained, then:

    python train.py --config configs/msmt17/ctf.py --workdir runs/msmt17_ctf \
        --config.dataset.manual_dir=~/downloads --config.model.pretrained=~/weights/resnet50.safetensors
    python evaluate.py --workdir runs/msmt17_ctf --tradeoff

Other DTO trade-offs: --config.method.beta=1 (faster) or 4 (more accurate).
"""

import pathlib

from jhash import config as config_lib


def get_config():
    """market1501's config with this dataset: the paper's settings are the same."""
    c = config_lib.load_file(pathlib.Path(__file__).resolve().parents[1] / "market1501" / "ctf.py")
    c.dataset.name = "msmt17"
    return c
