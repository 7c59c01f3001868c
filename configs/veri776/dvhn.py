"""DVHN on VeRi-776: ImageNet ResNet-50, hash layer Linear(2048, 2048), 256×128 images, 6 images per
vehicle, pairwise likelihood + quantisation with a discrete W-/B-step after every epoch (DSDH weights
μ = 1e-2, ν = 1, η = 1e-2) and the author's CE + batch-hard triplet options; Market protocol with
same-camera removal. Optimiser and schedule are jhash's choice (the paper's text does not survive).

Put VeRi (or VeRi.zip) in --config.dataset.manual_dir and a torchvision ResNet-50 state_dict at
--config.model.pretrained, then:

    python train.py --config configs/veri776/dvhn.py --workdir runs/veri_dvhn \
        --config.dataset.manual_dir=~/downloads --config.model.pretrained=~/weights/resnet50.safetensors
    python evaluate.py --workdir runs/veri_dvhn --tradeoff

The network step's quantisation weight is η·min(1, 64/L) (DVHN's default, ``quant_weight_scale='length'``: the paper's η up to 64 bits);
the paper's single η: --config.method.quant_weight_scale=none.
"""

import pathlib

from jhash import config as config_lib


def get_config():
    """vehicleid's DVHN config on VeRi-776: the paper's settings are the same."""
    c = config_lib.load_file(pathlib.Path(__file__).resolve().parents[1] / "vehicleid" / "dvhn.py")
    c.dataset.name = "veri776"
    c.dataset.config = None
    return c
