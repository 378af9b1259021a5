"""Debiasing methods. Post-processors act on a fixed model's scores."""

from debiasjax.methods.postprocessing import (
    METHODS as POSTPROCESSORS,
    PostProcessor,
    calibrated_equalized_odds,
    equalized_odds_postprocessing,
    naive_threshold,
    reject_option,
    threshold_optimizer,
)

__all__ = ["POSTPROCESSORS", "PostProcessor", "calibrated_equalized_odds",
           "equalized_odds_postprocessing", "naive_threshold", "reject_option",
           "threshold_optimizer"]
