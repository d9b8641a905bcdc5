r"""One-pass SGD on a :class:`~mflib.problems.Problem`: N interacting particles (chapters 2 and 4).

Each step draws a fresh batch :math:`(x_k, y_k)` and moves every neuron (DESIGN.md conventions)

.. math::

    w_i \leftarrow w_i + \varepsilon\,\frac1B\sum_{b=1}^B \big(y_{k,b} - f_N(x_{k,b})\big)\,
    \sigma'(\langle w_i, x_{k,b}\rangle)\,x_{k,b}
    \;-\; \varepsilon\lambda w_i + \sqrt{2\varepsilon/\beta}\,g_{k,i},

whose mean drift is :math:`-\varepsilon\nabla\Psi_\lambda(w_i;\rho_N)`; time is
:math:`t = k\varepsilon`. The noise term is present only when ``beta`` is given.

Random streams. ``rng`` is split once into two independent child generators: data are drawn from
the first in fixed chunks of :data:`CHUNK` samples (so the trajectory does not depend on recording
or blocking choices), Langevin noise from the second. Without noise, any faster engine must
reproduce :func:`run_reference` on the same stream. With noise, :func:`run` draws the noise per
block (below): exact in law, not the same path as :func:`run_reference` on the same seed (its
blocks, hence its path, depend on ``block`` and the record steps); ``_noise="step"`` draws one
``(N, d)`` matrix per step and reproduces :func:`run_reference`.

Engines. :func:`run_reference` is the plain loop, one step at a time: the oracle. :func:`run` is
the fast engine, exact (same trajectory up to round-off) and organised around the two facts that
set the cost of a step, :math:`O(Nd)` work on a weight matrix that is read and written every step:

* *Without noise* the update of a step is rank :math:`B` (:math:`B` = batch), so :math:`K`
  consecutive steps can share one pass over the weights. For a block of samples
  :math:`X_{\rm blk}` (:math:`KB \times d`), form :math:`H = X_{\rm blk}W^\top` and
  :math:`G = X_{\rm blk}X_{\rm blk}^\top` once (two matrix products). Step :math:`k` of the block
  reads its pre-activations :math:`h_k` from row :math:`k` of :math:`H`, computes the coefficient
  vector :math:`a_k = \frac{\varepsilon}{B}(y_k - f_k)\,\sigma'(h_k) \in \mathbb R^N`, and since
  :math:`w_i` moves by :math:`a_{k,i}x_k` (times :math:`c = 1 - \varepsilon\lambda` for the old
  weights), every later row :math:`m > k` is corrected exactly,
  :math:`H_m \leftarrow c\,H_m + G_{mk}\,a_k`. At the end of the block
  :math:`W \leftarrow c^K W + \tilde A^\top X_{\rm blk}` with :math:`\tilde a_k = c^{K-1-k}a_k`:
  one more matrix product. The sequential part (:math:`O(K N)` per step) is a compiled numba
  loop; the products run in NumPy's BLAS at its full rate. Blocks end at record steps.
* *With Langevin noise* each step adds an independent :math:`N\times d` Gaussian matrix, which is
  not low-rank; drawing it costs :math:`Nd` normals per step (2.6 ms at :math:`N = 800`,
  :math:`d = 320`, 90 times a noiseless step). The blocked engine does not need every normal,
  only the noise's effect on what it computes, and draws that exactly in law (next section).
  The per-step noise stream (``_noise="step"``, the same trajectory as :func:`run_reference` on
  the same seed) stays available for tests.

Langevin noise in blocks (exact in law). Fix one neuron and a block of :math:`K` steps
:math:`m = 0, \dots, K-1` with rows :math:`x_r` (:math:`R = KB` rows, row :math:`r` belongs to step
:math:`m_r`), :math:`s = \sqrt{2\varepsilon/\beta}`, :math:`c = 1 - \varepsilon\lambda > 0`. The
per-step loop is :math:`w_{m+1} = c\,w_m + \sum_b a_{m,b}x_{m,b} + s\,g_m`, so
:math:`w_m = (\text{drift part}) + \nu_m` with :math:`\nu_0 = 0`, :math:`\nu_{m+1} = c\,\nu_m + s\,g_m`,
and the drift part is what the noiseless kernel computes from the coefficients :math:`a`. The
noise enters only through the Gaussian vector

.. math::

    \big(z, \nu_K\big)\in\mathbb R^{R}\times\mathbb R^{d},\qquad z_r = \langle \nu_{m_r}, x_r\rangle ,

the pre-activation of row :math:`r` being its drift part plus :math:`z_r`, and the block's end
:math:`w_K = c^K w_0 + \sum_r c^{K-1-m_r}a_r x_r + \nu_K`. Given the block's data (independent of the
noise), it is centred with, for :math:`S(p) = \sum_{i<p} c^{2i}` (:math:`= p` when :math:`\lambda = 0`),
:math:`\operatorname{Cov}(\nu_m, \nu_n) = s^2 c^{|m-n|}S(\min(m,n))\,I_d`. Write
:math:`\nu_m = \mu_m\nu_K + \beta_m` with :math:`\mu_m = c^{K-m}S(m)/S(K)`: the bridge
:math:`\beta` is independent of :math:`\nu_K` (Gaussian and uncorrelated) with
:math:`\operatorname{Cov}(\beta_m, \beta_n) = s^2\kappa(m,n) I_d`,
:math:`\kappa(m,n) = c^{|m-n|}S(\min(m,n)) - \mu_m\mu_n S(K)` (for :math:`\lambda = 0`,
:math:`\min(m,n) - mn/K`: a discrete Brownian bridge). Hence, exactly,

.. math::

    \begin{aligned}
    \nu_K &= s\sqrt{S(K)}\,\xi, & \xi&\sim\mathcal N(0, I_d),\\
    z_r &= \mu_{m_r}\langle \nu_K, x_r\rangle + (L\zeta)_r, & \zeta&\sim\mathcal N(0, I_{R-B}),
    \end{aligned}

with :math:`L L^\top = s^2\,[\kappa(m_r, m_q)\,\langle x_r, x_q\rangle]_{r,q}` over the rows of
steps :math:`m \ge 1` (a Hadamard product of two positive semi-definite matrices, so positive
semi-definite; :math:`z = 0` on step 0). One factorisation per block (Cholesky, or the symmetric
square root when the Gram matrix is singular, e.g. :math:`R > d`) serves all neurons, which are
independent: :math:`d + R - B` normals per neuron per block instead of :math:`Kd`. The engine adds
:math:`c^{-m_r}z_r` to row :math:`r` of :math:`H` before the sequential kernel (which multiplies
row :math:`r` by :math:`c` once per earlier step) and :math:`\nu_K` to :math:`W` at the block's end.

*Why the law is exact.* Given :math:`W` at the block's start and the block's data, the per-step
loop's pre-activations and its :math:`W` at the block's end are one deterministic function
:math:`\Phi` of the noise vectors :math:`(z, \nu_K)` of the :math:`N` neurons (the coefficients
:math:`a` depend on the noise only through the pre-activations). The engine evaluates the same
:math:`\Phi` (up to round-off) at vectors with the same conditional law, independent across
neurons, of the past and of the data. So the joint law of the block-end weights and of all
pre-activations is that of the loop for one block, and, the noise of different blocks being
independent, by induction for the whole run (blocks end at record steps, so every recorded
:math:`W` and risk has the loop's law). Weights inside a block are never formed. Requires
:math:`c > 0` (else the per-step stream is used). Cost per step, :math:`N = 800`, :math:`d = 320`:
about 2.7 times a noiseless step in float64 with blocks of 128 rows (:data:`NOISE_BLOCK_ROWS`),
and 2.9 times in float32 with blocks of 256 (:data:`NOISE_BLOCK_ROWS_F32`; 3.4 times with 128)
(normals: :math:`N(d + R - B)/K` per step, most of the cost; one extra product of the size of
:math:`H` plus the bridge part).

Divergence. A run diverges, with a :class:`~mflib.runs.DivergenceError` naming the step, the
time and a smaller ``eps``, when (a) the prediction or the weights become non-finite, or the
weights exceed :data:`BLOWUP` times their initial scale (an unbounded activation such as ReLU
with too large a step: the weights grow geometrically), or (b) the steps over-correct. A step
changes the prediction on its own sample :math:`x` (batch 1) by :math:`g\,(y - f(x))` to first
order, with the *gain*

.. math::

    g = \frac{\varepsilon}{B}\,|x|^2\,\frac1N\sum_i \sigma'(\langle w_i, x\rangle)^2

(for a batch, the mean over its samples of :math:`|x_b|^2` times that mean): the residual
:math:`y - f(x)` is multiplied by :math:`1 - g`, so for :math:`g > 2` each step enlarges the
error it corrects (the stability bound of the least-mean-squares iteration). The engines keep an
exponential average of :math:`g` over about :data:`GAIN_STEPS` = 8 steps (each step enters with
weight 1/8) and stop when it exceeds :data:`GAIN_MAX` = 2: a gain above 2 held for a dozen or so
steps, or one step with a gain above 16. This catches bounded activations (tanh, sigmoid, truncated ReLU),
whose weights cannot grow geometrically: with too large a step they are thrown into the
saturated region and the network stops learning, with finite weights (tanh at
:math:`\varepsilon = 10`, :math:`d = 6`: gain about 60 from the first step). The book's runs stay
below 0.7 (measured at the start, where it is largest: chapter 4's non-monotone activation at
:math:`\varepsilon = 6\times10^{-5}`, :math:`d = 320`, :math:`\kappa = 0.4`: 0.64; ReLU at
:math:`\varepsilon = 10^{-3}`, :math:`N = 800`: 0.17); the check reads values the step computes anyway
and does not change the trajectory.

Measured cost of a noiseless step at :math:`N = 800`, :math:`d = 320`, batch 1, float64, one
core: 28 us, about one read of :math:`W` (26 us); its floor is the two products,
:math:`4Nd` flops at the matrix-multiply rate (21 us), plus drawing the sample (3 us).

ReLU, truncated ReLU, sigmoid, tanh and ``mmn`` run compiled; any other
:class:`~mflib.activations.Activation` runs the same blocked scheme with its per-step part in
vectorised NumPy (exact as well, slower).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from functools import lru_cache

import numba
import numpy as np

from . import activations as _act
from . import runs as _runs
from .problems import Problem
from .validation import as_array, check_int, check_real, check_rng

CHUNK = 4096
BLOWUP = 1e6   # |w| beyond this (times the initial scale) is treated as divergence
BLOCK_ROWS = 64   # default samples per block of the fast engine (steps per block: BLOCK_ROWS // batch)
NOISE_BLOCK_ROWS = 128   # the same with Langevin noise (longer blocks: fewer end-of-block normals)
NOISE_BLOCK_ROWS_F32 = 256   # the same in float32 (its products are cheaper next to the normals)
_SUB_ROWS = 8     # rows per sub-block of the sequential kernel
GAIN_MAX = 2.0    # a run whose steps' gain (module docstring, Divergence) averages above this diverges
GAIN_STEPS = 8    # steps of that average (exponential; one step alone trips it past 2 * 8)


@dataclass
class Trajectory:
    r"""Output of :func:`run`.

    Attributes
    ----------
    t : array (R,)       times :math:`k\varepsilon` of the records (first 0, last ``steps * eps``)
    steps : array (R,)   step indices k of the records
    risk : array (R,)    exact population risk :math:`R_N` at those times
    W : array (N, d)     final weights
    snapshots : array (R, N, d) or None   weights at the record times (``snapshots=True``)
    """

    t: np.ndarray
    steps: np.ndarray
    risk: np.ndarray
    W: np.ndarray
    snapshots: np.ndarray | None = None


class _DataStream:
    """Fresh samples from the problem, drawn in fixed chunks of CHUNK."""

    def __init__(self, problem: Problem, rng: np.random.Generator):
        self.problem, self.rng = problem, rng
        self.X = np.empty((0, problem.d))
        self.y = np.empty(0)
        self.pos = 0

    def take(self, m: int):
        if self.pos + m > self.y.size:
            X, y = self.problem.sample(CHUNK, self.rng)
            self.X = np.concatenate([self.X[self.pos:], X])
            self.y = np.concatenate([self.y[self.pos:], y])
            self.pos = 0
            return self.take(m)
        sl = slice(self.pos, self.pos + m)
        self.pos += m
        return self.X[sl], self.y[sl]


def _validate(problem, W0, eps, steps, batch, lam, beta, rng):
    if not isinstance(problem, Problem):
        raise TypeError(f"problem must be an mflib.problems.Problem, got {type(problem).__name__}")
    W0 = as_array(W0, "W0", ndim=2)
    if W0.shape[1] != problem.d or W0.shape[0] == 0:
        raise ValueError(f"W0 must have shape (N, {problem.d}) with N >= 1, got {W0.shape}")
    eps = check_real(eps, "eps", low=0.0, low_open=True)
    steps = check_int(steps, "steps", minimum=0)
    # one batch of samples (batch, d) is held in memory: at most 2 GiB of float64
    batch = check_int(batch, "batch", minimum=1, maximum=max(1, 2**28 // problem.d))
    lam = check_real(lam, "lam", low=0.0)
    if beta is not None:
        beta = check_real(beta, "beta", low=0.0, low_open=True)
    rng = check_rng(rng)
    return W0, eps, steps, batch, lam, beta, rng


_BLOWN = f"the weights became non-finite or exceeded {BLOWUP:.0e} times their initial scale"


def _over_gain(g):
    return (f"its steps over-corrected: the gain eps/B |x|^2 mean_i sigma'(<w_i, x>)^2, averaged "
            f"over about {GAIN_STEPS} steps, reached {g:.3g} > {GAIN_MAX:g} (each step then "
            f"enlarges the error on its own samples)")


def _recorder(grid, eps, progress, threads=None):
    """The run skeleton of both engines (:class:`mflib.runs.Recorder`)."""
    return _runs.Recorder(grid, eps, progress=progress, desc="SGD", threshold=20000,
                          threads=threads, where="SGD",
                          advice=f"try a smaller eps (now {eps:g}), e.g. {eps / 10:.3g}")


def run_reference(problem: Problem, W0, eps: float, steps: int, batch: int = 1, lam: float = 0.0,
                  beta: float | None = None, rng: np.random.Generator | None = None,
                  record_every: int | None = None, n_log: int | None = None,
                  snapshots: bool = False, progress: bool | None = None) -> Trajectory:
    """Plain NumPy loop, one step at a time: the oracle for faster engines. Same API as :func:`run`."""
    W0, eps, steps, batch, lam, beta, rng = _validate(problem, W0, eps, steps, batch, lam, beta, rng)
    data_rng, noise_rng = rng.spawn(2)
    grid = _runs.record_grid(steps, record_every, n_log)
    W = W0.copy()
    N = W.shape[0]
    act = problem.activation
    stream = _DataStream(problem, data_rng)
    limit = BLOWUP * max(np.abs(W0).max(), 1.0)
    noise_amp = np.sqrt(2.0 * eps / beta) if beta is not None else 0.0
    gain = np.zeros(1)
    with _recorder(grid, eps, progress) as rec:
        for k0, k1 in rec.spans():
            for k in range(k0, k1):
                X, y = stream.take(batch)
                H = X @ W.T                                   # (B, N)
                r = y - act.sigma(H).sum(axis=1) / N          # (B,)
                D = act.dsigma(H)
                if _gain_update(gain, eps / batch * np.mean((X * X).sum(axis=1)
                                                            * (D * D).mean(axis=1))):
                    raise rec.diverged(k + 1, _over_gain(gain[0]))   # step k+1 enlarges the error
                C = D * r[:, None]                            # (B, N)
                step = (eps / batch) * (C.T @ X)
                if lam:
                    step -= eps * lam * W
                if beta is not None:
                    step += noise_amp * noise_rng.standard_normal(W.shape)
                W += step
                rec.tick()
            rec.check(W, limit=limit, what=_BLOWN)
            rec.record(risk=problem.risk(W), W=W if snapshots else None)
    return Trajectory(t=rec.t, steps=rec.steps, risk=rec.array("risk"), W=W,
                      snapshots=rec.array("W"))


# ----------------------------------------------------------------------------------------------
# Fast engine: compiled kernels (numba, no fastmath: float64 results agree with the reference to
# round-off) and the blocked driver.
# ----------------------------------------------------------------------------------------------
_RELU, _TRELU, _SIGMOID, _TANH, _MMN, _GENERIC = 0, 1, 2, 3, 4, -1


def _act_code(act: _act.Activation) -> int:
    """Code of a built-in activation for the compiled kernels (-1: NumPy fallback)."""
    for code, builtin in ((_RELU, _act.relu), (_TRELU, _act.truncated_relu),
                          (_SIGMOID, _act.sigmoid), (_TANH, _act.tanh), (_MMN, _act.mmn)):
        if act is builtin:
            return code
    return _GENERIC


@numba.njit(cache=True)
def _sigma_scalar(v, code):
    if code == _TRELU:
        return 0.0 if v < 0.0 else (1.0 if v > 1.0 else v)
    if code == _MMN:    # np.interp's formula on the knots (0, -2.5), (0.5, -4), (1.5, 7.5)
        if v < 0.5:
            return -2.5 if v <= 0.0 else -3.0 * v - 2.5
        return 7.5 if v >= 1.5 else 11.5 * (v - 0.5) - 4.0
    if code == _SIGMOID:
        return 0.5 * (1.0 + math.tanh(v))
    return math.tanh(v)


@numba.njit(cache=True)
def _dsigma_scalar(v, code):
    if code == _TRELU:
        return 1.0 if (v > 0.0 and v < 1.0) else 0.0
    if code == _MMN:
        return 0.0 if (v < 0.0 or v >= 1.5) else (-3.0 if v < 0.5 else 11.5)
    ch = math.cosh(v)
    if code == _SIGMOID:
        return 0.5 / (ch * ch)
    return 1.0 / (ch * ch)


@numba.njit(cache=True)
def _row_mean_sigma(h, code):
    """(mean_i sigma(h_i), sum_i h_i); the second is non-finite iff some h_i is."""
    n = h.size
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    q0 = q1 = q2 = q3 = 0.0
    if code == _RELU:   # eight independent partial sums: no fastmath needed for speed
        n8 = n - n % 8
        for i in range(0, n8, 8):
            v0, v1, v2, v3 = h[i], h[i + 1], h[i + 2], h[i + 3]
            v4, v5, v6, v7 = h[i + 4], h[i + 5], h[i + 6], h[i + 7]
            s0 += v0 if v0 > 0.0 else 0.0
            s1 += v1 if v1 > 0.0 else 0.0
            s2 += v2 if v2 > 0.0 else 0.0
            s3 += v3 if v3 > 0.0 else 0.0
            s4 += v4 if v4 > 0.0 else 0.0
            s5 += v5 if v5 > 0.0 else 0.0
            s6 += v6 if v6 > 0.0 else 0.0
            s7 += v7 if v7 > 0.0 else 0.0
            q0 += v0 + v4
            q1 += v1 + v5
            q2 += v2 + v6
            q3 += v3 + v7
        for i in range(n8, n):
            v = h[i]
            s0 += v if v > 0.0 else 0.0
            q0 += v
    else:
        for i in range(n):
            v = h[i]
            s0 += _sigma_scalar(v, code)
            q0 += v
    s = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
    return s / n, (q0 + q1) + (q2 + q3)


@numba.njit(cache=True)
def _row_coeffs(h, code, coef, a):
    """a_i = coef * sigma'(h_i); returns sum_i sigma'(h_i)^2 (for the step's gain)."""
    n = h.size
    s2 = 0.0
    if code == _RELU:
        active = 0
        for i in range(n):
            on = h[i] > 0.0
            a[i] = coef if on else 0.0
            active += 1 if on else 0
        s2 = float(active)
    else:
        for i in range(n):
            ds = _dsigma_scalar(h[i], code)
            a[i] = coef * ds
            s2 += ds * ds
    return s2


@numba.njit(cache=True)
def _gain_update(gain, g):
    """One step of the exponential average of the gain (:data:`GAIN_STEPS`); True past
    :data:`GAIN_MAX`. ``gain`` (1,) float64 carries the average from step to step."""
    gain[0] += (g - gain[0]) * (1.0 / GAIN_STEPS)
    return gain[0] > GAIN_MAX


@numba.njit(cache=True)
def _rank8_update(h, w, A, ra):
    """h += sum_{t < 8} w[t] A[ra + t] (eight rows streamed together: one load/store of h)."""
    A0, A1, A2, A3 = A[ra], A[ra + 1], A[ra + 2], A[ra + 3]
    A4, A5, A6, A7 = A[ra + 4], A[ra + 5], A[ra + 6], A[ra + 7]
    w0, w1, w2, w3, w4, w5, w6, w7 = w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]
    for i in range(h.size):
        h[i] += (((w0 * A0[i] + w1 * A1[i]) + (w2 * A2[i] + w3 * A3[i]))
                 + ((w4 * A4[i] + w5 * A5[i]) + (w6 * A6[i] + w7 * A7[i])))


@numba.njit(cache=True, nogil=True)
def _block_kernel(H, G, y, scale, B, c, code, A, gain):
    """Sequential part of one block of K = R / B steps (see the module docstring).

    H (R, N): pre-activations against the weights at the start of the block (overwritten);
    G (R, R): Gram matrix of the block's samples; y (R,); scale = eps / B; c = 1 - eps lam.
    Fills A (R, N) with the coefficient rows, row block k scaled by c^(K-1-k), so that the
    weights after the block are c^K W + A^T X_blk. Returns the index (within the block) of the
    first step whose prediction is non-finite, or -1. ``gain`` (2,) float64: the running
    average of the steps' gains (:func:`_gain_update`), and on return the index of the step at
    which it passed :data:`GAIN_MAX` (the block stops there), or -1.

    The corrections H_m <- c H_m + G_mk a_k are applied eagerly inside sub-blocks of about
    _SUB_ROWS rows, and to the rows after a sub-block all at once (a blocked triangular solve:
    each later row of H is loaded and stored once per sub-block instead of once per step).
    """
    R, N = H.shape
    K = R // B
    L = max(1, _SUB_ROWS // B)              # steps per sub-block
    w = np.empty(L * B, H.dtype)
    gain[1] = -1.0
    for s0 in range(0, K, L):
        s1 = min(K, s0 + L)
        ra, rb = s0 * B, s1 * B
        for k in range(s0, s1):
            r0 = k * B
            g = 0.0
            for r in range(r0, r0 + B):
                f, q = _row_mean_sigma(H[r], code)
                if not (math.isfinite(f) and math.isfinite(q)):
                    return k
                g += G[r, r] * _row_coeffs(H[r], code, scale * (y[r] - f), A[r])
            if _gain_update(gain, scale * g / (N * B)):
                gain[1] = k
                return -1
            for m in range(r0 + B, rb):        # rows of the same sub-block: eagerly
                Hm = H[m]
                if c != 1.0:
                    for i in range(N):
                        Hm[i] *= c
                for r in range(r0, r0 + B):
                    g = G[m, r]
                    Ar = A[r]
                    for i in range(N):
                        Hm[i] += g * Ar[i]
        if rb == R:
            break
        nr = rb - ra
        cL = c ** (s1 - s0)
        for m in range(rb, R):                  # later rows: one rank-nr update each
            p = 1.0
            for t in range(nr - 1, -1, -1):
                w[t] = G[m, ra + t] * p
                if (t % B) == 0:
                    p *= c
            Hm = H[m]
            if c != 1.0:
                for i in range(N):
                    Hm[i] *= cL
            if nr == 8:
                _rank8_update(Hm, w, A, ra)
            else:
                for t in range(nr):
                    wt = w[t]
                    At = A[ra + t]
                    for i in range(N):
                        Hm[i] += wt * At[i]
    if c != 1.0:
        p = 1.0
        for k in range(K - 1, -1, -1):
            for r in range(k * B, k * B + B):
                Ar = A[r]
                for i in range(N):
                    Ar[i] *= p
            p *= c
    return -1


def _block_numpy(H, G, y, scale, B, c, act, A, gain):
    """:func:`_block_kernel` for any activation, the per-step part in vectorised NumPy."""
    R, N = H.shape
    K = R // B
    gain[1] = -1.0
    for k in range(K):
        rows, later = slice(k * B, (k + 1) * B), slice((k + 1) * B, R)
        h = H[rows]
        f = act.sigma(h).sum(axis=1) / N
        if not (np.all(np.isfinite(f)) and np.all(np.isfinite(h))):
            return k
        ds = act.dsigma(h)
        A[rows] = (scale * (y[rows] - f))[:, None] * ds
        g = float(np.diagonal(G)[rows] @ (ds.astype(np.float64) ** 2).sum(axis=1))
        if _gain_update(gain, scale * g / (N * B)):
            gain[1] = k
            return -1
        if c != 1.0:
            H[later] *= c
        H[later] += G[later, rows] @ A[rows]
    if c != 1.0:
        A *= np.repeat(c ** np.arange(K - 1, -1, -1.0), B)[:, None]
    return -1


@numba.njit(cache=True, nogil=True)
def _end_block(W, T, cK, limit):
    """W <- cK W + T in place; returns how many |w| exceed ``limit`` or are NaN."""
    N, d = W.shape
    bad = 0
    for i in range(N):
        Wi, Ti = W[i], T[i]
        if cK != 1.0:
            for j in range(d):
                Wi[j] = cK * Wi[j] + Ti[j]
        else:
            for j in range(d):
                Wi[j] += Ti[j]
        for j in range(d):
            bad += 0 if abs(Wi[j]) <= limit else 1
    return bad


@numba.njit(cache=True, nogil=True)
def _noisy_update(W, A, X, c, amp, g, limit):
    """W <- c W + A^T X + amp g in place (one fused pass); returns the count of |w| > limit or NaN."""
    N, d = W.shape
    B = A.shape[0]
    bad = 0
    for i in range(N):
        Wi, gi = W[i], g[i]
        for j in range(d):
            Wi[j] = c * Wi[j] + amp * gi[j]
        for b in range(B):
            a = A[b, i]
            Xb = X[b]
            for j in range(d):
                Wi[j] += a * Xb[j]
        for j in range(d):
            bad += 0 if abs(Wi[j]) <= limit else 1
    return bad


@numba.njit(cache=True, nogil=True)
def _end_block_noise(W, T, V, cK, amp, limit):
    """W <- cK W + T + amp V in place (the block's Langevin sum amp V); returns how many |w|
    exceed ``limit`` or are NaN."""
    N, d = W.shape
    bad = 0
    for i in range(N):
        Wi, Ti, Vi = W[i], T[i], V[i]
        for j in range(d):
            Wi[j] = cK * Wi[j] + Ti[j] + amp * Vi[j]
            bad += 0 if abs(Wi[j]) <= limit else 1
    return bad


@lru_cache(maxsize=64)
def _bridge_coeffs(K: int, c: float):
    r"""Coefficients of the noise of a block of K steps (module docstring, *Langevin noise in
    blocks*): ``S`` (K + 1,) with :math:`S(p) = \sum_{i<p} c^{2i}`, ``mu`` (K,) with
    :math:`\mu_m = c^{K-m}S(m)/S(K)` and the bridge covariance ``kappa`` (K, K),
    :math:`\kappa(m, n) = c^{|m-n|}S(\min(m,n)) - \mu_m\mu_n S(K)`; all float64."""
    m = np.arange(K, dtype=np.float64)
    S = np.concatenate([[0.0], np.cumsum(c ** (2.0 * m))])
    mu = c ** (K - m) * S[:K] / S[K]
    lo = np.minimum.outer(np.arange(K), np.arange(K))
    kappa = c ** np.abs(m[:, None] - m[None, :]) * S[lo] - np.outer(mu, mu) * S[K]
    return S, mu, kappa


def _psd_factor(M):
    """L with L L^T = M for a symmetric positive semi-definite M (Cholesky; for a singular M, e.g.
    more samples in a block than dimensions, the symmetric square root from eigh)."""
    try:
        return np.linalg.cholesky(M)
    except np.linalg.LinAlgError:
        lam, U = np.linalg.eigh(M)
        return U * np.sqrt(np.maximum(lam, 0.0))


def _block_noise(H, G, Xb, K, B, c, amp, rng, E, Tmp):
    r"""Add to H (R = K B rows, N columns; pre-activations against the block's first weights) the
    Langevin part of every pre-activation of the block, drawn exactly in law (module docstring),
    divided by :math:`c^{m}` for a row of step m (the kernel multiplies row m by c at each of the
    m earlier steps). E (N, d + R_max - B) receives standard normals: its first d columns are
    :math:`\Xi`, whose multiple :math:`\sqrt{2\varepsilon/\beta}\sqrt{S(K)}\,\Xi` is the block's
    noise sum (the amplitude is returned), the next R - B columns are :math:`\zeta`. Tmp (R, N)
    is workspace. One matrix product adds both parts to the rows of steps m >= 1:
    :math:`H_{m} \mathrel{+}= c^{-m}\,[\,a\mu_m\sqrt{S(K)}\,x_r^\top,\; a L_r\,]\,[\Xi, \zeta]^\top`."""
    R = K * B
    d = Xb.shape[1]
    S, mu, kappa = _bridge_coeffs(K, c)
    rng.standard_normal(out=E, dtype=E.dtype.type)
    amp_end = amp * math.sqrt(S[K])
    if K == 1:
        return amp_end
    step = np.repeat(np.arange(K), B)[B:]
    inv_c = c ** (-step.astype(np.float64))
    M = np.empty((R - B, d + R - B))
    M[:, :d] = Xb[B:]
    M[:, :d] *= (amp_end * mu[step] * inv_c)[:, None]
    # the bridge part: covariance amp^2 kappa(m_r, m_q) G[r, q] over the rows of steps >= 1
    M[:, d:] = _psd_factor(kappa[step[:, None], step[None, :]] * G[B:, B:].astype(np.float64))
    M[:, d:] *= (amp * inv_c)[:, None]
    out = Tmp[: R - B]
    np.matmul(M.astype(H.dtype, copy=False), E[:, : d + R - B].T, out=out)
    H[B:] += out
    return amp_end


class _ChunkStream:
    """The data stream of :class:`_DataStream` (same samples, same order), without copying:
    rows are handed out as views of the current chunk; only a request that straddles two chunks
    is assembled into a new array. With ``total`` > CHUNK samples to hand out, the next chunk is
    drawn by a helper thread while the current one is consumed (sampling releases the GIL, and so
    do the BLAS calls and the ``nogil`` kernels of the main loop); only that thread touches the
    data generator, in order, so the stream is the same."""

    def __init__(self, problem: Problem, rng: np.random.Generator, dtype, total: int):
        self.problem, self.rng, self.dtype = problem, rng, dtype
        self.X = np.empty((0, problem.d), dtype)
        self.y = np.empty(0, dtype)
        self.pos = 0
        self._left = -(-total // CHUNK)          # chunks still to be drawn
        self._pool = self._next = None
        if self._left > 1:
            from concurrent.futures import ThreadPoolExecutor
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mflib-sgd-data")
            self._submit()

    def _sample(self):
        X, y = self.problem.sample(CHUNK, self.rng)
        return np.ascontiguousarray(X, dtype=self.dtype), np.ascontiguousarray(y, dtype=self.dtype)

    def _submit(self):
        self._next = self._pool.submit(self._sample) if self._left > 0 else None
        self._left -= 1

    def _draw(self):
        if self._next is None:
            self.X, self.y = self._sample()
        else:
            self.X, self.y = self._next.result()
            self._submit()
        self.pos = 0

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def take(self, m: int):
        end = self.pos + m
        if end <= self.y.size:
            sl = slice(self.pos, end)
            self.pos = end
            return self.X[sl], self.y[sl]
        Xs, ys = [self.X[self.pos:]], [self.y[self.pos:]]
        need = m - (self.y.size - self.pos)
        while need > 0:
            self._draw()
            take = min(need, CHUNK)
            Xs.append(self.X[:take])
            ys.append(self.y[:take])
            self.pos = take
            need -= take
        return np.concatenate(Xs), np.concatenate(ys)


def _run_fast(problem, W0, eps, steps, batch, lam, beta, rng, grid, snapshots, progress, dtype,
              block, record_risk=True, threads=None, noise="block"):
    data_rng, noise_rng = rng.spawn(2)
    dt = np.dtype(dtype).type
    W = np.array(W0, dtype=dtype, order="C", copy=True)
    N, d = W.shape
    act = problem.activation
    code = _act_code(act)
    stream = _ChunkStream(problem, data_rng, dtype, steps * batch)
    limit = BLOWUP * max(np.abs(W0).max(), 1.0)
    c = 1.0 - eps * lam
    scale = eps / batch

    def record():
        if record_risk:
            rec.record(risk=problem.risk(W if W.dtype == np.float64 else W.astype(np.float64)),
                       W=W if snapshots else None)
        else:
            rec.record(risk=np.nan, W=W if snapshots else None)

    gain = np.zeros(2)   # running average of the steps' gains; step where it passed GAIN_MAX

    def sequential(H, G, y, c_blk, k0):
        if code == _GENERIC:
            j = _block_numpy(H, G, y, scale, batch, c_blk, act, A_buf[: H.shape[0]], gain)
        else:
            j = _block_kernel(H, G, y, dt(scale), batch, dt(c_blk), code, A_buf[: H.shape[0]],
                              gain)
        if j >= 0:
            raise rec.diverged(k0 + j, "the network's prediction became non-finite")
        if gain[1] >= 0:
            raise rec.diverged(k0 + int(gain[1]) + 1, _over_gain(gain[0]))   # as in run_reference

    k = 0
    with _recorder(grid, eps, progress, threads) as rec, contextlib.closing(stream):
        # Langevin noise in blocks needs c > 0 (pre-activation noise is carried divided by c^m).
        blocked_noise = beta is not None and noise == "block" and c > 0.0
        if beta is None or blocked_noise:
            if beta is None:
                rows = BLOCK_ROWS
            else:
                rows = NOISE_BLOCK_ROWS if dt is np.float64 else NOISE_BLOCK_ROWS_F32
            K_max = block if block is not None else max(1, rows // batch)
            if blocked_noise and c < 1.0:   # keep c^-m (noise carried in H) far from overflow
                K_max = max(1, min(K_max, int(math.log(1e-20) / math.log(c))))
            R_max = K_max * batch
            H_buf = np.empty((R_max, N), dtype)
            G_buf = np.empty((R_max, R_max), dtype)
            A_buf = np.empty((R_max, N), dtype)
            T_buf = np.empty((N, d), dtype)
            if blocked_noise:
                amp = math.sqrt(2.0 * eps / beta)
                E_buf = np.empty((N, d + R_max - batch), dtype)   # normals: [Xi, zeta]
                P_buf = np.empty((R_max, N), dtype)
            for _, target in rec.spans():
                while k < target:
                    K = min(K_max, int(target) - k)
                    R = K * batch
                    Xb, yb = stream.take(R)
                    H, G = H_buf[:R], G_buf[:R, :R]
                    np.matmul(Xb, W.T, out=H)
                    np.matmul(Xb, Xb.T, out=G)
                    if blocked_noise:
                        amp_end = _block_noise(H, G, Xb, K, batch, c, amp, noise_rng, E_buf, P_buf)
                    sequential(H, G, yb, c, k)
                    np.matmul(A_buf[:R].T, Xb, out=T_buf)
                    if blocked_noise:
                        bad = _end_block_noise(W, T_buf, E_buf[:, :d], dt(c ** K), dt(amp_end), limit)
                    else:
                        bad = _end_block(W, T_buf, dt(c ** K), limit)
                    if bad:
                        raise rec.diverged(k + K, _BLOWN)
                    k += K
                    rec.tick(K)
                rec.check(W, limit=limit, what=_BLOWN)
                record()
        else:
            amp = math.sqrt(2.0 * eps / beta)
            H = np.empty((batch, N), dtype)
            G = np.empty((batch, batch), dtype)
            A_buf = np.empty((batch, N), dtype)
            g = np.empty((N, d))                  # float64 normals: the same stream for both dtypes
            for _, target in rec.spans():
                while k < target:
                    Xk, yk = stream.take(batch)
                    np.matmul(Xk, W.T, out=H)
                    np.matmul(Xk, Xk.T, out=G)
                    sequential(H, G, yk, 1.0, k)
                    noise_rng.standard_normal(out=g)
                    if _noisy_update(W, A_buf, Xk, dt(c), dt(amp), g, limit):
                        raise rec.diverged(k + 1, _BLOWN)
                    k += 1
                    rec.tick()
                rec.check(W, limit=limit, what=_BLOWN)
                record()
    return Trajectory(t=rec.t, steps=rec.steps, risk=rec.array("risk"), W=W,
                      snapshots=rec.array("W"))


def run(problem: Problem, W0, eps: float, steps: int, batch: int = 1, lam: float = 0.0,
        beta: float | None = None, rng: np.random.Generator | None = None,
        record_every: int | None = None, n_log: int | None = None,
        snapshots: bool = False, progress: bool | None = None, dtype=np.float64,
        block: int | None = None, record_risk: bool = True, threads: int | None = 1,
        _noise: str = "block") -> Trajectory:
    r"""Run one-pass SGD from ``W0`` and record the exact population risk.

    The update is the one of the module docstring; with the same ``rng`` the trajectory is the
    one of :func:`run_reference` up to round-off (in float64, :math:`10^{-12}` after thousands of
    steps), whatever ``block`` and the record steps. With ``beta`` given, the trajectory has the
    law of :func:`run_reference`'s (exactly; a different path on the same seed).

    Parameters
    ----------
    problem : Problem
        Data distribution and neuron :math:`\sigma(\langle w, x\rangle)` (:mod:`mflib.problems`).
    W0 : array, shape (N, d)
        Initial neurons (not modified).
    eps : float > 0
        Step size; time is :math:`t = k\varepsilon`.
    steps : int >= 0
    batch : int >= 1
        Samples averaged per step (same ``eps``).
    lam : float >= 0
        Ridge coefficient :math:`\lambda`.
    beta : float > 0 or None
        Inverse temperature of the Langevin noise :math:`\sqrt{2\varepsilon/\beta}\,g`; ``None``
        for plain SGD. The noise is drawn per block, exactly in law (module docstring): about
        2.7 times the cost of a noiseless step at :math:`N = 800`, :math:`d = 320` (drawing all
        :math:`Nd` normals per step cost 90 times).
    rng : numpy.random.Generator
    record_every, n_log : int, optional
        Record every ``record_every`` steps, or on ``n_log`` log-spaced steps; 0 and ``steps``
        are always recorded. The exact risk costs :math:`O(N^2 d)` per record (for ReLU,
        :math:`N = 800`, :math:`d = 320`, one core: about 8 ms, two Gram matrices and a pair sum
        in SIMD lanes, the time of some 350 steps; the dense pair sum takes 85 ms): prefer
        ``n_log``.
    snapshots : bool
        Also keep the weights at the record times.
    progress : bool or None
        Progress bar (``None``: shown for long runs unless ``MFLIB_PROGRESS=0``).
    dtype : numpy.float64 (default) or numpy.float32
        Precision of the weights and of the data during the run (risks are always computed in
        float64). float32 is about 1.5 times as fast and drifts from the float64 trajectory by
        round-off amplified along the run; at :math:`N = 800`, :math:`d = 320`, after
        :math:`10^4` steps the weights differed by :math:`3\times 10^{-3}` of their size (a few
        ReLU kinks crossed differently) and the risks by :math:`4\times 10^{-8}`.
    block : int, optional
        Steps per block (default ``64 // batch`` without noise, ``128 // batch`` with (float32:
        ``256 // batch``), at least 1). Changes the speed, not the result (with noise: not its law).
    record_risk : bool
        ``False`` skips the exact risk (``risk`` is then NaN): for timing, or when only
        ``snapshots`` are wanted.

    threads : int or None
        BLAS threads for the block products during the run (default 1; ``None`` leaves NumPy's
        setting alone). One thread is the robust choice: on a quiet 2-core machine two threads
        made a step about 1.25 times faster (22 against 28 us), but when another process holds
        a core, a thread pool synchronising every block stalls, and steps were measured 4 to 30
        times slower.

    Returns
    -------
    Trajectory
        ``W`` has the requested ``dtype``.

    Raises
    ------
    mflib.runs.DivergenceError
        When the prediction or the weights become non-finite, or the weights exceed
        :data:`BLOWUP` times their initial scale; the message names the step (checked every
        step for the prediction, at the end of every block for the weights).
    ValueError, TypeError
        For out-of-range or wrongly typed arguments (``eps <= 0``, ``steps < 0``, ``batch < 1``,
        ``lam < 0``, ``beta <= 0``, ``W0`` not of shape ``(N, d)``, ``rng`` not a Generator,
        an unsupported ``dtype``, ``block < 1``, ``threads < 1``).

    References
    ----------
    Mei, Montanari and Nguyen (2018), *A mean field view of the landscape of two-layer neural
    networks*, PNAS 115(33).
    """
    W0, eps, steps, batch, lam, beta, rng = _validate(problem, W0, eps, steps, batch, lam, beta, rng)
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be numpy.float64 or numpy.float32, got {dtype!r}") from None
    if dtype not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise ValueError(f"dtype must be numpy.float64 or numpy.float32, got {dtype}")
    if block is not None:
        block = check_int(block, "block", minimum=1)
    if threads is not None:
        threads = check_int(threads, "threads", minimum=1)
    grid = _runs.record_grid(steps, record_every, n_log)
    if _noise not in ("block", "step"):
        raise ValueError(f"_noise must be 'block' or 'step', got {_noise!r}")
    return _run_fast(problem, W0, eps, steps, batch, lam, beta, rng, grid, snapshots, progress,
                     dtype.type, block, bool(record_risk), threads, _noise)
