"""Every shipped config (every file under configs/, found by glob) trains on a fake tree of its dataset (or on
synthetic_reid/tiny) with tiny settings, then evaluates from its workdir and encodes image files with it — the
code paths of ``evaluate.py --workdir`` and ``jhash.encode --workdir`` (their command lines are exercised in
test_commands.py). On synthetic_reid each method's config trains long enough to show that it learns: its loss
falls.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from jhash import config as config_lib
from jhash import encode, engine, evaluator, reporting
from jhash import workdir as workdir_lib
from tests.data import fake_trees
from tests.methods import run_config

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIGS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "configs").glob("*/*.py"))
LEARN_STEPS = 30
METRICS = ("R1", "R5", "R10", "mAP", "mINP")

#: the fake trees hold 2-3 training identities: hold out one identity for validation where the config asks for a
#: ``val`` split (Duke's fake tree has only two: fit on the training split there)
VAL = {
    "market1501": {"dataset.config.val_fraction": "0.34"},
    "msmt17": {"dataset.config.val_fraction": "0.34"},
    "dukemtmc_reid": {"dataset.config.val_fraction": "0.0", "dataset.val_split": "train"},
}


def _overrides(path: str) -> dict:
    """Per-config additions to the tiny settings of :func:`tests.methods.run_config`."""
    c = config_lib.load(ROOT / path)
    extra = {}
    # validation as shipped (once per epoch on the val split); twice in the longer synthetic runs
    extra["train.eval_every_epochs"] = str(config_lib.base_config().train.eval_every_epochs)
    if c.dataset.name == "synthetic_reid":
        extra.update({"dataset.config": "tiny", "train.steps": str(LEARN_STEPS), "train.batch_p": "4",
                      "train.eval_every": str(LEARN_STEPS // 2)})
    if isinstance(c.dataset.config, dict) or hasattr(c.dataset.config, "keys"):
        if "val_fraction" in c.dataset.config:
            extra.update(VAL.get(c.dataset.name, {}))
    options = c.dataset.get("options")
    if options is not None and hasattr(options, "keys") and "val_fraction" in options:
        extra["dataset.options.val_fraction"] = "0.34"
    if str(c.method.name).rsplit(".", 1)[-1] == "ctf":
        extra["method.lengths"] = "(32, 16)"
    if str(c.method.name).rsplit(".", 1)[-1] == "drsch" and c.dataset.name != "synthetic_reid":
        extra["method.margin_schedule"] = "linear"  # the shipped 'fixed' on synthetic, the other rule elsewhere
    return extra


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """One fake tree per dataset, made on first use."""
    made = {}

    def get(name):
        if name not in made:
            maker = fake_trees.MAKERS.get(name) or getattr(fake_trees, f"make_{name}_tree", None)
            if maker is None:
                pytest.fail(f"no fake tree for dataset {name!r}: add make_{name}_tree to tests/data/fake_trees.py")
            made[name] = maker(tmp_path_factory.mktemp(f"tree_{name}"))
        return made[name]

    return get


def _fixed_batch_loss(workdir, *, untrained: bool = False) -> float:
    """The method's training loss (train-mode forward pass, fixed dropout key) on the first training batch of the
    workdir's data order, with the trained or the initial (same seed) variables."""
    import jax

    config = workdir_lib.read_config(workdir)
    data = engine.Data(config)
    t = workdir_lib.load_trained(workdir, untrained=untrained, data=data)
    batch = next(iter(data.train_loader(config.seed)))
    outputs, _ = t.model.apply(jax.device_get(t.variables), batch["image"], train=True, mutable=["batch_stats"],
                               rngs={"dropout": jax.random.PRNGKey(0)})
    loss, _ = t.method.loss(outputs, batch, config, t.aux)
    return float(loss)


def _first_image_files(data, split, n, folder) -> list[pathlib.Path]:
    """The first ``n`` images of ``split`` written as files (what a user hands to jhash.encode)."""
    source = data.source(split)
    paths = []
    for i in range(min(n, len(source))):
        p = folder / f"{split}_{i}.img"
        p.write_bytes(bytes(source[i]["image"]))
        paths.append(p)
    return paths


@pytest.mark.parametrize("path", CONFIGS)
def test_config_trains_evaluates_and_encodes(path, tmp_path, trees):
    c = config_lib.load(ROOT / path)
    manual = None if c.dataset.name == "synthetic_reid" else trees(c.dataset.name)
    result = run_config(path, tmp_path, manual_dir=manual, extra=_overrides(path))
    workdir = tmp_path / "run"
    steps = LEARN_STEPS if c.dataset.name == "synthetic_reid" else 2
    assert result.step == steps

    stored = workdir_lib.read_config(workdir)  # the config as the run stored it (what evaluate/encode read)
    _method_checks(stored, result, steps)
    rows = reporting.read_jsonl(workdir / "metrics.jsonl")
    losses = [row["loss"] for row in rows if "loss" in row]
    assert len(losses) == steps and np.isfinite(losses).all()
    validations = [row for row in rows if "val/mAP" in row]
    if stored.dataset.val_split:  # the shipped default validates on it, and its scores are fractions
        assert validations, f"{path}: no validation row in metrics.jsonl"
        assert all(0.0 <= row["val/mAP"] <= 1.0 for row in validations if np.isfinite(row["val/mAP"]))
    if c.dataset.name == "synthetic_reid":  # the method learns: its loss on a fixed training batch falls
        before, after = _fixed_batch_loss(workdir, untrained=True), _fixed_batch_loss(workdir)
        assert after < before, f"{path}: loss on a fixed batch went from {before} to {after}"

    # evaluate from the workdir alone (config.json round trip, the method's search)
    lines = []
    out = evaluator.evaluate(workdir, print_fn=lines.append)
    assert out["step"] == steps and out["num_query"] > 0 and out["num_gallery"] > 0
    row = out["rows"][0]
    for key in METRICS:
        assert 0.0 <= row[key] <= 1.0, (key, row)
    assert row["bits"] >= 1 and row["ms/query"] > 0
    assert json.loads((workdir / f"eval_step_{steps}.json").read_text())["rows"][0]["mAP"] == row["mAP"]
    assert any(line.startswith("method") and "mAP" in line for line in "\n".join(lines).splitlines())

    # encode image files with the workdir: the same codes as the evaluation's gallery encoding
    data = engine.Data(stored)
    files = _first_image_files(data, out_split(out, data), 2, tmp_path)
    codes = encode.encode_images(files, workdir)
    assert codes[out["code"]].dtype == np.uint8 and codes[out["code"]].shape[0] == len(files)


def _method_checks(config, result, steps: int) -> None:
    """What each method's training must leave behind besides the weights."""
    name = str(config.method.name).rsplit(".", 1)[-1]
    if name == "ctf":  # thresholds for the shorter levels the fit kept (lengths (32, 16) here); the longest ranks
        search = result.search
        assert search is not None and set(search["thresholds"]) <= {"l16"}, search
        if "levels" in search:  # the recall fit may skip the 16-bit level (exhaustive 32-bit search)
            assert search["levels"][-1] == "l32" and set(search["thresholds"]) == set(search["levels"][:-1]), search
    elif name == "ssr":  # the AFR window is fitted where the config has attributes and a val split
        if config.method.get("afr") and config.dataset.val_split:
            assert result.search["afr"] and result.search["w"] >= 1, result.search
        else:
            assert not (result.search or {}).get("afr"), result.search
    elif name == "dvhn":  # the discrete state (host-kept B, U, W): one ±1 code of model.bits per training image
        codes = np.asarray(result.aux["B"])
        assert codes.shape[1] == 16 and set(np.unique(codes)) <= {-1, 1}
    elif name == "drsch" and config.method.get("margin_schedule") == "linear":
        assert int(result.state.batch_stats["train_steps"]) == steps  # the growing margin counts its steps


def out_split(result, data) -> str:
    """A split whose images exist as records (the gallery, or VehicleID's test split)."""
    return "test" if result["protocol"] == "vehicleid" else data.config.dataset.gallery_split
