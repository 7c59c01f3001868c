"""The trainer hands the validation split's camera ids to a ``fit_search`` that declares ``camids=`` (and
not to one that does not: see ``test_trainer.test_aux_hooks_run_every_epoch_resume_and_fit_search``)."""

from jhash import methods, trainer
from tests.engine import fakes


def test_fit_search_gets_the_val_camera_ids(tmp_path):
    c = fakes.config(steps=2)
    c.method.name = "tests.engine.fake_camids_method"
    c.dataset.val_split = "val"
    result = trainer.train(c, tmp_path, data=fakes.Data(c), method=methods.get(c.method.name), progress=False)
    val = fakes.split_arrays("val")
    assert result.search == {"num_val": len(val["pid"]), "camids": val["camid"].tolist()}
