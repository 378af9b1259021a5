"""Progress of long calls: a callback ``progress(task, done, total)`` and a printer with an
estimate of the time left.

The library prints nothing by itself: :func:`~debiasjax.debias.debias`, the weight searches,
fine-tuning and :func:`~debiasjax.explain.saliency_maps` take ``progress=`` and call it after
every unit of work (a method, a chunk of candidates, a generation, a logged training step, a
batch of images) with the units done and the total. :func:`printer` turns those calls into
lines such as ``  LayerwiseOpt: generation 6/20 (30 %), about 1 min 10 s left``.

Example:
  result = dj.debias(model, variables, bench, methods=methods, progress=dj.progress.printer())
"""

from __future__ import annotations

import time
from typing import Callable, Optional

Progress = Callable[[str, int, int], None]


def _duration(seconds: float) -> str:
  seconds = max(0, int(round(seconds)))
  if seconds < 60:
    return f"{seconds} s"
  minutes, seconds = divmod(seconds, 60)
  if minutes < 60:
    return f"{minutes} min {seconds:02d} s"
  hours, minutes = divmod(minutes, 60)
  return f"{hours} h {minutes:02d} min"


def printer(log: Callable[[str], None] = print, *, every: float = 5.0,
            clock: Callable[[], float] = time.monotonic) -> Progress:
  """A :data:`Progress` callback writing one line per task at most every ``every`` seconds,
  always at its first and last unit: the share done, the time left at the rate since the first
  unit (which also pays for compilation), and at the end the time taken since ``done = 0``."""
  tasks: dict = {}

  def progress(task: str, done: int, total: int) -> None:
    now = clock()
    if done <= 0:
      tasks[task] = {"start": now, "first": None, "shown": None}
      return
    state = tasks.setdefault(task, {"start": now, "first": None, "shown": None})
    finished = done >= total
    if state["first"] is None:
      state["first"] = (now, done)
    elif not finished and now - state["shown"] < every:
      return
    state["shown"] = now
    share = f"{done}/{total} ({100 * done / max(total, 1):.0f} %)"
    t1, d1 = state["first"]
    if finished:
      log(f"  {task}: {share} in {_duration(now - state['start'])}")
      del tasks[task]
    elif done > d1:
      log(f"  {task}: {share}, about {_duration((total - done) * (now - t1) / (done - d1))} "
          "left")
    else:
      log(f"  {task}: {share}")
  return progress


def notify(progress: Optional[Progress], task: str, done: int, total: int) -> None:
  """Calls ``progress`` when there is one."""
  if progress is not None:
    progress(task, int(done), int(total))
