"""Config loading, overrides, schema errors, optimizer schedules and groups."""

import json
import pathlib
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def test_new_keys_under_open_dicts_from_the_command_line():
    """dataset.options, a dict dataset.config, model.backbone_kwargs and input.augment take new keys (nested dicts
    made on the way, values typed by their text); the schema's own dicts and method still refuse unknown keys."""
    c = config_lib.load(ROOT / "configs/reid_folder/baseline.py", [
        "dataset.options.skip_broken=True", "dataset.options.splits.extra=more_gallery",
        "model.backbone_kwargs.new.depth=2"])
    assert c.dataset.options.skip_broken is True
    assert c.dataset.options.splits.extra == "more_gallery" and c.dataset.options.splits.query == "query"
    assert c.model.backbone_kwargs.new.depth == 2
    assert config_lib.load(ROOT / "configs/synthetic_reid/baseline.py", ["input.augment.jitter=0.25"]).input.augment.jitter == 0.25
    c = config_lib.load(ROOT / "configs/market1501/ctf.py", ["dataset.config.new_field=0.5"])
    assert c.dataset.config.new_field == 0.5
    for bad in ("method.triplet_margn=1", "train.batchp=3", "dataset.nme=x"):
        with pytest.raises(config_lib.ConfigError, match="unknown config key"):
            config_lib.load(ROOT / "configs/reid_folder/baseline.py", [bad])


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


# --------------------------------------------------------------------------------------------------
# Command-line values, validation, config.json round trip, the stored-vs-new check


def test_none_from_the_command_line_means_none():
    c = config_lib.load(ROOT / "configs/synthetic_reid/ssr.py", ["dataset.val_split=None", "model.pretrained=None"])
    assert c.dataset.val_split is None and c.model.pretrained is None


def test_one_number_image_size_is_square():
    c = config_lib.load(ROOT / "configs/synthetic_reid/baseline.py", ["input.image_size=64"])
    assert c.input.image_size == (64, 64)
    config_lib.validate(c)


def test_every_shipped_config_validates():
    for path in CONFIGS:
        config_lib.validate(config_lib.load(path))


def _valid(**changes):
    c = config_lib.base_config()
    c.train.steps = 10
    for key, value in changes.items():
        parent, name = config_lib._resolve(c, key.replace("__", "."))
        parent[name] = value
    return c


@pytest.mark.parametrize("key, value", [
    ("seed", -1), ("input.num_workers", -1), ("model.bits", 0), ("model.bits", -8), ("model.pooling", "max"),
    ("method.aux_every", -1), ("optimizer.name", "rmsprop"), ("optimizer.lr", 0.0), ("optimizer.lr", -1e-3),
    ("optimizer.lr", float("nan")), ("optimizer.lr", float("inf")), ("optimizer.momentum", 1.0),
    ("optimizer.weight_decay", -1.0), ("optimizer.warmup", -1.0), ("optimizer.warmup_factor", 0.0),
    ("optimizer.gamma", 0.0), ("optimizer.min_lr_ratio", 2.0), ("optimizer.grad_clip_norm", -1.0),
    ("optimizer.milestones", (5, 2)), ("optimizer.schedule", "poly"), ("train.steps", -5), ("train.epochs", -1),
    ("train.batch_p", 0), ("train.batch_p", 1), ("train.batch_k", 0), ("train.log_every", 0),
    ("train.ckpt_every", 0), ("train.keep", 0), ("train.compute_dtype", "int8"), ("eval.batch_size", 0),
    ("eval.ties", "random"), ("eval.tradeoff_bits", (0,)), ("eval.hashing_metrics", ("recall@10",)),
    ("input.image_size", (64,)), ("input.image_size", (64, 0)), ("dataset.val_split", ""),
])
def test_validate_names_the_key(key, value):
    with pytest.raises(config_lib.ConfigError, match=re.escape(f"config.{key}")):
        config_lib.validate(_valid(**{key: value}))


def test_validate_needs_a_training_length():
    with pytest.raises(config_lib.ConfigError, match="train.steps and config.train.epochs are both 0"):
        config_lib.validate(_valid(**{"train.steps": 0}))


def _info(**kw):
    from jhash.data.info import DatasetInfo

    return DatasetInfo(**{"name": "d", "num_classes": 20, "image_size": (8, 8), "num_train_images": 80, **kw})


def test_validate_for_dataset():
    class Fits:
        def fit_search(self, codes, pids, config):
            return {}

    c = _valid(**{"train.batch_p": 21})
    with pytest.raises(config_lib.ConfigError, match=r"config.train.batch_p=21 .* only 20 training identities.*batch_p=20"):
        config_lib.validate_for_dataset(c, _info(), object())
    c = _valid(**{"dataset.val_split": "val"})
    with pytest.raises(config_lib.ConfigError, match="config.dataset.val_split='val'.*no split 'val'"):
        config_lib.validate_for_dataset(c, _info(), Fits(), has_split=lambda s: s != "val")
    assert config_lib.validate_for_dataset(c, _info(), Fits(), has_split=lambda s: True) == []
    assert config_lib.validate_for_dataset(c, _info(), object(), has_split=lambda s: False) == []  # no fit_search

    ssr = config_lib.load(ROOT / "configs/synthetic_reid/ssr.py")
    with pytest.raises(config_lib.ConfigError, match="config.method.attributes=True .* no attribute labels"):
        config_lib.validate_for_dataset(ssr, _info(num_classes=50), object())
    ssr = config_lib.load(ROOT / "configs/synthetic_reid/ssr.py", ["method.attributes=False"])
    with pytest.raises(config_lib.ConfigError, match="config.method.afr=True needs attribute codes"):
        config_lib.validate_for_dataset(ssr, _info(num_classes=50), object())

    ctf = config_lib.load(ROOT / "configs/synthetic_reid/ctf.py", ["model.bits=16"])
    (note,) = config_lib.validate_for_dataset(ctf, _info(num_classes=50), object())
    assert "config.method.lengths" in note and "model.bits=16 is not used" in note


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_config_json_round_trip(path):
    from jhash import workdir

    c = config_lib.load(path)
    back = workdir.config_from_json(json.loads(json.dumps(workdir.config_to_json(c))))
    assert back.to_dict() == c.to_dict()
    assert workdir.config_changes(workdir.config_to_json(c), workdir.config_to_json(back)) == {}


_leaf = st.one_of(st.integers(-5, 5), st.floats(-2, 2, allow_nan=False), st.text("abc_", min_size=1, max_size=4),
                  st.booleans(), st.none(), st.tuples(st.integers(0, 9), st.integers(0, 9)))
_free = st.dictionaries(st.sampled_from(["pattern", "val_fraction", "widths", "x"]),
                        st.one_of(_leaf, st.dictionaries(st.sampled_from(["a", "b"]), _leaf, max_size=2)), max_size=4)


@settings(max_examples=40, deadline=None)
@given(ds=st.one_of(st.none(), st.text("abc", min_size=1, max_size=3), _free), method=_free, kwargs=_free)
def test_free_form_fields_round_trip(ds, method, kwargs):
    """Free-form dict fields (dataset.config as a name or a dict, method.*, model.backbone_kwargs) come back from
    config.json as they went in."""
    import ml_collections

    from jhash import workdir

    c = config_lib.base_config()
    c.train.steps = 3
    if isinstance(ds, dict):
        del c.dataset["config"]
        c.dataset.config = ml_collections.ConfigDict(ds)
    else:
        c.dataset.config = ds
    for k, v in method.items():
        c.method[f"m_{k}"] = ml_collections.ConfigDict(v) if isinstance(v, dict) else v
    c.model.backbone_kwargs = ml_collections.ConfigDict(kwargs)
    back = workdir.config_from_json(json.loads(json.dumps(workdir.config_to_json(c))))
    assert back.to_dict() == c.to_dict()


def test_stored_config_check(tmp_path):
    from jhash import workdir

    c = config_lib.load(ROOT / "configs/synthetic_reid/baseline.py")
    assert workdir.check_stored_config(tmp_path, c) == {}
    workdir.write_config(tmp_path, c)
    assert workdir.check_stored_config(tmp_path, c) == {}
    other = config_lib.load(ROOT / "configs/synthetic_reid/baseline.py", ["model.bits=32", "optimizer.lr=1e-4"])
    # no checkpoint yet: any change is allowed (and reported)
    assert set(workdir.check_stored_config(tmp_path, other)) == {"model.bits", "optimizer.lr"}
    (tmp_path / "checkpoints" / "4").mkdir(parents=True)
    with pytest.raises(config_lib.ConfigError, match=r"model.bits \(64 -> 32\); use a new --workdir") as e:
        workdir.check_stored_config(tmp_path, other)
    assert "optimizer.lr" not in str(e.value) and "\n" not in str(e.value)
    fine = config_lib.load(ROOT / "configs/synthetic_reid/baseline.py", ["optimizer.lr=1e-4", "train.epochs=3"])
    changes = workdir.check_stored_config(tmp_path, fine)
    assert set(changes) == {"optimizer.lr", "train.epochs"} and changes["optimizer.lr"][1] == 1e-4
    workdir.write_config(tmp_path, fine, changes, step=4)
    stored = json.loads((tmp_path / "config.json").read_text())
    assert stored["optimizer"]["lr"] == 1e-4 and stored["_history"][0]["resumed_from_step"] == 4
    assert workdir.read_config(tmp_path).optimizer.lr == 1e-4
    # momentum / weight decay / clipping add optimizer state: only zero <-> zero or non-zero <-> non-zero is fine
    assert workdir.is_compatible("optimizer.weight_decay", 5e-4, 1e-4)
    assert not workdir.is_compatible("optimizer.grad_clip_norm", 0.0, 1.0)
    assert not workdir.is_compatible("dataset.config", "tiny", "default")


def test_remove_if_unused(tmp_path):
    from jhash import workdir

    (tmp_path / "a" / "checkpoints").mkdir(parents=True)
    (tmp_path / "a" / "config.json").write_text("{}")
    assert workdir.remove_if_unused(tmp_path / "a") and not (tmp_path / "a").exists()
    (tmp_path / "b" / "checkpoints" / "2").mkdir(parents=True)
    assert not workdir.remove_if_unused(tmp_path / "b") and (tmp_path / "b").exists()


def test_tiny_commands_in_config_docstrings_fit_the_tiny_dataset():
    """A docstring's command on synthetic_reid/tiny passes the checks made before training (P <= identities)."""
    from jhash.data import synthetic

    tiny = next(c for c in synthetic.SyntheticReid.BUILDER_CONFIGS if c.name == "tiny")
    for path in CONFIGS:
        doc = path.read_text().split('"""')[1].replace("\\\n", " ")
        for line in doc.splitlines():
            if "--config.dataset.config=tiny" in line and "train.py" in line:
                _, overrides, _ = config_lib.extract_overrides(line.split())
                c = config_lib.load(path, overrides)
                config_lib.validate(c)
                assert c.train.batch_p <= tiny.num_train_ids, f"{path.name}: {line.strip()}"


def test_keys_added_to_the_schema_later_are_no_change(tmp_path):
    from jhash import workdir

    c = config_lib.load(ROOT / "configs/synthetic_reid/baseline.py")
    old = workdir.config_to_json(c)
    del old["eval"]["ties"]  # a config.json written before eval.ties existed
    (tmp_path / "config.json").write_text(json.dumps(old))
    (tmp_path / "checkpoints" / "2").mkdir(parents=True)
    assert workdir.check_stored_config(tmp_path, c) == {}
