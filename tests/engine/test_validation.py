"""Validation during training and model selection (jhash.validation + the trainer)."""

import json
import types

import numpy as np
import pytest

from jhash import checkpoints, curves, evaluator, methods, reporting, trainer, validation
from jhash import config as config_lib
from tests.engine import fakes


def test_query_gallery_rule_is_the_first_image_of_each_identity_and_camera():
    pids = [3, 3, 3, 5, 3, 5, 5, 7]
    cams = [1, 1, 2, 1, 2, 1, 2, 1]
    q, g = validation.query_gallery_split(pids, cams)
    expected_q = []
    for i in range(len(pids)):  # the definition: no earlier row has the same (pid, camid)
        if all((pids[j], cams[j]) != (pids[i], cams[i]) for j in range(i)):
            expected_q.append(i)
    assert q.tolist() == expected_q == [0, 2, 3, 6, 7]
    assert g.tolist() == [1, 4, 5]


def test_score_on_codes_that_match_across_cameras():
    """Each identity's codes are equal and far from the others': every valid query's first hit is right."""
    pids = np.array([1, 1, 1, 2, 2, 2])
    cams = np.array([1, 2, 2, 1, 2, 2])
    codes = np.where(pids[:, None] == 1, 1, -1) * np.ones((1, 16), np.int8)
    from jhash import encode

    s = validation.score(encode.pack(codes), pids, cams)
    assert s["val/R1"] == pytest.approx(1.0) and s["val/mAP"] == pytest.approx(1.0)
    assert s["val/queries"] == 2  # the camera-2 queries have no other-camera gallery image left: skipped


class _ValData(fakes.Data):
    """Fake data whose val split has two cameras per identity; records every split it opens."""

    def __init__(self, config):
        super().__init__(config)
        self.opened = set()

    def eval_batches(self, split, batch_size):
        self.opened.add(split)
        for batch in super().eval_batches(split, batch_size):
            if split == "val":
                batch = {**batch, "camid": (batch["index"] // fakes.NUM_CLASSES % 2 + 1).astype(np.int32)}
            yield batch


def _config(**train):
    c = fakes.config(**{"steps": 10, "eval_every": 2, "keep": 1, "select": "best_val_map", **train})
    c.dataset.val_split = "val"
    return c


def _train(workdir, c, **kw):
    return trainer.train(c, workdir, data=_ValData(c), method=methods.get(c.method.name), progress=False, **kw)


def test_a_split_with_nothing_to_score_gives_nan_not_an_error():
    codes = np.zeros((2, 2), np.uint8)
    only_queries = validation.score(codes, pids=[1, 2], camids=[0, 0])  # one image per (identity, camera)
    assert only_queries["val/queries"] == 0 and np.isnan(only_queries["val/mAP"])
    no_cross_camera = validation.score(np.zeros((3, 2), np.uint8), pids=[1, 1, 2], camids=[0, 0, 0])
    assert no_cross_camera["val/queries"] == 0 and np.isnan(no_cross_camera["val/R1"])


def test_curves_follow_the_resumed_history(tmp_path):
    """Rows a killed run logged past its last checkpoint are replaced by the resumed run's rows."""
    rows = [{"step": 2, "loss": 3.0}, {"step": 4, "loss": 2.0}, {"step": 6, "loss": 9.0},  # killed after step 4's ckpt
            {"step": 6, "loss": 1.5}, {"step": 8, "loss": 1.0}, {"event": "no step"}]
    assert [(r["step"], r["loss"]) for r in curves.trajectory(rows)] == [(2, 3.0), (4, 2.0), (6, 1.5), (8, 1.0)]
    resumed_at_3 = [{"step": 2}, {"step": 4}, {"step": 6}, {"step": 4}, {"step": 5}]
    assert [r["step"] for r in curves.trajectory(resumed_at_3)] == [2, 4, 5]


def test_curves_need_a_trained_workdir(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
        curves.write_workdir_curves(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"event": "start"}\n')
    with pytest.raises(ValueError, match="nothing to plot"):
        curves.write_workdir_curves(tmp_path)


PEAK_EARLY = {2: 0.1, 4: 0.5, 6: 0.3, 8: 0.2, 10: 0.4}


@pytest.fixture
def scripted_val_map(monkeypatch):
    """validation.validate returns val/mAP PEAK_EARLY[step] (the metric peaks at step 4)."""
    def fake(method, model, state, data, config, mesh, **kwargs):
        step = int(np.asarray(state.step))
        return {"val/R1": 0.0, "val/mAP": PEAK_EARLY[step], "val/mINP": 0.0, "val/queries": 1}

    monkeypatch.setattr(validation, "validate", fake)


def _selection(workdir):
    return json.loads((workdir / "selection.json").read_text())


def test_best_val_map_is_kept_recorded_and_evaluated(tmp_path, scripted_val_map, capsys):
    result = _train(tmp_path, _config())
    assert result.step == 10
    assert _selection(tmp_path) == {"select": "best_val_map", "best_step": 4, "best_val_map": 0.5, "since_best": 3,
                                    "stopped_early": False}
    assert checkpoints.Checkpoints(tmp_path, read_only=True).all_steps() == [4, 10]  # keep=1, yet 4 stays
    rows = reporting.read_jsonl(tmp_path / "metrics.jsonl")
    assert [(r["step"], r["val/mAP"]) for r in rows if "val/mAP" in r] == sorted(PEAK_EARLY.items())
    assert evaluator.load_trained(tmp_path).step == 4
    assert "evaluating step 4: the best validation mAP (0.5000" in capsys.readouterr().err
    assert evaluator.load_trained(tmp_path, step=10).step == 10


def test_patience_stops_early_and_the_run_stays_finished(tmp_path, scripted_val_map):
    result = _train(tmp_path, _config(patience=2))
    assert result.step == 8  # validations at 6 and 8 did not beat step 4
    assert _selection(tmp_path)["stopped_early"] is True
    assert checkpoints.Checkpoints(tmp_path, read_only=True).all_steps() == [4, 8]
    again = _train(tmp_path, _config(patience=2))
    assert again.resumed_from == 8 and again.step == 8


def test_resume_mid_run_keeps_the_selection_state(tmp_path, scripted_val_map):
    straight = _train(tmp_path / "a", _config())
    with pytest.raises(trainer.Interrupted):
        _train(tmp_path / "b", _config(), stop_at=7)
    assert _selection(tmp_path / "b")["best_step"] == 4
    resumed = _train(tmp_path / "b", _config())
    assert resumed.resumed_from == 7
    assert _selection(tmp_path / "b") == _selection(tmp_path / "a")
    for x, y in zip(jax_leaves(straight), jax_leaves(resumed), strict=True):
        np.testing.assert_array_equal(x, y)


def jax_leaves(result):
    import jax

    return jax.tree.leaves(jax.device_get(result.state.params))


def test_validation_never_opens_a_test_split(tmp_path):
    c = _config()
    data = _ValData(c)
    trainer.train(c, tmp_path, data=data, method=methods.get(c.method.name), progress=False)
    assert data.opened == {"val"}
    rows = [r for r in reporting.read_jsonl(tmp_path / "metrics.jsonl") if "val/mAP" in r]
    assert [r["step"] for r in rows] == [2, 4, 6, 8, 10]
    assert all(0.0 <= r["val/mAP"] <= 1.0 and r["val/queries"] > 0 for r in rows)


def test_the_validation_encoder_is_built_once_per_run(tmp_path, monkeypatch):
    """Five validations, one jitted encoder: later validations reuse its compiled program."""
    from jhash import encode

    built = []
    inner = encode.codes_fn
    monkeypatch.setattr(encode, "codes_fn", lambda *a, **k: built.append(1) or inner(*a, **k))
    _train(tmp_path, _config(select="last"))
    assert len([r for r in reporting.read_jsonl(tmp_path / "metrics.jsonl") if "val/mAP" in r]) == 5
    assert len(built) == 1


@pytest.mark.parametrize("train, match", [
    (dict(select="best"), "config.train.select must be one of"),
    (dict(eval_every=-1), "config.train.eval_every must be >= 0"),
    (dict(eval_every_epochs=-0.5), "config.train.eval_every_epochs must be >= 0"),
    (dict(eval_every=0, eval_every_epochs=0.0), "need validation: set config.train.eval_every or "
                                                "config.train.eval_every_epochs > 0"),
])
def test_selection_config_errors(tmp_path, train, match):
    with pytest.raises(config_lib.ConfigError, match=match):
        _train(tmp_path, _config(**train))


def test_default_period_is_one_epoch_and_needs_a_val_split():
    """``eval_every`` (steps) wins over ``eval_every_epochs``; nothing validates without a val split."""
    info = types.SimpleNamespace(num_train_images=100)
    c = fakes.config(steps=50, batch_p=4, batch_k=5)  # 5 steps per epoch
    c.dataset.val_split = "val"
    assert config_lib.validation_period(c, info) == 5
    c.train.eval_every_epochs = 2.5
    assert config_lib.validation_period(c, info) == 13  # 12.5 steps, rounded half up
    c.train.eval_every_epochs = 0.01
    assert config_lib.validation_period(c, info) == 1
    c.train.eval_every = 7
    assert config_lib.validation_period(c, info) == 7
    c.train.eval_every, c.train.eval_every_epochs = 0, 0.0
    assert config_lib.validation_period(c, info) == 0
    c.train.eval_every_epochs = 1.0
    c.dataset.val_split = None
    assert config_lib.validation_period(c, info) == 0


def _events(logdir):
    """(tag, step, value) of every scalar in the TFRecord-framed event files under ``logdir``."""
    import struct

    from tensorboardX.proto import event_pb2

    out = []
    for path in sorted(logdir.rglob("events.out.tfevents.*")):
        raw = path.read_bytes()
        pos = 0
        while pos < len(raw):
            (n,) = struct.unpack("<Q", raw[pos:pos + 8])
            event = event_pb2.Event.FromString(raw[pos + 12:pos + 12 + n])
            pos += 12 + n + 4
            out += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
    return out


def test_tensorboard_events_and_curves_png(tmp_path):
    c = _config()
    trainer.train(c, tmp_path, data=_ValData(c), method=methods.get(c.method.name), progress=False)
    rows = reporting.read_jsonl(tmp_path / "metrics.jsonl")
    events = _events(tmp_path / "tensorboard")
    for tag in ("loss", "lr", "val/mAP"):
        want = [(r["step"], r[tag]) for r in rows if tag in r]
        got = [(s, v) for t, s, v in events if t == tag]
        assert [s for s, _ in got] == [s for s, _ in want]
        np.testing.assert_allclose([v for _, v in got], [v for _, v in want], rtol=1e-6)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
