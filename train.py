"""Train a hashing method (thin entry point; the loop is jhash.trainer).

    python train.py --config configs/synthetic_reid/baseline.py --workdir runs/demo [--config.optimizer.lr=3e-4 ...]

Running the same command again resumes from the latest checkpoint in --workdir. Ctrl-C / SIGTERM save a
checkpoint and exit (status 130 / 143); a NaN or infinite loss exits with status 1 naming the step.
"""

import os
import signal
import sys


def _interrupted_early(signum, frame):
    """Ctrl-C / SIGTERM outside the training loop (imports, flags; the trainer handles its own): nothing is being
    written then, so exit at once (an exception raised here could be swallowed by a callback it interrupts)."""
    print(f"\n{signal.Signals(signum).name} received before training started: stopped, nothing was written",
          file=sys.stderr, flush=True)
    os._exit(128 + signum)


signal.signal(signal.SIGINT, _interrupted_early)
signal.signal(signal.SIGTERM, _interrupted_early)

from absl import app, flags, logging  # noqa: E402  (after the handlers: imports take seconds)
from ml_collections import config_flags  # noqa: E402

from jhash import config as config_lib  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/<dataset>/<method>.py).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics.jsonl and config.json.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)
    from jhash import checkpoints, trainer
    from jhash.data.common import DatasetError

    config = _CONFIG.value
    config_lib.check(config)
    try:
        result = trainer.train(config, _WORKDIR.value, progress=_PROGRESS.value)
    except trainer.Interrupted as e:
        print(f"\n{e}", file=sys.stderr)
        return 128 + (e.signum or 15)
    except KeyboardInterrupt:
        print("\nSIGINT received twice: stopped at once; the checkpoints saved so far are intact", file=sys.stderr)
        return 130
    except (trainer.NonFiniteLossError, config_lib.ConfigError, checkpoints.CheckpointError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    note = f" (resumed from step {result.resumed_from})" if result.resumed_from is not None else ""
    print(f"trained {config.method.name} to step {result.step}{note}; checkpoints in {result.workdir / 'checkpoints'}")
    return 0


if __name__ == "__main__":
    config_lib.validate_argv(sys.argv)
    app.run(main)
