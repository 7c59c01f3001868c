"""Evaluate a trained workdir (thin entry point; the work is jhash.evaluator).

    python evaluate.py --workdir runs/demo [--config configs/synthetic_reid/baseline.py] [--step N]
                       [--visualize 8] [--tradeoff] [--compare_untrained]

Encodes query and gallery to packed codes (saved under <workdir>/codes/step_<N>/), runs the method's search,
prints the protocol's table (R1, R5, R10, mAP, mINP, bits, bytes per image, ms per query) and writes
<workdir>/eval_step_<N>.json. Without --config the workdir's config.json is used.
Encode one's own images with: python -m jhash.encode --workdir runs/demo --output codes.npz img*.jpg
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from jhash import config as config_lib

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file; default: <workdir>/config.json.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "The training workdir.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_VISUALIZE = flags.DEFINE_integer("visualize", 0, "Write a PNG of the top-10 results of this many queries.")
_TRADEOFF = flags.DEFINE_bool("tradeoff", False, "Write a plot of mAP against ms per query.")
_UNTRAINED = flags.DEFINE_bool("compare_untrained", False, "Also evaluate the untrained (initial) network.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)
    from jhash import checkpoints, evaluator

    config = _CONFIG.value
    if config is not None:
        config_lib.check(config)
    try:
        evaluator.evaluate(_WORKDIR.value, config=config, step=_STEP.value, visualize=_VISUALIZE.value,
                           tradeoff=_TRADEOFF.value, compare_untrained=_UNTRAINED.value)
    except (checkpoints.CheckpointError, config_lib.ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    config_lib.validate_argv(sys.argv)
    app.run(main)
