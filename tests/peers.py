"""Adapters that run the reference libraries (fairlearn, AIF360) on raw scores, for the oracle
tests and the benchmarks. Needs the test requirements."""

from __future__ import annotations

import numpy as np
import pandas as pd


def fairlearn_threshold_optimizer(constraint: str, *, objective: str = "accuracy",
                                  flip: bool = False, grid_size: int = 1000):
  """fairlearn's ThresholdOptimizer over a 'model' whose prediction is column 0 of X."""
  from fairlearn.postprocessing import ThresholdOptimizer
  from sklearn.base import BaseEstimator, ClassifierMixin

  class Scores(ClassifierMixin, BaseEstimator):
    def fit(self, X, y):
      del X, y
      self.fitted_ = True
      return self

    def predict(self, X):
      return X[:, 0]

  return ThresholdOptimizer(estimator=Scores().fit(None, None), constraints=constraint,
                            objective=objective + "_score", grid_size=grid_size, flip=flip,
                            prefit=True, predict_method="predict")


def aif360_datasets(scores, y, groups, privileged: int, *, hard_threshold: float = 0.5):
  """AIF360 (true, predicted) BinaryLabelDatasets and the group dicts; predicted labels are
  ``scores > hard_threshold``, every group other than ``privileged`` is unprivileged."""
  from aif360.datasets import BinaryLabelDataset
  groups = np.asarray(groups)
  frame = pd.DataFrame({"g": groups.astype(float), "label": np.asarray(y, float)})
  truth = BinaryLabelDataset(df=frame, label_names=["label"], protected_attribute_names=["g"],
                             favorable_label=1.0, unfavorable_label=0.0)
  pred = truth.copy(deepcopy=True)
  pred.scores = np.asarray(scores, np.float64)[:, None]
  pred.labels = (np.asarray(scores) > hard_threshold).astype(np.float64)[:, None]
  spec = dict(privileged_groups=[{"g": float(privileged)}],
              unprivileged_groups=[{"g": float(v)} for v in np.unique(groups) if v != privileged])
  return truth, pred, spec
