"""A procedural census table with Adult's schema, its proxies and a biased label.

Rows are drawn from a small causal model with the columns of UCI Adult (age, workclass,
education-num, marital-status, occupation, relationship, race, sex, capital-gain,
capital-loss, hours-per-week). The protected attribute ``sex`` shapes its proxies the way it
does in Adult: ``relationship`` (Husband/Wife), ``occupation`` and ``hours-per-week``. The
label "income >50K" depends on education, age, hours, marriage, occupation and capital gains,
plus a direct advantage of ``label_bias`` (log-odds) for the privileged group: label bias that
no post-processing of a perfect model can remove. About a quarter of rows are positive, as in
Adult. Features are encoded like :func:`debiasjax.data.tabular.adult` (protected columns 0/1,
categories one-hot), so every tabular method runs on both unchanged.

Example:
  table = census(20000, seed=0)
  bench = table_benchmark(table, seed=0)      # 60/20/20, standardised
"""

from __future__ import annotations

import numpy as np

from debiasjax.data.dataset import conjoined, conjunction
from debiasjax.data.tabular import Table, _groups

WORKCLASS = ["Federal-gov", "Local-gov", "Private", "Self-emp-inc", "Self-emp-not-inc", "State-gov"]
WORKCLASS_P = [0.03, 0.065, 0.74, 0.035, 0.09, 0.04]
OCCUPATIONS = ["Adm-clerical", "Craft-repair", "Exec-managerial", "Handlers-cleaners",
               "Machine-op-inspct", "Other-service", "Prof-specialty", "Protective-serv", "Sales",
               "Tech-support", "Transport-moving"]
# P(occupation | sex): men and women sort into occupations differently (a proxy for sex).
OCC_P_MALE = [0.07, 0.19, 0.14, 0.06, 0.07, 0.07, 0.13, 0.03, 0.12, 0.03, 0.09]
OCC_P_FEMALE = [0.26, 0.02, 0.11, 0.02, 0.06, 0.18, 0.15, 0.01, 0.12, 0.05, 0.02]
OCC_EFFECT = [-0.2, 0.0, 0.9, -0.6, -0.3, -0.8, 0.8, 0.3, 0.2, 0.3, -0.1]
RACES = ["Amer-Indian-Eskimo", "Asian-Pac-Islander", "Black", "Other", "White"]
RACE_P = [0.01, 0.031, 0.096, 0.008, 0.855]
MARITAL = ["Divorced", "Married-civ-spouse", "Never-married", "Separated", "Widowed"]
RELATIONSHIPS = ["Husband", "Not-in-family", "Other-relative", "Own-child", "Unmarried", "Wife"]


def _onehot(values: np.ndarray, categories: list, name: str) -> tuple[list, list]:
  present = [c for c in categories if (values == c).any()]
  return [(values == c).astype(np.float32) for c in present], [f"{name}={c}" for c in present]


def census(n: int = 20000, *, seed: int = 0, label_bias: float = 0.8,
           protected: str = "sex") -> Table:
  """Draws ``n`` census rows.

  Args:
    n: number of rows (>= 100).
    seed: rows are a deterministic function of the seed.
    label_bias: extra log-odds of a positive label for men (0 removes the label bias).
    protected: the group attribute, ``"sex"`` (Male privileged), ``"race"`` (White) or their
      conjunction ``"sex+race"`` (white men privileged; ``attributes`` keeps both).
  """
  if not isinstance(n, (int, np.integer)) or n < 100:
    raise ValueError(f"n: expected an int >= 100, got {n!r}")
  parts = conjunction(protected, {"sex", "race"})
  rng = np.random.default_rng(seed)
  male = rng.random(n) < 0.67
  race = rng.choice(RACES, n, p=RACE_P)
  age = np.clip(np.round(rng.normal(38.5, 13.5, n)), 17, 90)
  edu = np.clip(np.round(rng.normal(10.1, 2.6, n)), 1, 16)
  married = rng.random(n) < 0.78 / (1 + np.exp(-(age - 29) / 5))
  single_status = np.where(age < 30, "Never-married",
                           rng.choice(["Divorced", "Never-married", "Separated", "Widowed"], n,
                                      p=[0.45, 0.3, 0.1, 0.15]))
  marital = np.where(married, "Married-civ-spouse", single_status)
  relationship = np.where(
      married, np.where(male, "Husband", "Wife"),
      np.where((age < 25) & (rng.random(n) < 0.6), "Own-child",
               np.where(~male & (rng.random(n) < 0.45), "Unmarried",
                        rng.choice(["Not-in-family", "Other-relative"], n, p=[0.85, 0.15]))))
  occ_idx = np.where(male, rng.choice(len(OCCUPATIONS), n, p=OCC_P_MALE),
                     rng.choice(len(OCCUPATIONS), n, p=OCC_P_FEMALE))
  occupation = np.asarray(OCCUPATIONS)[occ_idx]
  workclass = rng.choice(WORKCLASS, n, p=WORKCLASS_P)
  hours = np.clip(np.round(rng.normal(37 + 5 * male + 3 * np.isin(occ_idx, [2, 6]), 11)), 1, 99)
  gain = np.where(rng.random(n) < 0.085, np.round(np.exp(rng.normal(8.3, 1.0, n))), 0.0)
  loss = np.where(rng.random(n) < 0.047, np.round(rng.normal(1900, 350, n)), 0.0)

  logit = (-9.6 + 0.34 * edu + 0.035 * np.minimum(age, 62) + 0.035 * hours + 1.9 * married
           + np.asarray(OCC_EFFECT)[occ_idx] + 2.5 * (gain > 5000) + 0.4 * (loss > 1500)
           + label_bias * male)
  y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int32)

  numeric = [("age", age), ("education-num", edu), ("race", race == "White"), ("sex", male),
             ("capital-gain", gain), ("capital-loss", loss), ("hours-per-week", hours)]
  features = [np.asarray(v, np.float32) for _, v in numeric]
  names = [k for k, _ in numeric]
  for values, cats, name in ((workclass, WORKCLASS, "workclass"), (marital, MARITAL,
                                                                   "marital-status"),
                             (occupation, OCCUPATIONS, "occupation"),
                             (relationship, RELATIONSHIPS, "relationship")):
    f, nm = _onehot(values, cats, name)
    features += f
    names += nm
  group, attributes = conjoined(np.stack([male if p == "sex" else race == "White"
                                          for p in parts], 1))
  info = {"name": "census", "target": "income >50K", "protected": protected, "privileged": 1,
          "groups": _groups(protected), "num_rows": n, "label_bias": label_bias,
          **({"attributes": parts} if len(parts) > 1 else {})}
  return Table(np.stack(features, 1), y, group, names, info, attributes)
