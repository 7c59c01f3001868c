"""Method registry: a method is the module ``jhash.methods.<name>`` (see :mod:`jhash.methods.base`).

``get('baseline')`` imports ``jhash.methods.baseline``. A dotted name (``'my_pkg.my_method'``) imports that
module instead, so a method can live outside jhash. Modules are imported lazily, on first use.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

_REQUIRED = ("build_model", "loss", "encode", "SEARCH")
_NOT_METHODS = {"base"}


def available() -> list[str]:
    """Names of the method modules shipped in ``jhash.methods``."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in _NOT_METHODS and not m.name.startswith("_"))


def get(name: str) -> ModuleType:
    """The method module called ``name``; ValueError listing the available ones if there is none."""
    module_name = name if "." in name else f"{__name__}.{name}"
    if "." not in name and name not in available():
        raise ValueError(f"unknown method {name!r}; available methods: {', '.join(available())}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:
            raise
        raise ValueError(f"unknown method {name!r}; available methods: {', '.join(available())}") from None
    missing = [a for a in _REQUIRED if not hasattr(module, a)]
    if missing:
        raise ValueError(f"method module {module_name!r} lacks {', '.join(missing)} (see jhash.methods.base)")
    return module
