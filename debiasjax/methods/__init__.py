"""Debiasing methods.

* Post-processors act on a fixed model's scores (:mod:`~debiasjax.methods.postprocessing`).
* Weight searches (:mod:`~debiasjax.methods.search`) and fine-tuning methods
  (:mod:`~debiasjax.methods.adversarial`) change the weights and pick a threshold with Savani's
  objective (:mod:`~debiasjax.methods.objective`); :data:`WEIGHT_METHODS` holds them behind one
  signature.
* Concept methods (:mod:`~debiasjax.methods.concepts`, :mod:`~debiasjax.methods.clarc`) act
  on a layer's activations: P-ClArC, mass-mean shift and LEACE edit them, A-ClArC and RR-ClArC
  fine-tune with the concept's direction; :data:`CONCEPT_METHODS` holds them.
"""

from debiasjax.methods import adversarial, clarc, concepts, objective, search
from debiasjax.methods.clarc import METHODS as CONCEPT_METHODS, a_clarc, leace, mass_mean, p_clarc, rr_clarc
from debiasjax.methods.adversarial import fine_tune, savani_adversarial, zhang_adversarial
from debiasjax.methods.finetuning import METHODS as WEIGHT_METHODS
from debiasjax.methods.objective import Objective, threshold_search
from debiasjax.methods.postprocessing import (
    METHODS as POSTPROCESSORS,
    PostProcessor,
    calibrated_equalized_odds,
    equalized_odds_postprocessing,
    naive_threshold,
    reject_option,
    threshold_optimizer,
)
from debiasjax.methods.search import SearchResult, layerwise_optimisation, random_perturbation

__all__ = ["CONCEPT_METHODS", "a_clarc", "clarc", "concepts", "leace", "mass_mean", "p_clarc",
           "rr_clarc", "POSTPROCESSORS", "WEIGHT_METHODS", "Objective", "PostProcessor", "SearchResult",
           "adversarial", "calibrated_equalized_odds", "equalized_odds_postprocessing",
           "fine_tune", "layerwise_optimisation", "naive_threshold", "objective",
           "random_perturbation", "reject_option", "savani_adversarial", "search",
           "threshold_optimizer", "threshold_search", "zhang_adversarial"]
