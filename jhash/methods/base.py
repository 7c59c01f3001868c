"""The contract every method module in ``jhash.methods`` fulfils (big_vision / scenic style).

A method is a module ``jhash.methods.<name>`` looked up by name with :func:`jhash.methods.get`.
It composes shared parts (``jhash.models``, ``jhash.losses``, ``jhash.search``) and exposes:

``build_model(config, info: DatasetInfo) -> flax.linen.Module``
    The network. It is called as ``model.apply(variables, images, train=bool, mutable=[...])`` and
    returns a ``dict[str, Array]`` of outputs (features, relaxed codes, logits, ...). Batch-norm
    statistics live in the ``batch_stats`` collection; dropout / random erasing use the ``dropout`` rng.

``loss(outputs, batch, config, aux) -> (scalar, dict[str, scalar])``
    The training objective on one batch (``batch`` follows :mod:`jhash.data.info`). ``aux`` is the
    method's extra training state (``None`` for most; DVHN keeps B, W, U there). Pure and jittable.

``encode(outputs, config) -> dict[str, Array]``
    Test-time codes from the outputs of ``train=False``: code name -> ``{0,1}``/``±1`` or real array
    ``[B, L]`` (packed afterwards with ``jhash.search.pack_codes``). The code named ``"id"`` is the one
    exhaustive search and ReID metrics use; multi-code methods add more (``"l32"``..., ``"attr"``).

``SEARCH: str``
    Which search evaluates the method: ``"exhaustive"``, ``"coarse_to_fine"`` or ``"attribute_first"``.

Optional hooks:

``init_aux(config, info, num_train) -> pytree`` and
``update_aux(aux, train_outputs, config) -> pytree``
    Extra state updated outside the gradient step (DVHN's discrete W-/B-steps on the cached outputs
    of the whole training set, run every ``config.method.aux_every`` epochs). Checkpointed with the model.

``HOST_AUX: tuple[str, ...]`` and ``host_inputs(host_aux, batch) -> dict[str, np.ndarray]``
    Keys of ``aux`` too large to ride in the replicated state through every step (DVHN's per-image B and U):
    the trainer keeps them in host memory as numpy arrays (``jhash.trainer.split_aux``) and adds
    ``host_inputs``' per-row arrays to each training batch, which is sharded over the devices with the images.
    ``loss`` then finds them in ``batch``; checkpoints and ``update_aux`` see the whole ``aux``.

``load_pretrained(variables, path, config) -> variables``
    Where ``config.model.pretrained`` (torchvision ResNet weights) goes when the network is not one backbone
    (SSR: the trunk and both branches); without the hook :func:`jhash.models.load_pretrained` fills the backbone.

``fit_search(codes_by_name, pids, config[, camids=None]) -> dict``
    Search parameters fitted on the validation split after training (CtF thresholds, the AFR window w),
    saved with the checkpoint and passed to the search at evaluation. The trainer passes the split's camera
    ids as ``camids=`` to a ``fit_search`` that declares that keyword (SSR: its window fit follows the
    evaluation protocol).

``model_search_params(variables, config) -> dict``
    Search parameters read from the trained network's variables (DRSCH: its learnt bit weights), merged
    into the ``search_params`` the evaluator passes to ``search``.

``search(q_codes, g_codes, search_params, config) -> dict``
    The method's own search at evaluation (packed codes by name): ``reid_metrics`` inputs (``distances=``,
    which may be a lazily computed :class:`jhash.search.LazyRows`, or ``ranking=``) plus ``ms_per_query``
    (the top-10 search time); ``{}`` falls back to exhaustive Hamming search on the code ``config.eval.code``.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol

import jax

Array = jax.Array
Outputs = Mapping[str, Array]
Batch = Mapping[str, Any]


class MethodModule(Protocol):
    """Static type of a method module (for type checkers; modules are duck-typed at run time)."""

    SEARCH: str

    def build_model(self, config: Any, info: Any) -> Any: ...

    def loss(self, outputs: Outputs, batch: Batch, config: Any, aux: Any) -> tuple[Array, dict[str, Array]]: ...

    def encode(self, outputs: Outputs, config: Any) -> dict[str, Array]: ...


def method_config(name: str, defaults: Mapping[str, Any], overrides: Mapping[str, Any], *, aux_every: int = 0,
                  label: str | None = None):
    """``config.method`` for config files: ``{"name": name, "aux_every": aux_every, **defaults}`` updated with
    ``overrides``; an override that is not one of ``defaults`` is a ValueError naming the method (``label``,
    default ``name``) and listing the valid options."""
    import ml_collections

    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ValueError(f"unknown {label or name} method option(s) {unknown}; valid: {sorted(defaults)}")
    c = ml_collections.ConfigDict({"name": name, "aux_every": aux_every, **defaults})
    c.update(dict(overrides))
    return c

