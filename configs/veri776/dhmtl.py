"""DHMTL on VeRi-776 (colour and type labels from train_label.xml; the type plays the paper's "model"):
GoogLeNet from scratch with aux classifiers supervised by the type, 1024-unit ReLU hash layer, ID + type +
colour softmax heads, SGD momentum 0.9, lr 1e-3 (×10 on the heads), weight decay 5e-4, batch 60, 100k
iterations with lr ÷10 after 50k, 224×224 input (the paper's settings).

Put VeRi (with train_label.xml) in --config.dataset.manual_dir, then:

    python train.py --config configs/veri776/dhmtl.py --workdir runs/veri_dhmtl --config.dataset.manual_dir=~/downloads
    python evaluate.py --workdir runs/veri_dhmtl
"""

import pathlib

from jhash import config as config_lib


def get_config():
    """vehicleid's DHMTL config on VeRi-776: the paper's settings are the same."""
    c = config_lib.load_file(pathlib.Path(__file__).resolve().parents[1] / "vehicleid" / "dhmtl.py")
    c.dataset.name = "veri776"
    c.dataset.config = None
    return c
