"""Tabular fairness datasets from the raw files the user already has, with AIF360's semantics.

Each loader reads the original file(s) and reproduces AIF360's ``StandardDataset`` pipeline for
that dataset (``aif360.datasets.{Adult,Bank,Compas,German}Dataset`` defaults, aif360 0.6.1):
keep the listed columns, drop rows with missing values, one-hot encode the categorical columns
as ``column=value`` (numeric columns first, then the indicators, categories sorted), map every
protected attribute to 1 (privileged) / 0 and the label to 1 (favourable) / 0. Protected
attributes stay among the features, as in AIF360. The result equals AIF360's feature matrix,
labels and protected attribute (tested against AIF360 on files in the real formats).

Nothing is downloaded: a missing file raises ``FileNotFoundError`` naming the file and where to
get it.

Loaders (file; protected attributes, privileged = 1; favourable label):

* :func:`adult` -- ``adult.data``, ``adult.test`` (UCI); sex (Male), race (White); income >50K.
* :func:`bank` -- ``bank-additional-full.csv`` (UCI); age (25 <= age < 60; Savani et al. used
  age >= 25: ``privileged_age=(25, None)``); subscribed (y = yes).
* :func:`compas` -- ``compas-scores-two-years.csv`` (ProPublica); race (Caucasian), sex
  (Female); no recidivism within two years.
* :func:`german` -- ``german.data`` (Statlog) or ``SouthGermanCredit.asc`` (Groemping's
  corrected South German credit); sex (male; Statlog only), age (> 25); good credit.
"""

from __future__ import annotations

import csv
import functools
import math
import os
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np

from debiasjax.data.dataset import Benchmark, Split, conjoined, conjunction
from debiasjax.data.splits import make_splits, split_report

# pandas' default missing-value markers, which AIF360's read_csv calls inherit.
_NA = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
       "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}


class Table(NamedTuple):
  """A tabular dataset: features, favourable label, protected group and feature names; for a
  conjunction of protected attributes (``protected="a+b"``) ``group`` is 1 where every one is
  privileged and ``attributes`` [N, K] keeps each."""
  x: np.ndarray               # [N, D] float32
  y: np.ndarray               # [N] int32, 1 = favourable
  group: np.ndarray           # [N] int32, 1 = privileged
  feature_names: list
  info: dict
  attributes: Optional[np.ndarray] = None     # [N, K] int32, with K > 1 protected attributes


def _missing(path: str, source: str) -> FileNotFoundError:
  return FileNotFoundError(f"{path} not found. Download it from {source} and pass its folder "
                           "(nothing is downloaded automatically).")


def _resolve(path: str, filename: str, source: str) -> str:
  candidate = os.path.join(path, filename) if os.path.isdir(path) else path
  if not os.path.isfile(candidate):
    raise _missing(candidate if os.path.isdir(path) else path, source)
  return candidate


def _read(path: str, *, delimiter: str = ",", names: Optional[Sequence[str]] = None,
          comment: Optional[str] = None, na=frozenset(), strip: bool = False,
          required: Sequence[str] = (), numeric: Sequence[str] = (),
          encodings: Optional[dict] = None) -> tuple[list, list]:
  """Columns and rows (None for missing values) of a delimited text file, refusing what the
  loader would misread: a missing ``required`` column, a row of the wrong width, a
  non-number in a ``numeric`` column, a value outside ``encodings[column]``. Errors name the
  file, the line and the column. Lines starting with ``comment`` are skipped; with ``names``
  given, a first line equal to them (a header) is skipped."""
  with open(path, newline="") as f:
    numbered = [(i + 1, line) for i, line in enumerate(f.read().splitlines())
                if line.strip() and not (comment and line.startswith(comment))]
  reader = csv.reader([line for _, line in numbered], delimiter=delimiter,
                      skipinitialspace=strip)
  rows = list(reader)
  lines = [n for n, _ in numbered]
  if not rows:
    raise ValueError(f"{path}: no data rows")
  if names is None:
    names, rows, lines = rows[0], rows[1:], lines[1:]
  elif [v.strip().lower() for v in rows[0]] == [n.lower() for n in names]:
    rows, lines = rows[1:], lines[1:]
  names = _dedupe(names)
  absent = [c for c in required if c not in names]
  if absent:
    raise ValueError(f"{path}: missing column(s) {absent}; the file has {list(names)[:30]}")
  missing = _NA | set(na)
  width = len(names)
  out = []
  checks = [(names.index(c), c, "number", None) for c in numeric] + [
      (names.index(c), c, "code", allowed) for c, allowed in (encodings or {}).items()]
  for line, row in zip(lines, rows):
    if len(row) != width:
      raise ValueError(f"{path}: line {line} has {len(row)} fields, expected {width} "
                       "(a truncated or malformed row)")
    values = [None if v.strip() in missing else v.strip() for v in row]
    for i, c, kind, allowed in checks:
      v = values[i]
      if v is None:
        continue
      if kind == "number" and _to_number(v) is None:
        hint = " (a header line? this file has none)" if v.lower() == c.lower() else ""
        raise ValueError(f"{path}: line {line}, column {c!r}: expected a number, got "
                         f"{v!r}{hint}")
      if kind == "code" and v not in allowed:
        raise ValueError(f"{path}: line {line}, column {c!r}: unknown value {v!r}; expected "
                         f"one of {sorted(allowed)}")
    out.append(values)
  return list(names), out


def _dedupe(names: Sequence[str]) -> list:
  """Renames repeated column names as pandas does: the second ``x`` becomes ``x.1``."""
  seen, out = {}, []
  for n in names:
    out.append(n if n not in seen else f"{n}.{seen[n]}")
    seen[n] = seen.get(n, 0) + 1
  return out


def _to_number(v):
  try:
    return float(v)
  except (TypeError, ValueError):
    return None


def _standard_table(names: list, rows: list, *, label: str, favourable: Callable,
                    protected: dict, categorical: Sequence[str], keep: Sequence[str] = (),
                    drop: Sequence[str] = (), group: str, info: dict) -> Table:
  """AIF360's StandardDataset steps 3-7 on raw string rows. ``group`` names the protected
  attribute, or a conjunction ``"a+b"`` of several (privileged where all are)."""
  parts = conjunction(group, protected)
  keep_set = (set(keep) or set(names)) | set(protected) | set(categorical) | {label}
  cols = [c for c in names if c in keep_set and c not in drop]
  pos = {c: names.index(c) for c in cols}
  rows = [r for r in rows if all(r[pos[c]] is not None for c in cols)]
  if not rows:
    raise ValueError(f"{info['name']}: no complete rows left after dropping missing values")
  column = {c: [r[pos[c]] for r in rows] for c in cols}
  numeric = {c for c in cols if all(_to_number(v) is not None for v in column[c])}
  cat = [c for c in cols if c in categorical]

  def value(c, v):
    return _to_number(v) if c in numeric else v

  features, feature_names = [], []
  for c in cols:
    if c == label or c in cat:
      continue
    vals = [value(c, v) for v in column[c]]
    if c in protected:
      vals = [1.0 if protected[c](v) else 0.0 for v in vals]
    elif c not in numeric:
      raise ValueError(f"{info['name']}: column {c!r} is neither numeric nor categorical")
    features.append(np.asarray(vals, np.float64))
    feature_names.append(c)
  for c in cat:
    vals = [value(c, v) for v in column[c]]
    for category in sorted(set(vals)):
      features.append(np.asarray([v == category for v in vals], np.float64))
      feature_names.append(f"{c}={category:g}" if isinstance(category,
                                                             float) else f"{c}={category}")
  y = np.asarray([favourable(value(label, v)) for v in column[label]], np.int32)
  g, attributes = conjoined(np.transpose([[protected[c](value(c, v)) for v in column[c]]
                                           for c in parts]))
  x = np.stack(features, axis=1).astype(np.float32)
  extra = {"attributes": parts} if len(parts) > 1 else {}
  return Table(x, y, g, feature_names,
               {**info, "protected": group, "privileged": 1, "num_rows": int(y.size), **extra},
               attributes)


_UCI = "https://archive.ics.uci.edu/ml/machine-learning-databases"
_ADULT_COLUMNS = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
                  "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
                  "hours-per-week", "native-country", "income-per-year"]


def adult(path: str, *, protected: str = "sex") -> Table:
  """UCI Adult census income (AIF360 ``AdultDataset``): 45,222 complete rows, test file first.

  Args:
    path: folder holding ``adult.data`` and ``adult.test`` as downloaded from UCI.
    protected: ``"sex"`` (Male privileged) or ``"race"`` (White privileged).
  """
  conjunction(protected, {"sex", "race"})
  train = _resolve(path, "adult.data", f"{_UCI}/adult/adult.data")
  test = _resolve(os.path.dirname(train), "adult.test", f"{_UCI}/adult/adult.test")
  read = functools.partial(
      _read, names=_ADULT_COLUMNS, comment="|", na={"?"}, strip=True,
      numeric=["age", "fnlwgt", "education-num", "capital-gain", "capital-loss",
               "hours-per-week"],
      encodings={"income-per-year": {">50K", "<=50K", ">50K.", "<=50K."},
                 "sex": {"Male", "Female"},
                 "race": {"White", "Black", "Asian-Pac-Islander", "Amer-Indian-Eskimo",
                          "Other"}})
  _, test_rows = read(test)
  names, train_rows = read(train)
  return _standard_table(
      names, test_rows + train_rows, label="income-per-year",
      favourable=lambda v: v in (">50K", ">50K."),
      protected={"race": lambda v: v == "White", "sex": lambda v: v == "Male"},
      categorical=["workclass", "education", "marital-status", "occupation", "relationship",
                   "native-country"], drop=["fnlwgt"], group=protected,
      info={"name": "adult", "target": "income >50K", "groups": _groups(protected)})


def bank(path: str, *, privileged_age: tuple = (25, 60)) -> Table:
  """UCI Bank marketing (AIF360 ``BankDataset``), protected attribute age.

  Args:
    path: folder holding ``bank-additional-full.csv`` (from UCI's ``bank-additional.zip``).
    privileged_age: ``(lo, hi)``, privileged when ``lo <= age < hi``; ``hi=None`` for no upper
      bound. AIF360 >= 0.6 uses (25, 60); Savani et al. (with AIF360 0.3) used (25, None).
  """
  lo, hi = privileged_age
  source = f"{_UCI}/00222/bank-additional.zip (unzip it)"
  names, rows = _read(_resolve(path, "bank-additional-full.csv", source), delimiter=";",
                      na={"unknown"}, required=["age", "y"], numeric=["age"],
                      encodings={"y": {"yes", "no"}})
  return _standard_table(
      names, rows, label="y", favourable=lambda v: v == "yes",
      protected={"age": lambda v: v >= lo and (hi is None or v < hi)},
      categorical=["job", "marital", "education", "default", "housing", "loan", "contact",
                   "month", "day_of_week", "poutcome"], group="age",
      info={"name": "bank", "target": "subscribed", "groups": ["other ages",
                                                               f"{lo} <= age < {hi}"]})


def compas(path: str, *, protected: str = "race") -> Table:
  """ProPublica COMPAS two-year recidivism (AIF360 ``CompasDataset``); favourable = no
  recidivism.

  Args:
    path: folder holding ``compas-scores-two-years.csv``.
    protected: ``"race"`` (Caucasian privileged) or ``"sex"`` (Female privileged, AIF360's
      convention).
  """
  conjunction(protected, {"sex", "race"})
  source = ("https://raw.githubusercontent.com/propublica/compas-analysis/master/"
            "compas-scores-two-years.csv")
  names, rows = _read(_resolve(path, "compas-scores-two-years.csv", source),
                      required=["sex", "age", "age_cat", "race", "juv_fel_count",
                                "juv_misd_count", "juv_other_count", "priors_count",
                                "c_charge_degree", "c_charge_desc", "two_year_recid",
                                "days_b_screening_arrest", "is_recid", "score_text"],
                      numeric=["two_year_recid", "priors_count", "age"],
                      encodings={"two_year_recid": {"0", "1"}, "sex": {"Male", "Female"}})
  col = {c: i for i, c in enumerate(names)}
  num = lambda r, c: _to_number(r[col[c]])

  def propublica_filter(r):   # ProPublica's analysis filters, with pandas' NaN semantics
    days = num(r, "days_b_screening_arrest")
    return (days is not None and -30 <= days <= 30 and num(r, "is_recid") != -1
            and r[col["c_charge_degree"]] != "O" and r[col["score_text"]] != "N/A")

  rows = [r for r in rows if propublica_filter(r)]
  return _standard_table(
      names, rows, label="two_year_recid", favourable=lambda v: v == 0,
      protected={"sex": lambda v: v == "Female", "race": lambda v: v == "Caucasian"},
      categorical=["age_cat", "c_charge_degree", "c_charge_desc"],
      keep=["sex", "age", "age_cat", "race", "juv_fel_count", "juv_misd_count",
            "juv_other_count", "priors_count", "c_charge_degree", "c_charge_desc",
            "two_year_recid"], group=protected,
      info={"name": "compas", "target": "no recidivism", "groups": _groups(protected, "compas")})


_GERMAN_COLUMNS = ["status", "month", "credit_history", "purpose", "credit_amount", "savings",
                   "employment", "investment_as_income_percentage", "personal_status",
                   "other_debtors", "residence_since", "property", "age", "installment_plans",
                   "housing", "number_of_credits", "skill_level", "people_liable_for",
                   "telephone", "foreign_worker", "credit"]
# Groemping (2019), South German Credit: German column names and their English meaning.
_SOUTH_GERMAN = {"laufkont": "status", "laufzeit": "duration", "moral": "credit_history",
                 "verw": "purpose", "hoehe": "amount", "sparkont": "savings",
                 "beszeit": "employment_duration", "rate": "installment_rate",
                 "famges": "personal_status_sex", "buerge": "other_debtors",
                 "wohnzeit": "present_residence", "verm": "property", "alter": "age",
                 "weitkred": "other_installment_plans", "wohn": "housing",
                 "bishkred": "number_credits", "beruf": "job", "pers": "people_liable",
                 "telef": "telephone", "gastarb": "foreign_worker", "kredit": "credit_risk"}


def german(path: str, *, protected: str = "sex") -> Table:
  """German credit (AIF360 ``GermanDataset``); favourable = good credit.

  Reads either the Statlog file ``german.data`` (AIF360's source; protected ``sex`` from
  ``personal_status``, male privileged, or ``age`` > 25 privileged) or Groemping's corrected
  ``SouthGermanCredit.asc``. The latter's ``famges`` code 2 mixes "female non-single" with "male
  single", so sex cannot be recovered from it and only ``protected="age"`` is available.
  ``foreign_worker`` (privileged: not a foreign worker; Statlog code A202, South German code 2)
  serves in conjunctions such as seed 003's ``"age+foreign_worker"``.

  Args:
    path: folder (or file) with ``german.data`` or ``SouthGermanCredit.asc``.
    protected: ``"sex"``, ``"age"``, ``"foreign_worker"`` or a conjunction such as
      ``"age+foreign_worker"``.
  """
  parts = conjunction(protected, {"sex", "age", "foreign_worker"})
  folder = path if os.path.isdir(path) else os.path.dirname(path)
  south = os.path.join(folder, "SouthGermanCredit.asc")
  statlog = os.path.join(folder, "german.data")
  chosen = path if os.path.isfile(path) else (statlog if os.path.isfile(statlog) else south)
  if os.path.basename(chosen) == "SouthGermanCredit.asc" and os.path.isfile(chosen):
    if "sex" in parts:
      raise ValueError("protected: 'sex' is not recoverable from SouthGermanCredit.asc (famges "
                       "code 2 is 'female non-single or male single'); use protected='age' or "
                       "the Statlog file german.data")
    names, rows = _read(chosen, delimiter=" ", required=["kredit", "alter"],
                        numeric=["kredit", "alter"])
    names = [_SOUTH_GERMAN.get(n.strip('"'), n.strip('"')) for n in names]
    return _standard_table(
        names, rows, label="credit_risk", favourable=lambda v: v == 1,
        protected={"age": lambda v: v > 25, "foreign_worker": lambda v: v == 2},
        categorical=["status", "credit_history", "purpose", "savings", "employment_duration",
                     "other_debtors", "property", "other_installment_plans", "housing", "job",
                     "telephone", "foreign_worker"], drop=["personal_status_sex"],
        group=protected, info={"name": "south_german_credit", "target": "good credit",
                               "groups": _groups(protected, "german")})
  if not os.path.isfile(chosen):
    raise _missing(statlog, f"{_UCI}/statlog/german/german.data (or the South German Credit "
                   "data set, SouthGermanCredit.asc, from the UCI repository)")
  names, rows = _read(chosen, delimiter=" ", names=_GERMAN_COLUMNS,
                      numeric=["age", "credit", "month", "credit_amount"],
                      encodings={"credit": {"1", "2"},
                                 "personal_status": {"A91", "A92", "A93", "A94", "A95"}})
  male = {"A91", "A93", "A94"}
  col = names.index("personal_status")
  names = names + ["sex"]
  rows = [r + [r[col] if r[col] is None else ("male" if r[col] in male else "female")]
          for r in rows]
  return _standard_table(
      names, rows, label="credit", favourable=lambda v: v == 1,
      protected={"sex": lambda v: v == "male", "age": lambda v: v > 25,
                 "foreign_worker": lambda v: v == "A202"},
      categorical=["status", "credit_history", "purpose", "savings", "employment",
                   "other_debtors", "property", "installment_plans", "housing", "skill_level",
                   "telephone", "foreign_worker"], drop=["personal_status"], group=protected,
      info={"name": "german", "target": "good credit", "groups": _groups(protected, "german")})


def _groups(protected: str, dataset: str = "adult") -> list:
  """Names of the unprivileged and the privileged group (of a conjunction: all privileged)."""
  if "+" in protected:
    both = " and ".join(_groups(p, dataset)[1] for p in protected.split("+"))
    return [f"not ({both})", both]
  if dataset == "german":
    return {"sex": ["female", "male"], "age": ["age <= 25", "age > 25"],
            "foreign_worker": ["foreign worker", "not a foreign worker"]}[protected]
  if protected == "sex":
    return ["male", "female"] if dataset == "compas" else ["female", "male"]
  return {"adult": ["non-white", "white"], "compas": ["non-caucasian", "caucasian"]}[dataset]


LOADERS = {"adult": adult, "bank": bank, "compas": compas, "german": german}


def standardize(train: np.ndarray, *others: np.ndarray) -> list:
  """Standardises every array with the train split's mean and standard deviation."""
  mean, std = train.mean(0), train.std(0)
  std = np.where(std > 0, std, 1.0)
  return [((a - mean) / std).astype(np.float32) for a in (train, *others)]


def table_benchmark(table: Table, *, seed: int = 0, fractions: tuple = (0.6, 0.2, 0.2),
                    phi: Optional[float] = None, n_test: Optional[int] = None,
                    debias_phi: Optional[float] = None) -> Benchmark:
  """Train / debias / test splits of a table, standardised with train statistics.

  Without ``phi``: a random split by ``fractions`` (Savani et al.'s 60/20/20 protocol; their
  validation split is our debias split). With ``phi``: the rebalanced protocol of
  :func:`debiasjax.data.splits.make_splits` (``n_test`` balanced test rows, train and debias at
  Yule's ``phi``, debias at ``debias_phi`` if given).
  """
  n = len(table.y)
  if phi is None and debias_phi is not None:
    raise ValueError(f"debias_phi: needs phi (the rebalanced protocol), got phi=None and "
                     f"debias_phi={debias_phi!r}")
  if phi is None:
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or not math.isclose(sum(fractions), 1):
      raise ValueError(f"fractions: expected three positive fractions summing to 1, got "
                       f"{fractions}")
    order = np.random.default_rng(seed).permutation(n)
    cut = np.cumsum([int(round(fractions[0] * n)), int(round(fractions[1] * n))])
    index = np.split(order, cut)
    report = split_report(None, **{k: (table.y[i], table.group[i])
                                            for k, i in zip(("train", "debias", "test"), index)})
  else:
    n_test = n_test or 4 * (int(np.bincount(2 * table.group + table.y, minlength=4).min()) // 8)
    s = make_splits(table.y, table.group, phi=phi, n_test=n_test, seed=seed, debias_phi=debias_phi)
    index, report = [s.train, s.debias, s.test], s.report
  xs = standardize(*(table.x[i] for i in index))
  each = table.attributes
  splits = [Split(x, table.y[i], table.group[i], None, None if each is None else each[i])
            for x, i in zip(xs, index)]
  info = {**table.info, "feature_names": table.feature_names, "splits": report, "seed": seed}
  return Benchmark(*splits, info)
