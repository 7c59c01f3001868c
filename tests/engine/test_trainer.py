"""The training loop: loss goes down, resume equals an uninterrupted run, NaN and signal handling, atomic saves."""

import os
import shutil
import signal

import jax
import numpy as np
import pytest

from jhash import checkpoints, evaluator, methods, reporting, trainer
from tests.engine import fakes


def _train(workdir, c=None, data=None, **kw):
    c = c or fakes.config()
    return trainer.train(c, workdir, data=data or fakes.Data(c), method=methods.get(c.method.name), progress=False, **kw)


def _leaves(state):
    return jax.tree.leaves(jax.device_get(state.model_item())) + jax.tree.leaves(jax.device_get(state.opt_state))


def test_resume_equals_uninterrupted(tmp_path):
    straight = _train(tmp_path / "a")
    assert straight.step == 6 and straight.resumed_from is None
    with pytest.raises(trainer.Interrupted, match="step 3"):
        _train(tmp_path / "b", stop_at=3)
    assert checkpoints.Checkpoints(tmp_path / "b", read_only=True).all_steps() == [2, 3]
    resumed = _train(tmp_path / "b")
    assert resumed.resumed_from == 3 and resumed.step == 6
    for x, y in zip(_leaves(straight.state), _leaves(resumed.state), strict=True):
        np.testing.assert_array_equal(x, y)
    # metrics.jsonl continues where the interrupted run stopped
    rows = [r["step"] for r in reporting.read_jsonl(tmp_path / "b" / "metrics.jsonl")]
    assert rows == [1, 2, 3, 4, 5, 6]
    # a finished run started again does nothing
    again = _train(tmp_path / "a")
    assert again.resumed_from == 6 and again.step == 6


def test_sigterm_saves_and_stops(tmp_path):
    class Killer(fakes.Data):
        def train_loader(self, seed):
            loader = super().train_loader(seed)
            orig = loader.__class__.__next__

            class L(loader.__class__):
                def __next__(self):
                    if self.n == 2:
                        os.kill(os.getpid(), signal.SIGTERM)
                    return orig(self)

            loader.__class__ = L
            return loader

    c = fakes.config(ckpt_every=100)
    with pytest.raises(trainer.Interrupted) as e:
        _train(tmp_path, c, data=Killer(c))
    assert e.value.signum == signal.SIGTERM and e.value.step == 3
    assert checkpoints.Checkpoints(tmp_path, read_only=True).all_steps() == [3]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_nan_loss_stops_with_the_step_and_keeps_good_checkpoint(tmp_path):
    c = fakes.config(ckpt_every=2, log_every=100)
    with pytest.raises(trainer.NonFiniteLossError, match=r"loss is nan at step 5 .*last verified checkpoint is step 4"):
        _train(tmp_path, c, data=fakes.Data(c, nan_at=5))
    assert checkpoints.Checkpoints(tmp_path, read_only=True).all_steps() == [2, 4]
    trained = evaluator.load_trained(tmp_path)
    assert trained.step == 4
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(trained.variables))


def test_interrupted_save_never_loads(tmp_path):
    """A save killed half way leaves a *.orbax-checkpoint-tmp-* dir: never listed, never restored, cleaned up."""
    _train(tmp_path, fakes.config(steps=4))
    ckdir = tmp_path / "checkpoints"
    # a complete-looking copy that was never renamed, and a half-written one
    shutil.copytree(ckdir / "4", ckdir / "6.orbax-checkpoint-tmp-1234567")
    (ckdir / "8.orbax-checkpoint-tmp-7654321" / "model").mkdir(parents=True)
    (ckdir / "8.orbax-checkpoint-tmp-7654321" / "model" / "partial").write_bytes(b"\0" * 10)
    assert checkpoints.Checkpoints(tmp_path, read_only=True).latest_step() == 4
    resumed = _train(tmp_path, fakes.config(steps=6))
    assert resumed.resumed_from == 4 and resumed.step == 6
    assert not list(ckdir.glob("*orbax-checkpoint-tmp*"))


def test_missing_checkpoint_errors(tmp_path):
    with pytest.raises(checkpoints.CheckpointNotFoundError, match=str(tmp_path)):
        checkpoints.Checkpoints(tmp_path, read_only=True)
    _train(tmp_path, fakes.config(steps=2))
    ck = checkpoints.Checkpoints(tmp_path, read_only=True)
    with pytest.raises(checkpoints.CheckpointNotFoundError, match=r"no checkpoint for step 7 .*steps found: 2"):
        ck.resolve_step(7)


def test_aux_hooks_run_every_epoch_resume_and_fit_search(tmp_path):
    """update_aux runs on the whole training set every aux_every epochs; aux is checkpointed and resumed;
    fit_search runs on the val split at the end and evaluation gets its result back."""
    c = fakes.config(steps=12)  # 4 steps per epoch -> aux updates after steps 4, 8, 12
    c.method.name = "tests.engine.fake_aux_method"
    c.method.aux_every = 1
    c.dataset.val_split = "val"
    straight = _train(tmp_path / "a", c)
    aux = jax.device_get(straight.state.aux)
    assert int(aux["updates"]) == 3
    np.testing.assert_array_equal(aux["seen"], np.arange(fakes.NUM_TRAIN) % fakes.NUM_CLASSES + 1)
    assert straight.search == {"positive_fraction": pytest.approx(straight.search["positive_fraction"]), "num_val": 12}
    with pytest.raises(trainer.Interrupted):
        _train(tmp_path / "b", c, stop_at=6)
    resumed = _train(tmp_path / "b", c)
    for x, y in zip(_leaves(straight.state), _leaves(resumed.state), strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(jax.device_get(resumed.state.aux["center"]), aux["center"])
    loaded = evaluator.load_trained(tmp_path / "b")
    assert loaded.search_params == straight.search and int(loaded.aux["updates"]) == 3


def test_pretrained_weights_go_through_the_method_hook(monkeypatch):
    """config.model.pretrained is loaded by the method's load_pretrained hook when it has one (SSR's PCB
    branches), else by jhash.models.load_pretrained into the backbone."""
    import types

    from jhash import models

    c = fakes.config()
    c.model.pretrained = "/weights/resnet.safetensors"
    info = fakes.Data(c).info
    method = methods.get(c.method.name)
    model = method.build_model(c, info)
    calls = []
    monkeypatch.setattr(models, "load_pretrained", lambda v, path: calls.append(("backbone", path)) or v)
    hooked = types.SimpleNamespace(load_pretrained=lambda v, path, config: calls.append(("method", path)) or v)
    trainer.init_variables(model, c, fakes.IMAGE_SIZE, jax.random.PRNGKey(0), method=hooked)
    trainer.init_variables(model, c, fakes.IMAGE_SIZE, jax.random.PRNGKey(0), method=method)
    trainer.init_variables(model, c, fakes.IMAGE_SIZE, jax.random.PRNGKey(0), method=hooked, pretrained=False)
    assert calls == [("method", "/weights/resnet.safetensors"), ("backbone", "/weights/resnet.safetensors")]
