"""DVHN: the loss, the discrete update of the state, a real training run with resume, the configs."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jhash import config as config_lib
from jhash import discrete, losses, methods, trainer
from jhash.data.info import DatasetInfo
from tests.engine import fakes

dvhn = methods.get("dvhn")


def _config(**method):
    c = config_lib.base_config()
    c.model.backbone = "small_cnn"
    c.model.backbone_kwargs.widths = (8, 16)
    c.model.bits = 16
    c.method = dvhn.method_config(**method)
    c.optimizer.lr = 1e-2
    c.optimizer.schedule = "constant"
    c.train.steps = 8
    c.train.batch_p = 4
    c.train.batch_k = 2
    c.train.log_every = 1
    c.train.ckpt_every = 3
    c.eval.batch_size = 8
    return c


INFO = DatasetInfo(name="t", num_classes=4, image_size=(8, 8), num_train_images=32)


def test_state_and_loss_terms():
    c = _config(ce_weight=0.5, triplet_weight=0.25, quant_weight_scale="none")  # the paper's single η
    aux = dvhn.init_aux(c, INFO, 32)
    assert aux["B"].dtype == jnp.int8 and aux["B"].shape == (32, 16) and set(np.unique(aux["B"])) <= {-1, 1}
    assert aux["W"].shape == (16, 4) and aux["U"].shape == (32, 16) and int(aux["updates"]) == 0
    rng = np.random.default_rng(0)
    u = jnp.asarray(rng.normal(size=(6, 16)), jnp.float32)
    batch = {"label": jnp.array([0, 0, 1, 1, 2, 2]), "index": jnp.array([3, 7, 1, 0, 31, 5])}
    outputs = {"hash": u, "logits": jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)}
    f = jax.jit(lambda o, b, a: dvhn.loss(o, b, c, a))
    total, logs = f(outputs, batch, aux)
    sim = losses.pairwise_likelihood_loss(u, batch["label"])
    ce = losses.softmax_cross_entropy(outputs["logits"], batch["label"])
    tri = losses.batch_hard_triplet_loss(u / 4.0, batch["label"], 0.3)
    assert float(logs["quant"]) == 0.0  # no discrete update yet: B is random and unused
    np.testing.assert_allclose(total, sim + 0.5 * ce + 0.25 * tri, rtol=1e-5)
    aux = dict(aux, updates=jnp.ones((), jnp.int32))
    total, logs = f(outputs, batch, aux)
    quant = np.mean(np.sum((np.asarray(u) - np.asarray(aux["B"])[np.asarray(batch["index"])]) ** 2, axis=1))
    np.testing.assert_allclose(logs["quant"], quant, rtol=1e-5)
    np.testing.assert_allclose(total, sim + 0.5 * ce + 0.25 * tri + 1e-2 * quant, rtol=1e-5)
    # the trainer's layout: B stays on the host, the batch carries its rows; the state holds only `updates`
    host_batch = {**batch, **dvhn.host_inputs({k: np.asarray(aux[k]) for k in dvhn.HOST_AUX}, batch)}
    assert host_batch["code_target"].dtype == np.int8 and host_batch["code_target"].shape == (6, 16)
    again, logs_again = f(outputs, host_batch, {"updates": aux["updates"]})
    assert float(again) == float(total) and float(logs_again["quant"]) == float(logs["quant"])


class _StateLayout:
    """DVHN with its whole aux in the replicated train state (no ``HOST_AUX``): the layout before B, U and W
    moved to the host, for comparison."""

    def __getattr__(self, name):
        if name in ("HOST_AUX", "host_inputs"):
            raise AttributeError(name)
        return getattr(dvhn, name)


def test_host_kept_state_trains_exactly_like_state_in_the_step(tmp_path):
    c = _config()
    c.method.aux_every = 1  # updates after steps 4 and 8: the quantisation term is on from step 5
    host = trainer.train(c, tmp_path / "host", data=fakes.Data(c), method=dvhn, progress=False,
                         async_checkpoints=False)
    inside = trainer.train(c, tmp_path / "inside", data=fakes.Data(c), method=_StateLayout(), progress=False,
                           async_checkpoints=False)
    assert set(host.state.aux) == {"updates"} and set(inside.state.aux) == {"B", "W", "U", "updates"}
    assert all(isinstance(host.host_aux[k], np.ndarray) for k in ("B", "W", "U"))
    rows = [[json.loads(line) for line in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
            for d in ("host", "inside")]
    # the same numbers up to XLA's fusion of the two programs (the gather of B's rows moved out of the step)
    np.testing.assert_allclose([r["loss"] for r in rows[0]], [r["loss"] for r in rows[1]], rtol=1e-6)
    assert rows[0][-1]["quant"] > 0 and host.aux["updates"] == inside.aux["updates"] == 2
    np.testing.assert_array_equal(host.aux["B"], jax.device_get(inside.aux["B"]))
    for key in ("U", "W"):
        np.testing.assert_allclose(host.aux[key], jax.device_get(inside.aux[key]), rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(jax.device_get(host.state.params)), jax.tree.leaves(jax.device_get(inside.state.params))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_update_aux_runs_the_discrete_steps():
    c = _config(dcc_iters=2, b_sweeps=2)
    aux = dvhn.init_aux(c, INFO, 32)
    rng = np.random.default_rng(1)
    index = rng.permutation(32)
    pid = 100 + np.arange(32) % 4
    u = (rng.normal(size=(32, 16)) + (pid[:, None] - 101.5)).astype(np.float32)
    out = {"hash": u[index], "index": index, "pid": pid[index]}  # rows in any order, no 'label' key
    new = dvhn.update_aux(aux, out, c)
    assert int(new["updates"]) == 1 and new["B"].dtype == jnp.int8
    assert set(np.unique(new["B"])) <= {-1, 1}
    np.testing.assert_array_equal(new["U"], u)  # scattered back by index
    labels = jnp.asarray(pid - 100, jnp.int32)
    start = discrete.objective(discrete.sign(jnp.asarray(u)), discrete.w_step(discrete.sign(jnp.asarray(u)), labels, 4, 1e-2, 1.0),
                               jnp.asarray(u), labels, 4, 1e-2, 1.0, 1e-2)
    w = discrete.w_step(new["B"], labels, 4, 1e-2, 1.0)
    end = discrete.objective(new["B"], w, jnp.asarray(u), labels, 4, 1e-2, 1.0, 1e-2)
    assert float(end) <= float(start) * (1 + 1e-6)
    # the same outputs with a 'label' key give the same state; a second update continues from B
    again = dvhn.update_aux(aux, {**out, "label": (pid - 100)[index]}, c)
    np.testing.assert_array_equal(again["B"], new["B"])
    second = dvhn.update_aux(new, out, c)
    assert int(second["updates"]) == 2
    with pytest.raises(ValueError, match="bits"):
        dvhn.update_aux(aux, {**out, "hash": u[:, :8]}, c)


def test_training_with_discrete_updates_resumes_exactly(tmp_path):
    c = _config()
    c.method.aux_every = 1  # fakes: 32 images / batch 8 = 4 steps per epoch -> updates after steps 4 and 8
    straight = trainer.train(c, tmp_path / "a", data=fakes.Data(c), method=dvhn, progress=False, async_checkpoints=False)
    assert int(straight.aux["updates"]) == 2
    with pytest.raises(trainer.Interrupted):
        trainer.train(c, tmp_path / "b", data=fakes.Data(c), method=dvhn, progress=False, stop_at=5, async_checkpoints=False)
    resumed = trainer.train(c, tmp_path / "b", data=fakes.Data(c), method=dvhn, progress=False, async_checkpoints=False)
    assert resumed.resumed_from == 5
    for key in ("B", "W", "U", "updates"):
        np.testing.assert_array_equal(jax.device_get(resumed.aux[key]), jax.device_get(straight.aux[key]))
    model = dvhn.build_model(c, fakes.Data(c).info)
    images = fakes.split_arrays("query")["image"]
    codes = dvhn.encode(model.apply(straight.state.variables(), images, train=False), c)["id"]
    assert codes.dtype == jnp.int8 and codes.shape == (12, 16) and set(np.unique(codes)) <= {-1, 1}
