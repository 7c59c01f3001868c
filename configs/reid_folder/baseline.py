"""Baseline on your own images (``reid_folder``): ResNet-50 (last stride 1) + BNNeck + 256-bit tanh hash layer,
CE (label smoothing 0.1) + batch-hard triplet (margin 0.3), Adam 3.5e-4 with a 10-epoch warm-up and x0.1 at
epochs 40 and 70, 120 epochs of 16 identities x 4 images (the BoT recipe, as configs/market1501/baseline.py).

Data (the part every configs/reid_folder/*.py shares: jhash.data.reid_folder.experiment_config):
- ``--config.dataset.manual_dir=DIR`` holds ``train/``, ``query/`` and ``gallery/``, with the person id and
  camera in each file name: ``0001_c1_0001.jpg`` or ``<pid>-<cam>-<n>.jpg`` (``12-3-1.jpg``); pid -1 is junk.
- Builder options, each settable as ``--config.dataset.options.<name>=<value>`` (and stored in config.json):
  ``pattern`` (regex with groups pid and camid), ``example`` (a valid name, shown in errors), ``match_on``
  ('name' or 'relpath': one folder per person), ``splits.train|query|gallery`` (folder names),
  ``val_fraction`` (0.1: 10% of the training identities, all their images, are held out as the ``val``
  split, used by CtF/SSR to fit their search; never the test split), ``skip_unmatched`` (skip files whose
  name does not match instead of failing). See jhash/data/reid_folder.py.
- Input 256x128 (height x width), ImageNet mean/std; training augmentation: horizontal flip (p 0.5), 10-pixel
  zero padding + random crop, random erasing (p 0.5, 2-40% of the area) — jhash.data.augment's defaults.
- The dataset is prepared on first use into $JHASH_DATA_DIR (or ~/tensorflow_datasets) and rebuilt whenever
  the folder's files change.

Start from ImageNet weights (a torchvision ResNet-50 state_dict), then search your own images:

    python train.py --config configs/reid_folder/baseline.py --workdir runs/mine \
        --config.dataset.manual_dir=~/my_data --config.model.pretrained=~/weights/resnet50.safetensors
    python evaluate.py --workdir runs/mine --visualize 8
    python -m jhash.query --workdir runs/mine ~/my_data/query/*.jpg --top 10

Other names: --config.dataset.options.pattern='^(?P<pid>\\d+)x(?P<camid>\\d+)' --config.dataset.options.example=12x3.jpg.
A quick CPU check (minutes): --config.model.backbone=small_cnn --config.model.backbone_kwargs="{}"
--config.input.image_size="(64, 32)" --config.train.epochs=3 --config.model.bits=64.
"""

import pathlib

from jhash import config as config_lib
from jhash.data import reid_folder


def get_config():
    """configs/market1501/baseline.py's network and training on your own images."""
    c = config_lib.load_file(pathlib.Path(__file__).resolve().parents[1] / "market1501" / "baseline.py")
    return reid_folder.experiment_config(c, image_size=(256, 128), val_fraction=0.1)
