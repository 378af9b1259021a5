"""Tabular loaders against AIF360 on tiny files in the real formats; the procedural census."""

import os
import warnings

import numpy as np
import pytest

from debiasjax import data

warnings.filterwarnings("ignore")
RNG = np.random.default_rng(0)


def pick(options, n):
  return [options[i] for i in RNG.integers(0, len(options), n)]


def write_adult(folder, n=60):
  def rows(n, label_suffix):
    cols = [
        [str(v) for v in RNG.integers(17, 80, n)], pick(["Private", "State-gov", "Self-emp-inc", "?"], n),
        [str(v) for v in RNG.integers(20000, 300000, n)], pick(["Bachelors", "HS-grad", "Masters"], n),
        [str(v) for v in RNG.integers(1, 16, n)], pick(["Never-married", "Married-civ-spouse", "Divorced"], n),
        pick(["Adm-clerical", "Exec-managerial", "Sales", "?"], n),
        pick(["Husband", "Wife", "Not-in-family", "Own-child"], n),
        pick(["White", "Black", "Asian-Pac-Islander"], n), pick(["Male", "Female"], n),
        [str(v) for v in RNG.integers(0, 5000, n)], [str(v) for v in RNG.integers(0, 2000, n)],
        [str(v) for v in RNG.integers(10, 60, n)], pick(["United-States", "Mexico", "?"], n),
        pick(["<=50K" + label_suffix, ">50K" + label_suffix], n)]
    return "\n".join(", ".join(r) for r in zip(*cols)) + "\n"
  with open(os.path.join(folder, "adult.data"), "w") as f:
    f.write(rows(n, ""))
  with open(os.path.join(folder, "adult.test"), "w") as f:
    f.write("|1x3 Cross validator\n" + rows(n // 2, "."))


BANK_COLUMNS = ["age", "job", "marital", "education", "default", "housing", "loan", "contact",
                "month", "day_of_week", "duration", "campaign", "pdays", "previous", "poutcome",
                "emp.var.rate", "cons.price.idx", "cons.conf.idx", "euribor3m", "nr.employed", "y"]


def write_bank(folder, n=80):
  q = lambda vals: [f'"{v}"' for v in vals]
  cols = [[str(v) for v in RNG.integers(18, 90, n)], q(pick(["admin.", "blue-collar", "unknown"], n)),
          q(pick(["married", "single"], n)), q(pick(["basic.4y", "university.degree", "unknown"], n)),
          q(pick(["no", "unknown"], n)), q(pick(["no", "yes"], n)), q(pick(["no", "yes"], n)),
          q(pick(["telephone", "cellular"], n)), q(pick(["may", "jun"], n)),
          q(pick(["mon", "tue"], n)), [str(v) for v in RNG.integers(0, 900, n)],
          [str(v) for v in RNG.integers(1, 5, n)], ["999"] * n, ["0"] * n,
          q(pick(["nonexistent", "failure"], n)), pick(["1.1", "-1.8"], n), ["93.994"] * n,
          ["-36.4"] * n, pick(["4.857", "1.313"], n), ["5191"] * n, q(pick(["no", "yes"], n))]
  with open(os.path.join(folder, "bank-additional-full.csv"), "w") as f:
    f.write(";".join(f'"{c}"' for c in BANK_COLUMNS) + "\n")
    f.write("\n".join(";".join(r) for r in zip(*cols)) + "\n")


COMPAS_COLUMNS = (
    "id,name,first,last,compas_screening_date,sex,dob,age,age_cat,race,juv_fel_count,decile_score,"
    "juv_misd_count,juv_other_count,priors_count,days_b_screening_arrest,c_jail_in,c_jail_out,"
    "c_case_number,c_offense_date,c_arrest_date,c_days_from_compas,c_charge_degree,c_charge_desc,"
    "is_recid,r_case_number,r_charge_degree,r_days_from_arrest,r_offense_date,r_charge_desc,"
    "r_jail_in,r_jail_out,violent_recid,is_violent_recid,vr_case_number,vr_charge_degree,"
    "vr_offense_date,vr_charge_desc,type_of_assessment,decile_score,score_text,screening_date,"
    "v_type_of_assessment,v_decile_score,v_score_text,v_screening_date,in_custody,out_custody,"
    "priors_count,start,end,event,two_year_recid").split(",")


def write_compas(folder, n=90):
  rows = []
  for i in range(n):
    row = {c: "" for c in COMPAS_COLUMNS}
    age = int(RNG.integers(18, 70))
    row.update({
        "id": str(i + 1), "name": f"p {i}", "sex": pick(["Male", "Female"], 1)[0], "age": str(age),
        "age_cat": "Less than 25" if age < 25 else ("25 - 45" if age <= 45 else "Greater than 45"),
        "race": pick(["African-American", "Caucasian", "Hispanic"], 1)[0],
        "juv_fel_count": str(RNG.integers(0, 2)), "juv_misd_count": str(RNG.integers(0, 2)),
        "juv_other_count": "0", "priors_count": str(RNG.integers(0, 9)),
        "days_b_screening_arrest": pick(["-1", "0", "45", "-40", ""], 1)[0],
        "c_charge_degree": pick(["F", "M", "O"], 1)[0],
        "c_charge_desc": pick(["Battery", "Grand Theft in the 3rd Degree", "arrest case no charge"], 1)[0],
        "is_recid": pick(["0", "1", "-1"], 1)[0], "decile_score": str(RNG.integers(1, 10)),
        "score_text": pick(["Low", "Medium", "High", "N/A"], 1)[0],
        "two_year_recid": str(RNG.integers(0, 2)), "end": str(RNG.integers(0, 1000))})
    rows.append([f'"{row[c]}"' if "," in row[c] else row[c] for c in COMPAS_COLUMNS])
  with open(os.path.join(folder, "compas-scores-two-years.csv"), "w") as f:
    f.write(",".join(COMPAS_COLUMNS) + "\n" + "\n".join(",".join(r) for r in rows) + "\n")


def write_german(folder, n=70):
  cols = [pick(["A11", "A12", "A14"], n), [str(v) for v in RNG.integers(4, 60, n)],
          pick(["A30", "A32", "A34"], n), pick(["A40", "A43", "A410"], n),
          [str(v) for v in RNG.integers(250, 15000, n)], pick(["A61", "A65"], n),
          pick(["A71", "A73", "A75"], n), [str(v) for v in RNG.integers(1, 5, n)],
          pick(["A91", "A92", "A93", "A94"], n), pick(["A101", "A103"], n),
          [str(v) for v in RNG.integers(1, 5, n)], pick(["A121", "A124"], n),
          [str(v) for v in RNG.integers(19, 75, n)], pick(["A141", "A143"], n),
          pick(["A151", "A152"], n), [str(v) for v in RNG.integers(1, 4, n)],
          pick(["A172", "A173"], n), [str(v) for v in RNG.integers(1, 3, n)],
          pick(["A191", "A192"], n), pick(["A201", "A202"], n), pick(["1", "2"], n)]
  with open(os.path.join(folder, "german.data"), "w") as f:
    f.write("\n".join(" ".join(r) for r in zip(*cols)) + "\n")


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


@pytest.mark.parametrize("protected", ["sex", "race"])
def test_adult_equals_aif360(monkeypatch, tmp_path, protected):
  theirs, raw = aif360_dataset(monkeypatch, tmp_path, "adult_dataset", "AdultDataset", "adult",
                               write_adult)
  ours = data.adult(raw, protected=protected)
  assert_same_as_aif360(ours, theirs, protected)
  assert ours.info["name"] == "adult" and ours.x.shape[0] < 90       # rows with '?' dropped


def test_bank_equals_aif360(monkeypatch, tmp_path):
  theirs, raw = aif360_dataset(monkeypatch, tmp_path, "bank_dataset", "BankDataset", "bank",
                               write_bank)
  assert_same_as_aif360(data.bank(raw), theirs, "age")
  savani = data.bank(raw, privileged_age=(25, None))
  ages = np.asarray(savani.x[:, savani.feature_names.index("age")])
  np.testing.assert_array_equal(ages, savani.group)        # age column is the mapped attribute


@pytest.mark.parametrize("protected", ["race", "sex"])
def test_compas_equals_aif360(monkeypatch, tmp_path, protected):
  theirs, raw = aif360_dataset(monkeypatch, tmp_path, "compas_dataset", "CompasDataset", "compas",
                               write_compas)
  ours = data.compas(raw, protected=protected)
  assert_same_as_aif360(ours, theirs, protected)
  assert 0 < len(ours.y) < 90                              # ProPublica filters applied


@pytest.mark.parametrize("protected", ["sex", "age"])
def test_german_equals_aif360(monkeypatch, tmp_path, protected):
  theirs, raw = aif360_dataset(monkeypatch, tmp_path, "german_dataset", "GermanDataset", "german",
                               write_german)
  assert_same_as_aif360(data.german(raw, protected=protected), theirs, protected)


def test_south_german_credit(tmp_path):
  header = ("laufkont laufzeit moral verw hoehe sparkont beszeit rate famges buerge wohnzeit verm "
            "alter weitkred wohn bishkred beruf pers telef gastarb kredit")
  rows = ["1 18 4 2 1049 1 2 4 2 1 4 2 21 3 1 1 3 2 1 2 1",
          "1 9 4 0 2799 1 3 2 3 1 2 1 36 3 1 2 3 1 1 2 1",
          "2 12 2 9 841 2 4 2 2 1 4 1 23 3 1 1 2 2 1 2 0",
          "4 24 2 3 3430 3 5 3 3 1 2 3 31 3 2 1 3 1 2 2 1"]
  (tmp_path / "SouthGermanCredit.asc").write_text(header + "\n" + "\n".join(rows) + "\n")
  t = data.german(str(tmp_path), protected="age")
  np.testing.assert_array_equal(t.y, [1, 1, 0, 1])
  np.testing.assert_array_equal(t.group, [0, 1, 0, 1])      # age > 25
  assert "status=1" in t.feature_names and "personal_status_sex" not in " ".join(t.feature_names)
  with pytest.raises(ValueError, match="'sex' is not recoverable"):
    data.german(str(tmp_path), protected="sex")


@pytest.mark.parametrize("loader, name", [(data.adult, "adult.data"), (data.bank, "bank-additional-full.csv"),
                                          (data.compas, "compas-scores-two-years.csv"),
                                          (data.german, "german.data")])
def test_missing_file_names_the_file_and_its_source(tmp_path, loader, name):
  with pytest.raises(FileNotFoundError, match=rf"{name} not found\. Download it from http"):
    loader(str(tmp_path))


def test_unknown_protected_attribute(tmp_path):
  with pytest.raises(ValueError, match=r"protected: expected one of \['race', 'sex'\], got 'age'"):
    data.adult(str(tmp_path), protected="age")
  with pytest.raises(ValueError, match="protected: expected 'sex' or 'race'"):
    data.census(200, protected="religion")


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
  with pytest.raises(ValueError, match="fractions"):
    data.table_benchmark(t, fractions=(0.5, 0.5))
