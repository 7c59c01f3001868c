"""Config loading, overrides, schema errors, optimizer schedules and groups."""

import pathlib
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jhash import config as config_lib
from jhash import methods, optim

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*/*.py"))


def test_configs_load_and_document_their_command():
    assert CONFIGS, "no config files found"
    for path in CONFIGS:
        rel = path.relative_to(ROOT).as_posix()
        c = config_lib.load(path)
        methods.get(c.method.name)
        doc = path.read_text().split('"""')[1]
        assert f"python train.py --config {rel}" in doc, f"{rel}: docstring lacks the command that runs it"


def test_overrides_are_typed():
    c = config_lib.load(ROOT / "configs/market1501/baseline.py",
                        ["optimizer.lr=3e-4", "train.epochs=2", "input.image_size=(128, 64)",
                         "dataset.manual_dir=/tmp/x", "optimizer.lr_mult=(('^(?!backbone)', 10.0),)"])
    assert c.optimizer.lr == 3e-4 and c.train.epochs == 2 and c.input.image_size == (128, 64)
    assert c.dataset.manual_dir == "/tmp/x" and c.optimizer.lr_mult == (("^(?!backbone)", 10.0),)
    with pytest.raises(AttributeError):
        c.new_key = 1  # locked


def test_unknown_key_lists_valid_ones():
    with pytest.raises(config_lib.ConfigError, match=r"'optimizer' has no field 'lrr'.*Valid keys there: .*\blr\b"):
        config_lib.load(ROOT / "configs/market1501/baseline.py", ["optimizer.lrr=1"])
    with pytest.raises(config_lib.ConfigError, match="no field 'optimiser'"):
        config_lib.load(ROOT / "configs/market1501/baseline.py", ["optimiser.lr=1"])


def test_unknown_key_in_a_config_file(tmp_path):
    f = tmp_path / "bad.py"
    f.write_text("from jhash import config as C\ndef get_config():\n  c = C.base_config()\n  c.train.stepz = 3\n  return c\n")
    with pytest.raises(config_lib.ConfigError, match="unknown config key 'train.stepz'.*Valid keys there: .*steps"):
        config_lib.load(f)


def test_cli_unknown_key_is_a_clear_error():
    r = subprocess.run([sys.executable, "train.py", "--config", "configs/synthetic_reid/baseline.py",
                        "--workdir", "/tmp/unused", "--config.train.lrr=3"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2
    assert "unknown config key 'train.lrr'" in r.stderr and "Traceback" not in r.stderr


def test_split_overrides():
    path, ov = config_lib.split_overrides(["--config", "a.py", "--config.x.y=1", "--config.z", "2", "--workdir=w"])
    assert path == "a.py" and ov == [("x.y", "1"), ("z", "2")]


def test_unknown_method_lists_available():
    with pytest.raises(ValueError, match="available methods: .*baseline"):
        methods.get("nope")


def _sched_config(**opt):
    c = config_lib.base_config()
    c.train.steps = 100
    c.optimizer.update(opt)
    return c


def test_schedules():
    f = optim.learning_rate_schedule(_sched_config(lr=1.0, schedule="multistep", milestones=(50, 80), gamma=0.1,
                                                   warmup=10, warmup_factor=0.1))
    np.testing.assert_allclose([f(0), f(5), f(10), f(49), f(50), f(79), f(80)],
                               [0.1, 0.55, 1.0, 1.0, 0.1, 0.1, 0.01], rtol=1e-6)
    g = optim.learning_rate_schedule(_sched_config(lr=2.0, schedule="cosine", min_lr_ratio=0.0))
    np.testing.assert_allclose([g(0), g(50), g(100)], [2.0, 1.0, 0.0], atol=1e-6)
    with pytest.raises(config_lib.ConfigError, match="schedule"):
        optim.learning_rate_schedule(_sched_config(schedule="poly"))


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_lr_multipliers(name):
    params = {"backbone": {"kernel": jnp.ones((2, 2))}, "head": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}
    c = _sched_config(name=name, lr=0.1, schedule="constant", weight_decay=0.0, momentum=0.0,
                      lr_mult=(("^(?!backbone)", 10.0),))
    tx, _ = optim.make_optimizer(c, params)
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    b, h = float(updates["backbone"]["kernel"][0, 0]), float(updates["head"]["kernel"][0, 0])
    assert b < 0 and h == pytest.approx(10 * b, rel=1e-5)
    assert float(updates["head"]["bias"][0]) == pytest.approx(h, rel=1e-5)


def test_weight_decay_skips_biases_by_default():
    params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}
    c = _sched_config(name="sgd", lr=1.0, schedule="constant", weight_decay=0.5, momentum=0.0)
    tx, _ = optim.make_optimizer(c, params)
    updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    assert float(updates["kernel"][0, 0]) == pytest.approx(-0.5) and float(updates["bias"][0]) == 0.0
