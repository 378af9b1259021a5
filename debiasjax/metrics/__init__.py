"""Performance and group-fairness metrics (fairlearn and AIF360 conventions), and saliency-
localisation metrics (``debiasjax.metrics.saliency``: RRF, HRF, MRR, DET, ADR, DIF, RDDT)."""

from debiasjax.metrics import saliency
from debiasjax.metrics.fairness import (
    GroupRates,
    accuracy,
    average_odds_difference,
    balanced_accuracy,
    demographic_parity_difference,
    equal_opportunity_difference,
    equalized_odds_difference,
    group_confusion,
    group_rates,
    rates_from_confusion,
    savani_objective_v1,
    savani_objective_v2,
)

__all__ = ["GroupRates", "accuracy", "average_odds_difference", "balanced_accuracy",
           "demographic_parity_difference", "equal_opportunity_difference",
           "equalized_odds_difference", "group_confusion", "group_rates", "rates_from_confusion",
           "savani_objective_v1", "savani_objective_v2", "saliency"]
