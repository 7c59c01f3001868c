"""What jhash will run on here: ``python -m jhash.info``.

Prints the JAX devices of every backend, the platform programs run on by default, which Hamming-search
backend ``backend="auto"`` picks for them, the native CPU kernel (instruction set, kernel per code width,
threads, or why it is unavailable), the multi-process setting and the versions of the libraries involved.
Use it after installing ``jhash[cuda12]`` / ``jhash[tpu]`` to check that the accelerator is seen::

    python -m jhash.info            # a readable report
    python -m jhash.info --json     # the same as one JSON object
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sys

WIDTHS = (64, 128, 256, 512, 1024, 2048)
PACKAGES = ("jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda13-plugin", "libtpu", "flax", "optax",
            "orbax-checkpoint", "grain", "numpy", "faiss-cpu")


def versions() -> dict[str, str]:
    """Installed versions of the packages jhash runs on (absent ones are left out)."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def devices() -> dict:
    """Devices per backend (each backend that initialises), the default backend and the process layout."""
    import jax

    per_backend = {}
    for name in ("cpu", "gpu", "tpu"):
        try:
            devs = jax.devices(name)
        except RuntimeError:
            continue
        per_backend[name] = [f"{d.device_kind} (id {d.id}, process {d.process_index})" for d in devs]
    return {"default_backend": jax.default_backend(), "backends": per_backend,
            "process_index": jax.process_index(), "process_count": jax.process_count(),
            "local_device_count": jax.local_device_count(), "device_count": jax.device_count()}


def native_kernel() -> dict:
    """The native CPU kernel: availability, chosen ISA, kernel per code width (bits), threads."""
    from jhash.search import native

    if not native.is_available():
        return {"available": False, "reason": native.unavailable_reason()}
    out = {"available": True, **native.info()}
    kernel_for = getattr(native, "kernel_for", None)
    if kernel_for is not None:
        out["kernels"] = {bits: kernel_for(bits) for bits in WIDTHS}
    return out


def backend_choices() -> dict[str, str]:
    """What ``backend="auto"`` runs for programs on the default device (the search modules' own choice)."""
    from jhash.search import coarse_to_fine, hamming

    search = "native (C++ kernel)" if hamming._resolve_backend("auto") is not None else "xla"
    return {"hamming_topk / hamming_distance": search, "coarse_to_fine": coarse_to_fine._backend("auto"),
            "inside jit / jax.export": "native when lowered for the CPU, xla for GPU / TPU"}


def report() -> dict:
    """Everything :func:`main` prints, as a dict."""
    from jhash import parallel

    dev = devices()
    kernel = native_kernel()
    env = {k: os.environ[k] for k in ("JAX_PLATFORMS", "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES",
                                      "JAX_PROCESS_ID", "XLA_FLAGS", "JHASH_NUM_THREADS") if k in os.environ}
    return {"devices": dev, "backend_choices": backend_choices(),
            "native_kernel": kernel, "multihost_requested": parallel.multihost_requested(), "environment": env,
            "versions": versions(), "machine": f"{platform.machine()} {platform.system()} {platform.release()}"}


def format_report(r: dict) -> str:
    """The report as readable text."""
    d = r["devices"]
    lines = [f"default backend: {d['default_backend']}  (process {d['process_index']} of {d['process_count']}, "
             f"{d['local_device_count']} local / {d['device_count']} global devices)"]
    for name, devs in d["backends"].items():
        lines.append(f"  {name}: {len(devs)} device(s): " + ", ".join(devs[:8]) + (" ..." if len(devs) > 8 else ""))
    lines.append("backend='auto' picks:")
    lines += [f"  {k}: {v}" for k, v in r["backend_choices"].items()]
    k = r["native_kernel"]
    if k["available"]:
        lines.append(f"native kernel: ISA {k['isa']} (usable: {', '.join(k['available_isas'])}), "
                     f"{k['num_threads']} threads, {k.get('compiler', '?')}")
        lines.append("  kernel per width: " + ", ".join(f"{b}b {n}" for b, n in k["kernels"].items()))
    else:
        lines.append(f"native kernel: unavailable ({k['reason']})")
    lines.append(f"multi-process job requested: {r['multihost_requested']}"
                 + (f"  {r['environment']}" if r["environment"] else ""))
    lines.append("versions: " + ", ".join(f"{n} {v}" for n, v in r["versions"].items()))
    lines.append(f"machine: {r['machine']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jhash.info", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)
    r = report()
    print(json.dumps(r, default=str) if args.json else format_report(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
