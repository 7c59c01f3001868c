"""Tiny stand-ins for the engine tests: a method with a small conv net and an in-memory dataset."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jhash import config as config_lib
from jhash.data.info import DatasetInfo

SEARCH = "exhaustive"

NUM_CLASSES = 4
IMAGE_SIZE = (8, 8)
NUM_TRAIN = 32


class _Net(nn.Module):
    bits: int
    num_classes: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(4, (3, 3), use_bias=False, name="conv")(x)  # no bias before BN (as in ResNets)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name="bn")(x)
        x = nn.relu(x).mean(axis=(1, 2))
        x = nn.Dropout(0.1, deterministic=not train)(x)
        h = jnp.tanh(nn.Dense(self.bits, name="hash")(x))
        return {"features": x, "hash": h, "logits": nn.Dense(self.num_classes, name="classifier")(h)}


def build_model(config, info):
    return _Net(bits=config.model.bits, num_classes=info.num_classes)


def loss(outputs, batch, config, aux):
    logp = jax.nn.log_softmax(outputs["logits"])
    ce = -jnp.mean(jnp.take_along_axis(logp, batch["label"][:, None], axis=1))
    return ce, {"ce": ce}


def encode(outputs, config):
    return {"id": jnp.where(outputs["hash"] >= 0, 1, -1).astype(jnp.int8)}


class Loader:
    """Deterministic infinite batches: batch n is a function of (seed, n) only."""

    def __init__(self, batch_p, batch_k, seed, nan_at=None):
        self.p, self.k, self.seed, self.n, self.nan_at = batch_p, batch_k, seed, 0, nan_at

    def __iter__(self):
        return self

    def __next__(self):
        rng = np.random.default_rng([self.seed, self.n])
        self.n += 1
        labels = np.repeat(rng.choice(NUM_CLASSES, self.p, replace=False), self.k).astype(np.int32)
        images = rng.normal(size=(len(labels), *IMAGE_SIZE, 3)).astype(np.float32) + labels[:, None, None, None]
        if self.nan_at is not None and self.n >= self.nan_at:
            images[:] = np.nan
        return {"image": images, "label": labels, "pid": labels + 1, "camid": np.ones_like(labels),
                "index": rng.integers(0, NUM_TRAIN, len(labels)).astype(np.int32)}

    def get_state(self):
        return {"n": self.n}

    def set_state(self, state):
        self.n = int(state["n"])


def split_arrays(split, n=12):
    rng = np.random.default_rng({"query": 1, "gallery": 2, "val": 3, "train": 4}[split])
    pids = np.arange(n) % NUM_CLASSES + 1
    images = rng.normal(size=(n, *IMAGE_SIZE, 3)).astype(np.float32) + (pids - 1)[:, None, None, None]
    camids = np.full(n, 1 if split == "query" else 2)
    out = {"image": images, "pid": pids.astype(np.int32), "camid": camids.astype(np.int32),
           "index": np.arange(n, dtype=np.int32)}
    if split == "train":
        out["label"] = (pids - 1).astype(np.int32)
    return out


class Data:
    def __init__(self, config, nan_at=None):
        self.config = config
        self.nan_at = nan_at
        self.info = DatasetInfo(name="fake", num_classes=NUM_CLASSES, image_size=IMAGE_SIZE, num_train_images=NUM_TRAIN)
        self.image_size = IMAGE_SIZE

    def train_loader(self, seed):
        return Loader(self.config.train.batch_p, self.config.train.batch_k, seed, self.nan_at)

    def eval_batches(self, split, batch_size):
        arrays = split_arrays(split, NUM_TRAIN if split == "train" else 12)
        for s in range(0, len(arrays["image"]), batch_size):
            yield {k: v[s:s + batch_size] for k, v in arrays.items()}


def config(**train):
    c = config_lib.base_config()
    c.method.name = "tests.engine.fakes"
    c.model.bits = 16
    c.optimizer.lr = 1e-2
    c.train.steps = 6
    c.train.batch_p = 4
    c.train.batch_k = 2
    c.train.log_every = 1
    c.train.ckpt_every = 2
    c.eval.batch_size = 8
    c.train.update(train)
    return c
