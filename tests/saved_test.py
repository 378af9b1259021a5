"""Saved debiased models: every method family's model reloads (only JAX needed) and decides as
the in-memory one does."""

import json

import jax
import numpy as np
import pytest

from debiasjax import data, evaluate, methods as dm, models, saved
from debiasjax.debias import debias


def test_every_family_saves_and_reloads_to_the_same_decisions(tmp_path):
  bench = data.table_benchmark(data.census(2000, seed=0), seed=0)
  model = models.MLP(num_layers=2, width=8)
  variables = model.init(jax.random.key(0), bench.train.x[:1])
  result = debias(model, variables, bench, methods={
      "ThrOpt (EO)": dm.threshold_optimizer(constraint="equalized_odds"),
      "ROC": dm.reject_option(), "LEACE": dm.leace(),
      "Random": dm.random_perturbation(num_candidates=4, num_thresholds=51)})
  x, g = bench.test.x, bench.test.group
  for label, d in result.debiased.items():
    folder = str(tmp_path / label)
    saved.save_debiased(folder, d, x[:1], label=label)
    back = saved.load_debiased(folder)
    want_scores = evaluate.predict_scores(d.apply_fn, d.variables, x)
    np.testing.assert_allclose(back.scores(x), want_scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(back.predict(x, g), np.asarray(d.decide(want_scores, g)),
                               atol=1e-5, err_msg=label)
    np.testing.assert_allclose(back.predict(x[:3], g[:3]), back.predict(x, g)[:3], atol=1e-6)
    want, got = saved.flat_variables(d.variables), saved.flat_variables(back.variables)
    assert set(got) == set(want), label
    for name in want:
      np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    meta = json.loads((tmp_path / label / "meta.json").read_text())
    assert meta["label"] == label and meta["input_shape"] == [x.shape[1]]
  assert saved.load_debiased(str(tmp_path / "Random")).meta["threshold"] == pytest.approx(
      float(result.debiased["Random"].state.threshold))
  with pytest.raises(FileExistsError, match="exists"):
    saved.save_debiased(str(tmp_path / "LEACE"), result.debiased["LEACE"], x[:1])
  with pytest.raises(ValueError, match="rows of shape"):
    saved.load_debiased(str(tmp_path / "LEACE")).scores(x[:, :3])
  with pytest.raises(FileNotFoundError, match="not a saved debiased model"):
    saved.load_debiased(str(tmp_path))
