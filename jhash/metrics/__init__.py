"""Evaluation: ReID protocols (CMC, mAP, mINP) and hashing metrics (mAP@k, precision@k, P@radius, PR).

- :func:`reid_metrics` — Market-1501 protocol (Market, Duke, MSMT17, VeRi-776, CUHK03-NP) from packed codes
  (streamed), a distance matrix or a ranking; stable or expected tie handling.
- :func:`vehicleid_eval`, :func:`cuhk03_classic_eval` — the repeated-sampling protocols.
- :func:`map_at_k`, :func:`precision_at_k`, :func:`precision_at_radius`, :func:`precision_recall_curve` —
  hashing retrieval metrics on packed codes.
"""

from jhash.metrics.hashing import PRCurve, map_at_k, precision_at_k, precision_at_radius, precision_recall_curve
from jhash.metrics.protocols import ProtocolMetrics, cuhk03_classic_eval, vehicleid_eval, vehicleid_split
from jhash.metrics.reid import ReIDMetrics, reid_metrics

__all__ = [
    "PRCurve",
    "ProtocolMetrics",
    "ReIDMetrics",
    "cuhk03_classic_eval",
    "map_at_k",
    "precision_at_k",
    "precision_at_radius",
    "precision_recall_curve",
    "reid_metrics",
    "vehicleid_eval",
    "vehicleid_split",
]
