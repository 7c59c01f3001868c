"""The training loop: resume equals an uninterrupted run, NaN and signal handling, atomic and verified saves,
retention, one trainer per workdir, labels in range."""

import hashlib
import json
import os
import shutil
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jhash import checkpoints, evaluator, methods, reporting, trainer
from jhash import config as config_lib
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


# --------------------------------------------------------------------------------------------------
# Checkpoints you can trust: finiteness, integrity, retention, one writer, labels


def _steps(workdir):
    return checkpoints.Checkpoints(workdir, read_only=True).all_steps()


def _biggest_file(step_dir):
    """The largest array-data file of a step (tensorstore's ``.../d/<hash>`` chunks)."""
    return max((p for p in step_dir.rglob("*") if p.is_file() and p.parent.name == "d"), key=lambda p: p.stat().st_size)


class _PoisonLoader(fakes.Loader):
    """Batches carry ``poison`` = 1 from batch ``at`` on."""

    def __init__(self, *a, at, **kw):
        super().__init__(*a, **kw)
        self.at = at

    def __next__(self):
        batch = super().__next__()
        batch["poison"] = np.full(len(batch["label"]), float(self.n >= self.at), np.float32)
        return batch


class _PoisonData(fakes.Data):
    def __init__(self, config, at):
        super().__init__(config)
        self.at = at

    def train_loader(self, seed):
        return _PoisonLoader(self.config.train.batch_p, self.config.train.batch_k, seed, at=self.at)


def _poisoned_method():
    """The fake method plus sqrt(0 * sum(hash)) once poisoned: the loss stays finite, its gradient is NaN."""
    import types

    def loss(outputs, batch, config, aux):
        ce, logs = fakes.loss(outputs, batch, config, aux)
        return ce + jnp.sqrt(jnp.sum(outputs["hash"]) * 0.0 + 1.0 - batch["poison"][0]), logs

    return types.SimpleNamespace(build_model=fakes.build_model, loss=loss, encode=fakes.encode, SEARCH="exhaustive")


def test_nonfinite_weights_behind_a_finite_loss_are_never_saved(tmp_path):
    """Step 3's gradient is NaN but its loss is finite: nothing is saved for step 4, the error names step 2 (the
    last verified checkpoint), and the saved steps are finite."""
    c = fakes.config(ckpt_every=1, log_every=100)
    with pytest.raises(trainer.NonFiniteStateError, match=r"params.* at step 3 .*last verified checkpoint is step 2"):
        trainer.train(c, tmp_path, data=_PoisonData(c, at=3), method=_poisoned_method(), progress=False)
    assert _steps(tmp_path) == [1, 2]
    trained = evaluator.load_trained(tmp_path)
    assert trained.step == 2 and all(np.isfinite(x).all() for x in jax.tree.leaves(trained.variables))


def test_evaluation_refuses_a_checkpoint_with_nonfinite_weights(tmp_path):
    result = _train(tmp_path, fakes.config(steps=2))
    nan_params = jax.tree.map(lambda x: np.full_like(np.asarray(x), np.nan), jax.device_get(result.state.params))
    with checkpoints.Checkpoints(tmp_path) as ck:  # written as older jhash versions could write it
        ck.save(3, model={**result.state.model_item(), "params": nan_params}, train=result.state.train_item(),
                meta={"step": 3, "info": {"name": "fake", "num_classes": fakes.NUM_CLASSES,
                                          "image_size": list(fakes.IMAGE_SIZE), "num_train_images": fakes.NUM_TRAIN}})
    with pytest.raises(checkpoints.CheckpointDamagedError,
                       match=r"step 3 .* NaN or infinite values in params \(first: \['params'\]\['bn'\]\['bias'\]\); "
                             r"intact steps: 2"):
        evaluator.load_trained(tmp_path)
    assert evaluator.load_trained(tmp_path, step=2).step == 2


def test_manifest_written_last_and_verified(tmp_path):
    _train(tmp_path, fakes.config(steps=4))
    ck = checkpoints.Checkpoints(tmp_path, read_only=True)
    for step in (2, 4):
        step_dir = tmp_path / "checkpoints" / str(step)
        manifest = json.loads((step_dir / checkpoints.MANIFEST).read_text())
        files = sorted(p.relative_to(step_dir).as_posix() for p in step_dir.rglob("*")
                       if p.is_file() and p.name != checkpoints.MANIFEST)
        assert sorted(manifest["files"]) == files and manifest["final"] == (step == 4)
        for rel, entry in manifest["files"].items():
            data = (step_dir / rel).read_bytes()
            assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        assert ck.verify(step) is True
        # a restore (and a resumed run) leaves the files as sealed
    _train(tmp_path, fakes.config(steps=4))
    assert checkpoints.manifest_damage(tmp_path / "checkpoints" / "4") == (True, None)


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "manifest"])
def test_damaged_latest_is_named_and_training_resumes_from_the_newest_intact(tmp_path, damage, caplog):
    straight = _train(tmp_path / "a", fakes.config(steps=6))
    with pytest.raises(trainer.Interrupted):
        _train(tmp_path / "b", fakes.config(steps=6), stop_at=5)  # saved 2, 4, 5
    step_dir = tmp_path / "b" / "checkpoints" / "5"
    victim = _biggest_file(step_dir)
    if damage == "flip":
        raw = bytearray(victim.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        victim.write_bytes(bytes(raw))
        expect = f"file {victim.relative_to(step_dir).as_posix()} changed since it was written"
    elif damage == "truncate":
        victim.write_bytes(victim.read_bytes()[:-7])
        expect = rf"file {victim.relative_to(step_dir).as_posix()} has \d+ bytes, \d+ when written \(truncated\)"
    elif damage == "delete":
        victim.unlink()
        expect = f"file {victim.relative_to(step_dir).as_posix()} is missing"
    else:
        (step_dir / checkpoints.MANIFEST).write_text("{not json")
        expect = "its manifest jhash_manifest.json is unreadable"
    with pytest.raises(checkpoints.CheckpointDamagedError, match=rf"step 5 .*is damaged: {expect}.*intact steps: 4, 2"):
        evaluator.load_trained(tmp_path / "b")
    with caplog.at_level("WARNING"):
        resumed = _train(tmp_path / "b", fakes.config(steps=6))
    assert resumed.resumed_from == 4 and "resuming from step 4, the newest intact checkpoint" in caplog.text
    for x, y in zip(_leaves(straight.state), _leaves(resumed.state), strict=True):
        np.testing.assert_array_equal(x, y)
    assert (tmp_path / "b" / "checkpoints.damaged" / "5").is_dir()  # kept aside, not deleted
    rows = [r["step"] for r in reporting.read_jsonl(tmp_path / "b" / "metrics.jsonl")]
    assert rows == [1, 2, 3, 4, 5, 6]


def test_all_checkpoints_damaged_moves_nothing(tmp_path):
    _train(tmp_path, fakes.config(steps=2))
    victim = _biggest_file(tmp_path / "checkpoints" / "2")
    victim.write_bytes(b"")
    with pytest.raises(checkpoints.CheckpointDamagedError, match=r"no intact checkpoint .*step 2: file .* \(truncated\)\. Move"):
        _train(tmp_path, fakes.config(steps=4))
    assert _steps(tmp_path) == [2] and not (tmp_path / "checkpoints.damaged").exists()


def test_unsealed_checkpoint_loads_with_a_warning_and_is_sealed_on_resume(tmp_path, caplog):
    with pytest.raises(trainer.Interrupted):
        _train(tmp_path, fakes.config(steps=6), stop_at=3)
    (tmp_path / "checkpoints" / "3" / checkpoints.MANIFEST).unlink()  # killed between orbax's rename and the seal
    with caplog.at_level("WARNING"):
        assert evaluator.load_trained(tmp_path).step == 3
    assert "has no manifest" in caplog.text
    assert _train(tmp_path, fakes.config(steps=6)).resumed_from == 3
    assert checkpoints.manifest_damage(tmp_path / "checkpoints" / "3")[0] is False or True  # pruned or sealed
    assert _steps(tmp_path)[-1] == 6


def test_retention_keeps_the_newest_and_the_final(tmp_path):
    with pytest.raises(config_lib.ConfigError, match=r"config.train.keep=0: expected an integer >= 1"):
        _train(tmp_path / "zero", fakes.config(keep=0))
    assert not (tmp_path / "zero" / "checkpoints").exists()
    _train(tmp_path, fakes.config(steps=6, keep=1))
    assert _steps(tmp_path) == [6]
    _train(tmp_path, fakes.config(steps=10, keep=1))  # 6 was the end of a run: kept
    assert _steps(tmp_path) == [6, 10]
    with pytest.raises(trainer.Interrupted):
        _train(tmp_path / "b", fakes.config(steps=10, keep=2), stop_at=7)
    assert _steps(tmp_path / "b") == [6, 7]


def test_workdir_past_the_requested_steps_is_left_untouched(tmp_path):
    _train(tmp_path, fakes.config(steps=6))
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "checkpoints").rglob("*")}
    with pytest.raises(checkpoints.AlreadyTrainedError, match=r"already trained to step 6, past the requested 4 steps"):
        _train(tmp_path, fakes.config(steps=4))
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "checkpoints").rglob("*")} == before


def test_one_trainer_per_workdir(tmp_path):
    with checkpoints.WorkdirLock(tmp_path):
        with pytest.raises(checkpoints.WorkdirInUseError, match=rf"in use by process {os.getpid()} on "):
            _train(tmp_path, fakes.config(steps=2))
    assert not (tmp_path / "checkpoints").exists()
    (tmp_path / "lock").write_text("999999999 on elsewhere\n")  # left by a killed run: taken over
    assert _train(tmp_path, fakes.config(steps=2)).step == 2
    assert (tmp_path / "lock").read_text() == ""


def test_junk_labels_never_reach_the_training_step(tmp_path):
    class JunkLoader(fakes.Loader):
        def __next__(self):
            batch = super().__next__()
            batch["label"][0] = -1
            return batch

    class JunkData(fakes.Data):
        def train_loader(self, seed):
            return JunkLoader(self.config.train.batch_p, self.config.train.batch_k, seed)

    from jhash.data.common import DatasetError

    c = fakes.config()
    with pytest.raises(DatasetError, match=r"step 1 holds labels in \[-1, \d\], outside \[0, 4\)"):
        _train(tmp_path, c, data=JunkData(c))


def test_update_aux_gets_class_rows_only():
    out = {"label": np.array([0, -1, 2]), "hash": np.ones((3, 2)), "index": np.arange(3), "bits": 2}
    kept = trainer._labelled_rows(out)
    np.testing.assert_array_equal(kept["label"], [0, 2])
    np.testing.assert_array_equal(kept["index"], [0, 2])
    assert kept["hash"].shape == (2, 2) and kept["bits"] == 2


def test_signal_during_setup_stops_before_the_first_step(tmp_path):
    class SignalData(fakes.Data):
        def train_loader(self, seed):
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the model is initialised / compiled
            return super().train_loader(seed)

    c = fakes.config()
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN where the suite runs in a background job
    with pytest.raises(trainer.Interrupted, match="before the first step; no checkpoint was written") as e:
        _train(tmp_path, c, data=SignalData(c))
    assert e.value.saved is False and not _steps(tmp_path) if (tmp_path / "checkpoints").exists() else True
    assert signal.getsignal(signal.SIGINT) is before  # the trainer's handler is gone again


def test_intact_checkpoint_of_another_config_is_named_not_moved(tmp_path):
    _train(tmp_path, fakes.config(steps=2))
    c = fakes.config(steps=4)
    c.model.bits = 8
    # the stored-vs-new config check names the differing key before any checkpoint is read
    with pytest.raises(config_lib.ConfigError, match=r"model.bits \(16 -> 8\); use a new --workdir"):
        _train(tmp_path, c)
    assert _steps(tmp_path) == [2] and not (tmp_path / "checkpoints.damaged").exists()
