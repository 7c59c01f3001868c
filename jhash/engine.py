"""What training, evaluation and encoding share: access to a config's dataset (:class:`Data`) and a model's
initial variables (:func:`init_variables`).

It imports none of :mod:`jhash.trainer`, :mod:`jhash.encode`, :mod:`jhash.evaluator` or :mod:`jhash.workdir`,
so those can all use it without importing each other in a circle.
"""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import numpy as np

from jhash import config as config_lib

# --------------------------------------------------------------------------------------------------
# Data access (a thin layer over jhash.data, replaceable by a stand-in in tests)


class Data:
    """The splits of ``config.dataset`` and the loaders the engine uses."""

    def __init__(self, config):
        from jhash import data as data_lib

        self._load = data_lib.load
        self.config = config
        self._sources = {}
        self.train_source, self.info = self._open(config.dataset.train_split)

    def _open(self, split):
        if split not in self._sources:
            d = self.config.dataset
            self._sources[split] = self._load(
                d.name, split, data_dir=config_lib.data_dir(self.config), manual_dir=d.manual_dir,
                config=builder_config(d)
            )
        return self._sources[split]

    def source(self, split):
        return self._open(split)[0]

    def has_split(self, split: str) -> bool:
        """Whether the prepared dataset has ``split``."""
        try:
            self._open(split)
        except ValueError as e:
            if f"has no split {split!r}" in str(e):
                return False
            raise
        return True

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.config.input.image_size or self.info.image_size)

    def train_loader(self, seed: int):
        """This process's share of the global P×K batch, an iterator with get_state()/set_state()."""
        from jhash.data import pipeline

        t = self.config.train
        augment = self.config.input.augment
        return pipeline.train_loader(
            self.train_source,
            self.info,
            batch_p=t.batch_p,
            batch_k=t.batch_k,
            image_size=self.image_size,
            seed=seed,
            augment_config=None if augment is None else augment.to_dict(),
            num_workers=self.config.input.num_workers,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
        )

    def eval_batches(self, split: str, batch_size: int):
        """Batches (numpy dicts) of this process's records of ``split`` in stored order; ``index`` is the
        position in the split. The training split's batches also carry ``label``.

        With several processes, process i reads records ``i, i + n, ...``; every process yields the same number
        of batches (collectives need that): a process with one record fewer repeats a record as padding, with
        ``index = pid = camid = -1`` (the pipeline's padding rows)."""
        from jhash.data import pipeline

        source = self.source(split)
        labels = pipeline.label_map(self.train_source) if split == self.config.dataset.train_split else None
        start, step = (jax.process_index(), jax.process_count())
        view = source if step == 1 else _Strided(source, start, step)
        loader = pipeline.eval_loader(view, batch_size=batch_size, image_size=self.image_size,
                                      num_workers=self.config.input.num_workers, labels=labels)
        for batch in loader:
            if step != 1:
                batch["index"] = start + step * batch["index"]
                pad = batch["index"] >= len(source)
                for key in ("index", "pid", "camid", "label"):
                    if key in batch:
                        batch[key] = np.where(pad, -1, batch[key]).astype(batch[key].dtype)
            yield batch


def builder_config(dataset):
    """The builder config for ``jhash.data.load``: ``config.dataset.config`` with ``config.dataset.options`` on
    top (also recorded in every checkpoint's metadata)."""
    from jhash.data import with_options

    c = dataset.config
    return with_options(c.to_dict() if hasattr(c, "to_dict") else c, dataset.get("options"))


class _Strided:
    """Records ``start, start + step, ...`` of a source: one process's share of an evaluation split, padded to
    ``ceil(n / step)`` records (the same for every process) by repeating the source's last record."""

    def __init__(self, source, start, step):
        self.source, self.start, self.step = source, start, step

    def __len__(self):
        return -(-len(self.source) // self.step)

    def __getitem__(self, i):
        return self.source[min(self.start + i * self.step, len(self.source) - 1)]


# --------------------------------------------------------------------------------------------------
# Initial variables


def init_variables(model, config, image_size, rng, *, pretrained: bool = True, method=None) -> dict:
    """Initial variables of ``model``; with ``config.model.pretrained`` the torchvision weights are loaded by the
    method's ``load_pretrained(variables, path, config)`` hook when it has one (e.g. SSR's two-branch PCB),
    else into the backbone by :func:`jhash.models.load_pretrained`."""
    h, w = image_size
    images = jnp.zeros((2, h, w, 3), jnp.float32)
    p_rng, d_rng = jax.random.split(rng)
    variables = jax.jit(lambda x: model.init({"params": p_rng, "dropout": d_rng}, x, train=False))(images)
    variables = flax.core.unfreeze(variables)
    if pretrained and config.model.pretrained:
        if method is not None and hasattr(method, "load_pretrained"):
            return method.load_pretrained(variables, config.model.pretrained, config)
        from jhash import models

        variables = models.load_pretrained(variables, config.model.pretrained)
    return variables
