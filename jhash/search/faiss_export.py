"""Export packed codes to faiss (optional extra ``jhash[faiss]``).

jhash packs codes in ``np.packbits`` order, the byte layout faiss binary indexes read, so the export is a copy
into the index; ``IndexBinaryFlat.search`` then returns the same exact Hamming distances as
:func:`jhash.search.hamming_topk`.

Code lengths that are not a multiple of 8: faiss binary indexes take whole bytes (``d = 8 * bytes``), so the
index dimension is the padded length (a 12-bit code gives ``d = 16``). :func:`jhash.search.pack_codes` sets
the padding bits to zero in every code, so they never differ and faiss' distances are those of the ``L``-bit
codes; codes packed elsewhere must zero those bits the same way (``np.packbits`` does).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jhash.search.packing import check_packed

__all__ = ["to_faiss"]


def to_faiss(packed_gallery: Any) -> Any:
    """Build a ``faiss.IndexBinaryFlat`` over ``packed_gallery`` (``uint8 [ng, ceil(L/8)]``, ``ng >= 1``;
    the index dimension is ``8 * ceil(L/8)``, see the module docstring for zero padding).

    Raises:
      ImportError: faiss is not installed (``pip install 'jhash[faiss]'``).
      ValueError: the gallery is not non-empty packed uint8 codes of rank 2.
    """
    g = check_packed(packed_gallery, "packed_gallery", allow_empty=False)
    try:
        import faiss
    except ImportError as e:
        raise ImportError(
            "to_faiss needs faiss, an optional dependency of jhash: pip install 'jhash[faiss]' "
            "(installs faiss-cpu)") from e
    index = faiss.IndexBinaryFlat(8 * int(g.shape[1]))
    index.add(np.ascontiguousarray(np.asarray(g)))
    return index
