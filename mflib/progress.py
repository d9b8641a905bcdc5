"""Progress bars for long runs: shown when a person runs a notebook, silent under CI.

Set the environment variable ``MFLIB_PROGRESS=0`` to silence every bar (the Makefile does so when it
executes notebooks for nbval and for the book, so that committed outputs stay deterministic).
"""

from __future__ import annotations

import os


def enabled(progress: bool | None, total: int, threshold: int = 20000) -> bool:
    """Whether to show a bar: explicit ``progress`` wins; ``None`` means "long runs, unless silenced"."""
    if progress is not None:
        return bool(progress)
    return os.environ.get("MFLIB_PROGRESS", "1") != "0" and total >= threshold


#: An automatic bar (``progress=None``) appears only once its run has lasted this many seconds.
DELAY = 1.0


def bar(total: int, progress: bool | None = None, desc: str = "", threshold: int = 20000):
    """A ``tqdm.auto`` bar, or a do-nothing stand-in with the same ``update``/``close`` methods.

    ``threshold`` is the fewest steps for an automatic bar (cheap SGD steps); loops whose steps are
    slow (PDE and particle flows) pass 0 and let :data:`DELAY` decide: a bar shows in a notebook
    as soon as a run has taken a second, and a quick run shows none.
    """
    if enabled(progress, total, threshold):
        from tqdm.auto import tqdm
        return tqdm(total=total, desc=desc, leave=False, delay=0.0 if progress else DELAY)
    return _Silent()


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass
