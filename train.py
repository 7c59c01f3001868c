"""Train a hashing method (thin entry point; the command line is jhash.cli, the loop jhash.trainer).

    python train.py --config configs/synthetic_reid/baseline.py --workdir runs/demo [--config.optimizer.lr=3e-4 ...]

The same as the ``jhash-train`` command. Running the same command again resumes from the latest checkpoint in
--workdir (a changed config: compatible changes such as the learning rate or the length are taken with a warning
and recorded in config.json; others are refused). Ctrl-C / SIGTERM save a checkpoint and exit (status 130 / 143);
a NaN or infinite loss exits with status 1 naming the step; a user error prints one line and exits with status 2.
"""

import sys

from jhash.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
