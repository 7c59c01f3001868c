"""torchvision weights -> Flax parameters, and inserting them into a model's variables.

Nothing is downloaded: the user points at a ``state_dict`` on disk.

- ``.safetensors`` is read with the ``safetensors`` package (``safetensors.numpy``; no PyTorch needed).
- ``.pth`` / ``.pt`` / ``.bin`` is read with ``torch.load(weights_only=True)`` when PyTorch is installed
  (``ImportError`` saying so otherwise). A checkpoint dict holding the weights under ``"state_dict"`` or
  ``"model"`` is unwrapped, and a ``"module."`` prefix (DataParallel) is stripped.

Layout conversion: convolution ``OIHW -> HWIO``, linear ``(out, in) -> (in, out)``, BatchNorm
``weight/bias -> params scale/bias`` and ``running_mean/running_var -> batch_stats mean/var``.
``num_batches_tracked`` and the classifier ``fc.*`` are ignored. A key the model expects but the file lacks,
a key the file has but the model does not use, or a shape mismatch raises :class:`ConversionError` naming
the keys (and both shapes).

Typical use (the trainer does this for ``config.model.pretrained``)::

    variables = model.init(rng, images, train=False)
    variables = load_pretrained(variables, "resnet50.safetensors", prefix="backbone")

or, for a model that uses the backbone in pieces (SSR: a trunk and two branches)::

    params, stats = load_torchvision_resnet("resnet50.safetensors")
    for part in ("trunk", "teacher", "student"):
        variables["params"] = merge_params(variables["params"], params, part, allow_extra=True)
        variables["batch_stats"] = merge_params(variables["batch_stats"], stats, part, allow_extra=True)
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Tree = Mapping[str, Any]
StateDict = dict[str, np.ndarray]


class ConversionError(ValueError):
    """A state_dict or parameter tree that does not fit the model."""


# --------------------------------------------------------------------------------------------------
# Reading state_dicts


def load_state_dict(path: str | os.PathLike) -> StateDict:
    """``{torch key: numpy array}`` from a ``.safetensors`` (no torch needed) or ``.pth``/``.pt``/``.bin`` file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no state_dict at {path}")
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        sd = load_file(path)
    elif path.endswith((".pth", ".pt", ".bin")):
        try:
            import torch
        except ImportError:
            raise ImportError(
                f"reading {path} needs PyTorch, which is not installed; install torch, or convert the file to "
                ".safetensors elsewhere (safetensors.torch.save_file(torch.load(p), 'x.safetensors'))"
            ) from None
        obj = torch.load(path, map_location="cpu", weights_only=True)
        for wrapper in ("state_dict", "model"):
            if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
        sd = {}
        for k, v in obj.items():
            if torch.is_tensor(v):
                v = v.detach().cpu()
                sd[k] = (v.float() if v.is_floating_point() else v).numpy()
    else:
        raise ValueError(f"unknown state_dict format {path!r}: expected .safetensors, .pth, .pt or .bin")
    return {k.removeprefix("module."): np.asarray(v) for k, v in sd.items()}


# --------------------------------------------------------------------------------------------------
# Generic conversion driven by the Flax model's own variable shapes

_SUFFIX = {
    ("params", "kernel"): "weight",
    ("params", "scale"): "weight",
    ("params", "bias"): "bias",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}


def _flatten(tree: Tree, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out


def _unflatten(flat: Mapping[tuple[str, ...], Any]) -> dict:
    out: dict = {}
    for path, v in flat.items():
        node = out
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = v
    return out


def _to_flax(torch_value: np.ndarray, flax_ndim: int) -> np.ndarray:
    if flax_ndim == 4:  # conv OIHW -> HWIO
        return np.transpose(torch_value, (2, 3, 1, 0))
    if flax_ndim == 2:  # linear (out, in) -> (in, out)
        return torch_value.T
    return torch_value


def _torch_shape(flax_shape: Sequence[int]) -> tuple[int, ...]:
    s = tuple(flax_shape)
    if len(s) == 4:
        return (s[3], s[2], s[0], s[1])
    if len(s) == 2:
        return (s[1], s[0])
    return s


def _listing(keys: Sequence[str], limit: int = 12) -> str:
    keys = sorted(keys)
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def convert_state_dict(
    state_dict: Mapping[str, np.ndarray],
    expected: Mapping[str, Tree],
    torch_key: Callable[[tuple[str, ...]], str],
    ignore: Callable[[str], bool],
) -> tuple[dict, dict]:
    """Convert ``state_dict`` into ``(params, batch_stats)`` shaped like ``expected``.

    ``expected`` is ``{"params": tree, "batch_stats": tree}`` of arrays or ``ShapeDtypeStruct`` (e.g. from
    ``jax.eval_shape(model.init, ...)``); ``torch_key(module_path)`` names the torch module of a Flax module
    path; keys with ``ignore(key)`` true may be left unused. Raises :class:`ConversionError` on missing,
    unexpected or mis-shaped keys.
    """
    out: dict[str, dict] = {"params": {}, "batch_stats": {}}
    used, missing, bad_shape = set(), [], []
    for col in ("params", "batch_stats"):
        for path, spec in _flatten(expected.get(col, {})).items():
            if (col, path[-1]) not in _SUFFIX:
                raise ConversionError(f"no torch counterpart for {col}/{'/'.join(path)}")
            key = f"{torch_key(path[:-1])}.{_SUFFIX[col, path[-1]]}"
            if key not in state_dict:
                missing.append(key)
                continue
            used.add(key)
            value = np.asarray(state_dict[key])
            want = _torch_shape(spec.shape)
            if value.shape != want:
                bad_shape.append(
                    f"{key}: file has {value.shape}, model expects {want} (flax {col}/{'/'.join(path)} {tuple(spec.shape)})"
                )
                continue
            out[col][path] = _to_flax(value, len(spec.shape)).astype(np.float32)
    unexpected = [k for k in state_dict if k not in used and not ignore(k)]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_listing(unexpected)}")
    if bad_shape:
        problems.append("shape mismatches:\n  " + "\n  ".join(bad_shape))
    if problems:
        raise ConversionError("state_dict does not fit the model:\n" + "\n".join(problems))
    return _unflatten(out["params"]), _unflatten(out["batch_stats"])


def _expected_variables(module: Any, image_size: tuple[int, int] = (64, 64)) -> dict:
    x = jax.ShapeDtypeStruct((1, *image_size, 3), jnp.float32)
    return jax.eval_shape(lambda x: module.init(jax.random.key(0), x, train=False), x)


def _always_ignored(key: str) -> bool:
    return key.endswith("num_batches_tracked") or key.startswith("fc.")


# --------------------------------------------------------------------------------------------------
# ResNet


def infer_resnet_depth(state_dict: Mapping[str, Any]) -> int:
    """The torchvision ResNet depth (18/34/50/101/152) a state_dict was saved from."""
    from jhash.models.resnet import RESNET_SPECS, Bottleneck

    bottleneck = "layer1.0.conv3.weight" in state_dict
    blocks = tuple(
        len({k.split(".")[1] for k in state_dict if k.startswith(f"layer{i}.")}) for i in range(1, 5)
    )
    for depth, (block_cls, spec) in RESNET_SPECS.items():
        if spec == blocks and (block_cls is Bottleneck) == bottleneck:
            return depth
    raise ConversionError(
        f"not a torchvision ResNet state_dict: blocks per stage {blocks}, bottleneck={bottleneck}"
    )


def _resnet_torch_key(path: tuple[str, ...]) -> str:
    # stem/conv1 -> conv1; layer1/block0/conv1 -> layer1.0.conv1; .../downsample_conv -> ...downsample.0
    mods = list(path[1:] if path[0] == "stem" else path)
    mods = [m.removeprefix("block") if re.fullmatch(r"block\d+", m) else m for m in mods]
    mods = [{"downsample_conv": "downsample.0", "downsample_bn": "downsample.1"}.get(m, m) for m in mods]
    return ".".join(mods)


def convert_torchvision_resnet(state_dict: Mapping[str, np.ndarray], depth: int | None = None) -> tuple[dict, dict]:
    """``(params, batch_stats)`` for :class:`jhash.models.resnet.ResNet` (``depth`` inferred when ``None``).

    The trees have the full network's paths (``stem``, ``layer1``..``layer4``); ``fc.*`` is ignored.
    """
    from jhash.models.resnet import ResNet

    if depth is None:
        depth = infer_resnet_depth(state_dict)
    expected = _expected_variables(ResNet(depth=depth))
    return convert_state_dict(state_dict, expected, _resnet_torch_key, _always_ignored)


def load_torchvision_resnet(path: str | os.PathLike, depth: int | None = None) -> tuple[dict, dict]:
    """:func:`convert_torchvision_resnet` of the state_dict in ``path`` (``.safetensors`` or ``.pth``)."""
    return convert_torchvision_resnet(load_state_dict(path), depth)


# --------------------------------------------------------------------------------------------------
# GoogLeNet


def _googlenet_torch_key(path: tuple[str, ...]) -> str:
    # inception3a/branch2_0/conv -> inception3a.branch2.0.conv; aux1/fc1 -> aux1.fc1
    return ".".join(re.sub(r"^(branch\d)_(\d)$", r"\1.\2", m) for m in path)


def convert_torchvision_googlenet(state_dict: Mapping[str, np.ndarray], *, aux: bool = True) -> tuple[dict, dict]:
    """``(params, batch_stats)`` for :class:`jhash.models.googlenet.GoogLeNet` from torchvision's ``googlenet``.

    ``fc.*`` and the aux heads' last layers (``aux*.fc2.*``, ImageNet classes) are ignored. With ``aux`` the
    aux heads' ``conv`` and ``fc1`` are converted (the file must have them); without, ``aux*`` keys are ignored.
    """
    from jhash.models.googlenet import GoogLeNet

    model = GoogLeNet(aux_num_classes=(1, 1) if aux else None)
    expected = _expected_variables(model)
    for col in expected.values():
        for head in ("aux1", "aux2"):
            if head in col:
                col[head].pop("fc2", None)

    def ignore(key: str) -> bool:
        return _always_ignored(key) or re.match(r"aux\d\.fc2\." if aux else r"aux\d\.", key) is not None

    return convert_state_dict(state_dict, expected, _googlenet_torch_key, ignore)


def load_torchvision_googlenet(path: str | os.PathLike, *, aux: bool = True) -> tuple[dict, dict]:
    """:func:`convert_torchvision_googlenet` of the state_dict in ``path``."""
    return convert_torchvision_googlenet(load_state_dict(path), aux=aux)


# --------------------------------------------------------------------------------------------------
# Inserting into a model's variables


def _split(path: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(path, str):
        return tuple(p for p in path.split("/") if p)
    return tuple(path)


def merge_params(
    target: Tree,
    source: Tree,
    path: str | Sequence[str] = (),
    *,
    allow_extra: bool = False,
    allow_missing: bool | Sequence[str] = False,
) -> dict:
    """A copy of ``target`` with the subtree at ``path`` (``"a/b"`` or ``("a", "b")``) overwritten by ``source``.

    Every leaf of ``source`` must exist at the same relative path in ``target`` with the same shape (cast to
    the target's dtype). ``allow_extra`` skips ``source`` leaves the target lacks (a model that has only some
    stages of the backbone). Leaves of the target subtree that ``source`` does not provide are an error unless
    ``allow_missing`` is ``True`` or a sequence of regexes, one of which ``re.search``-matches the leaf's
    ``/``-joined path relative to ``path`` (e.g. ``(r"^pool/",)`` for a GeM exponent). Works on ``params``,
    ``batch_stats`` or any nested mapping. Raises :class:`ConversionError`.
    """
    prefix = _split(path)
    node: Any = target
    for i, k in enumerate(prefix):
        if not isinstance(node, Mapping) or k not in node:
            raise ConversionError(
                f"target has no subtree {'/'.join(prefix[: i + 1])!r}; "
                f"available there: {sorted(node) if isinstance(node, Mapping) else 'a leaf'}"
            )
        node = node[k]
    if not isinstance(node, Mapping):
        raise ConversionError(f"target {'/'.join(prefix)!r} is a leaf, not a subtree")
    flat_t, flat_s = _flatten(node), _flatten(source)

    extra = [p for p in flat_s if p not in flat_t]
    if extra and not allow_extra:
        raise ConversionError(
            f"source has leaves absent from target {'/'.join(prefix) or '<root>'}: "
            f"{_listing(['/'.join(p) for p in extra])}"
        )
    missing = [p for p in flat_t if p not in flat_s]
    if allow_missing is not True:
        patterns = () if allow_missing is False else tuple(allow_missing)
        missing = [p for p in missing if not any(re.search(r, "/".join(p)) for r in patterns)]
        if missing:
            raise ConversionError(
                f"target {'/'.join(prefix) or '<root>'} has leaves the source does not provide: "
                f"{_listing(['/'.join(p) for p in missing])}"
            )
    mismatched = [
        f"{'/'.join(prefix + p)}: target {tuple(np.shape(flat_t[p]))}, source {tuple(np.shape(v))}"
        for p, v in flat_s.items()
        if p in flat_t and tuple(np.shape(flat_t[p])) != tuple(np.shape(v))
    ]
    if mismatched:
        raise ConversionError("shape mismatches:\n  " + "\n  ".join(mismatched))

    merged = dict(flat_t)
    for p, v in flat_s.items():
        if p in flat_t:
            merged[p] = np.asarray(v, dtype=flat_t[p].dtype)
    return _set_subtree(target, prefix, _unflatten(merged))


def _set_subtree(tree: Tree, prefix: tuple[str, ...], value: Any) -> dict:
    if not prefix:
        return value
    out = dict(tree)
    out[prefix[0]] = _set_subtree(tree[prefix[0]], prefix[1:], value)
    return out


#: Backbone leaves a torchvision file never provides: the GeM exponent and the aux heads' last layers.
_NOT_IN_TORCHVISION = (r"^pool/", r"^aux\d/fc2/")


def load_pretrained(
    variables: Tree,
    path: str | os.PathLike,
    *,
    prefix: str | Sequence[str] = "backbone",
    allow_extra: bool = False,
) -> dict:
    """``variables`` with the torchvision weights in ``path`` inserted at ``prefix`` (default ``"backbone"``,
    the name a backbone module gets as a model attribute).

    The architecture is recognised from the keys (GoogLeNet if ``inception*`` keys are present, otherwise a
    ResNet of the inferred depth). ``params`` and ``batch_stats`` are both updated; every other collection is
    returned unchanged. ``allow_extra`` as in :func:`merge_params` (a backbone cut before ``layer4``).
    """
    sd = load_state_dict(path)
    if any(k.startswith("inception") for k in sd):
        has_aux = any(k.startswith("aux1.") for k in sd)
        aux_in_model = any(k.startswith("aux") for k in _subtree(variables.get("params", {}), prefix))
        params, stats = convert_torchvision_googlenet(sd, aux=has_aux and aux_in_model)
    else:
        params, stats = convert_torchvision_resnet(sd)
    out = dict(variables)
    out["params"] = merge_params(
        variables["params"], params, prefix, allow_extra=allow_extra, allow_missing=_NOT_IN_TORCHVISION
    )
    if stats or "batch_stats" in variables:
        out["batch_stats"] = merge_params(
            variables.get("batch_stats", {}), stats, prefix, allow_extra=allow_extra, allow_missing=_NOT_IN_TORCHVISION
        )
    return out


def _subtree(tree: Tree, path: str | Sequence[str]) -> Tree:
    for k in _split(path):
        tree = tree.get(k, {}) if isinstance(tree, Mapping) else {}
    return tree
