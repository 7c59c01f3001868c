"""Command line: prepare a dataset, or show what a prepared one holds.

    python -m jhash.data prepare market1501 --manual_dir ~/downloads --data_dir ~/tensorflow_datasets
    python -m jhash.data prepare market1501 --config 500k --manual_dir ~/downloads --data_dir ~/tfds
    python -m jhash.data prepare reid_folder --manual_dir ~/my_images --data_dir ~/tfds \\
        --option pattern='^(?P<pid>\\d+)-(?P<camid>\\d+)' --option example=12-3.jpg
    python -m jhash.data info market1501 --data_dir ~/tfds
    python -m jhash.data list
"""

from __future__ import annotations

import argparse
import ast
import sys


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv=None) -> int:
    from jhash import data

    p = argparse.ArgumentParser(prog="python -m jhash.data", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="registered dataset names")
    for name in ("prepare", "info"):
        q = sub.add_parser(name)
        q.add_argument("dataset", help=", ".join(data.available()))
        q.add_argument("--data_dir", required=True, help="where the prepared dataset is written")
        q.add_argument("--manual_dir", help="folder holding the official archive or extracted folder")
        q.add_argument("--config", help="config name (e.g. 500k, labeled, small)")
        q.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                       help="config field override (e.g. val_fraction=0.1); repeatable")
        q.add_argument("--skip_corrupt", action="store_true", help="skip undecodable images (counted) instead of failing")
    args = p.parse_args(argv)
    if args.cmd == "list":
        print("\n".join(data.available()))
        return 0
    config = args.config
    if args.option:
        config = {"base": args.config} if args.config else {}
        for kv in args.option:
            k, sep, v = kv.partition("=")
            if not sep:
                p.error(f"--option needs KEY=VALUE, got {kv!r}")
            config[k] = _value(v)
    kwargs = {"skip_corrupt": True} if args.skip_corrupt else {}
    if args.cmd == "info":
        builder = data._builder(args.dataset, data_dir=args.data_dir, config=config)
        if not data._is_prepared(builder):
            print(f"{args.dataset}/{builder.builder_config.name} is not prepared in {args.data_dir}: "
                  f"run `python -m jhash.data prepare {args.dataset} ...`", file=sys.stderr)
            return 1
    else:
        builder = data.prepare(args.dataset, data_dir=args.data_dir, manual_dir=args.manual_dir, config=config, **kwargs)
    md = builder.info.metadata or {}
    print(f"{builder.name}/{builder.builder_config.name} at {builder.data_dir}")
    for split, s in sorted(md.get("splits", {}).items()):
        print(f"  {split:8s} {s['num_examples']:8d} images {s['num_ids']:6d} ids")
    print(f"  classes {md.get('num_classes', 0)}, attributes {len(md.get('attribute_names', []))}, "
          f"models {md.get('num_models', 0)}, colours {md.get('num_colors', 0)}, protocol {md.get('protocol')}")
    if md.get("skipped", {}).get("count"):
        print(f"  skipped {md['skipped']['count']} corrupt image(s), e.g. {md['skipped']['files'][:3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
