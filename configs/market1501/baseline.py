"""Baseline on Market-1501: ResNet-50 (last stride 1, ImageNet weights converted from torchvision) + BNNeck
+ 256-bit tanh hash layer, CE (label smoothing 0.1) + batch-hard triplet (margin 0.3), Adam 3.5e-4 with
10-epoch warm-up and ×0.1 at epochs 40 and 70, 120 epochs of 16 identities × 4 images at 256×128 (BoT recipe).

Put the official Market-1501-v15.09.15.zip in --config.dataset.manual_dir and a torchvision ResNet-50
state_dict (resnet50-*.pth or .safetensors) at --config.model.pretrained, then:

    python train.py --config configs/market1501/baseline.py --workdir runs/market_baseline \
        --config.dataset.manual_dir=~/downloads --config.model.pretrained=~/weights/resnet50.safetensors
    python evaluate.py --workdir runs/market_baseline --visualize 8 --tradeoff
"""

from jhash import config as config_lib
from jhash.methods import baseline


def get_config():
    c = config_lib.base_config()
    c.dataset.name = "market1501"

    c.input.image_size = (256, 128)

    c.model.backbone = "resnet50"
    c.model.backbone_kwargs.last_stride = 1
    c.model.bits = 256
    c.model.pooling = "avg"

    c.method = baseline.method_config(triplet_margin=0.3, label_smoothing=0.1)

    c.optimizer.name = "adam"
    c.optimizer.lr = 3.5e-4
    c.optimizer.weight_decay = 5e-4
    c.optimizer.schedule = "multistep"
    c.optimizer.warmup = 10  # epochs
    c.optimizer.warmup_factor = 0.1
    c.optimizer.milestones = (40, 70)
    c.optimizer.gamma = 0.1
    # Per-group learning-rate factors, e.g. 10x for the new layers: --config.optimizer.lr_mult="(('^(?!backbone)', 10.0),)"

    c.train.epochs = 120
    c.train.batch_p = 16
    c.train.batch_k = 4
    c.train.compute_dtype = "float32"
    c.train.log_every = 50
    c.train.ckpt_every = 2000
    c.train.keep = 3

    c.eval.batch_size = 256
    c.eval.tradeoff_bits = (32, 64, 128)
    return c
