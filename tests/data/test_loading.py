"""The loading API carries each dataset's ignored pids to the pipeline's label map."""

from jhash import data
from jhash.data import pipeline
from tests.data import fake_trees


def test_msmt17_pid_zero_is_a_training_class(tmp_path):
    manual = fake_trees.make_msmt17_tree(tmp_path / "manual")
    source, info = data.load("msmt17", "train", data_dir=tmp_path / "tfds", manual_dir=manual)
    assert source.ignore_pids == ()
    labels = pipeline.label_map(source)
    assert 0 in set(source.pids.tolist())
    assert 0 in labels
    assert len(labels) == info.num_classes


def test_market1501_ignores_junk_and_distractors(tmp_path):
    manual = fake_trees.make_market1501_tree(tmp_path / "manual")
    source, info = data.load("market1501", "train", data_dir=tmp_path / "tfds", manual_dir=manual)
    assert set(source.ignore_pids) == {-1, 0}
    labels = pipeline.label_map(source)
    assert -1 not in labels and 0 not in labels
    assert len(labels) == info.num_classes
