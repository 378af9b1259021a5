"""Procedural faces: a smile to predict and an accessory that gives the protected group away.

Each RGB image shows a simple face on a shirt. The *target* is visible in the face: a smile
intensity bends the mouth up, widens it and, for a clear smile, opens it to show teeth. As with
CelebA's ``Smiling`` the cue is ambiguous: the intensity is drawn from two overlapping
distributions, so the face alone predicts the label with about 90 % accuracy
(``smile_strength`` scales how visible the smile is; at 1, trained on a split where the
accessory and the smile always coincide, a small ResNet learns little but the accessory). The
*protected attribute* is a localised, unambiguous accessory: a necktie below the face
(``accessory="tie"``) or a hat on the head (``accessory="hat"``). With a training
correlation of phi = 0.8 the accessory predicts the label as well as the face does, and a
classifier trained on such data leans on it: the shortcut the debiasing methods must remove.
With ``accessory="tie+hat"`` a face may wear both, two protected attributes each at its own phi
(seed 003's multiple sensitive attributes); the group is their conjunction.

Nuisance variation (background, skin and shirt colours, face position and size, eye and mouth
geometry, accessory colour and stripes, pixel noise) makes both cues require learning. Every
image carries its accessory's region of interest (ROI) box, also for images without the
accessory (the box where it would be), as saliency metrics need. Images are rendered in
resolution-independent coordinates, so any size works; the same seed gives the same images.

Example:
  bench = faces_benchmark(phi=0.8, n_train=3000, n_debias=2000, n_test=2000, seed=0)
  bench.train.x.shape   # (3000, 64, 64, 3), float32 in [0, 1]
  bench.train.roi[0]    # (y0, x0, y1, x1) of the tie region
"""

from __future__ import annotations

import numpy as np

from debiasjax.data.dataset import Benchmark, Split, conjoined, conjunction
from debiasjax._checks import binary_vector, check_phi
from debiasjax.data.splits import cell_counts, cell_proportions, rounded_counts, split_report

ACCESSORIES = ("tie", "hat")
_SKIN = np.array([[0.96, 0.80, 0.69], [0.87, 0.67, 0.53], [0.76, 0.57, 0.42],
                  [0.55, 0.38, 0.26], [0.40, 0.27, 0.18], [0.98, 0.87, 0.77]])
_CHUNK = 256


def _draw_params(rng: np.random.Generator, target: np.ndarray, smile_strength: float) -> dict:
  """Per-image geometry and colours (all in unit image coordinates)."""
  n = target.size
  u = lambda lo, hi: rng.uniform(lo, hi, n)
  rx = u(0.16, 0.21)
  # Smile intensity: overlapping normals, so the face predicts the label ~90 % of the time.
  smile = rng.normal(np.where(target == 1, 0.55, -0.55), 0.45)
  return dict(
      bg=rng.uniform(0.25, 0.95, (n, 3)), bg_slope=u(-0.15, 0.15),
      skin=np.clip(_SKIN[rng.integers(0, len(_SKIN), n)] + rng.normal(0, 0.03, (n, 3)), 0, 1),
      shirt=rng.uniform(0.1, 0.95, (n, 3)), shoulder=u(0.74, 0.80),
      cx=u(0.42, 0.58), cy=u(0.41, 0.47), rx=rx, ry=rx * u(1.15, 1.30),
      eye_dx=u(0.33, 0.45), eye_dy=u(0.12, 0.24), eye_r=u(0.018, 0.026),
      mouth_dy=u(0.42, 0.55), mouth_w=u(0.32, 0.48), mouth_t=u(0.012, 0.018),
      smile=np.clip(smile, -1.5, 1.5) * smile_strength,
      lips=np.clip(np.array([0.62, 0.18, 0.20]) + rng.normal(0, 0.06, (n, 3)), 0, 1),
      acc_color=rng.uniform(0.05, 0.9, (n, 3)), acc_stripes=rng.uniform(0, 1, n) < 0.4,
      acc_width=u(0.035, 0.05), hat_h=u(0.10, 0.15), noise=u(0.01, 0.05),
  )


def _accessory_colours(rng: np.random.Generator, n: int, k: int) -> dict:
  """Colour and stripes of the k-th accessory (k >= 1; the first's are in ``_draw_params``)."""
  return {f"acc_color{k + 1}": rng.uniform(0.05, 0.9, (n, 3)),
          f"acc_stripes{k + 1}": rng.uniform(0, 1, n) < 0.4}


def _render_chunk(p: dict, wears: np.ndarray, accessories: tuple, size: int,
                  noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Images [n, S, S, 3] and ROI boxes [n, K, 4] of ``wears`` [n, K] (one column per accessory)."""
  c = (np.arange(size) + 0.5) / size
  v, u = c[None, :, None], c[None, None, :]                      # rows, columns
  col = lambda k: p[k][:, None, None]
  rgb = lambda k: p[k][:, None, None, :]
  n = wears.shape[0]
  img = np.broadcast_to(rgb("bg") * (1 + col("bg_slope")[..., None] * (v[..., None] - 0.5)),
                        (n, size, size, 3)).copy()
  paint = lambda mask, colour: np.copyto(img, np.broadcast_to(colour, img.shape),
                                         where=mask[..., None])
  cx, cy, rx, ry = col("cx"), col("cy"), col("rx"), col("ry")
  shoulder = col("shoulder")
  body = v > shoulder + 0.35 * ((u - cx) / 0.45) ** 2
  paint(body, rgb("shirt"))
  neck = (np.abs(u - cx) < 0.45 * rx) & (v > cy) & (v < shoulder + 0.02)
  collar = (v >= shoulder - 0.01) & (np.abs(u - cx) < 0.6 * (shoulder + 0.09 - v)) & body
  paint(neck | collar, rgb("skin"))

  def region(accessory):
    """The accessory's pixels and box: the tie hangs from the collar to the bottom edge, the
    hat sits on the head."""
    aw = col("acc_width")
    if accessory == "tie":
      y0, y1 = shoulder + 0.005, np.full_like(shoulder, 0.985)
      depth = (v - y0) / (y1 - y0)
      half = aw * np.where(depth < 0.08, 0.6, np.minimum(1.0, 0.7 + 2.0 * depth))
      half = np.where(depth > 0.9, aw * (1.0 - depth) / 0.1, half)
      return (v >= y0) & (v <= y1) & (np.abs(u - cx) <= half), (y0, cx - aw, y1, cx + aw)
    top = cy - ry - col("hat_h")
    brim = np.abs((v - (cy - 0.8 * ry)) / 0.022) ** 2 + np.abs((u - cx) / (1.35 * rx)) ** 2 <= 1
    crown = (v >= top) & (v <= cy - 0.8 * ry) & (np.abs(u - cx) <= 0.85 * rx)
    return brim | crown, (top, cx - 1.35 * rx, cy - 0.8 * ry + 0.022, cx + 1.35 * rx)

  drawn, boxes = {}, []
  for k, accessory in enumerate(accessories):
    shape, box = region(accessory)
    suffix = "" if k == 0 else str(k + 1)
    stripes = (np.floor((v + u) * 40) % 2 == 0) & col("acc_stripes" + suffix).astype(bool)
    colour = rgb("acc_color" + suffix)
    drawn[accessory] = (shape & wears[:, k, None, None].astype(bool),
                        np.where(stripes[..., None], 0.55 * colour, colour))
    boxes.append(np.stack(box, axis=-1)[:, 0, 0] * size)

  if "tie" in drawn:                   # under the face
    np.copyto(img, drawn["tie"][1], where=drawn["tie"][0][..., None])
  face = ((u - cx) / rx) ** 2 + ((v - cy) / ry) ** 2 <= 1
  paint(face, rgb("skin"))
  for side in (-1, 1):
    ex, ey = cx + side * col("eye_dx") * rx, cy - col("eye_dy") * ry
    r = col("eye_r")
    paint(((u - ex) / (1.5 * r)) ** 2 + ((v - ey) / r) ** 2 <= 1, np.array([0.95, 0.95, 0.95]))
    paint((u - ex) ** 2 + (v - ey) ** 2 <= (0.6 * r) ** 2, np.array([0.08, 0.06, 0.05]))
  nose = (np.abs(u - cx) < 0.012) & (v > cy - 0.05 * ry) & (v < cy + 0.25 * ry)
  paint(nose, 0.8 * rgb("skin"))
  # The mouth shows the smile intensity: corners bend up, the mouth widens and, for a clear
  # smile, opens to show teeth (so the cue survives the 4x downsampling of a ResNet stem).
  smile = col("smile")
  mx, my = cx, cy + col("mouth_dy") * ry
  mw = col("mouth_w") * rx * (1 + 0.25 * np.clip(smile, 0, None))
  bend = 0.03 * smile * (1 - ((u - mx) / mw) ** 2)
  inside = np.abs(u - mx) <= mw
  teeth = inside & (smile > 0.3) & (v > my) & (v < my + bend - col("mouth_t") / 2)
  paint(teeth, np.array([0.97, 0.96, 0.92]))
  mouth = inside & (np.abs(v - (my + bend)) <= col("mouth_t") / 2)
  upper_lip = inside & (smile > 0.3) & (np.abs(v - my) <= col("mouth_t") / 3)
  paint(mouth | upper_lip, rgb("lips"))
  if "hat" in drawn:                   # over the head
    np.copyto(img, drawn["hat"][1], where=drawn["hat"][0][..., None])

  img += noise * col("noise")[..., None]
  box = np.stack(boxes, axis=1)
  roi = np.clip(np.stack([np.floor(box[..., 0]), np.floor(box[..., 1]),
                          np.ceil(box[..., 2]), np.ceil(box[..., 3])], -1), 0, size)
  return np.clip(img, 0, 1).astype(np.float32), roi.astype(np.int32)


def render_faces(target, protected, *, seed: int = 0, image_size: int = 64,
                 accessory: str = "tie",
                 smile_strength: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
  """Renders one face per (target, protected) pair.

  Args:
    target: [N] binary, 1 = smiling.
    protected: [N] binary, 1 = wears the accessory; [N, K] for K accessories.
    seed: images are a deterministic function of the seed and the labels.
    image_size: side of the square images in pixels (>= 16).
    accessory: ``"tie"``, ``"hat"`` or both, ``"tie+hat"`` (each with its own colour).
    smile_strength: scale of the mouth's response to the smile intensity (> 0).

  Returns:
    ``(images, roi)``: float32 [N, S, S, 3] in [0, 1] and int32 boxes (y0, x0, y1, x1), [N, 4]
    for one accessory and [N, K, 4] for K.
  """
  accessories = accessories_of(accessory)
  t = binary_vector("target", target)
  wears = np.asarray(protected)
  wears = wears[:, None] if wears.ndim == 1 and len(accessories) == 1 else wears
  if wears.ndim != 2 or wears.shape[1] != len(accessories):
    raise ValueError(f"protected: expected [N, {len(accessories)}] (a column per accessory of "
                     f"{accessory!r}), got shape {np.shape(protected)}")
  wears = np.stack([binary_vector("protected", w) for w in wears.T], 1)
  if t.size != wears.shape[0]:
    raise ValueError(f"mismatched lengths: target has {t.size}, protected has {wears.shape[0]}")
  if not isinstance(image_size, (int, np.integer)) or image_size < 16:
    raise ValueError(f"image_size: expected an int >= 16, got {image_size!r}")
  if isinstance(smile_strength, bool) \
      or not isinstance(smile_strength, (int, float, np.floating, np.integer)) \
      or not 0 < smile_strength < np.inf:
    raise ValueError(f"smile_strength: expected a positive finite number, got {smile_strength!r}")
  rng = np.random.default_rng(seed)
  params = _draw_params(rng, t, smile_strength)
  for k in range(1, len(accessories)):
    params.update(_accessory_colours(rng, t.size, k))
  images = np.empty((t.size, image_size, image_size, 3), np.float32)
  roi = np.empty((t.size, len(accessories), 4), np.int32)
  for start in range(0, t.size, _CHUNK):
    sl = slice(start, start + _CHUNK)
    noise = rng.standard_normal((min(_CHUNK, t.size - start), image_size, image_size, 3),
                                dtype=np.float32)
    images[sl], roi[sl] = _render_chunk({k: v[sl] for k, v in params.items()}, wears[sl],
                                        accessories, image_size, noise)
  return images, (roi[:, 0] if len(accessories) == 1 else roi)


def accessories_of(accessory: str) -> tuple:
  """The accessories of ``"tie"``, ``"hat"`` or ``"tie+hat"`` (drawn in this order)."""
  return tuple(conjunction(accessory, ACCESSORIES, name="accessory"))


def _labels_for(counts: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  a = np.repeat([0, 0, 1, 1], counts.ravel())
  t = np.repeat([0, 1, 0, 1], counts.ravel())
  order = rng.permutation(a.size)
  return t[order], a[order]


def _joint_labels(n: int, phis, rng: np.random.Generator, *, p_protected: float,
                  p_target: float) -> tuple[np.ndarray, np.ndarray]:
  """``n`` labels (target [n], accessories [n, K]): accessory k at Yule's ``phis[k]`` with the
  target, the accessories independent given the target; cell counts rounded from
  P(t) prod_k P(a_k | t). One accessory keeps the draw of :func:`_labels_for` (the images the
  benchmark has always had)."""
  if len(phis) == 1:
    t, a = _labels_for(cell_counts(n, phis[0], p_protected=p_protected, p_target=p_target), rng)
    return t, a[:, None]
  joint = np.array([1 - p_target, p_target])
  for phi in phis:
    p = cell_proportions(phi, p_protected=p_protected, p_target=p_target)     # [a, t]
    given_t = (p / p.sum(0, keepdims=True)).T                                 # [t, a]
    joint = joint[..., None] * given_t.reshape((2,) + (1,) * (joint.ndim - 1) + (2,))
  counts = rounded_counts(joint, n)
  cells = np.array(list(np.ndindex(*counts.shape)))
  labels = np.repeat(cells, counts.ravel(), axis=0)[rng.permutation(n)]
  return labels[:, 0], labels[:, 1:]


def _per_accessory(value, name: str, k: int) -> tuple:
  values = tuple(value) if isinstance(value, (tuple, list)) else (value,) * k
  if len(values) != k:
    raise ValueError(f"{name}: expected one phi or one per accessory ({k}), got {value!r}")
  return tuple(check_phi(v, name) for v in values)


_PROTECTED_NAME = {"tie": "wears_necktie", "hat": "wears_hat"}


def faces_benchmark(*, phi=0.8, n_train: int = 3000, n_debias: int = 2000,
                    n_test: int = 2000, image_size: int = 64, accessory: str = "tie",
                    seed: int = 0, p_protected: float = 0.5, p_target: float = 0.5,
                    smile_strength: float = 2.0, debias_phi=None) -> Benchmark:
  """The faces benchmark: train and debias at Yule's ``phi``, test balanced over the 4 cells.

  ``smile_strength`` scales the mouth's response to the smile intensity (2 by default: a
  ResNet-18 of width 16 learns both the smile and the accessory; at 1 with ``phi=1`` it learns
  little but the accessory). ``debias_phi`` sets the debias split's phi alone (default
  ``phi``); the train split does not depend on it. Returns a :class:`Benchmark` whose ``info``
  names the attributes, the privileged group (the accessory wearers, who receive the favourable
  label more often when phi > 0) and the split report with each split's counts and achieved phi.

  With ``accessory="tie+hat"`` both accessories are protected attributes, each at its own
  Yule's phi with the smile (``phi`` and ``debias_phi`` take one value or one per accessory),
  independent of each other given the smile; the test split is balanced over the 8 (tie, hat,
  smile) cells. ``group`` is their conjunction (wears both), ``attributes`` [N, 2] and ``roi``
  [N, 2, 4] keep each; ``info["attribute_splits"]`` reports each accessory's achieved phi.
  """
  accessories = accessories_of(accessory)
  k = len(accessories)
  phis = _per_accessory(phi, "phi", k)
  debias_phis = phis if debias_phi is None else _per_accessory(debias_phi, "debias_phi", k)
  for name, n in (("n_train", n_train), ("n_debias", n_debias), ("n_test", n_test)):
    if not isinstance(n, (int, np.integer)) or n < 4:
      raise ValueError(f"{name}: expected an int >= 4, got {n!r}")
  seeds = np.random.SeedSequence(seed).spawn(4)
  label_rng = np.random.default_rng(seeds[3])
  marginals = {"p_protected": p_protected, "p_target": p_target}
  plan = {"train": (n_train, phis, marginals), "debias": (n_debias, debias_phis, marginals),
          "test": (n_test, (0.0,) * k, {"p_protected": 0.5, "p_target": 0.5})}
  splits, labels = {}, {}
  for (name, (n, split_phis, split_marginals)), ss in zip(plan.items(), seeds):
    t, a = _joint_labels(n, split_phis, label_rng, **split_marginals)
    x, roi = render_faces(t, a, seed=int(ss.generate_state(1)[0]), image_size=image_size,
                          accessory=accessory, smile_strength=smile_strength)
    group, attributes = conjoined(a)
    splits[name] = Split(x, t.astype(np.int32), group, roi, attributes)
    labels[name] = (t, a)
  protected = [_PROTECTED_NAME[acc] for acc in accessories]
  info = {
      "name": f"faces-{accessory}", "target": "smiling", "protected": "+".join(protected),
      "groups": ["no " + accessory, accessory] if k == 1 else ["not " + accessory, accessory],
      "privileged": 1 if min(phis) >= 0 else 0,
      "image_size": image_size, "seed": seed,
      "splits": split_report(phis[0] if k == 1 else None, debias_phis[0] if k == 1 else None,
                             **{n: (t, a.all(1)) for n, (t, a) in labels.items()}),
  }
  if k > 1:
    info["attributes"] = protected
    info["attribute_splits"] = {
        attr: split_report(phis[j], debias_phis[j],
                           **{n: (t, a[:, j]) for n, (t, a) in labels.items()})
        for j, attr in enumerate(protected)}
  return Benchmark(splits["train"], splits["debias"], splits["test"], info)
