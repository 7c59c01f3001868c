"""P x K identity-balanced sampling: every batch holds P distinct identities with K images each.

An epoch is ``steps_per_epoch`` batches (by default ``len(train) // (P * K)``, so an epoch sees about
as many images as the split holds). Within an epoch, as in torchreid's ``RandomIdentitySampler``,
each identity's images are shuffled and cut into groups of K (an identity with fewer than K images
is topped up by drawing from its images again, with replacement; a last group short of K is
dropped), then each batch takes one group from each of P identities drawn uniformly among those with
groups left. When fewer than P identities have groups left, a fresh round of groups is made and the
epoch continues. Everything is a pure function of ``(seed, epoch)``, so any batch can be computed
directly from its step number: that is what makes the input pipeline resumable and independent of
the number of workers.

Several processes (multi-host data parallelism) draw the *same* global P x K batch from the shared seed and
each takes its contiguous share of rows (:func:`process_rows`), so the global batch holds exactly P distinct
identities and equals the batch of a one-process run.
"""

from __future__ import annotations

import numpy as np

_STREAM = 0x5A3


class PKSampler:
    """Batches of record indices ``[P * K]`` for labels ``labels[i]`` of the records (-1: not sampled).

    ``batch(step)`` is the batch at global step ``step`` (epoch ``step // steps_per_epoch``);
    ``epoch(e)`` all batches of epoch ``e`` as an int64 array ``[steps_per_epoch, P * K]``.
    Images of one batch are ordered identity by identity: rows ``j*K:(j+1)*K`` share an identity.
    """

    def __init__(self, labels, *, p: int, k: int, seed: int, steps_per_epoch: int | None = None):
        labels = np.asarray(labels, np.int64)
        if p < 1 or k < 1:
            raise ValueError(f"P and K must be >= 1, got P={p}, K={k}")
        valid = np.flatnonzero(labels >= 0)
        uniq, inverse = np.unique(labels[valid], return_inverse=True)
        if len(uniq) < p:
            raise ValueError(f"P x K sampling needs at least P={p} identities; the split has {len(uniq)}")
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse, minlength=len(uniq)))[:-1]
        self.groups = tuple(np.split(valid[order], bounds))  # record indices of each identity
        self.p, self.k, self.seed = int(p), int(k), int(seed)
        self.num_identities = len(uniq)
        self.num_images = len(valid)
        self._cache: dict[int, np.ndarray] = {}
        self.steps_per_epoch = int(steps_per_epoch or max(1, self.num_images // (self.p * self.k)))

    @property
    def batch_size(self) -> int:
        return self.p * self.k

    def _chunks(self, rng: np.random.Generator) -> list[list[np.ndarray]]:
        """One round: per identity, its shuffled images cut into groups of K (topped up when short)."""
        out = []
        for idx in self.groups:
            perm = rng.permutation(idx)
            if len(perm) < self.k:
                perm = np.concatenate([perm, rng.choice(idx, self.k - len(perm), replace=True)])
            n = len(perm) // self.k
            out.append([perm[j * self.k:(j + 1) * self.k] for j in range(n)])
        return out

    def epoch(self, e: int) -> np.ndarray:
        e = int(e)
        if e not in self._cache:
            if len(self._cache) >= 2:
                self._cache.pop(next(iter(self._cache)))
            self._cache[e] = self._make_epoch(e)
        return self._cache[e]

    def _make_epoch(self, e: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, _STREAM, int(e)])
        batches = np.empty((self.steps_per_epoch, self.batch_size), np.int64)
        chunks: list[list[np.ndarray]] = [[] for _ in self.groups]
        for b in range(self.steps_per_epoch):
            avail = np.array([i for i, c in enumerate(chunks) if c], np.int64)
            if len(avail) < self.p:  # a fresh round of groups, appended to what is left
                for i, c in enumerate(self._chunks(rng)):
                    chunks[i].extend(c)
                avail = np.array([i for i, c in enumerate(chunks) if c], np.int64)
            ids = rng.choice(avail, self.p, replace=False)
            batches[b] = np.concatenate([chunks[i].pop() for i in ids])
        batches.flags.writeable = False
        return batches

    def batch(self, step: int) -> np.ndarray:
        e, b = divmod(int(step), self.steps_per_epoch)
        return self.epoch(e)[b]

    def __getstate__(self):  # the epoch cache stays in its process
        return {**self.__dict__, "_cache": {}}


def process_rows(n: int, index: int, count: int) -> slice:
    """Rows ``[index * n / count, (index + 1) * n / count)``: process ``index``'s share of a global batch of
    ``n`` rows over ``count`` processes (concatenated in process order they give the global batch)."""
    index, count = int(index), int(count)
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"process index {index} is not in [0, {count})")
    if n % count:
        raise ValueError(f"the global batch ({n} images) must divide evenly over {count} processes; "
                         f"change config.train.batch_p / batch_k")
    per = n // count
    return slice(index * per, (index + 1) * per)
