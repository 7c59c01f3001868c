"""Evaluate a trained workdir (thin entry point; the command line is jhash.cli, the work jhash.evaluator).

    python evaluate.py --workdir runs/demo [--step N] [--visualize 8] [--tradeoff] [--compare_untrained]
                       [--output_dir DIR] [--config.eval.ties=expected] [--config FILE]

The same as the ``jhash-eval`` command. Encodes query and gallery to packed codes (saved under
<workdir>/codes/step_<N>/), runs the method's search, prints the protocol's table (R1, R5, R10, mAP, mINP, bits,
bytes per image, ms per query) and writes <workdir>/eval_step_<N>.json (an earlier one is kept: the new one is
eval_step_<N>_2.json). Without --config the workdir's config.json is used; --config.<key>=<value> overrides it.
Encode one's own images with: python -m jhash.encode --workdir runs/demo --output codes.npz img*.jpg
"""

import sys

from jhash.cli import evaluate_main

if __name__ == "__main__":
    sys.exit(evaluate_main())
