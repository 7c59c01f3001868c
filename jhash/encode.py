"""Encoding: run a trained model over a split or over one's own images, producing packed codes.

- :func:`run_split` runs a jitted function over numpy batches (padded to a fixed size, sharded over the
  mesh) and returns its outputs as numpy arrays ordered by the records' ``index``, with the batch's
  ``pid`` / ``camid`` / ``index`` (and ``label``, attributes ... when present) alongside.
- :func:`codes_fn` gives the method's test-time codes (``method.encode`` on ``train=False`` outputs) under
  ``code/<name>`` and the real-valued ``features`` under ``feature`` when the model outputs them.
- :func:`encode_images` maps image paths to packed codes with a trained workdir (Pillow decode, resize, the
  pipeline's normalisation). Command line (also ``jhash-encode``)::

      python -m jhash.encode --workdir runs/demo --output codes.npz img1.jpg img2.jpg ...
"""

from __future__ import annotations

import os
import sys
from typing import Iterable

import jax
import jax.numpy as jnp
import numpy as np

from jhash import parallel

META_KEYS = ("pid", "camid", "index", "label", "attributes", "model", "color")


def _apply(model, config, variables, images):
    out = model.apply(variables, images, train=False)
    return jax.tree.map(lambda x: x.astype(jnp.float32) if jnp.issubdtype(x.dtype, jnp.floating) else x, out)


def _jit(fn, mesh):
    rep, dat = parallel.replicated(mesh), parallel.data_sharded(mesh)
    return jax.jit(fn, in_shardings=(rep, dat), out_shardings=dat)


def outputs_fn(model, config, mesh):
    """``(variables, images) -> outputs`` (train=False), keeping only per-image vectors/scalars (ndim <= 2)."""

    def fn(variables, images):
        out = _apply(model, config, variables, images)
        return {k: v for k, v in out.items() if hasattr(v, "ndim") and v.ndim <= 2}

    return _jit(fn, mesh)


def codes_fn(model, method, config, mesh, *, with_features: bool = False):
    """``(variables, images) -> {'code/<name>': codes, ['feature': features]}`` (train=False)."""

    def fn(variables, images):
        out = _apply(model, config, variables, images)
        result = {f"code/{k}": v for k, v in method.encode(out, config).items()}
        if with_features and "features" in out:
            result["feature"] = out["features"]
        return result

    return _jit(fn, mesh)


def _round_up(n, m):
    return -(-n // m) * m


def run_split(fn, variables, batches: Iterable[dict], mesh, batch_size: int) -> dict[str, np.ndarray]:
    """Apply ``fn(variables, images)`` to every batch; outputs + meta keys as numpy, sorted by ``index``.

    Batches are padded to a fixed size (a multiple of this process's device count) so ``fn`` compiles once.
    With several processes each feeds its own records and every process gets all results back.
    """
    local_devices = max(1, mesh.devices.size // jax.process_count())
    size = _round_up(max(batch_size, 1), local_devices)
    chunks: dict[str, list] = {}
    for batch in batches:
        n = len(batch["image"])
        for start in range(0, n, size):
            sl = slice(start, min(start + size, n))
            m = sl.stop - sl.start
            local = {k: np.asarray(batch[k][sl]) for k in ("image", *META_KEYS) if k in batch}
            local["valid"] = np.asarray(batch["index"][sl]) >= 0 if "index" in batch else np.ones((m,), bool)
            if m < size:
                local = {k: np.concatenate([v, np.zeros((size - m, *v.shape[1:]), v.dtype)]) for k, v in local.items()}
            g = parallel.shard_batch(local, mesh)
            out = fn(variables, g.pop("image"))
            host = parallel.to_host({**out, **g})
            keep = host.pop("valid")
            for k, v in host.items():
                chunks.setdefault(k, []).append(np.asarray(v)[keep])
    if not chunks:
        raise ValueError("run_split: the split produced no batches (is it empty?)")
    result = {k: np.concatenate(v) for k, v in chunks.items()}
    if "index" in result:
        order = np.argsort(result["index"], kind="stable")
        result = {k: v[order] for k, v in result.items()}
    return result


def pack(codes) -> np.ndarray:
    """Packed ``uint8`` codes (np.packbits order; a bit is 1 where the code is > 0) via jhash.search."""
    from jhash import search

    return np.asarray(search.pack_codes(np.asarray(codes)))


def pack_all(out: dict) -> dict[str, np.ndarray]:
    """``{'code/<name>': codes}`` -> ``{name: packed uint8}``."""
    return {k[len("code/"):]: pack(v) for k, v in out.items() if k.startswith("code/")}


# --------------------------------------------------------------------------------------------------
# One's own images


def load_images(paths, image_size) -> np.ndarray:
    """Decode, resize and normalise image files like the evaluation pipeline: ``[N, H, W, 3]`` float32."""
    from jhash.data import augment

    images = []
    for p in paths:
        with open(p, "rb") as f:
            images.append(augment.decode(f.read(), tuple(image_size), where=str(p)))
    return augment.eval_batch(images)


def encode_images(paths, workdir=None, *, step: int | None = None, batch_size: int = 64, model=None, method=None,
                  variables=None, config=None, image_size=None) -> dict[str, np.ndarray]:
    """Packed codes of image files: ``{code name: uint8 [N, ceil(L/8)]}`` (``'id'`` is the searched code).

    Either a trained ``workdir`` (its ``config.json`` and latest checkpoint, or ``step``), or an already built
    ``model``, ``method``, ``variables``, ``config`` and ``image_size``.
    """
    paths = [str(p) for p in paths]
    if workdir is not None:
        from jhash import workdir as workdir_lib

        loaded = workdir_lib.load_trained(workdir, step=step, config=config)
        model, method, variables, config = loaded.model, loaded.method, loaded.variables, loaded.config
        image_size = loaded.image_size
    if any(x is None for x in (model, method, variables, config, image_size)):
        raise ValueError("encode_images needs a workdir, or model, method, variables, config and image_size")
    mesh = parallel.make_mesh()
    fn = codes_fn(model, method, config, mesh)
    result: dict[str, list] = {}
    for start in range(0, len(paths), batch_size):
        images = load_images(paths[start:start + batch_size], image_size)
        out = run_split(fn, variables, [{"image": images}], mesh, batch_size)
        for k, v in pack_all(out).items():
            result.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in result.items()}


def _encode_command(argv) -> int:
    import glob

    from jhash import cli

    p = cli.Parser(prog="jhash-encode", description="Encode image files to packed binary codes with a trained "
                   "workdir (the same as python -m jhash.encode).")
    p.add_argument("images", nargs="+", help="image files or glob patterns")
    p.add_argument("--workdir", required=True, help="a trained workdir (train.py --workdir)")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    p.add_argument("--output", default="codes.npz", help=".npz with one uint8 array per code name, plus 'paths' "
                   "(.npz is appended when missing)")
    p.add_argument("--batch_size", type=int, default=64)
    args = p.parse_args(argv)
    if args.batch_size < 1:
        p.error(f"--batch_size must be >= 1, got {args.batch_size}")
    paths = []
    for pattern in args.images:
        found = sorted(glob.glob(pattern))
        if not found and glob.has_magic(pattern):
            raise FileNotFoundError(f"no image matches {pattern!r}")
        paths += found or [pattern]
    missing = [q for q in paths if not os.path.isfile(q)]
    if missing:
        raise FileNotFoundError(f"no such image file: {missing[0]!r}" + (f" (and {len(missing) - 1} more)"
                                                                          if len(missing) > 1 else ""))
    output = args.output if args.output.endswith(".npz") else args.output + ".npz"
    cli._quiet_logging()
    codes = encode_images(paths, args.workdir, step=args.step, batch_size=args.batch_size)
    np.savez(output, paths=np.array(paths), **codes)
    shapes = ", ".join(f"{k}: {v.shape[0]}x{v.shape[1]} bytes" for k, v in codes.items())
    print(f"wrote {output} ({len(paths)} images; {shapes})")
    return 0


def main(argv=None) -> int:
    """``jhash-encode`` / ``python -m jhash.encode``: one-line errors (status 2) like every jhash command."""
    from jhash import cli

    return cli.run(_encode_command, argv)


if __name__ == "__main__":
    sys.exit(main())
