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

import ml_collections

from jhash import config as config_lib
from jhash.methods import ssr


def get_config():
    c = config_lib.base_config()
    c.dataset.name = "dukemtmc_reid"
    del c.dataset["config"]
    c.dataset.config = ml_collections.ConfigDict({"val_fraction": 0.1, "val_seed": 0})
    c.dataset.val_split = "val"

    c.input.image_size = (384, 128)

    c.model.backbone = "resnet50"
    c.model.backbone_kwargs.last_stride = 1
    c.model.bits = 2048  # 6 x 256 local + 512 global
    c.model.pooling = "avg"

    c.method = ssr.method_config(relaxation="ssr", bn=True, alpha=0.3, beta=0.3, attention=True, reduction=8,
                                 triplet_margin=0.3, afr=True, afr_target=0.97)

    c.optimizer.name = "sgd"
    c.optimizer.lr = 1e-2
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 5e-4
    c.optimizer.schedule = "multistep"
    c.optimizer.milestones = ()
    c.optimizer.warmup = 20  # epochs, from warmup_factor * lr = 1e-3
    c.optimizer.warmup_factor = 0.1

    c.train.epochs = 350
    c.train.batch_p = 16
    c.train.batch_k = 4
    c.train.compute_dtype = "float32"
    c.train.log_every = 50
    c.train.ckpt_every = 2000
    c.train.keep = 3

    c.eval.batch_size = 256
    c.eval.code = "id"
    return c
