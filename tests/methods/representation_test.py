"""DVGE and its VAE objectives: the perturbation against its formula for each clip, the focus
against hand-computed gradients, FactorVAE's permutation and total-correlation estimate on a
Gaussian with a known answer, the ELBO's terms, and the vmapped η sweep against the loop."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from debiasjax import models, train
from debiasjax.methods import representation as dvge
from debiasjax.models import vae as V


def test_clip_options_against_the_formulas():
  v = jnp.array([-2.0, -0.5, 0.3, 0.5, 1.7])
  eps = 0.5
  np.testing.assert_allclose(dvge.clip_perturbation(v, eps, "symmetric"),
                             [-0.5, -0.5, 0.3, 0.5, 0.5])
  # the seed's formula: v if v > ε, else max(v, −ε): bounded from below only
  np.testing.assert_allclose(dvge.clip_perturbation(v, eps, "literal"),
                             [-0.5, -0.5, 0.3, 0.5, 1.7])
  np.testing.assert_allclose(dvge.clip_perturbation(v, eps, "none"), v)
  with pytest.raises(ValueError, match="clip"):
    dvge.clip_perturbation(v, eps, "both")


@pytest.mark.parametrize("clip,expected", [
    ("symmetric", [1.2, -1.2, 0.58]),     # v clipped to [-0.2, 0.2]
    ("literal", [1.3, -1.2, 0.58]),       # 0.3 > ε kept; -0.5 -> max(-0.5, -0.2)
    ("none", [1.3, -1.5, 0.58])])
def test_perturbation_by_hand(clip, expected):
  z = jnp.array([[1.0, -1.0, 0.5]])
  f_sens = jnp.array([[1.0, -1.0, 0.2]])
  f_task = jnp.array([[0.5, 0.5, 0.0]])
  # η1 F_sens − η2 F_task with η1 = 0.4, η2 = 0.2 is v = [0.3, -0.5, 0.08]; ε = 0.2
  out = dvge.perturb(z, f_sens, f_task, eta1=0.4, eta2=0.2, epsilon=0.2, clip=clip)
  np.testing.assert_allclose(out[0], expected, atol=1e-6)


def test_unit_step_by_hand():
  """step="unit": each focus scaled to unit length per row before the η weights and the clip."""
  z = jnp.array([[1.0, -1.0], [0.0, 0.0]])
  f_sens = jnp.array([[3.0, 4.0], [0.0, 0.0]])        # norms 5 and 0 (a zero row stays zero)
  f_task = jnp.array([[0.0, 2.0], [1.0, 0.0]])
  out = dvge.perturb(z, f_sens, f_task, eta1=0.5, eta2=0.1, epsilon=0.35, clip="symmetric",
                     unit=True)
  # 0.5 [0.6, 0.8] - 0.1 [0, 1] = [0.3, 0.3]; 0.5 [0, 0] - 0.1 [1, 0] = [-0.1, 0]
  np.testing.assert_allclose(out, [[1.3, -0.7], [-0.1, 0.0]], atol=1e-6)
  np.testing.assert_allclose(dvge.unit_rows(f_sens, False), f_sens)


def test_focus_is_the_predicted_logit_gradient():
  w = jnp.array([[1.0, -2.0], [0.5, 3.0], [-1.0, 0.0]])
  z = jnp.array([[1.0, 0.0, 0.0],      # logits [1, -2]: class 0
                 [0.0, 1.0, 0.0]])     # logits [0.5, 3]: class 1
  f = dvge.focus(lambda z: z @ w, z)
  np.testing.assert_allclose(f, np.stack([w[:, 0], w[:, 1]]))
  # nonlinear: logits = [sum z², sum z] → class 0 for |z| large, gradient 2z
  f = dvge.focus(lambda z: jnp.stack([jnp.sum(z ** 2, -1), jnp.sum(z, -1)], -1),
                 jnp.array([[2.0, 1.0], [0.1, 0.2]]))
  np.testing.assert_allclose(f, [[4.0, 2.0], [1.0, 1.0]])


def test_permute_dims_keeps_marginals_and_breaks_dependence():
  rng = np.random.default_rng(0)
  a = rng.normal(size=4096)
  z = jnp.asarray(np.stack([a, a, -a], axis=1), jnp.float32)     # perfectly dependent
  p = dvge.permute_dims(jax.random.key(0), z)
  np.testing.assert_array_equal(np.sort(p, axis=0), np.sort(z, axis=0))   # same marginals
  c = np.corrcoef(np.asarray(p).T)
  assert np.all(np.abs(c[np.triu_indices(3, 1)]) < 0.06), c
  assert not np.array_equal(p[:, 0], z[:, 0])


def test_kl_and_reconstruction_terms():
  mu = jnp.array([[0.0, 0.0], [1.0, -2.0]])
  logvar = jnp.array([[0.0, 0.0], [np.log(2.0), 0.0]])
  # row 1: ½(1 + 2 − log 2 − 1) + ½(4) = 1 − ½log2 + 2; row 0: 0
  np.testing.assert_allclose(dvge.kl_divergence(mu, logvar), (3 - 0.5 * np.log(2)) / 2, rtol=1e-6)
  # Monte Carlo check of the same KL: E_q[log q(z) − log p(z)]
  key = jax.random.key(1)
  m, lv = jnp.array([[0.7, -0.3]]), jnp.array([[-0.5, 0.4]])
  z = m + jnp.exp(0.5 * lv) * jax.random.normal(key, (200_000, 2))
  log_q = -0.5 * jnp.sum((z - m) ** 2 / jnp.exp(lv) + lv, -1)
  log_p = -0.5 * jnp.sum(z ** 2, -1)
  np.testing.assert_allclose(jnp.mean(log_q - log_p), dvge.kl_divergence(m, lv),
                             atol=1e-2)
  logits = jnp.array([[[0.3, -1.0], [2.0, 0.0]]])
  x = jnp.array([[[1.0, 0.0], [0.25, 1.0]]])
  s = jax.nn.sigmoid(logits)
  bce = -jnp.sum(x * jnp.log(s) + (1 - x) * jnp.log(1 - s))
  np.testing.assert_allclose(dvge.reconstruction_loss("bernoulli", logits, x), bce, rtol=1e-6)
  np.testing.assert_allclose(dvge.reconstruction_loss("gaussian", logits, x),
                             0.5 * jnp.sum((x - logits) ** 2), rtol=1e-6)
  # learnt variances: the Gaussian negative log-likelihood less ½ log 2π per value
  mean, logvar = jnp.array([[0.5, -1.0]]), jnp.array([np.log(0.25), 0.0])
  value = jnp.array([[1.0, 0.0]])
  want = 0.5 * ((0.5 ** 2) / 0.25 + np.log(0.25)) + 0.5 * 1.0
  np.testing.assert_allclose(dvge.reconstruction_loss("gaussian", (mean, logvar), value), want,
                             rtol=1e-6)


def _critic_tc(rho: float) -> float:
  """The critic's TC estimate after training on a bivariate Gaussian of correlation rho."""
  rng = np.random.default_rng(0)
  cov = np.array([[1.0, rho], [rho, 1.0]])
  z = jnp.asarray(rng.multivariate_normal([0, 0], cov, size=8192), jnp.float32)
  critic = V.Discriminator(layers=2, width=64)
  params = critic.init(jax.random.key(0), z[:1])["params"]
  tx = optax.adam(3e-3)
  opt = tx.init(params)

  def step(params, opt, key):
    k1, k2 = jax.random.split(key)
    idx = jax.random.choice(k1, z.shape[0], (256,), replace=False)
    codes = z[idx]
    fake = dvge.permute_dims(k2, codes)

    def loss(p):
      zeros = jnp.zeros(256, jnp.int32)
      return 0.5 * (train.weighted_cross_entropy(critic.apply({"params": p}, codes), zeros)
                    + train.weighted_cross_entropy(critic.apply({"params": p}, fake), zeros + 1))

    g = jax.grad(loss)(params)
    u, opt = tx.update(g, opt, params)
    return optax.apply_updates(params, u), opt

  params, opt = jax.jit(lambda p, o: jax.lax.fori_loop(
      0, 800, lambda i, po: step(*po, jax.random.key(i)), (p, o)))(params, opt)
  return float(dvge.total_correlation(critic.apply({"params": params}, z)))


def test_total_correlation_estimate_on_a_gaussian():
  # TC of a bivariate Gaussian = −½ log(1 − ρ²): 0 for ρ = 0, 0.830 for ρ = 0.9
  independent, correlated = _critic_tc(0.0), _critic_tc(0.9)
  assert abs(independent) < 0.05, independent
  assert correlated == pytest.approx(-0.5 * np.log(1 - 0.81), abs=0.12), correlated


@pytest.mark.parametrize("kind", dvge.KINDS)
def test_vae_trainer_lowers_the_loss(kind):
  rng = np.random.default_rng(0)
  x = (rng.uniform(size=(64, 16, 16, 3)) > 0.5).astype(np.float32)
  x[:, :8] = 1.0                                              # structure to learn
  vae = V.conv_vae(latents=4, side=16, channels=(8, 8), hidden=16)
  key = jax.random.key(0)
  trainer = dvge.vae_trainer(vae, kind=kind, learning_rate=3e-3,
                             critic=V.Discriminator(layers=1, width=16))
  state = trainer.init(key, vae.init(key, x[:1], key))
  state, history = train.fit(trainer, state, {"x": x}, key=key, num_steps=30, batch_size=32,
                             history=True)
  assert history["loss"][-5:].mean() < history["loss"][:5].mean()
  assert ("tc" in history) == (kind == "factor")
  z = dvge.encode(vae, train.variables_of(state), x, batch_size=24)
  assert z.shape == (64, 4)


def test_conv_vae_shapes_and_bad_sides():
  key = jax.random.key(0)
  vae = V.conv_vae()                                        # the paper's 64×64, z = 10
  x = jnp.zeros((2, 64, 64, 3))
  variables = jax.eval_shape(vae.init, key, x, key)          # shapes only: nothing compiled
  decoded, mu, logvar, z = jax.eval_shape(vae.apply, variables, x, key)
  assert decoded.shape == x.shape and mu.shape == logvar.shape == z.shape == (2, 10)
  convs = [k for k in variables["params"]["encoder"]]
  assert len(convs) == 6                                    # 4 × 4x4/2, 4x4 → 256, 1x1 → 2z
  with pytest.raises(ValueError, match="side"):
    V.conv_vae(side=48)
  tab = V.mlp_vae(7, latents=3)
  v = tab.init(key, jnp.zeros((1, 7)), key)
  mean, logvar = tab.apply(v, jnp.zeros((5, 7)), key)[0]
  assert mean.shape == (5, 7) and logvar.shape == (7,)


def _latent_task(n=256, seed=0):
  rng = np.random.default_rng(seed)
  z = rng.normal(size=(n, 4)).astype(np.float32)
  s = (z[:, 0] + 0.3 * rng.normal(size=n) > 0).astype(np.int32)
  y = (z[:, 0] + z[:, 1] > 0).astype(np.int32)
  return z, s, y


def test_eta_sweep_vmapped_equals_the_loop():
  z, s, y = _latent_task()
  mlp = models.MLP(num_layers=2, width=16, dropout=0.0, batch_norm=False)
  key = jax.random.key(0)
  d_vars = mlp.init(key, z[:1])
  sup = train.supervised(mlp, optax.adam(1e-2))
  d_state = train.fit(sup, sup.init(key, d_vars), {"x": z, "y": s}, key=key, num_steps=40,
                      batch_size=64)
  d_vars = train.variables_of(d_state)
  g_vars = mlp.init(jax.random.key(1), z[:1])
  # η, the direction and the step are state: one trainer's update sweeps them all
  etas = [(0.0, 0.0, "toward", "gradient"), (0.5, 0.4, "toward", "gradient"),
          (2.0, 0.1, "away", "gradient"), (0.5, 0.4, "toward", "unit")]
  trainers = [dvge.dvge_trainer(mlp, mlp, d_vars, eta1=a, eta2=b, learning_rate=1e-2,
                                epsilon=0.5, sensitive_direction=d, step=u)
              for a, b, d, u in etas]
  loop = [train.fit(t, t.init(key, g_vars), {"x": z, "y": y}, key=key, num_steps=20,
                    batch_size=32) for t in trainers]
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *[t.init(key, g_vars) for t in trainers])
  swept = train.fit(trainers[0], stacked, {"x": z, "y": y}, key=jnp.stack([key] * 4),
                    num_steps=20, batch_size=32, stacked=True, seed=[0] * 4)
  for i, one in enumerate(loop):
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(swept.params)):
      np.testing.assert_allclose(a, b[i], atol=1e-5)
  # η and the step matter: the runs differ
  first = [jax.tree.leaves(one.params)[0] for one in loop]
  assert not np.allclose(first[0], first[1]) and not np.allclose(first[1], first[3])


def test_bad_options():
  mlp = models.MLP(num_layers=1, width=4, dropout=0.0, batch_norm=False)
  with pytest.raises(ValueError, match="eta1"):
    dvge.dvge_trainer(mlp, mlp, {}, eta1=-1.0)
  with pytest.raises(ValueError, match="clip"):
    dvge.dvge_trainer(mlp, mlp, {}, clip="upper")
  with pytest.raises(ValueError, match="step: expected one of"):
    dvge.dvge_trainer(mlp, mlp, {}, step="normalised")
  with pytest.raises(ValueError, match="kind"):
    dvge.vae_trainer(V.mlp_vae(3), kind="ffvae")


def test_sub_pixel_transposed_convolution_equals_the_dilated_form():
  from debiasjax.models import layers
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 5, 3, 4)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(4, 4, 4, 6)), jnp.float32)
  # PyTorch's ConvTranspose2d(k=4, s=2, p=1): a conv of the 2-dilated input with the flipped
  # kernel and padding k - 1 - p = 2
  want = jax.lax.conv_general_dilated(x, w[::-1, ::-1], (1, 1), ((2, 2), (2, 2)),
                                      lhs_dilation=(2, 2),
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  got = layers.conv_transpose_2x(x, w)
  assert got.shape == (2, 10, 6, 6)
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_gradient_reversal():
  g = jax.grad(lambda x: jnp.sum(3.0 * dvge.reverse_gradient(x, 0.5)))(jnp.ones(3))
  np.testing.assert_allclose(g, [-1.5] * 3)
  np.testing.assert_allclose(dvge.reverse_gradient(jnp.arange(3.0), 2.0), [0.0, 1.0, 2.0])


def test_probes_vmapped_equal_one_by_one_and_find_the_information():
  z, s, _ = _latent_task(n=512)
  mlp = dvge.latent_classifier(layers=1, width=16)
  key = jax.random.key(0)
  sets = np.stack([z, np.zeros_like(z) + z[:, 3:4]])            # s readable / not readable
  best, per_epoch = dvge.probe_accuracy(mlp, sets[:, :384], s[:384], sets[:, 384:], s[384:],
                                        key=key, epochs=30)
  assert per_epoch.shape == (30, 2)
  one, _ = dvge.probe_accuracy(mlp, sets[1:, :384], s[:384], sets[1:, 384:], s[384:], key=key,
                               epochs=30)
  np.testing.assert_allclose(best[1], one[0], atol=1e-6)
  assert best[0] > 0.8 and best[1] < 0.65, best


def test_dvge_in_debias_is_one_module_explained_and_saved(tmp_path):
  from debiasjax import data, explain, saved
  from debiasjax.debias import debias
  bench = data.faces_benchmark(n_train=16, n_debias=64, n_test=32, image_size=16)
  key = jax.random.key(0)
  model = models.MLP(num_layers=1, width=8)
  variables = model.init(key, bench.train.x[:1])
  method = dvge.dvge(latents=3, vae_epochs=2, sensitive_epochs=2, task_epochs=2,
                     classifier_layers=1, classifier_width=8, batch_size=16)
  result = debias(model, variables, bench, methods={"DVGE": method})
  assert [r["method"] for r in result.rows] == ["Vanilla", "DVGE"]
  d = result.debiased["DVGE"]
  # the model is g(μ(x)): the encoder's means through the task classifier
  encoder = V.ConvEncoder(latents=3, channels=(32, 32, 64, 64))
  mu, _ = encoder.apply({"params": d.variables["params"]["encoder"]}, bench.test.x)
  g = dvge.latent_classifier(layers=1, width=8)
  np.testing.assert_allclose(d.apply_fn(d.variables, bench.test.x),
                             g.apply({"params": d.variables["params"]["classifier"]}, mu),
                             atol=1e-5)
  relevance = explain.lrp(d.apply_fn, d.variables, bench.test.x[:4], bench.test.y[:4])
  assert relevance.shape == (4, 16, 16, 3) and np.all(np.isfinite(relevance))
  path = saved.save_debiased(str(tmp_path / "dvge"), d, bench.test.x[:1])
  back = saved.load_debiased(path)
  np.testing.assert_allclose(back.scores(bench.test.x),
                             jax.nn.softmax(d.apply_fn(d.variables, bench.test.x))[:, 1],
                             atol=1e-5)


def test_sensitive_direction_flips_the_sensitive_push():
  z, s, y = _latent_task(n=128)
  mlp = models.MLP(num_layers=1, width=8, dropout=0.0, batch_norm=False)
  key = jax.random.key(0)
  d_vars = mlp.init(key, z[:1])
  g_vars = mlp.init(jax.random.key(1), z[:1])
  batch = {"x": jnp.asarray(z[:16]), "y": jnp.asarray(y[:16])}
  f_sens = dvge.focus(lambda v: mlp.apply(d_vars, v), batch["x"])
  shifts = {}
  for direction in dvge.DIRECTIONS:
    t = dvge.dvge_trainer(mlp, mlp, d_vars, eta1=0.3, eta2=0.0, clip="none",
                          sensitive_direction=direction)
    state = t.init(key, g_vars)
    assert float(state.eta1) == pytest.approx(0.3 if direction == "toward" else -0.3)
    shifts[direction] = dvge.perturb(batch["x"], f_sens, 0 * f_sens, eta1=state.eta1,
                                     eta2=state.eta2, clip="none") - batch["x"]
  np.testing.assert_allclose(shifts["toward"], 0.3 * f_sens, atol=1e-6)
  np.testing.assert_allclose(shifts["away"], -shifts["toward"], atol=1e-6)
  # toward raises d's logit of its own prediction, away lowers it
  pick = jnp.argmax(mlp.apply(d_vars, batch["x"]), -1)
  own = lambda v: jnp.take_along_axis(mlp.apply(d_vars, v), pick[:, None], -1)[:, 0]
  assert jnp.all(own(batch["x"] + shifts["toward"]) >= own(batch["x"]) - 1e-6)
  assert jnp.all(own(batch["x"] + shifts["away"]) <= own(batch["x"]) + 1e-6)
  with pytest.raises(ValueError, match="sensitive_direction"):
    dvge.dvge_trainer(mlp, mlp, d_vars, sensitive_direction="up")
