"""jhash: deep hashing for person and vehicle re-identification in JAX/Flax.

Subpackages (each usable on its own, each a set of pure functions over arrays):

- ``jhash.search``  — bit packing, exact Hamming top-k / ranking, coarse-to-fine and attribute-first search.
- ``jhash.metrics`` — ReID protocols (CMC, mAP, mINP) and hashing metrics (mAP@k, P@radius, P@k).
- ``jhash.losses``  — the methods' loss functions and relaxations, jit- and grad-compatible.
- ``jhash.models``  — Flax backbones and hash heads.
- ``jhash.methods`` — the five published systems plus a baseline, looked up by name.
- ``jhash.data``    — TFDS builders, the synthetic dataset and the grain input pipeline.
"""

__version__ = "0.1.0"
