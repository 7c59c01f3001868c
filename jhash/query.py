"""Search your own query images against a gallery with a trained workdir; get the gallery files back.

    python -m jhash.query --workdir runs/mine my_data/query/*.jpg                  # the dataset's gallery split
    python -m jhash.query --workdir runs/mine q1.jpg q2.jpg --gallery ~/photos/   # any folder of images
    python -m jhash.query --workdir runs/mine 'shots/*.png' --top 5 --json hits.json --output hits.png

Queries are image files, glob patterns or folders. The gallery is a folder (every image in it and below) or a
split of the workdir's dataset (``--gallery gallery`` is the default). Both are encoded with the workdir's model
(:func:`jhash.encode.encode_images` for files) into the packed codes ``config.eval.code`` and ranked by exact
Hamming distance (:func:`jhash.search.hamming_topk`, ties by gallery order). For each query it prints the top-k
gallery files with their Hamming distance, and writes a rank-list image: one row per query (up to
``--visualize`` rows), the query then its results, each titled with rank, distance and file name (and identity /
camera where the gallery split knows them; frames are green / red only when both identities are known: a
``reid_folder`` workdir reads the query's identity from its file name with the dataset's pattern).
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")  # as jhash.data.common (which needs TFDS)


class QueryError(ValueError):
    """A wrong argument of the query command (no image found, an unknown split)."""


@dataclasses.dataclass
class Gallery:
    """Gallery images to search: display paths, packed codes, and identities / cameras when known."""

    paths: list[str]
    codes: np.ndarray
    pids: np.ndarray | None = None
    camids: np.ndarray | None = None
    images: list | None = None  # encoded bytes per image when the gallery is a dataset split


def expand_images(patterns: Sequence[str], what: str) -> list[str]:
    """Image files named by ``patterns`` (files, glob patterns or folders searched recursively), in order given,
    each once; :class:`QueryError` naming a pattern that matches no image."""
    out: list[str] = []
    for pattern in patterns:
        p = Path(pattern).expanduser()
        if p.is_dir():
            found = sorted(str(f) for f in p.rglob("*") if f.is_file() and f.name.lower().endswith(IMAGE_EXTENSIONS))
        elif p.is_file():
            found = [str(p)]
        else:
            found = sorted(f for f in glob.glob(os.path.expanduser(pattern), recursive=True) if Path(f).is_file())
        if not found:
            raise QueryError(f"{what} {pattern!r}: no image file there (expected files, a glob or a folder of "
                             f"{', '.join(IMAGE_EXTENSIONS)} images)")
        out += [f for f in found if f not in out]
    return out


def rank(q_codes: np.ndarray, g_codes: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    """``(distances, indices)`` ``int [nq, min(top, ng)]``: exact Hamming top-k, ties by gallery index."""
    from jhash import search

    d, i = search.hamming_topk(q_codes, g_codes, min(int(top), int(g_codes.shape[0])))
    return np.asarray(d), np.asarray(i)


def _split_gallery(trained, split: str, code: str) -> Gallery:
    """Encode a split of the workdir's dataset; display paths are files under manual_dir where they exist."""
    from jhash import encode as encode_lib
    from jhash import parallel, trainer

    c = trained.config
    data = trainer.Data(c)
    try:
        source = data.source(split)
    except ValueError as e:
        raise QueryError(f"--gallery {split!r} is neither a folder nor a split of the workdir's dataset: {e}") from None
    mesh = parallel.make_mesh()
    fn = encode_lib.codes_fn(trained.model, trained.method, c, mesh)
    out = encode_lib.run_split(fn, trained.variables, data.eval_batches(split, c.eval.batch_size), mesh,
                               c.eval.batch_size)
    codes = encode_lib.pack_all(out)[code]
    root = Path(c.dataset.manual_dir).expanduser() if c.dataset.manual_dir else None
    paths, images = [], []
    for i in out["index"]:
        rec = source[int(i)]
        rel = rec["path"].decode() if isinstance(rec["path"], bytes) else str(rec["path"])
        full = root / rel if root is not None else None
        paths.append(str(full) if full is not None and full.is_file() else f"{c.dataset.name}:{rel}")
        images.append(rec["image"])
    return Gallery(paths=paths, codes=codes, pids=np.asarray(out["pid"]), camids=np.asarray(out["camid"]),
                   images=images)


def _folder_gallery(trained, folder: str, code: str, batch_size: int) -> Gallery:
    from jhash import encode as encode_lib

    paths = expand_images([folder], "--gallery")
    codes = encode_lib.encode_images(paths, model=trained.model, method=trained.method, variables=trained.variables,
                                     config=trained.config, image_size=trained.image_size, batch_size=batch_size)
    return Gallery(paths=paths, codes=codes[code])


def draw(path, queries: list[str], gallery: Gallery, distances: np.ndarray, indices: np.ndarray,
         query_pids: Sequence[int | None] | None = None) -> None:
    """The rank-list PNG: a row per query, the query (black frame) then its results titled ``#rank d=<Hamming>``,
    the file name and, when the gallery knows them, ``pid``/``cam``. A result is framed green / red (true / false
    match) only when both identities are known (``query_pids[i]`` and the gallery's pids), grey otherwise.

    (:func:`jhash.reporting.rank_grid` frames every result as a true or false match, which own query images of
    unknown identity cannot say; its image decoding and matplotlib set-up are reused.)
    """
    from jhash import reporting

    plt = reporting._plt()
    n, top = len(queries), indices.shape[1]
    fig, axes = plt.subplots(n, top + 1, figsize=(1.3 * (top + 1), 2.5 * n), squeeze=False)
    for r in range(n):
        qpid = None if query_pids is None else query_pids[r]
        cells = [(Path(queries[r]).read_bytes(), f"query\n{Path(queries[r]).name[:18]}", "black")]
        for k, (d, j) in enumerate(zip(distances[r], indices[r])):
            image = gallery.images[j] if gallery.images is not None else Path(gallery.paths[j]).read_bytes()
            who = f"\npid {gallery.pids[j]} cam {gallery.camids[j]}" if gallery.pids is not None else ""
            color = "#808080"
            if qpid is not None and gallery.pids is not None:
                color = "#1a9e1a" if int(gallery.pids[j]) == int(qpid) else "#d62020"
            cells.append((image, f"#{k + 1} d={int(d)}{who}\n{Path(gallery.paths[j]).name[:18]}", color))
        for ax, (image, title, color) in zip(axes[r], cells):
            ax.imshow(reporting._decode(image))
            ax.set_title(title, fontsize=6, color=color if color != "#808080" else "black")
            for side in ax.spines.values():
                side.set_edgecolor(color)
                side.set_linewidth(3)
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in axes[r][len(cells):]:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def query_identities(config, paths: Sequence[str]) -> list[int | None]:
    """Person ids read from the query file names with the workdir's ``reid_folder`` pattern (None where the
    dataset is not a ``reid_folder`` or a name does not match)."""
    import re

    if config.dataset.name != "reid_folder":
        return [None] * len(paths)
    from jhash.data.reid_folder import DEFAULT_PATTERN

    pattern = (config.dataset.get("options") or {}).get("pattern") or DEFAULT_PATTERN
    rx = re.compile(pattern)
    out = []
    for p in paths:
        m = rx.search(Path(p).name)
        out.append(int(m.group("pid")) if m is not None and "pid" in rx.groupindex else None)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m jhash.query", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.split("\n")[1:]))
    p.add_argument("queries", nargs="+", help="query image files, glob patterns or folders")
    p.add_argument("--workdir", required=True, help="a trained workdir (train.py --workdir)")
    p.add_argument("--gallery", default=None,
                   help="a folder of gallery images, or a split of the workdir's dataset (default: its gallery split)")
    p.add_argument("--top", type=int, default=10, help="results per query (default 10)")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    p.add_argument("--output", default=None, help="rank-list image (default: <workdir>/query_ranklist.png)")
    p.add_argument("--visualize", type=int, default=8, help="queries drawn in the image (default 8; 0: no image)")
    p.add_argument("--json", default=None, help="also write the results as JSON")
    p.add_argument("--batch_size", type=int, default=64)
    args = p.parse_args(argv)
    if args.top < 1:
        p.error(f"--top must be >= 1, got {args.top}")
    try:
        return _run(args)
    except _user_errors() as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


def _user_errors() -> tuple[type[BaseException], ...]:
    from jhash import checkpoints, config
    from jhash.data.errors import DATA_ERRORS

    return (QueryError, checkpoints.CheckpointNotFoundError, config.ConfigError, *DATA_ERRORS)


def _run(args) -> int:
    from jhash import encode as encode_lib
    from jhash import evaluator

    queries = expand_images(args.queries, "query")
    trained = evaluator.load_trained(args.workdir, step=args.step)
    code = trained.config.eval.code
    q = encode_lib.encode_images(queries, model=trained.model, method=trained.method, variables=trained.variables,
                                 config=trained.config, image_size=trained.image_size, batch_size=args.batch_size)
    if code not in q:
        raise QueryError(f"config.eval.code {code!r} is not one of the method's codes: {', '.join(q)}")
    spec = args.gallery or trained.config.dataset.gallery_split
    if Path(spec).expanduser().is_dir() or any(ch in spec for ch in "/*?"):
        gallery = _folder_gallery(trained, spec, code, args.batch_size)
    else:
        gallery = _split_gallery(trained, spec, code)
    distances, indices = rank(q[code], gallery.codes, args.top)
    bits = int(trained.config.model.bits)
    print(f"{len(queries)} queries, {len(gallery.paths)} gallery images ({spec}), code {code!r} "
          f"({gallery.codes.shape[1] * 8} bits packed; model.bits {bits}), checkpoint step {trained.step}")
    results = []
    for r, qpath in enumerate(queries):
        print(f"query {qpath}")
        print(f"  {'rank':>4}  {'hamming':>7}  gallery file")
        hits = []
        for k, (d, j) in enumerate(zip(distances[r], indices[r])):
            print(f"  {k + 1:4d}  {int(d):7d}  {gallery.paths[j]}")
            hits.append({"rank": k + 1, "hamming": int(d), "path": gallery.paths[j]})
        results.append({"query": qpath, "results": hits})
    if args.json:
        Path(args.json).write_text(json.dumps({"workdir": str(args.workdir), "step": trained.step, "code": code,
                                               "gallery": spec, "queries": results}, indent=1))
        print(f"results: {args.json}")
    if args.visualize > 0:
        out = Path(args.output) if args.output else Path(args.workdir).expanduser() / "query_ranklist.png"
        n = min(args.visualize, len(queries))
        draw(out, queries[:n], gallery, distances[:n], indices[:n],
             query_pids=query_identities(trained.config, queries[:n]))
        print(f"rank list: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
