r"""The run skeleton that every time-stepping routine of mflib shares.

A routine advances a state from step 0 to step ``steps`` (time :math:`t = k\,\Delta t`, with
:math:`\Delta t` the routine's step: ``eps`` for SGD, ``ds`` for gradient descent in kernel time,
``tau`` or ``dt`` for flows; DESIGN.md) and records some quantities at the steps of a grid.
The pieces, one home each:

:func:`record_grid`
    the record steps: every ``record_every`` steps, ``n_log`` log-spaced or ``n_records``
    uniform ones, always including 0 and ``steps``.
:class:`Recorder`
    walks the grid span by span, keeps the records, the progress bar and the BLAS thread limit,
    and checks the state (one loop shape for every routine, below).
:class:`DivergenceError`
    what every routine raises when its state becomes non-finite or explodes: it names the step,
    the time and what to change.
:func:`blas_threads`
    limits NumPy's BLAS thread pools during a loop (threadpoolctl).

The loop shape::

    grid = runs.record_grid(steps, record_every, n_log)
    with runs.Recorder(grid, dt=eps, desc="SGD",
                       advice="try a smaller eps") as rec:
        for k0, k1 in rec.spans():     # (0, 0), then (g0, g1), (g1, g2), ...
            for k in range(k0, k1):    # advance the state from step k0 to k1
                ...
                rec.tick()
            rec.check(W)               # W not finite: DivergenceError at k1
            rec.record(risk=..., W=W)  # the values at step k1
    rec.array("risk"), rec.t, rec.steps

The first span is empty, so the state at step 0 is checked and recorded by the same lines as
every later one.
"""

from __future__ import annotations

import contextlib

import numpy as np

from . import progress as _progress
from .validation import MAX_ABS, check_int

__all__ = ["DivergenceError", "Recorder", "blas_threads", "record_grid"]


class DivergenceError(FloatingPointError):
    """A time-stepping routine produced a non-finite or exploding state.

    A :class:`FloatingPointError`, so ``except FloatingPointError`` catches it.

    Parameters / attributes
    -----------------------
    step : int
        The step at which (or, for checks made every few steps, by which) the state went bad.
    time : float
        Its time (:math:`t = k\\,\\Delta t`, or the routine's own clock).
    advice : str
        What to change, e.g. ``"try a smaller eps (now 0.5)"``.
    what : str
        What went wrong.
    where : str
        Which routine (``"SGD"``, ``"the particle flow"``, ...).
    """

    def __init__(self, step: int, time: float, advice: str,
                 what: str = "the state became non-finite", where: str = "the run"):
        self.step, self.time = int(step), float(time)
        self.advice, self.what, self.where = advice, what, where
        tip = advice[:1].upper() + advice[1:]
        super().__init__(f"{where} diverged at step {self.step} (t = {self.time:.4g}): {what}. "
                         f"{tip}.")

    def __reduce__(self):   # picklable (worker processes) despite the extra arguments
        return type(self), (self.step, self.time, self.advice, self.what, self.where)


def record_grid(steps: int, record_every: int | None = None, n_log: int | None = None,
                n_records: int | None = None) -> np.ndarray:
    """Sorted unique record steps in ``[0, steps]``, always including 0 and ``steps``.

    Give at most one of: ``record_every`` (every so many steps), ``n_log`` (about that many
    log-spaced steps from 1, rounded) or ``n_records`` (that many uniform steps, rounded to the
    nearest step). None of them: only 0 and ``steps``.
    """
    steps = check_int(steps, "steps", minimum=0)
    if sum(x is not None for x in (record_every, n_log, n_records)) > 1:
        raise ValueError("give at most one of record_every, n_log and n_records")
    if n_log is not None:
        n_log = check_int(n_log, "n_log", minimum=2)
        ks = np.unique(np.round(np.logspace(0, np.log10(max(steps, 1)), n_log)).astype(int))
    elif n_records is not None:
        n_records = check_int(n_records, "n_records", minimum=2)
        ks = np.round(np.linspace(0, steps, n_records)).astype(int)
    else:
        every = check_int(record_every if record_every is not None else max(steps, 1),
                          "record_every", minimum=1)
        ks = np.arange(0, steps + 1, every)
    return np.unique(np.concatenate([[0], ks[ks <= steps], [steps]]))


_BLAS = []   # a cached threadpoolctl controller (creating one scans the loaded libraries: ~1 ms)


def blas_threads(threads: int | None = 1):
    """Context limiting NumPy's BLAS thread pools to ``threads`` (``None``: leave them alone).

    The loops of mflib multiply thin or small matrices once per step; on a shared 2-core machine
    a second BLAS thread mostly waits for the first (SGD steps measured 4 to 30 times slower, the
    kernel-regime gradient descent 5 to 8 times, chapter 7's digit runs 2 times when another
    process held a core), so the loops run with one thread by default. A no-op without
    threadpoolctl (pinned in requirements.txt).
    """
    if threads is None:
        return contextlib.nullcontext()
    threads = check_int(threads, "threads", minimum=1)
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:   # pragma: no cover - threadpoolctl comes with the pinned environment
        return contextlib.nullcontext()
    if not _BLAS:
        _BLAS.append(ThreadpoolController())
    return _BLAS[0].limit(limits=threads, user_api="blas")


class Recorder:
    r"""Walks a record grid, keeps the records and checks the state (see the module docstring).

    Parameters
    ----------
    grid : array of int
        Sorted record steps, the first 0 (:func:`record_grid`).
    dt : float
        Time per step: the time of step ``k`` is ``k * dt``.
    times : array, optional
        Instead of ``dt``, the time of every step ``0..grid[-1]`` (non-uniform steps).
    progress : bool or None
        Progress bar (:mod:`mflib.progress`); ``threshold`` is the fewest steps for an automatic
        bar (0 for loops whose steps are slow), ``desc`` its label.
    threads : int or None
        BLAS threads while the recorder is open (:func:`blas_threads`; ``None``: unchanged).
    where, advice : str
        Routine name and advice of the :class:`DivergenceError` that :meth:`check` raises.
    """

    def __init__(self, grid, dt: float = 1.0, *, times=None, progress: bool | None = None,
                 desc: str = "", threshold: int = 0, threads: int | None = None,
                 where: str = "the run", advice: str = "try a smaller step"):
        self.steps = np.asarray(grid, dtype=np.int64)
        if self.steps.ndim != 1 or self.steps.size == 0 or self.steps[0] != 0 \
                or np.any(np.diff(self.steps) <= 0):
            raise ValueError("grid must be a sorted 1-D array of distinct steps starting at 0")
        self.dt = float(dt)
        self._times = None if times is None else np.asarray(times, dtype=float)
        self.where, self.advice = where, advice
        self._bar_args = (int(self.steps[-1]), progress, desc, threshold)
        self._threads = threads
        self._stack = None
        self.bar = None
        self.step = 0                 # the step the state is at (end of the current span)
        self._i = -1                  # index of the current span's end in the grid
        self._ticked = 0
        self._data: dict[str, list] = {}

    # -- context: progress bar and BLAS threads ----------------------------------------------
    def __enter__(self):
        self._stack = contextlib.ExitStack()
        total, progress, desc, threshold = self._bar_args
        self.bar = self._stack.enter_context(_progress.bar(total, progress, desc=desc,
                                                           threshold=threshold))
        self._stack.enter_context(blas_threads(self._threads))
        return self

    def __exit__(self, *exc):
        self._stack.close()
        return False

    # -- the loop ----------------------------------------------------------------------------
    def spans(self):
        """Yield ``(k0, k1)``: first ``(0, 0)``, then each pair of consecutive record steps. The
        caller advances the state from step ``k0`` to step ``k1``, then checks and records it."""
        for i in range(self.steps.size):
            k0 = int(self.steps[i - 1]) if i else 0
            k1 = int(self.steps[i])
            self._i, self.step, self._ticked = i, k1, 0
            yield k0, k1
            rest = k1 - k0 - self._ticked
            if rest > 0 and self.bar is not None:
                self.bar.update(rest)

    def tick(self, n: int = 1) -> None:
        """Advance the progress bar by ``n`` steps inside a span (optional: a span's steps that
        were not ticked are counted when the span ends)."""
        self._ticked += n
        if self.bar is not None:
            self.bar.update(n)

    def time(self, k: int) -> float:
        """The time of step ``k``."""
        return float(self._times[k]) if self._times is not None else k * self.dt

    def record(self, **values) -> None:
        """Keep ``values`` (arrays are copied) as the records at the current step; ``None`` values
        are kept as such (:meth:`array` then returns None)."""
        if len(self._data.get("_step", ())) > self._i:
            raise RuntimeError(f"step {self.step} was already recorded")
        self._data.setdefault("_step", []).append(self.step)
        for name, v in values.items():
            self._data.setdefault(name, []).append(np.array(v) if isinstance(v, np.ndarray) else v)

    # -- divergence ----------------------------------------------------------------------------
    def diverged(self, step: int | None = None, what: str = "the state became non-finite",
                 advice: str | None = None) -> DivergenceError:
        """The :class:`DivergenceError` for ``step`` (default: the current step), to be raised."""
        k = self.step if step is None else int(step)
        return DivergenceError(k, self.time(k), self.advice if advice is None else advice,
                               what, self.where)

    def check(self, *arrays, limit: float | None = None, step: int | None = None,
              what: str | None = None) -> None:
        """Raise :class:`DivergenceError` if an array holds NaN or inf or an entry of absolute
        value above ``limit`` (default :data:`mflib.validation.MAX_ABS` = 1e150, the bound beyond
        which mflib's functions reject their inputs); ``step`` defaults to the current step."""
        bound = MAX_ABS if limit is None else limit
        for a in arrays:
            a = np.asarray(a)
            if a.size == 0:
                continue
            big = float(np.abs(a).max())
            if not big <= bound:                            # NaN compares False: caught too
                if what is None:
                    what = (f"the state became non-finite or exceeded {bound:.3g} in size"
                            if limit is not None else "the state became non-finite"
                            if not np.isfinite(big) else f"the state exceeded {bound:.3g} in size")
                raise self.diverged(step, what)

    # -- results -------------------------------------------------------------------------------
    @property
    def recorded(self) -> np.ndarray:
        """The steps recorded so far (all of ``steps`` after a full run)."""
        return np.array(self._data.get("_step", []), dtype=np.int64)

    @property
    def t(self) -> np.ndarray:
        """Times of the recorded steps."""
        k = self.recorded
        return self._times[k] if self._times is not None else k * self.dt

    def array(self, name: str):
        """The records of ``name`` stacked into one array (None if they were recorded as None)."""
        vals = self._data.get(name, [])
        if vals and all(v is None for v in vals):
            return None
        return np.array(vals)

    def list(self, name: str) -> list:
        """The records of ``name`` as a list."""
        return list(self._data.get(name, []))
