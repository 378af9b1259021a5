"""Debiasing methods: five families, each a factory of a NamedTuple of pure functions whose fitted
state holds arrays only (optax's shape).

* :class:`PostProcessor` ``(fit, probability, predict)`` on a fixed model's scores:
  :func:`threshold_optimizer`, :func:`reject_option`, :func:`equalized_odds_postprocessing`,
  :func:`calibrated_equalized_odds`, :func:`naive_threshold`
  (:mod:`~debiasjax.methods.postprocessing`).
* :class:`Eraser` ``(fit, apply)`` on one layer's activations: :func:`p_clarc` (plain,
  reactive, or A-ClArC's artifact injection with ``level="concept"``), :func:`mass_mean`,
  :func:`leace` (:mod:`~debiasjax.methods.concepts`); :func:`at_layer` places one for
  :func:`debiasjax.debias`.
* :class:`~debiasjax.train.Trainer` ``(init, update)`` run by :func:`debiasjax.train.fit`:
  :func:`a_clarc_trainer`, :func:`rr_clarc_trainer` (:mod:`~debiasjax.methods.clarc`),
  :func:`savani_trainer`, :func:`zhang_trainer` (:mod:`~debiasjax.methods.adversarial`),
  :func:`debiasjax.train.supervised`; :func:`a_clarc`, :func:`rr_clarc`,
  :func:`savani_adversarial`, :func:`zhang_adversarial`, :func:`fine_tune` are their
  :class:`FineTuning` recipes (build the trainer for a model and split, train, pick the
  threshold: :func:`tune`). The bottleneck family: :func:`irene_trainer` (IRENE,
  :mod:`~debiasjax.methods.irene`), :func:`mining_trainer` (unsupervised Voronoi-cell bias
  mining during training, :mod:`~debiasjax.methods.online`), :func:`lff_trainer` (LfF) and
  JTT (:mod:`~debiasjax.methods.lff`); as post-hoc recipes :func:`information_removal`,
  :func:`voronoi_debiasing`, :func:`learning_from_failure`, :func:`just_train_twice` (the last
  three never read the protected attribute).
* :class:`Search` ``(search,)`` over candidate weights: :func:`random_perturbation`,
  :func:`layerwise_optimisation` (:mod:`~debiasjax.methods.search`).
* :class:`Representation` ``(fit,)``, a new network learnt from the debias split: :func:`dvge`
  (a VAE, and a task classifier on latents perturbed along gradient explanations; its trainers
  :func:`vae_trainer`, :func:`dvge_trainer`, :func:`reversal_trainer` in
  :mod:`~debiasjax.methods.representation`).

Savani's objective and threshold search, the step weight-changing methods end with:
:class:`Objective`, :func:`threshold_search`, :func:`final_threshold`.
"""

from debiasjax.methods import adversarial, clarc, concepts, finetuning, irene, lff, objective, \
    online, postprocessing, representation, search
from debiasjax.methods.adversarial import fine_tune, savani_adversarial, savani_trainer, \
    zhang_adversarial, zhang_trainer
from debiasjax.methods.clarc import ConceptEdit, a_clarc, a_clarc_trainer, at_layer, fit_edit, \
    rr_clarc, rr_clarc_trainer
from debiasjax.methods.concepts import CAV, Eraser, concept_weights, fit_cav, fit_leace, leace, \
    mass_mean, p_clarc
from debiasjax.methods.finetuning import Context, FineTuning, final_threshold, tune, tune_stacked
from debiasjax.methods.irene import information_removal, irene_trainer
from debiasjax.methods.lff import just_train_twice, learning_from_failure, lff_trainer
from debiasjax.methods.online import mining_trainer, voronoi_debiasing
from debiasjax.methods.objective import Objective, WeightResult, threshold_search
from debiasjax.methods.postprocessing import (
    PostProcessor,
    calibrated_equalized_odds,
    equalized_odds_postprocessing,
    naive_threshold,
    reject_option,
    threshold_optimizer,
)
from debiasjax.methods.representation import Representation, dvge, dvge_trainer, \
    reversal_trainer, vae_trainer
from debiasjax.methods.search import Search, layerwise_optimisation, random_perturbation

__all__ = ["CAV", "ConceptEdit", "Context", "Eraser", "FineTuning", "Objective", "PostProcessor",
           "Representation", "Search", "WeightResult", "a_clarc", "a_clarc_trainer", "adversarial",
           "at_layer", "calibrated_equalized_odds", "clarc", "concept_weights", "concepts", "dvge",
           "dvge_trainer", "equalized_odds_postprocessing", "final_threshold", "fine_tune",
           "finetuning", "fit_cav", "fit_edit", "fit_leace", "information_removal", "irene",
           "irene_trainer", "just_train_twice", "layerwise_optimisation", "leace",
           "learning_from_failure", "lff", "lff_trainer", "mass_mean", "mining_trainer",
           "naive_threshold", "objective", "online", "p_clarc", "postprocessing",
           "random_perturbation", "reject_option", "representation", "reversal_trainer",
           "rr_clarc", "rr_clarc_trainer", "savani_adversarial", "savani_trainer", "search",
           "threshold_optimizer", "threshold_search", "tune", "tune_stacked", "vae_trainer",
           "voronoi_debiasing", "zhang_adversarial", "zhang_trainer"]
