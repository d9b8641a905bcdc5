r"""Parameter sweeps at paper scale, on Dask, with results that survive interruption.

A **sweep** is a pure function of a parameter record (a flat dict of JSON scalars that carries
its own ``seed``), a grid of such records for each *scale* (``"small"``: minutes on a laptop;
``"paper"``: the published sizes), and a name under which it is registered (:data:`REGISTRY`).
Registered here:

``chaos-paper``
    chapter 7's digits experiment at the scale of De Bortoli, Durmus, Fontaine and Simsekli
    (2020): one hidden layer of ReLU units, one unit per class (``C = 10``), cross-entropy, SGD of
    their equation (2) with step :math:`\gamma N^\beta` (:func:`mflib.chaos.sgd`; in mflib
    :math:`\gamma` is ``base_step`` and the paper's width exponent :math:`\beta` is
    ``width_exponent``, so that ``beta`` keeps its one meaning, an inverse temperature), batch
    ``M = 100``, :math:`\gamma = 1`, :math:`\alpha = 0`, horizon ``T = 100``, on real MNIST
    (:func:`mflib.datasets.mnist`: 8,000 train / 2,000 test); widths ``N`` from 100 to 50,000,
    :math:`\beta\in\{0.5, 0.75, 1\}`, three seeds. ``--scale small``: ``N`` in {32, 128, 512},
    ``T = 10``, two seeds (a couple of minutes on two cores).
``chaos-mnist``
    chapter 7's controls on MNIST, in groups (record field ``group``): ``widths`` (``N`` x
    :math:`\beta`, the paper's figure 1), ``streams`` (another batch stream, same initial weights),
    ``inits`` (other initial weights, same batches), ``gamma`` (:math:`\beta = 1`,
    :math:`\gamma\to 0`, figure 3), ``lownoise`` (:math:`\beta = 1` with batches up to 6,400: the
    Euler scheme's bias without most of the noise) and ``table`` (table 1 with five paired seeds:
    seed ``s`` fixes the initial weights and the batch stream of both :math:`\beta`). Each run
    stores accuracies, the correctness of each of the 2,000 test digits (paired comparisons), and
    quantiles of 250 weight coordinates (10 classes x a 5 x 5 pixel lattice). ``--scale small``
    (the copy in ``book/data/``): ``T = 10``, ``N`` up to 2,000, table at ``N = 500``, ``T = 500`` and
    ``T = 2,000`` (whether the table has converged in ``T``), and beta = 1 also at
    ``T = 8,000``. Without the ``T = 2,000`` and ``8,000`` runs: about 19 million neuron-steps
    (with batch 100), measured 12.3 CPU-minutes (29 minutes of wall time for two workers at
    ``nice -n 10`` on a shared two-core machine). ``--scale paper``: widths
    100 to 50,000 at ``T = 100`` and the table at ``N = 5,000``, ``T = 10^4``, ten seeds: 1.05e10
    neuron-steps, about 90 CPU-hours (the table is most of it).
``chaos-mnist-wide``
    chaos-mnist's ``widths`` group (same base record and task, ``T = 10``) continued to larger
    widths: ``--scale small`` is N in {5,000, 10,000} x :math:`\beta`, plus :math:`\beta = 1` with
    another seed and with another batch stream at those widths (10 runs, about 10 CPU-minutes,
    copy in ``book/data/``); ``--scale paper`` adds N = 20,000 and 50,000.
``chaos-mnist-50k``
    the same series at N = 50,000: the three beta, and beta = 1 in the two replicate draws
    (5 runs at either scale, 73 CPU-minutes measured, copy in ``book/data/``).
``chaos-mnist-t100``
    the same task at the paper's horizon ``T = 100``: the widths series N in {100, 1,000, 10,000}
    x :math:`\beta`, N = 50,000 at :math:`\beta` = 0.75 and 1, :math:`\beta = 1` in the two
    replicate draws (other seed, other stream) at every width, and the low-noise control
    (:math:`\beta = 1`, batch 1,600) at N = 1,000 and 10,000 (``--scale small``, 21 runs, 130
    CPU-minutes measured, copy in ``book/data/``); ``--scale paper`` adds :math:`\beta = 0.5` at N = 50,000
    (22,360 steps, about 11 CPU-hours).
``synthetic``, ``synthetic-slow``
    a tiny Gaussian sweep for the tests (``synthetic-slow`` sleeps in every task).

Command line
------------
::

    python -m mflib.experiments list
    python -m mflib.experiments run NAME [--scale small|paper] [--scheduler ADDRESS] [--workers K]
                                         [--results DIR] [--only 0,3,5-9] [--serial]
    python -m mflib.experiments status NAME [--scale ...] [--results DIR]

``run`` starts a :class:`distributed.LocalCluster` (``K`` worker processes, default one per core,
one thread each) or connects to an existing scheduler (``--scheduler tcp://host:8786``, or the path
of a scheduler file written by ``dask scheduler --scheduler-file``), submits every task whose result
is not yet stored, shows a progress bar (tasks done / total; ``MFLIB_PROGRESS=0`` silences it),
and when the grid is complete assembles the results into one netCDF file. ``status`` prints
done / total and the records still missing. ``--serial`` computes in this process, without Dask;
``--only`` restricts a run to some indices of the grid (for SLURM array jobs, below).

Results store
-------------
``<root>/<NAME>/`` with ``<root>`` = ``--results DIR``, else ``$MFLIB_RESULTS``, else
``~/.cache/mflib/experiments``:

* ``tasks/<key>.npz``: one file per finished task, written by the worker that computed it as soon
  as it finishes, atomically (a temporary file in the same folder, ``fsync``, ``os.replace``).
  ``key`` is the SHA-256 (first 32 hex digits) of the canonical JSON of
  ``{"sweep": NAME, "version": the sweep's version, "mflib": mflib.__version__, "record": ...}``,
  so a change of parameters or of code version gives new keys and old results are never mixed in.
  The ``.npz`` holds the task's arrays and ``__meta__`` (JSON: key, record, versions, host, pid,
  elapsed seconds, and the SHA-256 of the arrays). A file that fails to load, whose checksum or key
  does not match, is *corrupt*: it is removed and recomputed, never read as a result.
* ``tasks.log``: one line per task started and finished (time, host, pid, key).
* ``<NAME>-<scale>.nc``: the assembled :class:`xarray.Dataset` (netCDF4 via ``h5netcdf``),
  written when the grid is complete; :func:`load` reads it (or assembles it from ``tasks/``).

A re-run skips finished tasks, so a sweep killed halfway and restarted recomputes only the tasks
that had not finished; a worker process that dies mid-task has its task re-run on another worker
(the scheduler's ``allowed-failures``, plus ``retries`` for exceptions). Each record carries its
seed and the task draws from ``np.random.default_rng(seed)`` only, so a result does not depend on
the worker, the order or the number of attempts: a Dask run equals a serial one bit for bit.

Reading results
---------------
``experiments.load("chaos-paper")`` returns a Dataset with dimensions ``N``, ``width_exponent``, ``seed``
(the record fields that vary), the record's constant fields as attributes, and variables such as
``acc_test`` (last iterate), ``acc_test_avg`` (weights averaged over the second half),
``q_all`` (quantiles of every weight coordinate over the neurons) and ``elapsed_s``.
:func:`marginal_w2` turns two quantile summaries into :math:`W_2` distances between coordinate
marginals (the chapter's distance between widths, or to the widest network as a proxy of the limit).

On a SLURM cluster (HPC)
------------------------
With ``dask-jobqueue``, from a login node (the workers are SLURM jobs; the results folder must be
on a file system that the compute nodes share, and so must ``$MFLIB_DATA``)::

    from dask.distributed import Client
    from mflib import experiments

    cluster = experiments.slurm_cluster(cores=4, memory="64GB", walltime="48:00:00",
                                        queue="normal", account="myproject")
    # equivalent to dask_jobqueue.SLURMCluster(cores=4, processes=4, memory="64GB",
    #     walltime="48:00:00", queue="normal", account="myproject"): 4 single-threaded
    #     workers of 16 GB per job (chaos-paper at N = 50,000 needs about 5 GB per task)
    cluster.scale(jobs=8)                       # or cluster.adapt(maximum_jobs=8)
    with Client(cluster) as client:
        experiments.run("chaos-paper", scale="paper", client=client)

Check what would be submitted with ``print(cluster.job_script())``. Alternatively start the
scheduler yourself (``dask scheduler --scheduler-file $HOME/sched.json`` and ``dask worker
--scheduler-file $HOME/sched.json --nthreads 1`` in SLURM jobs) and run
``python -m mflib.experiments run chaos-paper --scheduler $HOME/sched.json``.

Without Dask, as a **SLURM job array** (one task per array element; tasks already stored are
skipped, so the array can be resubmitted as it is after a failure)::

    #!/bin/bash
    #SBATCH --job-name=chaos-paper
    #SBATCH --array=0-53            # python -m mflib.experiments status chaos-paper lists the indices
    #SBATCH --cpus-per-task=1
    #SBATCH --mem=16G
    #SBATCH --time=48:00:00
    export MFLIB_RESULTS=$HOME/mflib-results MFLIB_DATA=$HOME/mflib-data MFLIB_PROGRESS=0
    .venv/bin/python -m mflib.experiments run chaos-paper --scale paper --serial \
        --only "$SLURM_ARRAY_TASK_ID"

and, once all are done, ``python -m mflib.experiments status chaos-paper`` assembles the netCDF
file (so does ``experiments.load``).

**Cost of chaos-paper** (``benchmarks/bench_chaos.py``, one core here, float32, batch 100): about
31 microseconds per neuron and SGD step (0.31 s at ``N = 10,000``, within 6 % of the step's two
matrix products), plus 1.5 for the running average over the last half of the steps; SGD holds
about 13 bytes per weight (measured 9.3 beyond ``W0`` at ``N = 10,000``). The paper grid makes
4.1e9 neuron-steps (1.3e16 flops), about 36 CPU-hours; each of its three tasks at
``N = 50,000``, ``width_exponent = 0.5`` (22,360 steps) takes about 10 hours and 5 GB, the rest
far less. A task is the unit of restart:
one killed by a wall-time limit starts again from step 0, so give jobs room (48 h above). The
most expensive tasks are submitted first. ``--scale small`` makes 3.4e5 neuron-steps: about 90
CPU-seconds, under a minute of wall time on two cores.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import platform
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "Sweep", "REGISTRY", "register", "get", "records", "task_key", "compute",
    "results_root", "store_path", "read_result", "write_result", "scan",
    "run", "RunSummary", "status", "load", "assemble", "marginal_w2", "slurm_cluster", "main",
]

#: Version of the result file format (``__meta__["format"]``).
FORMAT = 1
SCALES = ("small", "paper")


# ----------------------------------------------------------------------------------------------
# Sweeps and their registry
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Sweep:
    """A named sweep: ``task(record) -> {name: array}``, and a grid of records per scale.

    Attributes
    ----------
    name : str
        Registry name (``python -m mflib.experiments run NAME``).
    task : callable
        Pure function of one record (a dict of JSON scalars with a ``seed``) returning a dict of
        NumPy arrays or scalars, with the same names and shapes for every record of a grid. A name
        that is also a dimension name of another variable is that dimension's coordinate.
    grid : callable
        ``grid(scale) -> list of records`` for ``scale`` in :data:`SCALES`.
    version : str
        Code version of the task: part of every key. Bump it when the task's results change.
    dims : tuple of str
        Record fields that index the assembled Dataset (in this order).
    result_dims : dict
        Names of the extra dimensions of array-valued outputs, ``{output: (dim, ...)}``.
    cost : callable, optional
        Relative cost of a record; the most expensive tasks are submitted first.
    """

    name: str
    task: Callable[[dict], dict]
    grid: Callable[[str], list]
    version: str
    dims: tuple = ()
    result_dims: dict = dataclasses.field(default_factory=dict)
    cost: Callable[[dict], float] | None = None
    description: str = ""


#: Sweeps by name.
REGISTRY: dict[str, Sweep] = {}


def register(sweep: Sweep) -> Sweep:
    """Add ``sweep`` to :data:`REGISTRY` (a sweep that workers run must be registered at import of a
    module that they import, as the sweeps below are)."""
    if not isinstance(sweep, Sweep):
        raise TypeError(f"sweep must be a Sweep, got {type(sweep).__name__}")
    REGISTRY[sweep.name] = sweep
    return sweep


def get(name) -> Sweep:
    """The registered sweep ``name``, or ``ValueError`` listing the known ones."""
    if isinstance(name, Sweep):
        return name
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"name must be a registered sweep ({', '.join(sorted(REGISTRY))}), "
                         f"got {name!r}") from None


def _check_scale(scale: str) -> str:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    return scale


def records(name, scale: str = "paper") -> list[dict]:
    """The grid of sweep ``name`` at ``scale``, as canonical records."""
    sweep = get(name)
    return [_canonical_record(r) for r in sweep.grid(_check_scale(scale))]


# ----------------------------------------------------------------------------------------------
# Keys
# ----------------------------------------------------------------------------------------------
def _scalar(v, field: str):
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if not math.isfinite(v):
            raise ValueError(f"record field {field!r} must be finite, got {v}")
        return v
    if v is None or isinstance(v, str):
        return v
    raise TypeError(f"record field {field!r} must be a JSON scalar (bool, int, float, str, None), "
                    f"got {type(v).__name__}")


def _canonical_record(record) -> dict:
    if not isinstance(record, dict):
        raise TypeError(f"a record must be a dict, got {type(record).__name__}")
    if "seed" not in record:
        raise ValueError(f"a record must carry its seed, got fields {sorted(record)}")
    return {str(k): _scalar(v, str(k)) for k, v in sorted(record.items())}


def _canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def task_key(name, record: dict) -> str:
    """The store key of ``record`` in sweep ``name``: 32 hex digits of the SHA-256 of the canonical
    JSON of the sweep name, its version, mflib's version and the record."""
    from . import __version__

    sweep = get(name)
    doc = {"sweep": sweep.name, "version": sweep.version, "mflib": __version__,
           "record": _canonical_record(record)}
    return hashlib.sha256(_canonical_json(doc).encode()).hexdigest()[:32]


def compute(name, record: dict) -> dict[str, np.ndarray]:
    """Run one task in this process and return its outputs as arrays (nothing is stored)."""
    sweep = get(name)
    out = sweep.task(_canonical_record(record))
    if not isinstance(out, dict) or not out:
        raise TypeError(f"the task of sweep {sweep.name!r} must return a non-empty dict, got {out!r}")
    arrays = {}
    for k, v in out.items():
        if not isinstance(k, str) or not k or k.startswith("__"):
            raise ValueError(f"output names must be non-empty strings not starting with '__', got {k!r}")
        a = np.asarray(v)
        if a.dtype == object:
            raise TypeError(f"output {k!r} must be numeric or a string, got an object array")
        arrays[k] = a
    return arrays


# ----------------------------------------------------------------------------------------------
# The store: one atomically written, checksummed .npz per finished task
# ----------------------------------------------------------------------------------------------
def results_root(results=None) -> Path:
    """``results``, else ``$MFLIB_RESULTS``, else ``~/.cache/mflib/experiments``."""
    if results is not None:
        return Path(results).expanduser()
    env = os.environ.get("MFLIB_RESULTS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mflib" / "experiments"


def store_path(name, results=None) -> Path:
    """The folder of sweep ``name``: ``results_root(results) / name``."""
    return results_root(results) / get(name).name


def _task_file(store: Path, key: str) -> Path:
    return Path(store) / "tasks" / f"{key}.npz"


def _digest(arrays: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(_canonical_json([k, a.dtype.str, list(a.shape)]).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write(path: Path, write: Callable, to_path: bool = False) -> None:
    """Write ``path`` atomically: ``write(fileobj)`` (or ``write(tmp_path)`` with ``to_path``) into a
    temporary file in the same folder, fsync it, rename it over ``path``, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        if to_path:
            os.close(fd)
            write(tmp)
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        else:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)                    # mkstemp makes 0600; a shared store wants 0644
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def write_result(store, key: str, arrays: dict, meta: dict) -> Path:
    """Write one task's ``arrays`` and ``meta`` to ``store/tasks/key.npz``, atomically."""
    meta = dict(meta, key=key, format=FORMAT, sha256=_digest(arrays))
    path = _task_file(Path(store), key)
    payload = dict(arrays, __meta__=np.array(_canonical_json(meta)))
    _atomic_write(path, lambda f: np.savez(f, **payload))
    return path


class CorruptResult(Exception):
    """A stored result that cannot be trusted (unreadable, wrong key, checksum mismatch)."""


def read_result(store, key: str) -> tuple[dict, dict]:
    """``(arrays, meta)`` of a stored task; ``FileNotFoundError`` if absent, :class:`CorruptResult`
    if the file is truncated, unreadable, or its key or checksum does not match."""
    path = _task_file(Path(store), key)
    if not path.exists():
        raise FileNotFoundError(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays.pop("__meta__")))
    except Exception as exc:                                          # noqa: BLE001
        raise CorruptResult(f"{path}: unreadable ({type(exc).__name__}: {exc})") from exc
    if meta.get("format") != FORMAT or meta.get("key") != key:
        raise CorruptResult(f"{path}: key or format does not match")
    if meta.get("sha256") != _digest(arrays):
        raise CorruptResult(f"{path}: checksum mismatch")
    return arrays, meta


def _valid(store: Path, key: str, remove_corrupt: bool = True) -> str:
    """'done', 'missing' or 'corrupt' (a corrupt file is removed so that it is recomputed)."""
    try:
        read_result(store, key)
        return "done"
    except FileNotFoundError:
        return "missing"
    except CorruptResult:
        if remove_corrupt:
            with contextlib.suppress(OSError):
                os.unlink(_task_file(store, key))
        return "corrupt"


def scan(name, recs: Sequence[dict], store, remove_corrupt: bool = True) -> dict[str, list[int]]:
    """Indices of ``recs`` whose results are ``done``, ``missing`` or ``corrupt`` in ``store``."""
    out = {"done": [], "missing": [], "corrupt": []}
    for i, rec in enumerate(recs):
        out[_valid(Path(store), task_key(name, rec), remove_corrupt)].append(i)
    return out


def _log(store: Path, event: str, key: str, extra: str = "") -> None:
    line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {event} {key} {socket.gethostname()} {os.getpid()}"
    with contextlib.suppress(OSError), open(Path(store) / "tasks.log", "a") as f:
        f.write(line + (f" {extra}" if extra else "") + "\n")


def _compute_and_store(name: str, record: dict, key: str, store: str) -> tuple[str, str, float]:
    """Worker side: compute one task unless a valid result exists, and store it atomically."""
    store = Path(store)
    if _valid(store, key) == "done":
        return "skipped", key, 0.0
    _log(store, "start", key)
    t0 = time.perf_counter()
    arrays = compute(name, record)
    elapsed = time.perf_counter() - t0
    from . import __version__

    sweep = get(name)
    meta = {"sweep": sweep.name, "version": sweep.version, "mflib": __version__,
            "record": _canonical_record(record), "elapsed_s": elapsed,
            "host": socket.gethostname(), "pid": os.getpid(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_result(store, key, arrays, meta)
    _log(store, "done", key, f"{elapsed:.3f}s")
    return "computed", key, elapsed


def _clean_temporaries(store: Path, older_than_s: float = 3600.0) -> int:
    """Remove temporary files left by writers that were killed (older than an hour)."""
    n = 0
    now = time.time()
    for p in (Path(store) / "tasks").glob(".tmp-*"):
        with contextlib.suppress(OSError):
            if now - p.stat().st_mtime > older_than_s:
                p.unlink()
                n += 1
    return n


# ----------------------------------------------------------------------------------------------
# Running a sweep
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class RunSummary:
    """What :func:`run` did."""

    name: str
    scale: str
    total: int
    already_done: int
    computed: int
    corrupt: list
    failed: dict
    wall_s: float
    store: Path
    dataset: Path | None

    @property
    def complete(self) -> bool:
        return not self.failed and self.already_done + self.computed == self.total


def _parse_only(only, n: int) -> list[int]:
    if only is None:
        return list(range(n))
    if isinstance(only, str):
        idx = []
        for part in only.split(","):
            part = part.strip()
            if not part:
                continue
            a, _, b = part.partition("-")
            try:
                lo, hi = int(a), int(b) if b else int(a)
            except ValueError:
                raise ValueError(f"only must look like '0,3,5-9', got {only!r}") from None
            idx.extend(range(lo, hi + 1))
    else:
        idx = [int(i) for i in only]
    bad = [i for i in idx if not 0 <= i < n]
    if bad:
        raise ValueError(f"only must hold indices in [0, {n - 1}], got {bad}")
    return sorted(set(idx))


def _progress(total: int, initial: int, desc: str):
    from tqdm.auto import tqdm

    from . import progress as _progress_mod

    show = _progress_mod.enabled(None, total, threshold=0)
    return tqdm(total=total, initial=initial, desc=desc, unit="task", disable=not show,
                file=sys.stderr, dynamic_ncols=True)


@contextlib.contextmanager
def _client(client=None, scheduler=None, workers=None):
    """The client to use: given, connected to ``scheduler`` (address or scheduler file), or a new
    LocalCluster of ``workers`` single-threaded processes (default: one per core)."""
    if client is not None:
        yield client
        return
    from distributed import Client, LocalCluster

    if scheduler is not None:
        if os.path.isfile(str(scheduler)):
            c = Client(scheduler_file=str(scheduler))
        else:
            c = Client(str(scheduler))
        try:
            yield c
        finally:
            c.close()
        return
    n = workers if workers is not None else (os.cpu_count() or 1)
    if n < 1:
        raise ValueError(f"workers must be >= 1, got {n}")
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as c:
        yield c


def run(name, scale: str = "paper", *, records=None, results=None, client=None, scheduler=None,
        workers: int | None = None, only=None, serial: bool = False, retries: int = 2,
        assemble_when_done: bool = True) -> RunSummary:
    """Compute every task of sweep ``name`` that is not yet stored, and assemble the Dataset.

    Parameters
    ----------
    name : str
        A registered sweep.
    scale : {"small", "paper"}
        Which grid (ignored when ``records`` is given).
    records : list of dict, optional
        An explicit grid instead of the registered one.
    results : path, optional
        Root of the results store (default ``$MFLIB_RESULTS`` or ``~/.cache/mflib/experiments``).
    client : distributed.Client, optional
        Use this client (not closed here); else connect to ``scheduler`` (an address or a
        scheduler file), else start a LocalCluster of ``workers`` processes with one thread each.
    only : str or list of int, optional
        Run only these indices of the grid (``"0,3,5-9"``).
    serial : bool
        Compute in this process, one task after the other, without Dask.
    retries : int
        Re-runs of a task that raised (a task on a worker that died is re-run anyway, up to the
        scheduler's ``distributed.scheduler.allowed-failures``).

    Returns
    -------
    RunSummary
    """
    t0 = time.perf_counter()
    sweep = get(name)
    scale = _check_scale(scale)
    recs = [_canonical_record(r) for r in records] if records is not None else records_of(sweep, scale)
    store = store_path(sweep.name, results)
    (store / "tasks").mkdir(parents=True, exist_ok=True)
    _clean_temporaries(store)
    chosen = _parse_only(only, len(recs))
    state = scan(sweep, [recs[i] for i in chosen], store)
    todo = [chosen[i] for i in state["missing"] + state["corrupt"]]
    if sweep.cost is not None:
        todo.sort(key=lambda i: -float(sweep.cost(recs[i])))
    corrupt = [chosen[i] for i in state["corrupt"]]
    for i in corrupt:
        print(f"{sweep.name}: result of task {i} was corrupt; recomputing it", file=sys.stderr)
    done0 = len(chosen) - len(todo)
    computed, failed = 0, {}
    bar = _progress(len(chosen), done0, sweep.name)
    try:
        if serial:
            for i in todo:
                try:
                    what, _, _ = _compute_and_store(sweep.name, recs[i], task_key(sweep, recs[i]),
                                                    str(store))
                    computed += what == "computed"
                except Exception as exc:                              # noqa: BLE001
                    failed[i] = f"{type(exc).__name__}: {exc}"
                bar.update()
        elif todo:
            from distributed import as_completed

            with _client(client, scheduler, workers) as c:
                futures = {}
                for i in todo:
                    key = task_key(sweep, recs[i])
                    f = c.submit(_compute_and_store, sweep.name, recs[i], key, str(store),
                                 key=f"{sweep.name}-{i}-{key[:12]}-{os.urandom(4).hex()}",
                                 pure=False, retries=retries)
                    futures[f] = i
                for f in as_completed(list(futures)):
                    i = futures[f]
                    if f.status == "finished":
                        computed += f.result()[0] == "computed"
                    else:
                        exc = f.exception()
                        failed[i] = f"{type(exc).__name__}: {exc}"
                    bar.update()
                    f.release()
    finally:
        bar.close()
    dataset = None
    if assemble_when_done and records is None and not failed:
        # the whole registered grid is stored (this run may have done only part of it): assemble,
        # unless an assembled file of this very grid is there and nothing new was computed
        path = _dataset_file(sweep, scale, results)
        if not computed and not corrupt and _current(path, sweep, recs):
            dataset = path
        elif not scan(sweep, recs, store, remove_corrupt=False)["missing"]:
            dataset = _write_dataset(sweep, scale, results, recs, store)
    return RunSummary(name=sweep.name, scale=scale, total=len(chosen), already_done=done0,
                      computed=computed, corrupt=corrupt, failed=failed,
                      wall_s=time.perf_counter() - t0, store=store, dataset=dataset)


def records_of(sweep: Sweep, scale: str) -> list[dict]:
    return [_canonical_record(r) for r in sweep.grid(scale)]


def status(name, scale: str = "paper", *, records=None, results=None) -> dict:
    """``{"total", "done", "missing": [indices], "corrupt": [indices], "records", "store"}``
    (corrupt files are reported and left in place)."""
    sweep = get(name)
    scale = _check_scale(scale)
    recs = [_canonical_record(r) for r in records] if records is not None else records_of(sweep, scale)
    store = store_path(sweep.name, results)
    state = scan(sweep, recs, store, remove_corrupt=False)
    return {"total": len(recs), "done": len(state["done"]), "missing": state["missing"],
            "corrupt": state["corrupt"], "records": recs, "store": store}


# ----------------------------------------------------------------------------------------------
# Assembling the results into one labelled Dataset
# ----------------------------------------------------------------------------------------------
def _attr_value(v):
    return "null" if v is None else (int(v) if isinstance(v, bool) else v)


def assemble(name, recs: Sequence[dict], store, allow_missing: bool = False):
    """An :class:`xarray.Dataset` of the stored results of ``recs``.

    Record fields that vary across ``recs`` become coordinates (dimensions, when they are the
    sweep's ``dims`` and form a full grid; otherwise a ``task`` dimension), the constant ones
    attributes. Missing results raise ``FileNotFoundError`` unless ``allow_missing`` (then they
    are NaN, and ``done`` is False there).
    """
    import xarray as xr

    sweep = get(name)
    recs = [_canonical_record(r) for r in recs]
    if not recs:
        raise ValueError("recs must hold at least one record")
    store = Path(store)
    outs, metas, have = [], [], []
    for i, rec in enumerate(recs):
        try:
            arrays, meta = read_result(store, task_key(sweep, rec))
        except (FileNotFoundError, CorruptResult):
            if allow_missing:
                continue
            raise FileNotFoundError(f"sweep {sweep.name!r}: no valid result for task {i} {rec} in "
                                    f"{store} (run `python -m mflib.experiments run {sweep.name}`)"
                                    ) from None
        outs.append(arrays)
        metas.append(meta)
        have.append(i)
    if not outs:
        raise FileNotFoundError(f"sweep {sweep.name!r}: no results in {store}")
    fields = sorted({k for r in recs for k in r})
    varying = [f for f in fields if len({_canonical_json(r.get(f)) for r in recs}) > 1]
    constant = {f: recs[0].get(f) for f in fields if f not in varying}
    # coordinates of extra dimensions: outputs named like a dimension
    all_dims = {d for ds in sweep.result_dims.values() for d in ds}
    coords = {k: outs[0][k] for k in outs[0] if k in all_dims}
    data_vars = {}
    for k in outs[0]:
        if k in coords:
            continue
        dims = tuple(sweep.result_dims.get(k, tuple(f"{k}_{j}" for j in range(outs[0][k].ndim))))
        stacked = np.stack([o[k] for o in outs])
        data_vars[k] = (("task",) + dims, stacked)
    data_vars["elapsed_s"] = (("task",), np.array([m["elapsed_s"] for m in metas]))
    data_vars["key"] = (("task",), np.array([m["key"] for m in metas]))
    task_coords = {f: ("task", [recs[i][f] for i in have]) for f in varying}
    ds = xr.Dataset(data_vars, coords={**task_coords, **coords})
    if sweep.dims and set(varying) <= set(sweep.dims) and varying:
        index = [d for d in sweep.dims if d in varying]
        ds = ds.set_index(task=index).unstack("task")
        ds = ds.transpose(*index, ...)
        ds["done"] = ds["elapsed_s"].notnull()
    else:
        ds["done"] = ("task", np.ones(len(have), dtype=bool))
    from . import __version__

    ds.attrs.update({f: _attr_value(v) for f, v in constant.items()})
    ds.attrs.update(sweep=sweep.name, sweep_version=sweep.version, mflib_version=__version__,
                    description=sweep.description, tasks_done=len(have), tasks_total=len(recs),
                    cpu_s_total=float(sum(m["elapsed_s"] for m in metas)),
                    hosts=" ".join(sorted({m["host"] for m in metas})))
    return ds


def _keys_digest(sweep: Sweep, recs) -> str:
    return hashlib.sha256(" ".join(task_key(sweep, r) for r in recs).encode()).hexdigest()


def _dataset_file(sweep: Sweep, scale: str, results=None) -> Path:
    return store_path(sweep.name, results) / f"{sweep.name}-{scale}.nc"


def _write_dataset(sweep: Sweep, scale: str, results, recs, store) -> Path:
    ds = assemble(sweep, recs, store)
    ds.attrs.update(scale=scale, keys_sha256=_keys_digest(sweep, recs),
                    created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    command=" ".join(["python -m mflib.experiments run", sweep.name, "--scale", scale]),
                    machine=f"{platform.node()} ({platform.machine()}, {os.cpu_count()} cores, "
                            f"{platform.system()} {platform.release()})")
    path = _dataset_file(sweep, scale, results)

    # gzip + shuffle: the quantile arrays of chaos-paper shrink by about a third
    enc = {v: {"compression": "gzip", "compression_opts": 4, "shuffle": True}
           for v in ds.data_vars if ds[v].dtype.kind == "f" and ds[v].ndim}
    _atomic_write(path, lambda tmp: ds.to_netcdf(tmp, engine="h5netcdf", encoding=enc), to_path=True)
    return path


def load(name, scale: str = "paper", *, results=None, allow_missing: bool = False):
    """The results of sweep ``name`` at ``scale`` as an :class:`xarray.Dataset` (in memory).

    Reads ``<store>/<name>-<scale>.nc`` when it matches the current grid and code version,
    else assembles it from the task files (and writes it when the grid is complete). ``name`` may
    also be the path of a ``.nc`` file (for instance a copy kept under ``book/``).
    """
    import xarray as xr

    if str(name).endswith(".nc") and Path(name).is_file():
        return _open(Path(name))
    sweep = get(name)
    scale = _check_scale(scale)
    recs = records_of(sweep, scale)
    path = _dataset_file(sweep, scale, results)
    if _current(path, sweep, recs):
        return _open(path)
    store = store_path(sweep.name, results)
    if not scan(sweep, recs, store, remove_corrupt=False)["missing"]:
        return _open(_write_dataset(sweep, scale, results, recs, store))
    ds = assemble(sweep, recs, store, allow_missing=allow_missing)
    if not isinstance(ds, xr.Dataset):                                # pragma: no cover
        raise TypeError("assemble did not return a Dataset")
    return ds


def _current(path: Path, sweep: Sweep, recs) -> bool:
    """Whether ``path`` is a readable assembled file of exactly these records and code version."""
    if not path.is_file():
        return False
    try:
        import h5netcdf

        with h5netcdf.File(path, "r") as f:
            return f.attrs.get("keys_sha256") == _keys_digest(sweep, recs)
    except Exception:                                                  # noqa: BLE001
        return False


def _open(path: Path):
    import xarray as xr

    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return ds.load()


def marginal_w2(qa, qb, dim: str = "level"):
    r""":math:`W_2` between coordinate marginals summarised by quantiles at the same levels.

    With :math:`q_j = F^{-1}(u_j)` at the midpoint levels :math:`u_j = (j + 1/2)/Q`, the midpoint
    rule gives :math:`W_2^2 = \int_0^1 |F^{-1} - G^{-1}|^2 \approx \frac1Q\sum_j (q^a_j - q^b_j)^2`.
    ``qa``, ``qb``: xarray DataArrays (reduced over ``dim``) or arrays (reduced over axis 0).
    """
    if hasattr(qa, "dims"):
        return np.sqrt(((qa - qb) ** 2).mean(dim))
    from .validation import as_array
    qa, qb = as_array(qa, "qa"), as_array(qb, "qb")
    if qa.shape != qb.shape or qa.ndim == 0 or qa.shape[0] == 0:
        raise ValueError(f"qa and qb must hold quantiles at the same levels (same shape, axis 0 "
                         f"non-empty), got {qa.shape} and {qb.shape}")
    return np.sqrt(((qa - qb) ** 2).mean(axis=0))


# ----------------------------------------------------------------------------------------------
# HPC: a SLURM cluster through dask-jobqueue
# ----------------------------------------------------------------------------------------------
def slurm_cluster(cores: int = 8, memory: str = "64GB", walltime: str = "24:00:00", *,
                  processes: int | None = None, queue: str | None = None,
                  account: str | None = None, **kwargs):
    """A ``dask_jobqueue.SLURMCluster`` whose jobs each run ``processes`` (default ``cores``)
    single-threaded workers sharing ``memory``, for at most ``walltime``. Nothing is submitted until
    ``cluster.scale(jobs=...)`` or ``cluster.adapt(...)``; ``cluster.job_script()`` shows the job.
    Other keyword arguments go to ``SLURMCluster`` (``job_extra_directives``,
    ``job_script_prologue``, ``local_directory``, ``python``, ...)."""
    from dask_jobqueue import SLURMCluster

    return SLURMCluster(cores=cores, processes=processes or cores, memory=memory, walltime=walltime,
                        queue=queue, account=account, **kwargs)


# ----------------------------------------------------------------------------------------------
# Registered sweeps
# ----------------------------------------------------------------------------------------------
def _synthetic_task(rec: dict) -> dict:
    """A Gaussian sample of size n and scale sigma: its moments, histogram and first partial sums."""
    if rec.get("sleep"):
        time.sleep(float(rec["sleep"]))
    rng = np.random.default_rng(rec["seed"])
    x = rec["sigma"] * rng.standard_normal(rec["n"])
    edges = np.linspace(-4.0, 4.0, 9)
    return {"mean": x.mean(), "second_moment": (x ** 2).mean(),
            "hist": np.histogram(x, bins=edges)[0], "bin": 0.5 * (edges[1:] + edges[:-1]),
            "partial_sums": np.cumsum(x)[:5]}


def _synthetic_grid(scale: str, sleep: float = 0.0) -> list[dict]:
    sigmas = [0.5, 1.0, 2.0] if scale == "small" else [0.25, 0.5, 1.0, 2.0, 4.0]
    seeds = [0, 1] if scale == "small" else [0, 1, 2, 3]
    recs = [{"n": 1000, "sigma": s, "seed": k} for s in sigmas for k in seeds]
    if sleep:
        for r in recs:
            r["sleep"] = sleep
    return recs


register(Sweep(
    name="synthetic", task=_synthetic_task, grid=_synthetic_grid, version="1",
    dims=("sigma", "seed"), result_dims={"hist": ("bin",), "partial_sums": ("step",)},
    description="Gaussian samples: moments and histogram (tests)"))
register(Sweep(
    name="synthetic-slow", task=_synthetic_task,
    grid=functools.partial(_synthetic_grid, sleep=0.4), version="1",
    dims=("sigma", "seed"), result_dims={"hist": ("bin",), "partial_sums": ("step",)},
    description="synthetic, sleeping 0.4 s in every task (tests of interruption)"))


#: Coordinates followed in detail by chaos-paper: (class, row, column) of a 28x28 image.
CHAOS_SHOWN = ((0, 14, 14), (0, 7, 14), (1, 14, 14), (1, 7, 14))


@functools.lru_cache(maxsize=4)
def _chaos_data(data: str):
    """Train/test arrays, pixels standardised with the training mean and std (as chapter 7)."""
    from . import datasets

    if data == "mnist":
        Xtr, ytr, Xte, yte = datasets.mnist(dtype=np.float32)
    elif data == "digits":
        Xtr, ytr, Xte, yte = datasets.digits(rng=np.random.default_rng(2020))
    else:
        raise ValueError(f"data must be 'mnist' or 'digits', got {data!r}")
    Xtr, Xte = datasets.standardize(Xtr, Xte, dtype=np.float32)
    return Xtr, np.asarray(ytr, np.int64), Xte, np.asarray(yte, np.int64)


def _outputs_chunked(X, W, C: int, budget: int = 1 << 23):
    """chaos.outputs(X, W) computed over blocks of neurons and rows (bounded memory at N = 50,000)."""
    from . import chaos

    N, p = W.shape
    nb = min(N, max(1, budget // p))
    f = np.zeros((X.shape[0], C))
    for a in range(0, N, nb):
        Wb = np.asarray(W[a:a + nb], dtype=np.float64)
        rows = max(1, budget // (Wb.shape[0] * C))
        for r in range(0, X.shape[0], rows):
            f[r:r + rows] += chaos.outputs(X[r:r + rows], Wb) * (Wb.shape[0] / N)
    return f


def _quantiles_sorted(S, Q: int) -> np.ndarray:
    """Step quantile function (inverted CDF) at levels (j + 1/2)/Q of the columns of sorted S."""
    N = S.shape[0]
    u = (np.arange(Q) + 0.5) / Q
    return S[np.ceil(u * N).astype(int) - 1]


def _chaos_init(rec: dict, p: int, dtype) -> np.ndarray:
    """Initial weights N(0, init_std^2 I_p), from the first child of the record's seed. Row-major
    draws: the first N rows do not depend on N, so the widths of one seed share their common neurons."""
    rng_init = np.random.default_rng(rec["seed"]).spawn(2)[0]
    return (rec["init_std"] * rng_init.standard_normal((rec["N"], p), dtype=np.float32)).astype(dtype)


def _chaos_sgd(rec: dict, stream: int, keep_init: bool = False):
    """The SGD run both chaos sweeps make: the data, the run (initial weights from ``rec["seed"]``,
    batches from ``stream``), the first fields of the result, and the initial weights if
    ``keep_init`` (else None: at N = 50,000 they are 1.5 GB, drawn again when needed)."""
    from . import chaos

    Xtr, ytr, Xte, yte = _chaos_data(rec["data"])
    dtype = np.dtype(rec["dtype"]).type
    W0 = _chaos_init(rec, 10 * Xtr.shape[1], dtype)
    rng_batch = np.random.default_rng(stream).spawn(2)[1]
    n_T = chaos.n_steps(rec["T"], rec["N"], rec["base_step"], rec["alpha"], rec["width_exponent"])
    r = chaos.sgd(W0, Xtr, ytr, base_step=rec["base_step"], alpha=rec["alpha"],
                  width_exponent=rec["width_exponent"], M=rec["M"], steps=n_T,
                  loss="cross_entropy", activation="relu", rng=rng_batch, average_from=n_T // 2,
                  dtype=dtype, progress=False)
    out = {"n_steps": np.int64(n_T), "dt": r.schedule.dt}
    return (Xtr, ytr, Xte, yte), r, out, (W0 if keep_init else None)


def _chaos_task(rec: dict) -> dict:
    from . import losses

    (Xtr, ytr, Xte, yte), r, out, _ = _chaos_sgd(rec, rec["seed"])
    d, C, N = Xtr.shape[1], 10, rec["N"]
    p, dtype = C * d, np.dtype(rec["dtype"]).type
    for tag, W in (("", r.W), ("_avg", r.W_avg)):
        for split, X, y in (("train", Xtr, ytr), ("test", Xte, yte)):
            f = _outputs_chunked(X, W, C)
            out[f"acc_{split}{tag}"] = losses.accuracy(f, y)
            out[f"loss_{split}{tag}"] = float(losses.loss_value(f, y, "cross_entropy").mean())
    move = 0.0
    W0 = _chaos_init(rec, p, dtype)             # drawn again rather than held during SGD (memory)
    for a in range(0, N, 4096):                 # mean squared displacement of a neuron, in blocks
        diff = r.W[a:a + 4096].astype(np.float64) - W0[a:a + 4096]
        move += float(np.einsum("kp,kp->", diff, diff))
    out["move_sq"] = move / N
    S = np.sort(r.W, axis=0)
    out["q_all"] = _quantiles_sorted(S, rec["quantiles"]).astype(np.float32)
    side = int(round(np.sqrt(d)))
    if side * side == d and side >= 15:
        shown = [c * d + side * row + col for c, row, col in CHAOS_SHOWN]
    else:                                       # small images (digits): the middle pixel
        shown = [c * d + d // 2 for c, _, _ in CHAOS_SHOWN]
    out["q_shown"] = _quantiles_sorted(S[:, shown], rec["fine_quantiles"]).astype(np.float32)
    out["shown_index"] = np.array(shown, dtype=np.int64)
    out["level"] = (np.arange(rec["quantiles"]) + 0.5) / rec["quantiles"]
    out["fine_level"] = (np.arange(rec["fine_quantiles"]) + 0.5) / rec["fine_quantiles"]
    return out


def _chaos_grid(scale: str) -> list[dict]:
    if scale == "small":
        Ns, T, seeds = [32, 128, 512], 10.0, [0, 1]
    else:
        Ns, T, seeds = [100, 500, 1000, 5000, 10000, 50000], 100.0, [0, 1, 2]
    base = dict(T=T, base_step=1.0, alpha=0.0, M=100, init_std=0.05, data="mnist", dtype="float32",
                quantiles=64, fine_quantiles=512)
    return [dict(base, N=N, width_exponent=b, seed=s) for N in Ns for b in (0.5, 0.75, 1.0)
            for s in seeds]


def _chaos_cost(rec: dict) -> float:
    from . import chaos

    return rec["N"] * max(1, chaos.n_steps(rec["T"], rec["N"], rec["base_step"], rec["alpha"],
                                            rec["width_exponent"]))


register(Sweep(
    name="chaos-paper", task=_chaos_task, grid=_chaos_grid, version="1",
    dims=("N", "width_exponent", "seed"),
    result_dims={"q_all": ("level", "coord"), "q_shown": ("fine_level", "shown"),
                 "shown_index": ("shown",)},
    cost=_chaos_cost,
    description="De Bortoli et al. 2020 on MNIST: SGD with step base_step * N^width_exponent, "
                "cross-entropy, one ReLU unit per class; accuracies and weight quantiles at T"))


#: Pixels (row, column) of chaos-mnist's coordinate summary: a 5 x 5 lattice over the digits' area.
MNIST_LATTICE = tuple((r, c) for r in (6, 10, 14, 18, 22) for c in (6, 10, 14, 18, 22))


def _chaos_mnist_task(rec: dict) -> dict:
    r"""One SGD run of chapter 7's MNIST controls: initial weights from ``seed``, batches from
    ``stream`` (``stream == seed`` is exactly chaos-paper's task), summarised by accuracies, the
    per-image correctness on the 2,000 test digits (paired comparisons) and weight quantiles on a
    lattice of 25 pixels for every class (250 coordinates) and on the :data:`CHAOS_SHOWN` ones."""
    from . import losses

    (Xtr, ytr, Xte, yte), r, out, W0 = _chaos_sgd(rec, rec["stream"], keep_init=True)
    d, C, N = Xtr.shape[1], 10, rec["N"]
    for tag, W in (("", r.W), ("_avg", r.W_avg)):
        if not rec["eval_train"]:               # same outputs for every record: NaN = not measured
            out[f"acc_train{tag}"] = out[f"loss_train{tag}"] = np.nan
        for split, X, y in (("train", Xtr, ytr), ("test", Xte, yte)):
            if split == "train" and not rec["eval_train"]:
                continue
            f = _outputs_chunked(X, W, C)
            out[f"acc_{split}{tag}"] = losses.accuracy(f, y)
            out[f"loss_{split}{tag}"] = float(losses.loss_value(f, y, "cross_entropy").mean())
            if split == "test":
                out[f"correct_test{tag}"] = (np.argmax(f, axis=1) == y).astype(np.int8)
    diff = r.W.astype(np.float64) - W0
    out["move_sq"] = float(np.einsum("kp,kp->", diff, diff)) / N
    del diff
    side = int(round(np.sqrt(d)))
    if side * side == d and side >= 23:
        lattice = [side * row + col for row, col in MNIST_LATTICE]
        shown = [c * d + side * row + col for c, row, col in CHAOS_SHOWN]
    else:                                       # small images (digits, tests): spread indices
        lattice = list(np.linspace(0, d - 1, len(MNIST_LATTICE)).astype(int))
        shown = [c * d + d // 2 for c, _, _ in CHAOS_SHOWN]
    coords = [c * d + j for c in range(C) for j in lattice]
    out["q_lattice"] = _quantiles_sorted(np.sort(r.W[:, coords], axis=0),
                                         rec["quantiles"]).astype(np.float32)
    out["q_shown"] = _quantiles_sorted(np.sort(r.W[:, shown], axis=0),
                                       rec["fine_quantiles"]).astype(np.float32)
    out["lattice_index"] = np.array(coords, dtype=np.int64)
    out["shown_index"] = np.array(shown, dtype=np.int64)
    out["level"] = (np.arange(rec["quantiles"]) + 0.5) / rec["quantiles"]
    out["fine_level"] = (np.arange(rec["fine_quantiles"]) + 0.5) / rec["fine_quantiles"]
    out["test_image"] = np.arange(Xte.shape[0], dtype=np.int64)
    return out


def _chaos_mnist_base(T: float) -> dict:
    """The base record of every chaos-mnist run (and of chaos-mnist-wide's) at horizon ``T``."""
    return dict(T=T, base_step=1.0, alpha=0.0, M=100, init_std=0.05, data="mnist", dtype="float32",
                quantiles=32, fine_quantiles=256, eval_train=False, seed=0, stream=0)


def _chaos_mnist_grid(scale: str) -> list[dict]:
    """Groups: ``widths`` (figure 1: N x beta), ``streams`` (a second batch stream, same initial
    weights), ``inits`` (other initial weights, same batches), ``gamma`` (figure 3: beta = 1,
    base_step -> 0), ``lownoise`` (beta = 1 with large batches M: the Euler scheme's bias without
    most of the noise, and the M^-1 factor) and ``table`` (table 1: paired seeds, train accuracy)."""
    if scale == "small":
        Ns, T, top = [100, 250, 700, 2000], 10.0, 2000
        big_M, gammas = [400, 1600, 6400], [0.25, 0.0625]
        table = dict(N=500, T=[500.0, 2000.0], seeds=[0, 1, 2, 3, 4], long_T=8000.0)
    else:
        Ns, T, top = [100, 1000, 10000, 50000], 100.0, 50000
        big_M, gammas = [400, 1600, 6400], [0.25, 0.0625]
        table = dict(N=5000, T=[10000.0], seeds=list(range(10)), long_T=None)
    base = _chaos_mnist_base(T)
    recs = [dict(base, group="widths", N=N, width_exponent=b) for N in Ns for b in (0.5, 0.75, 1.0)]
    recs += [dict(base, group="streams", N=top, width_exponent=b, stream=1) for b in (0.5, 0.75, 1.0)]
    recs += [dict(base, group="inits", N=top, width_exponent=b, seed=1) for b in (0.5, 1.0)]
    recs += [dict(base, group="gamma", N=top, width_exponent=1.0, base_step=g) for g in gammas]
    recs += [dict(base, group="lownoise", N=top, width_exponent=1.0, base_step=g, M=1600)
             for g in [1.0] + gammas]
    recs += [dict(base, group="lownoise", N=top, width_exponent=1.0, M=m) for m in big_M if m != 1600]
    recs += [dict(base, group="table", N=table["N"], T=T, width_exponent=b, seed=s, stream=s,
                  eval_train=True) for T in table["T"] for s in table["seeds"] for b in (0.75, 1.0)]
    if table["long_T"]:     # beta = 1 still learns at T = 2000 (beta = 0.75 interpolates there)
        recs += [dict(base, group="table", N=table["N"], T=table["long_T"], width_exponent=1.0,
                      seed=s, stream=s, eval_train=True) for s in table["seeds"]]
    return recs


#: Result dimensions of the task shared by chaos-mnist, chaos-mnist-wide and chaos-mnist-50k.
_CHAOS_MNIST_DIMS = {"q_lattice": ("level", "coord"), "q_shown": ("fine_level", "shown"),
                     "shown_index": ("shown",), "lattice_index": ("coord",),
                     "correct_test": ("test_image",), "correct_test_avg": ("test_image",)}


def _chaos_mnist_cost(rec: dict) -> float:
    return _chaos_cost(rec) * rec["M"] / 100.0


def _register_mnist(name: str, grid, description: str) -> None:
    """Register a sweep of chaos-mnist's task (same record fields and result dimensions)."""
    register(Sweep(name=name, task=_chaos_mnist_task, grid=grid, version="1", dims=(),
                   result_dims=_CHAOS_MNIST_DIMS, cost=_chaos_mnist_cost,
                   description=description))


_register_mnist("chaos-mnist", _chaos_mnist_grid,
                "chapter 7's controls on MNIST: widths x beta, a second batch stream, other initial "
                "weights, base_step -> 0, large batches, and table 1 with paired seeds")


def _chaos_mnist_wide_grid(scale: str) -> list[dict]:
    """chaos-mnist's ``widths`` group continued to larger ``N`` (same base record, same task):
    ``small`` adds N = 5,000 and 10,000 to the small scale's 100 ... 2,000 at ``T = 10``;
    ``paper`` continues the same series (``T = 10``) to N = 20,000 and 50,000. ``small`` also
    has beta = 1 replicates at N = 5,000 and 10,000 in chaos-mnist's groups ``inits`` (seed 1)
    and ``streams`` (stream 1), whose N = 2,000 runs are chaos-mnist's own."""
    Ns = [5000, 10000] if scale == "small" else [5000, 10000, 20000, 50000]
    return _width_series(Ns, (0.5, 0.75, 1.0), replicates=scale == "small")


def _width_series(Ns, betas, replicates: bool, T: float = 10.0) -> list[dict]:
    """chaos-mnist's ``widths`` records (horizon ``T``, default 10) at widths ``Ns`` x ``betas``,
    and, with ``replicates``, beta = 1 in the draws of groups ``inits`` (seed 1) and ``streams``
    (stream 1)."""
    base = _chaos_mnist_base(T)
    recs = [dict(base, group="widths", N=N, width_exponent=b) for N in Ns for b in betas]
    if replicates:
        recs += [dict(base, group="inits", N=N, width_exponent=1.0, seed=1) for N in Ns]
        recs += [dict(base, group="streams", N=N, width_exponent=1.0, stream=1) for N in Ns]
    return recs


_register_mnist("chaos-mnist-wide", _chaos_mnist_wide_grid,
                "chaos-mnist's widths group (T = 10) continued to N = 5,000 and 10,000 (small) or "
                "up to 50,000 (paper)")


def _chaos_mnist_50k_grid(scale: str) -> list[dict]:
    """chaos-mnist-wide's series one step further, N = 50,000 (same base record and task): the
    three beta, and beta = 1 again in the two replicate draws (``inits``: seed 1; ``streams``:
    stream 1). beta = 0.5 is most of the cost (2,236 steps of 1.6e11 flops, 62 CPU-minutes
    here). Both scales are the same grid."""
    return _width_series([50000], (0.5, 0.75, 1.0), replicates=True)


_register_mnist("chaos-mnist-50k", _chaos_mnist_50k_grid,
                "chaos-mnist-wide's series at N = 50,000: the three beta and the two beta = 1 "
                "replicate draws")


def _chaos_mnist_t100_grid(scale: str) -> list[dict]:
    """The widths series at the paper's horizon ``T = 100`` (same base record and task as
    chaos-mnist): N in {100, 1,000, 10,000} x beta in {0.5, 0.75, 1} and N = 50,000 at beta = 0.75
    and 1; beta = 1 in the two replicate draws (``inits``: seed 1, ``streams``: stream 1) at every
    N; and the low-noise control (beta = 1, batch 1,600) at N = 1,000 and 10,000. ``paper`` adds
    beta = 0.5 at N = 50,000 (22,360 steps: about 11 CPU-hours alone)."""
    recs = _width_series([100, 1000, 10000], (0.5, 0.75, 1.0), replicates=True, T=100.0)
    recs += _width_series([50000], (0.75, 1.0) if scale == "small" else (0.5, 0.75, 1.0),
                          replicates=True, T=100.0)
    base = _chaos_mnist_base(100.0)
    recs += [dict(base, group="lownoise", N=N, width_exponent=1.0, M=1600) for N in (1000, 10000)]
    return recs


_register_mnist("chaos-mnist-t100", _chaos_mnist_t100_grid,
                "chaos-mnist's widths series at the paper's horizon T = 100: N = 100 ... 10,000 x "
                "beta, N = 50,000 at beta = 0.75 and 1, beta = 1 replicate draws, low-noise control")


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------
def _fmt_record(rec: dict, sweep: Sweep, recs: Iterable[dict]) -> str:
    recs = list(recs)
    keys = [k for k in rec if len({_canonical_json(r.get(k)) for r in recs}) > 1] or list(rec)
    return ", ".join(f"{k}={rec[k]}" for k in keys)


def _ranges(idx: Sequence[int]) -> str:
    out, i = [], 0
    idx = sorted(idx)
    while i < len(idx):
        j = i
        while j + 1 < len(idx) and idx[j + 1] == idx[j] + 1:
            j += 1
        out.append(str(idx[i]) if i == j else f"{idx[i]}-{idx[j]}")
        i = j + 1
    return ",".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mflib.experiments",
                                     description="Run parameter sweeps on Dask; results are stored "
                                                 "per task and survive interruption.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the registered sweeps and their task counts")
    for cmd in ("run", "status"):
        p = sub.add_parser(cmd)
        p.add_argument("name", help="a registered sweep (see `list`)")
        p.add_argument("--scale", choices=SCALES, default="paper")
        p.add_argument("--results", metavar="DIR",
                       help="results root (default $MFLIB_RESULTS or ~/.cache/mflib/experiments)")
        if cmd == "run":
            p.add_argument("--scheduler", metavar="ADDRESS",
                           help="address or scheduler file of a running Dask scheduler")
            p.add_argument("--workers", type=int, metavar="K",
                           help="LocalCluster worker processes (default: one per core)")
            p.add_argument("--only", metavar="INDICES", help="run only these grid indices: 0,3,5-9")
            p.add_argument("--serial", action="store_true", help="compute in this process, no Dask")
            p.add_argument("--retries", type=int, default=2)
    args = parser.parse_args(argv)

    if args.command == "list":
        for name, sw in sorted(REGISTRY.items()):
            sizes = ", ".join(f"{s}: {len(sw.grid(s))} tasks" for s in SCALES)
            print(f"{name:16} {sizes}   {sw.description}")
        return 0
    try:
        sweep = get(args.name)
    except ValueError as exc:
        parser.error(str(exc))
    if args.command == "status":
        st = status(sweep, args.scale, results=args.results)
        print(f"{sweep.name} ({args.scale}): {st['done']}/{st['total']} done, store {st['store']}")
        if st["corrupt"]:
            print(f"  corrupt (recomputed by the next run): {_ranges(st['corrupt'])}")
        missing = st["missing"] + st["corrupt"]
        if missing:
            print(f"  missing: {len(missing)} (indices {_ranges(missing)})")
            for i in sorted(missing)[:20]:
                print(f"    {i:4d}  {_fmt_record(st['records'][i], sweep, st['records'])}")
            if len(missing) > 20:
                print(f"    ... and {len(missing) - 20} more")
            return 1
        path = _dataset_file(sweep, args.scale, args.results)
        load(sweep.name, args.scale, results=args.results)
        print(f"  complete; dataset {path}")
        return 0
    if args.scheduler is not None and args.workers is not None:
        print("--workers is ignored with --scheduler", file=sys.stderr)
    try:
        summary = run(sweep, args.scale, results=args.results, scheduler=args.scheduler,
                      workers=args.workers, only=args.only, serial=args.serial, retries=args.retries)
    except KeyboardInterrupt:
        print(f"\ninterrupted: the finished tasks are stored; run the same command to resume "
              f"(`python -m mflib.experiments status {sweep.name} --scale {args.scale}`)", file=sys.stderr)
        return 130
    print(f"{sweep.name} ({args.scale}): {summary.already_done + summary.computed}/{summary.total} "
          f"done ({summary.already_done} already stored, {summary.computed} computed, "
          f"{len(summary.corrupt)} corrupt recomputed) in {summary.wall_s:.1f} s; "
          f"store {summary.store}")
    for i, err in sorted(summary.failed.items()):
        print(f"  task {i} failed: {err}", file=sys.stderr)
    if summary.dataset is not None:
        print(f"  dataset {summary.dataset}")
    return 0 if summary.complete else 1


if __name__ == "__main__":
    # call the module's own functions (pickled by reference), not copies defined in __main__
    from mflib.experiments import main as _main

    sys.exit(_main())
