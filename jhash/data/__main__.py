"""Command line: prepare a dataset, show what a prepared one holds, or export it as a folder of images.

    python -m jhash.data prepare market1501 --manual_dir ~/downloads
    python -m jhash.data prepare market1501 --config 500k --manual_dir ~/downloads --data_dir ~/tfds
    python -m jhash.data prepare reid_folder --manual_dir ~/my_images \\
        --option pattern='^(?P<pid>\\d+)x(?P<camid>\\d+)' --option example=12x3.jpg
    python -m jhash.data info market1501
    python -m jhash.data export synthetic_reid --output my_data      # my_data/{train,query,gallery}/<pid>-<cam>-<n>.jpg
    python -m jhash.data list

Datasets live in --data_dir, by default $JHASH_DATA_DIR or ~/tensorflow_datasets (as for train.py).
A wrong input (a missing folder, a bad name, a corrupt image) prints one ``error:`` line and exits with 2.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

NAME_FORMAT = "{pid}-{camid}-{n}{ext}"


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _config(args, p) -> object:
    config = args.config
    if args.option:
        config = {"base": args.config} if args.config else {}
        for kv in args.option:
            k, sep, v = kv.partition("=")
            if not sep:
                p.error(f"--option needs KEY=VALUE, got {kv!r}")
            config[k] = _value(v)
    return config


def _parser(names) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jhash.data", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.split("\n")[1:]))
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="registered dataset names")
    for name, what in (("prepare", "build a dataset (or rebuild it when its source changed)"),
                       ("info", "what a prepared dataset holds"),
                       ("export", "write a dataset's images as <output>/<split>/<pid>-<cam>-<n>.<ext>")):
        q = sub.add_parser(name, help=what, description=what)
        q.add_argument("dataset", help=", ".join(names))
        q.add_argument("--data_dir", default=None,
                       help="where prepared datasets live (default: $JHASH_DATA_DIR or ~/tensorflow_datasets)")
        q.add_argument("--manual_dir", help="folder holding the official archive or extracted folder, or your images "
                                            "(default: the folder the dataset was prepared from)")
        q.add_argument("--config", help="config name (e.g. 500k, labeled, small)")
        q.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                       help="config field override (e.g. val_fraction=0.1); repeatable")
        q.add_argument("--skip_corrupt", action="store_true",
                       help="skip undecodable images, broken links and folders named like images (counted) instead of failing")
        if name == "export":
            q.add_argument("--output", required=True, help="new (or empty) folder to write")
            q.add_argument("--splits", default="train,query,gallery", help="comma-separated splits to write")
            q.add_argument("--name_format", default=NAME_FORMAT,
                           help=f"file name of each image; fields pid, camid, n (per pid and camera), ext (default {NAME_FORMAT!r})")
    return p


def main(argv=None) -> int:
    from jhash import data

    p = _parser(data.available())
    args = p.parse_args(argv)
    if args.cmd == "list":
        print("\n".join(data.available()))
        return 0
    try:
        return _run(args, _config(args, p))
    except data.DATA_ERRORS as e:
        _error(e)
        return 2


def _error(e: BaseException) -> None:
    """``error: <first paragraph on one line>``, then any further paragraphs (how to prepare the dataset)."""
    first, _, rest = str(e).strip().partition("\n\n")
    print(f"error: {' '.join(first.split())}", file=sys.stderr)
    if rest:
        print(rest.rstrip(), file=sys.stderr)


def _run(args, config) -> int:
    from jhash import data

    data_dir = data.default_data_dir(args.data_dir)
    kwargs = {"skip_corrupt": True} if args.skip_corrupt else {}
    if args.cmd == "info":
        builder = data._builder(args.dataset, data_dir=data_dir, config=config)
        if not data._is_prepared(builder):
            raise data.DatasetError(f"{args.dataset}/{builder.builder_config.name} is not prepared in {data_dir}: "
                                    f"run `python -m jhash.data prepare {args.dataset} --manual_dir DIR`")
    else:
        builder = data.prepare(args.dataset, data_dir=data_dir, manual_dir=args.manual_dir, config=config, **kwargs)
    if args.cmd == "export":
        return _export(builder, args)
    _describe(builder)
    return 0


def _describe(builder) -> None:
    md = builder.info.metadata or {}
    print(f"{builder.name}/{builder.builder_config.name} at {builder.data_dir}")
    for split, s in sorted(md.get("splits", {}).items()):
        print(f"  {split:8s} {s['num_examples']:8d} images {s['num_ids']:6d} ids")
    print(f"  classes {md.get('num_classes', 0)}, attributes {len(md.get('attribute_names', []))}, "
          f"models {md.get('num_models', 0)}, colours {md.get('num_colors', 0)}, protocol {md.get('protocol')}")
    source = md.get("source") or {}
    if source:
        print(f"  source {source.get('manual_dir')} ({source.get('num_images')} images, {source.get('num_bytes')} bytes, "
              f"fingerprint {str(source.get('digest'))[:12]})")
    if md.get("skipped", {}).get("count"):
        print(f"  skipped {md['skipped']['count']} unreadable image(s), e.g. {md['skipped']['files'][:3]}")


def image_extension(data: bytes) -> str:
    """The file extension of encoded image bytes, from their signature (``.jpg``, ``.png``, ``.bmp``)."""
    if data[:3] == b"\xff\xd8\xff":
        return ".jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return ".png"
    if data[:2] == b"BM":
        return ".bmp"
    raise ValueError("not a JPEG, PNG or BMP image")


def _export(builder, args) -> int:
    from jhash import data

    out = Path(args.output).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise data.DatasetError(f"--output {out} exists and is not an empty folder; give a new folder")
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    unknown = [s for s in splits if s not in builder.info.splits]
    if unknown:
        raise data.DatasetError(f"--splits: {builder.name}/{builder.builder_config.name} has no split "
                                f"{', '.join(unknown)}; splits: {', '.join(sorted(builder.info.splits))}")
    for split in splits:
        source = builder.as_data_source(split=split)
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        counts: dict[tuple[int, int], int] = {}
        for i in range(len(source)):
            rec = source[i]
            image = rec["image"].item() if hasattr(rec["image"], "item") else rec["image"]
            key = (int(rec["pid"]), int(rec["camid"]))
            counts[key] = counts.get(key, 0) + 1
            name = args.name_format.format(pid=key[0], camid=key[1], n=counts[key], ext=image_extension(image))
            (folder / name).write_bytes(image)
        print(f"  {split:8s} {len(source):8d} images -> {folder}")
    print(f"exported {builder.name}/{builder.builder_config.name} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
