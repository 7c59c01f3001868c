"""The CtF All-in-One ablation (the paper's Table 5) on synthetic_reid: the CtF config plus a ``variant``
field, ``config.method.variant`` (see ``jhash.methods.ctf.VARIANTS``):

- ``separate``: separate models, one small CNN + hash head per code length, no distillation (neither CP nor SD);
- ``pyramid``: the code pyramid without self-distillation (CP);
- ``pyramid_distill`` (default here): the code pyramid with probability + similarity distillation (CP + SD);
- ``parallel``: independent hash heads on one shared backbone, no distillation (an extra reference point).

    for v in separate pyramid pyramid_distill; do
        python train.py --config configs/synthetic_reid/ctf_ablation.py --config.method.variant=$v \
            --workdir runs/ctf_ablation_$v
        python evaluate.py --workdir runs/ctf_ablation_$v --tradeoff
    done
"""

import importlib.util
import pathlib


def _base():
    path = pathlib.Path(__file__).with_name("ctf.py")
    spec = importlib.util.spec_from_file_location("_jhash_config_synthetic_ctf", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def get_config():
    c = _base().get_config()
    c.method.variant = "pyramid_distill"
    return c
