"""Command-line entry points: ``jhash-train`` (= ``python train.py``) and ``jhash-eval`` (= ``python evaluate.py``);
:func:`run` gives every jhash command (also ``jhash-encode``) the same error handling.

A user error — a bad config value, an unknown name, a missing file, split or checkpoint — is printed as one line
``error: ...`` and the command exits with status 2 (no traceback; set ``JHASH_DEBUG=1`` to see one). A run that
fails that way does not leave behind a workdir it created. ``--help`` prints the usage and exits with status 0.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import signal
import sys
import time
from typing import Callable, Sequence

#: exceptions that mean "the input was wrong", reported in one line (ConfigError, CheckpointNotFoundError, a
#: dataset's ValueError, a missing or unreadable file ...)
USER_ERRORS = (ValueError, OSError)

OVERRIDES_HELP = ("Any config field can be overridden: --config.<key>=<value>, e.g. --config.optimizer.lr=3e-4 "
                  "--config.train.steps=100 --config.input.image_size=\"(128, 64)\"; None means None. "
                  "Prepared datasets live in --config.dataset.data_dir, else $JHASH_DATA_DIR, else "
                  "~/tensorflow_datasets. Errors are one line; JHASH_DEBUG=1 shows the traceback.")


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit status 2)."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def one_line(error: BaseException) -> str:
    """The message of ``error`` on one line."""
    text = str(error) or type(error).__name__
    if isinstance(error, KeyError) and text.startswith("'"):
        text = text.strip("'")
    return "; ".join(part.strip() for part in text.splitlines() if part.strip())


def _interrupted_early(signum, frame):
    """Ctrl-C / SIGTERM before the training loop installs its own handlers (imports, flags, data, compiling):
    nothing is being written then, so exit at once (an exception raised here could be swallowed by a callback
    it interrupts, or meet a half-initialised runtime)."""
    print(f"\n{signal.Signals(signum).name} received before training started: stopped, nothing was written",
          file=sys.stderr, flush=True)
    os._exit(128 + signum)


def install_early_interrupt_handler() -> None:
    """Make Ctrl-C / SIGTERM exit cleanly during start-up (call first thing in a command's entry point)."""
    signal.signal(signal.SIGINT, _interrupted_early)
    signal.signal(signal.SIGTERM, _interrupted_early)


def run(main: Callable[[Sequence[str]], int], argv: Sequence[str] | None = None) -> int:
    """``main(argv)`` with jhash's error handling: user errors (also a workdir without config.json or checkpoints)
    -> one line on stderr and status 2; a run that cannot go on (a damaged checkpoint, a workdir in use, already
    trained) -> one line and status 1."""
    from jhash.checkpoints import CheckpointError, CheckpointNotFoundError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return main(argv)
    except (CheckpointError, *USER_ERRORS) as e:
        if os.environ.get("JHASH_DEBUG"):
            raise
        sys.stderr.write(f"error: {one_line(e)}\n")
        cannot_go_on = isinstance(e, CheckpointError) and not isinstance(e, CheckpointNotFoundError)
        return 1 if cannot_go_on else 2
    except KeyboardInterrupt:
        sys.stderr.write("\nSIGINT received twice: stopped at once; the checkpoints saved so far are intact\n")
        return 130


def _quiet_logging() -> None:
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)


def _config_argument(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("--config", metavar="FILE", help=help_text)


# --------------------------------------------------------------------------------------------------
# jhash-train


def train_parser() -> Parser:
    p = Parser(prog="jhash-train", description="Train a hashing method. Running the same command again resumes "
               "from the latest checkpoint in --workdir.", epilog=OVERRIDES_HELP)
    _config_argument(p, "config file, e.g. configs/synthetic_reid/baseline.py (required)")
    p.add_argument("--workdir", required=True, help="directory for checkpoints, metrics.jsonl and config.json")
    p.add_argument("--progress", dest="progress", action="store_true", default=True, help="show a progress bar "
                   "(default)")
    p.add_argument("--noprogress", dest="progress", action="store_false", help="no progress bar")
    return p


def _train(argv: Sequence[str]) -> int:
    from jhash import config as config_lib

    path, overrides, rest = config_lib.extract_overrides(argv)
    p = train_parser()
    args = p.parse_args(rest)
    if path is None:
        p.error("the following arguments are required: --config")
    config = config_lib.load(path, overrides)
    config_lib.validate(config)
    workdir = pathlib.Path(args.workdir).expanduser()
    existed = workdir.exists()
    _quiet_logging()
    from jhash import reporting, trainer
    from jhash import workdir as workdir_lib

    start = time.perf_counter()
    try:
        result = trainer.train(config, workdir, progress=args.progress, report=print)
    except trainer.Interrupted as e:
        print(f"\n{e}", file=sys.stderr)
        return 128 + (e.signum or 15)
    except trainer.NonFiniteLossError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 1
    except USER_ERRORS:
        if not existed:
            workdir_lib.remove_if_unused(workdir)
        raise
    loss = reporting.last_logged(workdir / "metrics.jsonl", after_step=result.resumed_from)
    print(reporting.end_summary(method=config.method.name, step=result.step, elapsed_s=time.perf_counter() - start,
                                final_loss=loss, workdir=workdir, resumed_from=result.resumed_from))
    return 0


def train_main(argv: Sequence[str] | None = None) -> int:
    """``jhash-train`` / ``python train.py``."""
    install_early_interrupt_handler()
    return run(_train, argv)


# --------------------------------------------------------------------------------------------------
# jhash-eval


def evaluate_parser() -> Parser:
    p = Parser(prog="jhash-eval", description="Evaluate a trained workdir: encode query and gallery, search, print "
               "R1/R5/R10/mAP/mINP, bits, bytes and ms per query, and write eval_step_<N>.json (never overwriting "
               "an earlier one).", epilog=OVERRIDES_HELP + " Overrides apply to the workdir's config.json, e.g. "
               "--config.eval.ties=expected.")
    _config_argument(p, "config file (default: <workdir>/config.json)")
    p.add_argument("--workdir", required=True, help="the training workdir")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    p.add_argument("--visualize", type=int, default=0, metavar="N",
                   help="write a PNG of the top-10 results of N queries")
    p.add_argument("--tradeoff", action="store_true", help="write a plot of mAP against ms per query")
    p.add_argument("--compare_untrained", action="store_true", help="also evaluate the untrained (initial) network")
    p.add_argument("--curves", action="store_true", help="also write curves.png (loss, learning rate and validation "
                   "mAP against the step, from metrics.jsonl; the selected step marked)")
    p.add_argument("--output_dir", default=None, help="where results go (default: the workdir; for read-only "
                   "workdirs)")
    return p


def _evaluate(argv: Sequence[str]) -> int:
    from jhash import config as config_lib
    from jhash import workdir as workdir_lib

    path, overrides, rest = config_lib.extract_overrides(argv)
    p = evaluate_parser()
    args = p.parse_args(rest)
    if args.visualize < 0:
        p.error(f"--visualize must be >= 0, got {args.visualize}")
    workdir = pathlib.Path(args.workdir).expanduser()
    config = None
    if path is not None:
        config = config_lib.load(path, overrides)
    elif overrides:
        config = config_lib.apply_overrides(workdir_lib.read_config(workdir), overrides)
    if config is not None:
        config_lib.validate(config)
    _quiet_logging()
    from jhash import evaluator

    evaluator.evaluate(workdir, config=config, step=args.step, visualize=args.visualize, tradeoff=args.tradeoff,
                       compare_untrained=args.compare_untrained, output_dir=args.output_dir)
    if args.curves:
        from jhash import curves

        out_dir = pathlib.Path(args.output_dir).expanduser() if args.output_dir else workdir
        out_dir.mkdir(parents=True, exist_ok=True)
        print(f"curves: {curves.write_workdir_curves(workdir, out_dir / 'curves.png')}")
    return 0


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    """``jhash-eval`` / ``python evaluate.py``."""
    return run(_evaluate, argv)
