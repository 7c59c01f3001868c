"""The fake method plus the optional hooks: ``init_aux`` / ``update_aux`` (a cache over the training set)
and ``fit_search`` (a parameter fitted on the val split)."""

import jax.numpy as jnp
import numpy as np

from tests.engine.fakes import SEARCH, build_model, encode  # noqa: F401


def loss(outputs, batch, config, aux):
    logp = jnp.log(jnp.clip(jnp.exp(outputs["logits"]) / jnp.sum(jnp.exp(outputs["logits"]), -1, keepdims=True), 1e-9))
    ce = -jnp.mean(jnp.take_along_axis(logp, batch["label"][:, None], axis=1))
    # the aux state enters the loss, so resuming it wrongly would change the parameters
    pull = jnp.mean((outputs["hash"] - aux["center"]) ** 2)
    return ce + 0.1 * pull, {"ce": ce, "pull": pull}


def init_aux(config, info, num_train):
    return {"center": jnp.zeros((config.model.bits,), jnp.float32), "updates": jnp.zeros((), jnp.int32),
            "seen": jnp.zeros((num_train,), jnp.int32)}


def update_aux(aux, train_outputs, config):
    assert train_outputs["hash"].shape[0] == len(train_outputs["index"])
    assert np.all(np.diff(train_outputs["index"]) > 0), "outputs must come in index order"
    seen = np.zeros_like(np.asarray(aux["seen"]))
    seen[train_outputs["index"]] = train_outputs["label"] + 1
    return {"center": jnp.asarray(train_outputs["hash"].mean(0)), "updates": aux["updates"] + 1,
            "seen": jnp.asarray(seen)}


def fit_search(codes_by_name, pids, config):
    return {"positive_fraction": float(np.mean(np.asarray(codes_by_name["id"]) > 0)), "num_val": int(len(pids))}
