"""Tabular loaders against AIF360 on tiny files in the real formats; the procedural census."""

import warnings

import numpy as np
import pytest

from debiasjax import data
from tests.fakes import SOUTH_GERMAN_HEADER, write_adult, write_bank, write_compas, write_german

warnings.filterwarnings("ignore")


def aif360_dataset(monkeypatch, tmp_path, module_name, class_name, raw_name, writer, **kwargs):
  """AIF360's own loader reading files the test wrote (its paths derive from __file__)."""
  import importlib
  module = importlib.import_module(f"aif360.datasets.{module_name}")
  pkg = tmp_path / "aif360pkg"
  (pkg / "datasets").mkdir(parents=True)
  raw = pkg / "data" / "raw" / raw_name
  raw.mkdir(parents=True)
  writer(str(raw))
  monkeypatch.setattr(module, "__file__", str(pkg / "datasets" / f"{module_name}.py"))
  import pandas as pd
  # aif360 0.6.1 predates pandas 3's string dtype; read the columns as objects, as it expects.
  with pd.option_context("future.infer_string", False):
    return getattr(module, class_name)(**kwargs), str(raw)


def assert_same_as_aif360(ours, theirs, protected):
  assert ours.feature_names == list(theirs.feature_names)
  np.testing.assert_allclose(ours.x, theirs.features, rtol=1e-6)
  np.testing.assert_array_equal(ours.y, (theirs.labels.ravel() == theirs.favorable_label))
  column = theirs.protected_attribute_names.index(protected)
  privileged = theirs.privileged_protected_attributes[column][0]
  np.testing.assert_array_equal(ours.group, theirs.protected_attributes[:, column] == privileged)


@pytest.mark.parametrize("module, cls, raw, writer, loader, protected", [
    ("adult_dataset", "AdultDataset", "adult", write_adult, data.adult, "sex"),
    ("adult_dataset", "AdultDataset", "adult", write_adult, data.adult, "race"),
    ("compas_dataset", "CompasDataset", "compas", write_compas, data.compas, "race"),
    ("compas_dataset", "CompasDataset", "compas", write_compas, data.compas, "sex"),
    ("german_dataset", "GermanDataset", "german", write_german, data.german, "sex"),
    ("german_dataset", "GermanDataset", "german", write_german, data.german, "age"),
])
def test_loader_equals_aif360(monkeypatch, tmp_path, module, cls, raw, writer, loader, protected):
  theirs, folder = aif360_dataset(monkeypatch, tmp_path, module, cls, raw, writer)
  ours = loader(folder, protected=protected)
  assert_same_as_aif360(ours, theirs, protected)
  assert 0 < len(ours.y) < {"adult": 90, "compas": 90, "german": 71}[raw]  # NA rows / filters


def test_bank_equals_aif360(monkeypatch, tmp_path):
  theirs, raw = aif360_dataset(monkeypatch, tmp_path, "bank_dataset", "BankDataset", "bank",
                               write_bank)
  assert_same_as_aif360(data.bank(raw), theirs, "age")
  savani = data.bank(raw, privileged_age=(25, None))
  ages = np.asarray(savani.x[:, savani.feature_names.index("age")])
  np.testing.assert_array_equal(ages, savani.group)        # age column is the mapped attribute


def test_south_german_credit(tmp_path):
  rows = ["1 18 4 2 1049 1 2 4 2 1 4 2 21 3 1 1 3 2 1 2 1",
          "1 9 4 0 2799 1 3 2 3 1 2 1 36 3 1 2 3 1 1 1 1",
          "2 12 2 9 841 2 4 2 2 1 4 1 23 3 1 1 2 2 1 2 0",
          "4 24 2 3 3430 3 5 3 3 1 2 3 31 3 2 1 3 1 2 2 1"]
  (tmp_path / "SouthGermanCredit.asc").write_text("\n".join([SOUTH_GERMAN_HEADER, *rows, ""]))
  t = data.german(str(tmp_path), protected="age")
  np.testing.assert_array_equal(t.y, [1, 1, 0, 1])
  np.testing.assert_array_equal(t.group, [0, 1, 0, 1])      # age > 25
  assert "status=1" in t.feature_names and "personal_status_sex" not in " ".join(t.feature_names)
  with pytest.raises(ValueError, match="'sex' is not recoverable"):
    data.german(str(tmp_path), protected="sex")
  # seed 003's two attributes: over 25 and not a foreign worker (gastarb 2)
  t = data.german(str(tmp_path), protected="age+foreign_worker")
  np.testing.assert_array_equal(t.attributes, [[0, 1], [1, 0], [0, 1], [1, 1]])
  np.testing.assert_array_equal(t.group, [0, 0, 0, 1])
  assert t.info["groups"][1] == "age > 25 and not a foreign worker"
  with pytest.raises(ValueError, match="'sex' is not recoverable"):
    data.german(str(tmp_path), protected="sex+age")


@pytest.mark.parametrize("loader, name", [(data.adult, "adult.data"), (data.bank,
                                                                       "bank-additional-full.csv"),
                                          (data.compas, "compas-scores-two-years.csv"),
                                          (data.german, "german.data")])
def test_missing_file_names_the_file_and_its_source(tmp_path, loader, name):
  with pytest.raises(FileNotFoundError, match=rf"{name} not found\. Download it from http"):
    loader(str(tmp_path))


def test_unknown_protected_attribute(tmp_path):
  with pytest.raises(ValueError, match=r"protected: expected one of \['race', 'sex'\] or a "
                     r"conjunction 'a\+b' of different ones, got 'age'"):
    data.adult(str(tmp_path), protected="age")
  with pytest.raises(ValueError, match=r"protected: .* got 'religion'"):
    data.census(200, protected="religion")
  with pytest.raises(ValueError, match=r"protected: .* different ones, got 'sex\+sex'"):
    data.census(200, protected="sex+sex")


def test_census_schema_and_bias():
  t = data.census(20000, seed=1)
  assert t.x.shape[0] == 20000 and len(t.feature_names) == t.x.shape[1]
  assert 0.2 < t.y.mean() < 0.32                                        # Adult: 24 %
  gap = t.y[t.group == 1].mean() - t.y[t.group == 0].mean()
  assert gap > 0.08                                                       # label bias
  rel = t.x[:, t.feature_names.index("relationship=Husband")]
  assert rel[t.group == 0].max() == 0                                     # a proxy of sex
  np.testing.assert_array_equal(data.census(500, seed=3).x, data.census(500, seed=3).x)
  assert not np.array_equal(data.census(500, seed=3).y, data.census(500, seed=4).y)
  no_bias = data.census(20000, seed=1, label_bias=0.0)
  assert no_bias.y[no_bias.group == 1].mean() - no_bias.y[no_bias.group == 0].mean() < gap


def test_table_benchmark_random_and_phi_protocols():
  t = data.census(5000, seed=0)
  b = data.table_benchmark(t, seed=0)
  assert (len(b.train), len(b.debias), len(b.test)) == (3000, 1000, 1000)
  np.testing.assert_allclose(b.train.x.mean(0), 0, atol=1e-5)
  assert b.info["splits"]["phi_requested"] is None
  p = data.table_benchmark(t, seed=0, phi=0.5, n_test=400)
  np.testing.assert_array_equal(data.cell_table(p.test.y, p.test.group), [[100, 100], [100, 100]])
  assert abs(p.info["splits"]["train"]["phi"] - 0.5) < 0.01
  q = data.table_benchmark(t, seed=0, phi=0.5, debias_phi=0.0, n_test=400)
  assert abs(q.info["splits"]["train"]["phi"] - 0.5) < 0.01
  assert abs(q.info["splits"]["debias"]["phi"]) < 0.01
  with pytest.raises(ValueError, match="debias_phi: needs phi"):
    data.table_benchmark(t, debias_phi=0.2)
  with pytest.raises(ValueError, match="fractions"):
    data.table_benchmark(t, fractions=(0.5, 0.5))


def _rewrite(path, edit):
  lines = open(path).read().splitlines()
  open(path, "w").write("\n".join(edit(lines)) + "\n")


def test_loaders_refuse_what_they_would_misread(tmp_path):
  """Unknown encodings, a missing column, a truncated row and a foreign header are errors
  naming the file, the line and the column; UCI's own files still load."""
  from tests.fakes import write_adult, write_compas
  write_adult(str(tmp_path))
  data_file = str(tmp_path / "adult.data")
  reference = data.adult(str(tmp_path))
  original = open(data_file).read()
  # A header equal to the columns is skipped: the same table.
  header = ("age, workclass, fnlwgt, education, education-num, marital-status, occupation, "
            "relationship, race, sex, capital-gain, capital-loss, hours-per-week, "
            "native-country, income-per-year")
  open(data_file, "w").write(header + "\n" + original)
  np.testing.assert_array_equal(data.adult(str(tmp_path)).y, reference.y)
  # adult.test without UCI's '|1x3' line keeps its first row.
  test_file = str(tmp_path / "adult.test")
  _rewrite(test_file, lambda ls: ls[1:])
  open(data_file, "w").write(original)
  assert data.adult(str(tmp_path)).info["num_rows"] == reference.info["num_rows"]
  cases = [
      (lambda ls: [ls[0].replace("<=50K", "low").replace(">50K", "low")] + ls[1:],
       r"adult.data: line 1, column 'income-per-year': unknown value 'low'"),
      (lambda ls: ls[:2] + [ls[2].replace("Male", "M").replace("Female", "M")] + ls[3:],
       r"adult.data: line 3, column 'sex': unknown value 'M'"),
      (lambda ls: ls[:4] + [", ".join(ls[4].split(", ")[:9])] + ls[5:],
       r"adult.data: line 5 has 9 fields, expected 15"),
      (lambda ls: ["years, " + ", ".join(ls[0].split(", ")[1:])] + ls,
       r"adult.data: line 1, column 'age': expected a number, got 'years'"),
  ]
  for edit, message in cases:
    open(data_file, "w").write(original)
    _rewrite(data_file, edit)
    with pytest.raises(ValueError, match=message):
      data.adult(str(tmp_path))
  write_compas(str(tmp_path))
  compas_file = str(tmp_path / "compas-scores-two-years.csv")
  _rewrite(compas_file, lambda ls: [ls[0].replace("priors_count", "priors")] + ls[1:])
  with pytest.raises(ValueError, match=r"compas-scores-two-years.csv: missing column\(s\) "
                                       r"\['priors_count'\]"):
    data.compas(str(tmp_path))


def test_conjunction_of_protected_attributes(tmp_path):
  """``"a+b"``: the group is privileged where both are; ``attributes`` keeps each, through the
  splits."""
  sex, race = data.census(800, seed=2), data.census(800, seed=2, protected="race")
  both = data.census(800, seed=2, protected="sex+race")
  np.testing.assert_array_equal(both.attributes, np.stack([sex.group, race.group], 1))
  np.testing.assert_array_equal(both.group, sex.group & race.group)
  np.testing.assert_array_equal(both.x, sex.x)
  assert both.info["groups"] == ["not (male and white)", "male and white"]
  b = data.table_benchmark(both, seed=0)
  np.testing.assert_array_equal(b.test.group, b.test.attributes.all(1))
  np.testing.assert_array_equal(b.test.take([0, 2]).attributes, b.test.attributes[[0, 2]])

  write_german(str(tmp_path))
  age = data.german(str(tmp_path), protected="age")
  joint = data.german(str(tmp_path), protected="age+foreign_worker")
  not_foreign = joint.x[:, joint.feature_names.index("foreign_worker=A202")]
  np.testing.assert_array_equal(joint.group, age.group * not_foreign)
  np.testing.assert_array_equal(joint.x, age.x)
  assert 0 < joint.group.sum() < age.group.sum()
