"""train.py and evaluate.py end to end on synthetic_reid/tiny; evaluation equals jhash.metrics on the codes."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIG = "configs/synthetic_reid/baseline.py"
TINY = ["--config.dataset.config=tiny", "--config.train.epochs=0", "--config.train.steps=4", "--config.train.batch_p=4",
        "--config.train.batch_k=2", "--config.train.log_every=2", "--config.train.ckpt_every=2",
        "--config.model.backbone_kwargs.widths=(8, 16)", "--config.model.bits=16", "--config.eval.batch_size=16",
        "--config.eval.tradeoff_bits=(8,)", "--config.eval.hashing_metrics=('map@50', 'precision@20', 'precision_radius@2')"]


def _run(args, env, cwd=ROOT):
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, request):
    import os

    base = tmp_path_factory.mktemp("e2e")
    env = dict(os.environ, JAX_PLATFORMS="cpu", JHASH_DATA_DIR=str(base / "data"))
    wd = base / "run"
    r = _run(["train.py", "--config", CONFIG, "--workdir", str(wd), "--noprogress", *TINY], env)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "trained baseline to step 4" in r.stdout
    r = _run(["evaluate.py", "--workdir", str(wd), "--visualize", "2", "--tradeoff", "--compare_untrained"], env)
    assert r.returncode == 0, r.stderr[-4000:]
    return wd, env, r.stdout


def test_train_writes_checkpoints_and_metrics(trained):
    wd, _, _ = trained
    assert sorted(p.name for p in (wd / "checkpoints").iterdir() if p.name.isdigit()) == ["2", "4"]
    rows = [json.loads(l) for l in (wd / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in rows if "loss" in r]
    assert [r["step"] for r in logged] == [2, 4]
    assert all(np.isfinite(r["loss"]) and r["images_per_sec"] > 0 for r in logged)
    # validation once per epoch by default (tiny: 29 images / 8 per batch = 3 steps) and at the last step
    assert [r["step"] for r in rows if "val/mAP" in r] == [3, 4]
    assert json.loads((wd / "config.json").read_text())["dataset"]["config"] == "tiny"


def test_evaluate_table_and_files(trained):
    wd, _, out = trained
    for col in ("R1", "R5", "R10", "mAP", "mINP", "bits", "bytes/img", "ms/query"):
        assert col in out
    assert "baseline (trained)" in out and "baseline (untrained)" in out
    result = json.loads((wd / "eval_step_4.json").read_text())
    assert result["rows"][0]["bits"] == 16 and result["rows"][0]["bytes/img"] == 2
    for name in ("ranklist_step_4.png", "tradeoff_step_4.png"):
        assert (wd / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {p["label"] for p in result["tradeoff"]} >= {"id 16b", "8b prefix"}


def test_evaluate_equals_metrics_on_saved_codes(trained):
    from jhash import metrics

    wd, _, _ = trained
    result = json.loads((wd / "eval_step_4.json").read_text())
    codes = wd / "codes" / "step_4"
    q, g = np.load(codes / "query_id.npy"), np.load(codes / "gallery_id.npy")
    assert q.dtype == np.uint8 and q.shape[1] == 2
    m = metrics.reid_metrics(q, g, q_pids=np.load(codes / "query_pids.npy"), g_pids=np.load(codes / "gallery_pids.npy"),
                             q_camids=np.load(codes / "query_camids.npy"), g_camids=np.load(codes / "gallery_camids.npy"))
    row = result["rows"][0]
    assert row["mAP"] == pytest.approx(m.mAP, abs=1e-12) and row["mINP"] == pytest.approx(m.mINP, abs=1e-12)
    assert [row["R1"], row["R5"], row["R10"]] == pytest.approx([m.rank(1), m.rank(5), m.rank(10)], abs=1e-12)


def test_evaluate_hashing_metrics_equal_the_definition_on_saved_codes(trained):
    """mAP@k, precision@k and precision within radius 2 of the evaluation, recomputed from the saved codes with
    plain numpy loops (the definitions: ranking by (Hamming distance, gallery index))."""
    wd, _, out = trained
    result = json.loads((wd / "eval_step_4.json").read_text())
    codes = wd / "codes" / "step_4"
    q = np.unpackbits(np.load(codes / "query_id.npy"), axis=1).astype(int)
    g = np.unpackbits(np.load(codes / "gallery_id.npy"), axis=1).astype(int)
    qp, gp = np.load(codes / "query_pids.npy"), np.load(codes / "gallery_pids.npy")
    ap, prec, ball = [], [], []
    k_map, k_prec = min(50, len(g)), min(20, len(g))  # k beyond the gallery means the whole ranking
    for i in range(len(q)):
        d = np.abs(q[i][None] - g).sum(1)
        order = sorted(range(len(g)), key=lambda j: (d[j], j))
        rel = [int(gp[j] == qp[i]) for j in order]
        hits = np.cumsum(rel[:k_map])
        ap.append(sum(hits[r] / (r + 1) for r in range(k_map) if rel[r]) / hits[-1] if hits[-1] else 0.0)
        prec.append(sum(rel[:k_prec]) / k_prec)
        inside = [j for j in range(len(g)) if d[j] <= 2]
        ball.append(np.mean([gp[j] == qp[i] for j in inside]) if inside else 0.0)
    h = result["hashing"]
    assert h["map@50"] == pytest.approx(np.mean(ap), abs=1e-9)
    assert h["precision@20"] == pytest.approx(np.mean(prec), abs=1e-9)
    assert h["precision_radius@2"] == pytest.approx(np.mean(ball), abs=1e-9)
    assert "hashing metrics (id code, 16 bits): map@50" in out


def test_encode_images_matches_evaluation_codes(trained, tmp_path):
    """Own images through jhash.encode give the codes evaluation computed for the same pictures."""
    from jhash import data, encode

    wd, env, _ = trained
    source, _ = data.load("synthetic_reid", "gallery", data_dir=env["JHASH_DATA_DIR"], config="tiny")
    paths = []
    for i in range(3):
        p = tmp_path / f"img{i}.jpg"
        p.write_bytes(source[i]["image"])
        paths.append(p)
    codes = encode.encode_images(paths, wd)
    expected = np.load(wd / "codes" / "step_4" / "gallery_id.npy")[:3]
    np.testing.assert_array_equal(codes["id"], expected)


def test_missing_checkpoint_is_a_clear_cli_error(tmp_path, trained):
    _, env, _ = trained
    (tmp_path / "config.json").write_text((trained[0] / "config.json").read_text())
    r = _run(["evaluate.py", "--workdir", str(tmp_path)], env)
    assert r.returncode == 2
    assert f"no checkpoints in workdir {str(tmp_path)!r}" in r.stderr and "Traceback" not in r.stderr
    from jhash import checkpoints, evaluator

    with pytest.raises(checkpoints.CheckpointNotFoundError, match=r"no checkpoint for step 3 .*steps found: 2, 4"):
        evaluator.load_trained(trained[0], step=3)


def test_hashing_metric_names_are_checked():
    from jhash import evaluator

    assert evaluator.parse_hashing_metric("map@1000") == ("map", 1000)
    assert evaluator.parse_hashing_metric("precision_radius@0") == ("precision_radius", 0)
    for bad in ("map", "map@", "recall@10", "precision@0", "map@-1"):
        with pytest.raises(ValueError, match="config.eval.hashing_metrics"):
            evaluator.parse_hashing_metric(bad)
