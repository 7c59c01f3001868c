"""CtF (Wang et al., ECCV 2020) on Market-1501 with the paper's hyperparameters: ResNet-50 (ImageNet weights
converted from torchvision) -> All-in-One code pyramid 2048 -> 512 -> 128 -> 32 (BN, tanh in training, sign at
test), CE (label smoothing 0.1) + batch-hard triplet (margin 0.3) on every code, probability distillation
(T = 10, lambda_1 = 1) and similarity distillation (lambda_2 = 1000) from the next-longer code; 256x128 input,
16 identities x 4 images, Adam 3.5e-4 with a 10-epoch warm-up and x0.1 at epochs 40 and 70, 120 epochs.

DTO (beta = 2) is fitted after training on a ``val`` split of *training identities* (10% of them, held out
from training; never the test split). The paper holds out 40% (a 6:4 split); set
--config.dataset.config.val_fraction=0.4 for that. The thresholds are saved with the final checkpoint and
evaluate.py runs the coarse-to-fine search with them.

Put the Market-1501-v15.09.15.zip in --config.dataset.manual_dir and a torchvision ResNet-50 state_dict at
--config.model.pretrained, then:

    python train.py --config configs/market1501/ctf.py --workdir runs/market1501_ctf \
        --config.dataset.manual_dir=~/downloads --config.model.pretrained=~/weights/resnet50.safetensors
    python evaluate.py --workdir runs/market1501_ctf --tradeoff

The search uses the recall-targeted thresholds by default (jhash.methods.ctf: threshold_fit='recall'); the paper's DTO
is --config.method.threshold_fit=dto, with other trade-offs --config.method.beta=1 (faster) or 4 (more accurate).
"""

import ml_collections

from jhash import config as config_lib
from jhash.methods import ctf


def get_config():
    c = config_lib.base_config()
    c.dataset.name = "market1501"
    del c.dataset["config"]
    c.dataset.config = ml_collections.ConfigDict({"val_fraction": 0.1, "val_seed": 0})
    c.dataset.val_split = "val"

    c.input.image_size = (256, 128)

    c.model.backbone = "resnet50"
    c.model.backbone_kwargs.last_stride = 1
    c.model.bits = 2048  # the longest code (config.method.lengths[0]); informative only
    c.model.pooling = "avg"

    c.method = ctf.method_config(lengths=(2048, 512, 128, 32), triplet_margin=0.3, label_smoothing=0.1,
                                 temperature=10.0, prob_weight=1.0, sim_weight=1000.0, teacher="next", beta=2.0)

    c.optimizer.name = "adam"
    c.optimizer.lr = 3.5e-4
    c.optimizer.weight_decay = 5e-4
    c.optimizer.schedule = "multistep"
    c.optimizer.warmup = 10  # epochs
    c.optimizer.warmup_factor = 0.1
    c.optimizer.milestones = (40, 70)
    c.optimizer.gamma = 0.1

    c.train.epochs = 120
    c.train.batch_p = 16
    c.train.batch_k = 4
    c.train.compute_dtype = "float32"
    c.train.log_every = 50
    c.train.ckpt_every = 2000
    c.train.keep = 3

    c.eval.batch_size = 256
    c.eval.code = "id"  # the longest code; the CtF search itself uses every level
    return c
