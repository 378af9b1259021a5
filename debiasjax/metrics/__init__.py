"""Performance and group-fairness metrics (fairlearn and AIF360 conventions), the confusion-table
kernel under all of them (``debiasjax.metrics.confusion``), threshold sweeps
(``debiasjax.metrics.sweep``) and saliency-localisation metrics (``debiasjax.metrics.saliency``:
RRF, HRF, MRR, DET, ADR, DIF, RDDT), and per-group tables of any metric with ratio metrics and
intersectional groups of any sensitive features (``debiasjax.metrics.frame``), and rank
correlation with bootstrap intervals and counts of significant tests across cells
(``debiasjax.metrics.association``)."""

from debiasjax.metrics import association, confusion, frame, saliency, sweep
from debiasjax.metrics.confusion import (
    GroupRates,
    accuracy_from_confusion,
    balanced_accuracy_from_confusion,
    group_confusion,
    rates_from_confusion,
    signed_difference,
    unsigned_gap,
)
from debiasjax.metrics.fairness import (
    accuracy,
    average_odds_difference,
    balanced_accuracy,
    demographic_parity_difference,
    equal_opportunity_difference,
    equalized_odds_difference,
    group_rates,
    roc_auc,
    savani_objective_v1,
    savani_objective_v2,
)
from debiasjax.metrics.frame import (
    GroupTable,
    by_group,
    demographic_parity_ratio,
    disparate_impact,
    encode_groups,
    equalized_odds_ratio,
)
from debiasjax.metrics.sweep import confusion_at_thresholds

__all__ = ["GroupRates", "accuracy", "accuracy_from_confusion", "association",
           "average_odds_difference", "balanced_accuracy", "balanced_accuracy_from_confusion",
           "confusion",
           "confusion_at_thresholds", "demographic_parity_difference",
           "equal_opportunity_difference", "equalized_odds_difference", "group_confusion",
           "group_rates", "rates_from_confusion", "roc_auc", "saliency", "savani_objective_v1",
           "savani_objective_v2", "signed_difference", "sweep", "unsigned_gap", "frame",
           "GroupTable", "by_group", "demographic_parity_ratio", "disparate_impact",
           "encode_groups", "equalized_odds_ratio"]
