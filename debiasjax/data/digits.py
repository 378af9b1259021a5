"""Biased digits: ten procedural digit classes whose background colour gives the class away.

Bahng et al.'s Biased-MNIST protocol (ICML 2020, ``clovaai/rebias``) on digits drawn here, so
nothing is downloaded. Each 28x28 RGB image shows a white digit stroked from a built-in
polyline font (one glyph per class) under a random affine map (rotation +-15 deg, scale
0.8-1.1, shear +-10 deg, translation +-3 px), a random stroke width and a smooth random warp,
on a background painted with one of Bahng's ten colours. Within each class the first
``int(n * rho)`` images (after a shuffle) take the class's own colour and the rest are split
into nine chunks of ``ceil((n - int(n rho)) / 9)``, one per other colour in a shuffled order,
exactly as the reference generator does: at ``rho = 0.99`` one image in a hundred conflicts
with the bias. The unbiased test uses ``rho = 0.1`` (colours independent of the class), the
biased test ``rho = 1``.

``group`` holds each image's colour index (the bias label, 0..9); methods that must not read it
get the benchmark without it (:func:`hide_bias`).

Example:
  bench = biased_digits(rho=0.99, n_train=10000, n_test=2000, seed=0)
  bench.train.x.shape        # (10000, 28, 28, 3), float32 in [0, 1]
  bench.train.group[:5]      # background colours; equal to bench.train.y on 99 % of images
"""

from __future__ import annotations

import numpy as np

from debiasjax._checks import check_int
from debiasjax.data.dataset import Benchmark, Split

# Bahng et al.'s colour map (RGB), colour c is the bias of class c.
COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [225, 225, 0], [225, 0, 225],
                    [0, 255, 255], [255, 128, 0], [255, 0, 128], [128, 0, 255],
                    [128, 128, 128]], np.float32) / 255.0
RHOS = (0.99, 0.995, 0.997, 0.999)
SIZE = 28

# One polyline glyph per digit in a unit box (x right, y down); a glyph is one or two strokes.
_GLYPHS = {
    0: [[(.25, 0), (.75, 0), (1, .2), (1, .8), (.75, 1), (.25, 1), (0, .8), (0, .2), (.25, 0)]],
    1: [[(.25, .2), (.55, 0), (.55, 1)], [(.25, 1), (.85, 1)]],
    2: [[(0, .2), (.2, 0), (.8, 0), (1, .2), (1, .4), (0, 1), (1, 1)]],
    3: [[(0, 0), (1, 0), (.45, .42), (.8, .45), (1, .65), (1, .85), (.8, 1), (.2, 1), (0, .85)]],
    4: [[(.75, 1), (.75, 0), (0, .7), (1, .7)]],
    5: [[(1, 0), (0, 0), (0, .45), (.75, .42), (1, .62), (1, .85), (.8, 1), (0, 1)]],
    6: [[(.9, 0), (.35, 0), (0, .4), (0, .85), (.2, 1), (.8, 1), (1, .85), (1, .62), (.8, .47),
         (.2, .47), (0, .6)]],
    7: [[(0, 0), (1, 0), (.35, 1)], [(.3, .5), (.8, .5)]],
    8: [[(.2, 0), (.8, 0), (.95, .2), (.8, .45), (.2, .45), (.05, .2), (.2, 0)],
        [(.2, .45), (0, .7), (.2, 1), (.8, 1), (1, .7), (.8, .45)]],
    9: [[(1, .53), (.8, .53), (.2, .53), (0, .38), (0, .15), (.2, 0), (.8, 0), (1, .15), (1, .6),
         (.65, 1), (.1, 1)]],
}


def _segments() -> list:
  """Per class, the [S, 2, 2] end points of its glyph's segments."""
  return [np.asarray([(a, b) for stroke in _GLYPHS[digit] for a, b in zip(stroke[:-1], stroke[1:])],
                     np.float32) for digit in range(10)]


_SEGMENTS = _segments()
_CHUNK = 128


def render_digits(digits, colours, *, seed: int = 0) -> np.ndarray:
  """Images [N, 28, 28, 3] in [0, 1] of ``digits`` (0..9) on backgrounds of ``colours``
  (0..9, :data:`COLOURS`), deterministic in ``seed``.

  Every pixel's centre is mapped back through the image's random affine map and warp into the
  glyph's unit box and painted white by its distance to the nearest stroke (anti-aliased over
  half a pixel); the stroke half-width is drawn per image between 1.1 and 2.1 pixels.
  """
  digits, colours = np.asarray(digits), np.asarray(colours)
  if digits.ndim != 1 or digits.shape != colours.shape:
    raise ValueError(f"digits, colours: expected two vectors of one length, got {digits.shape} "
                     f"and {colours.shape}")
  for name, v in (("digits", digits), ("colours", colours)):
    if v.size and (not np.issubdtype(v.dtype, np.integer) or v.min() < 0 or v.max() > 9):
      raise ValueError(f"{name}: expected integers in 0..9, got values in "
                       f"[{v.min()}, {v.max()}] of dtype {v.dtype}")
  rng = np.random.default_rng(seed)
  n = digits.size
  u = lambda lo, hi: rng.uniform(lo, hi, n).astype(np.float32)
  angle, shear = np.deg2rad(u(-15, 15)), np.deg2rad(u(-10, 10))
  scale = u(0.8, 1.1)
  shift = rng.uniform(-3, 3, (n, 2)).astype(np.float32)
  width = u(1.1, 2.1)
  warp_amp, warp_freq = u(0.0, 0.8), u(0.15, 0.35)
  warp_phase = rng.uniform(0, 2 * np.pi, (n, 2)).astype(np.float32)
  centre = (SIZE - 1) / 2
  out = np.empty((n, SIZE, SIZE, 3), np.float32)
  grid = np.stack(np.meshgrid(np.arange(SIZE), np.arange(SIZE), indexing="xy"), -1)
  grid = grid.reshape(-1, 2).astype(np.float32)                         # (x, y) per pixel
  for digit in range(10):                    # one glyph, hence one number of segments, at a time
    seg = _SEGMENTS[digit][None, None]                                  # [1, 1, S, 2, 2]
    a, ab = seg[..., 0, :], seg[..., 1, :] - seg[..., 0, :]
    length2 = np.maximum((ab * ab).sum(-1), 1e-9)
    mine = np.flatnonzero(digits == digit)
    for start in range(0, mine.size, _CHUNK):
      sl = mine[start:start + _CHUNK]
      p = grid[None] - centre - shift[sl, None]                         # [B, P, 2]
      # A smooth warp: each coordinate displaced by a sinusoid of the other.
      p = p + warp_amp[sl, None, None] * np.sin(
          warp_freq[sl, None, None] * p[..., ::-1] + warp_phase[sl, None])
      cos, sin = np.cos(-angle[sl]), np.sin(-angle[sl])
      x = (cos[:, None] * p[..., 0] - sin[:, None] * p[..., 1]) / scale[sl, None]
      y = (sin[:, None] * p[..., 0] + cos[:, None] * p[..., 1]) / scale[sl, None]
      x = x - np.tan(shear[sl])[:, None] * y
      # The glyph's unit box spans 11 x 17 px at scale 1, centred.
      q = np.stack([x / 11.0 + 0.5, y / 17.0 + 0.5], -1)[:, :, None]    # [B, P, 1, 2]
      t = np.clip(((q - a) * ab).sum(-1) / length2, 0, 1)
      d = q - (a + t[..., None] * ab)                                   # in glyph units
      dist = np.sqrt((np.square(d[..., 0] * 11.0) + np.square(d[..., 1] * 17.0)).min(-1))
      ink = np.clip(width[sl, None] - dist + 0.5, 0, 1).reshape(-1, SIZE, SIZE, 1)
      out[sl] = ink + (1 - ink) * COLOURS[colours[sl]][:, None, None]
  return out


def bias_colours(digits, rho: float, rng: np.random.Generator) -> np.ndarray:
  """Background colours of ``digits`` at bias ``rho``, Bahng et al.'s assignment: per class, a
  shuffle; the first ``int(n * rho)`` take the class colour; the rest, in nine chunks of
  ``ceil((n - int(n rho)) / 9)``, the other colours (``class + 1 .. class + 9`` mod 10) in a
  shuffled order."""
  digits = np.asarray(digits)
  colours = np.empty_like(digits)
  for c in range(10):
    idx = rng.permutation(np.flatnonzero(digits == c))
    aligned = int(len(idx) * rho)
    colours[idx[:aligned]] = c
    rest = idx[aligned:]
    chunk = -(-len(rest) // 9) if len(rest) else 0
    others = (c + 1 + rng.permutation(9)) % 10
    for k, colour in enumerate(others):
      colours[rest[k * chunk:(k + 1) * chunk]] = colour
  return colours


def digits_split(n: int, rho: float, *, seed: int = 0) -> Split:
  """``n`` biased digits (classes as equal as ``n`` allows, in random order) at bias ``rho``:
  ``x`` images, ``y`` the digit, ``group`` the background colour."""
  check_int("n", n, 10)
  if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not 0 <= rho <= 1:
    raise ValueError(f"rho: expected a number in [0, 1], got {rho!r}")
  label_ss, image_ss = np.random.SeedSequence(seed).spawn(2)
  rng = np.random.default_rng(label_ss)
  digits = rng.permutation(np.arange(n) % 10).astype(np.int32)
  colours = bias_colours(digits, float(rho), rng).astype(np.int32)
  x = render_digits(digits, colours, seed=int(image_ss.generate_state(1)[0]))
  return Split(x, digits, colours)


def biased_digits(*, rho: float = 0.99, n_train: int = 10000, n_debias: int = 2000,
                  n_test: int = 2000, seed: int = 0) -> Benchmark:
  """The benchmark: ``train`` and ``debias`` (a held-out part of the training distribution,
  what post-hoc methods fit on) at bias ``rho``, ``test`` unbiased (``rho = 0.1``). The
  biased test (``rho = 1``) is ``digits_split(n_test, 1.0, seed=info["biased_test_seed"])``.
  """
  seeds = np.random.SeedSequence(seed).generate_state(4)
  splits = {name: digits_split(n, r, seed=int(s)) for (name, n, r), s in
            zip((("train", n_train, rho), ("debias", n_debias, rho), ("test", n_test, 0.1)),
                seeds)}
  info = {"name": "biased_digits", "target": "digit", "protected": "background colour",
          "classes": 10, "groups": [f"colour {c}" for c in range(10)], "privileged": None,
          "rho": rho, "seed": seed, "biased_test_seed": int(seeds[3]),
          "conflicting": {name: int((s.y != s.group).sum()) for name, s in splits.items()}}
  return Benchmark(splits["train"], splits["debias"], splits["test"], info)


def hide_bias(split: Split) -> Split:
  """``split`` without its bias labels (``group`` all zeros, ``attributes`` dropped): what an
  unsupervised method is given."""
  return split.replace(group=np.zeros_like(split.group), attributes=None)
