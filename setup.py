"""Build script for jhash's optional native CPU kernel.

Everything else about the package lives in pyproject.toml. This file only
declares the C++ extension ``jhash.search._jhash_native`` (exact Hamming top-k,
dense and gathered Hamming distances, exposed to JAX through the XLA FFI). It is *optional*: without a C++17
compiler or the XLA FFI headers (shipped in the ``jaxlib`` wheel, which
``[build-system] requires`` pulls into the isolated build environment) the
install still succeeds, ``jhash.search.native.is_available()`` is False and
``unavailable_reason()`` says why (the build error is recorded next to the
package).
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

EXT_NAME = "jhash.search._jhash_native"
ERROR_FILE = "_jhash_native_build_error.txt"
CSRC = "csrc"
SOURCES = [
    os.path.join(CSRC, f)
    for f in ("module.cc", "topk.cc", "distance.cc", "ctf.cc", "afr.cc", "kernels_baseline.cc", "kernels_x86.cc")
]


def _jaxlib_info() -> tuple[str | None, str | None]:
    """(include dir with xla/ffi/api/ffi.h, jaxlib version), without importing jax."""
    spec = importlib.util.find_spec("jaxlib")
    if spec is None or not spec.submodule_search_locations:
        return None, None
    root = list(spec.submodule_search_locations)[0]
    inc = os.path.join(root, "include")
    version = None
    try:
        with open(os.path.join(root, "version.py"), encoding="utf-8") as f:
            for line in f:
                if line.startswith("_version") and "=" in line:
                    version = line.split("=", 1)[1].strip().strip("\"'")
                    break
    except OSError:
        pass
    if not os.path.exists(os.path.join(inc, "xla", "ffi", "api", "ffi.h")):
        return None, version
    return inc, version


def _is_x86_64() -> bool:
    machine = (platform.machine() or "").lower()
    plat = sysconfig.get_platform().lower()
    if "arm" in plat or "aarch64" in plat:
        return False
    return machine in ("x86_64", "amd64", "x64")


class BuildExt(build_ext):
    """build_ext that records why the optional extension failed to build."""

    def _error_paths(self, ext: Extension) -> list[str]:
        # Beside the built module (wheel builds) and in the source package
        # (editable installs build in a temporary directory).
        here = os.path.dirname(os.path.abspath(__file__))
        src_pkg = os.path.join(here, *ext.name.split(".")[:-1])
        paths = [os.path.join(os.path.dirname(self.get_ext_fullpath(ext.name)), ERROR_FILE)]
        if os.path.isdir(src_pkg):
            paths.append(os.path.join(src_pkg, ERROR_FILE))
        return paths

    def build_extension(self, ext: Extension) -> None:
        err_paths = self._error_paths(ext)
        try:
            inc, jaxlib_version = _jaxlib_info()
            if inc is None:
                raise RuntimeError(
                    "XLA FFI headers not found: jaxlib (which ships xla/ffi/api/ffi.h) "
                    "is not importable in the build environment"
                )
            ext.include_dirs = [CSRC, inc] + list(ext.include_dirs)
            ctype = self.compiler.compiler_type
            if ctype == "msvc":
                raise RuntimeError("MSVC is not supported by the native kernel (GCC/Clang only)")
            args = ["-std=c++17", "-O3", "-fvisibility=hidden", "-pthread",
                    "-Wno-unused-function"]
            if _is_x86_64():
                ext.define_macros.append(("JHASH_X86_DISPATCH", "1"))
            if jaxlib_version:
                ext.define_macros.append(("JHASH_FFI_HEADERS_JAXLIB", f'"{jaxlib_version}"'))
            ext.extra_compile_args = args + list(ext.extra_compile_args)
            ext.extra_link_args = ["-pthread"] + list(ext.extra_link_args)
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001 - record any failure, then decide
            msg = f"{type(exc).__name__}: {exc}"
            for path in err_paths:
                try:
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    with open(path, "w", encoding="utf-8") as f:
                        f.write(msg + "\n")
                except OSError:
                    pass
            if not ext.optional:
                raise
            sys.stderr.write(
                f"warning: optional extension {ext.name} was not built ({msg}); "
                "jhash will use its pure-JAX search path\n"
            )
            return
        for path in err_paths:
            if os.path.exists(path):
                os.remove(path)


setup(
    ext_modules=[
        Extension(
            EXT_NAME,
            sources=SOURCES,
            depends=[os.path.join(CSRC, f) for f in ("topk.h", "kernels_impl.h", "select.h")],
            language="c++",
            optional=True,
        )
    ],
    cmdclass={"build_ext": BuildExt},
)
