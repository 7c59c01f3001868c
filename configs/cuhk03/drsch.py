"""DRSCH on CUHK03 (original release, classic protocol): the person re-identification experiment of the DRSCH
paper. Network and training as configs/market1501/drsch.py (ImageNet ResNet-50, 64-bit sigmoid hash layer x
learnable bit weights, weighted triplet ranking loss with margin 0.25 per bit + Laplacian regulariser 1e-3,
SGD momentum 0.9, lr 1e-3, 256x128 input); data: the ``labeled`` boxes, classic test split
``dataset.options.split`` (0..19): train on every other identity (both cameras), evaluate on the split's 100
test identities with the ``cuhk03`` protocol (jhash.metrics.cuhk03_classic_eval: single-shot CMC, each query
against one image per identity from the other camera, averaged over 10 random gallery draws).
Bit-scalable evaluation: codes ordered by |w|, the 16- and 32-bit prefixes are also reported.

Extract cuhk03_release.zip in --config.dataset.manual_dir (it holds cuhk03_release/cuhk-03.mat) and put a
torchvision ResNet-50 state_dict at --config.model.pretrained, then:

    python train.py --config configs/cuhk03/drsch.py --workdir runs/cuhk03_drsch_0 \
        --config.dataset.manual_dir=~/downloads --config.model.pretrained=~/weights/resnet50.safetensors
    python evaluate.py --workdir runs/cuhk03_drsch_0 --tradeoff

The paper's number is the mean over the 20 splits: run each (--config.dataset.options.split=K with its own
--workdir runs/cuhk03_drsch_K) and average R1/R5/R10. Detected boxes: --config.dataset.config=detected.
"""

import pathlib

import ml_collections

from jhash import config as config_lib


def get_config():
    c = config_lib.load_file(pathlib.Path(__file__).resolve().parents[1] / "market1501" / "drsch.py")
    c.dataset.name = "cuhk03"
    c.dataset.config = "labeled"
    c.dataset.options = ml_collections.ConfigDict(dict(split=0))  # the classic test split, 0..19
    c.dataset.val_split = None
    c.input.image_size = (256, 128)
    return c
