"""Tiny files in the real formats of the datasets the loaders read (tests build them; nothing
is downloaded)."""

import io
import os
import zipfile

import numpy as np
from PIL import Image

RNG = np.random.default_rng(0)


def pick(options, n):
  return [options[i] for i in RNG.integers(0, len(options), n)]


def write_adult(folder, n=60):
  def rows(n, label_suffix):
    cols = [
        [str(v) for v in RNG.integers(17, 80, n)],
        pick(["Private", "State-gov", "Self-emp-inc", "?"], n),
        [str(v) for v in RNG.integers(20000, 300000, n)],
        pick(["Bachelors", "HS-grad", "Masters"], n),
        [str(v) for v in RNG.integers(1, 16, n)],
        pick(["Never-married", "Married-civ-spouse", "Divorced"], n),
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
  cols = [[str(v) for v in RNG.integers(18, 90, n)],
          q(pick(["admin.", "blue-collar", "unknown"], n)), q(pick(["married", "single"], n)),
          q(pick(["basic.4y", "university.degree", "unknown"], n)),
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
        "c_charge_desc": pick(["Battery", "Grand Theft in the 3rd Degree",
                               "arrest case no charge"], 1)[0],
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


SOUTH_GERMAN_HEADER = ("laufkont laufzeit moral verw hoehe sparkont beszeit rate famges buerge "
                       "wohnzeit verm alter weitkred wohn bishkred beruf pers telef gastarb kredit")


def write_south_german(folder, n=200):
  """Groemping's ``SouthGermanCredit.asc``: a header of German names, integer codes."""
  ranges = {"laufkont": (1, 4), "laufzeit": (4, 72), "moral": (0, 4), "verw": (0, 10),
            "hoehe": (250, 18000), "sparkont": (1, 5), "beszeit": (1, 5), "rate": (1, 4),
            "famges": (1, 4), "buerge": (1, 3), "wohnzeit": (1, 4), "verm": (1, 4),
            "alter": (19, 75), "weitkred": (1, 3), "wohn": (1, 3), "bishkred": (1, 4),
            "beruf": (1, 4), "pers": (1, 2), "telef": (1, 2), "gastarb": (1, 2), "kredit": (0, 1)}
  cols = [[str(v) for v in RNG.integers(lo, hi + 1, n)] for lo, hi in ranges.values()]
  with open(os.path.join(folder, "SouthGermanCredit.asc"), "w") as f:
    f.write(SOUTH_GERMAN_HEADER + "\n" + "\n".join(" ".join(r) for r in zip(*cols)) + "\n")


ATTRS = ("5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
         "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses "
         "Goatee Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache "
         "Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks "
         "Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick "
         "Wearing_Necklace Wearing_Necktie Young").split()
N = 48


def write_raw_celeba(folder: str, n: int = N) -> dict:
  """The five original CelebA files for n images; returns the attribute table written."""
  rng = np.random.default_rng(0)
  names = [f"{i + 1:06d}.jpg" for i in range(n)]
  attrs = rng.choice([-1, 1], size=(n, len(ATTRS)))
  smile, tie = ATTRS.index("Smiling"), ATTRS.index("Wearing_Necktie")
  attrs[:, smile] = np.tile([1, -1, 1, -1], n // 4)      # every (tie, smile) cell is populated
  attrs[:, tie] = np.repeat([1, -1], n // 2)
  with zipfile.ZipFile(os.path.join(folder, "img_align_celeba.zip"), "w") as z:
    for i, name in enumerate(names):
      img = np.full((218, 178, 3), (i * 5) % 255, np.uint8)
      buf = io.BytesIO()
      Image.fromarray(img).save(buf, format="JPEG", quality=95)
      z.writestr(f"img_align_celeba/{name}", buf.getvalue())
  with open(os.path.join(folder, "list_attr_celeba.txt"), "w") as f:
    f.write(f"{n}\n" + " ".join(ATTRS) + "\n")
    f.writelines(f"{name} " + " ".join(f"{v:2d}" for v in row) + "\n"
                 for name, row in zip(names, attrs))
  with open(os.path.join(folder, "list_eval_partition.txt"), "w") as f:
    f.writelines(f"{name} {i % 3}\n" for i, name in enumerate(names))
  marks = ("lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y "
           "rightmouth_x rightmouth_y")
  with open(os.path.join(folder, "list_landmarks_align_celeba.txt"), "w") as f:
    f.write(f"{n}\n{marks}\n")
    f.writelines(f"{name}    69  109  106  113   77  142   73  152  108  154\n" for name in names)
  with open(os.path.join(folder, "identity_CelebA.txt"), "w") as f:
    f.writelines(f"{name} {i + 1}\n" for i, name in enumerate(names))     # unique, to match records
  return {"names": names, "attrs": attrs}
