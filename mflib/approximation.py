r"""Networks as measures and Maurey's sampling argument (chapter 1).

A target that is itself an infinite-width network, :math:`f(x) = \int \sigma(\langle w,x\rangle)\,
\rho(dw)`, is approximated by :math:`f_N(x) = \frac1N\sum_i \sigma(\langle w_i, x\rangle)` with
:math:`w_i \sim \rho` i.i.d. Since :math:`E f_N = f` pointwise,

.. math::

    E\,\|f - f_N\|_{L^2(P)}^2 = \frac{1}{N}\Big(\int U(w, w)\,\rho(dw) - \|f\|^2\Big),

the rate :math:`1/N` of Maurey (Pisier 1981) and Barron (1993), with a constant set by
:math:`\rho` and not by the dimension.

:class:`GaussianReluTarget` makes every term exact: :math:`x \sim \mathcal N(0, I_d)`,
:math:`\sigma = \mathrm{ReLU}`, :math:`\rho = \mathcal N(0, I_d/d)`. Then
:math:`f(x) = |x|/\sqrt{2\pi d}`, :math:`\|f\|^2 = 1/(2\pi)`, :math:`\int U(w,w)\,d\rho = 1/2`, and
for a neuron :math:`w`,

.. math::

    \begin{aligned}
    \langle f, \sigma(\langle w, \cdot\rangle)\rangle &= \frac{|w|\,c_d}{\sqrt{2\pi d}},\\
    c_d &= E[z_+ |x|] = \frac{d}{\sqrt{2\pi}\,E|x|},\quad
    E|x| = \sqrt2\,\frac{\Gamma((d+1)/2)}{\Gamma(d/2)},
    \end{aligned}

(write :math:`x = |x| u` with :math:`u` uniform on the sphere and independent of :math:`|x|`), so
the error of any finite network :math:`\|f - f_N\|^2 = \|f\|^2 - \frac2N\sum_i\langle f,\sigma_i\rangle
+ \frac1{N^2}\sum_{i,j}U(w_i, w_j)` is computed in closed form (:meth:`GaussianReluTarget.l2_error`).
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln

from .problems import TeacherStudent
from .quadrature import arccos1
from .validation import as_array, check_int, check_rng


class GaussianReluTarget:
    r"""The infinite-width ReLU network :math:`f(x) = E_{w\sim\mathcal N(0,I_d/d)}\,\mathrm{relu}(\langle
    w,x\rangle) = |x|/\sqrt{2\pi d}` under :math:`x\sim\mathcal N(0, I_d)`.

    Parameters
    ----------
    d : int >= 1
    """

    def __init__(self, d: int):
        self.d = check_int(d, "d", minimum=1)
        mean_norm = np.sqrt(2.0) * np.exp(gammaln((self.d + 1) / 2) - gammaln(self.d / 2))
        self.c_d = self.d / (np.sqrt(2.0 * np.pi) * mean_norm)
        self.norm2 = 1.0 / (2.0 * np.pi)
        self.maurey_constant = 0.5 - 1.0 / (2.0 * np.pi)

    def __repr__(self) -> str:
        return f"GaussianReluTarget(d={self.d})"

    def __call__(self, X) -> np.ndarray:
        """:math:`f(x)` for the rows of ``X`` (n, d)."""
        X = as_array(X, "X", ndim=2)
        if X.shape[1] != self.d:
            raise ValueError(f"X must have d = {self.d} columns, got shape {X.shape}")
        return np.linalg.norm(X, axis=1) / np.sqrt(2.0 * np.pi * self.d)

    def sample_neurons(self, N: int, rng: np.random.Generator) -> np.ndarray:
        r"""Draw :math:`N` neurons :math:`w_i \sim \rho = \mathcal N(0, I_d/d)`, shape (N, d)."""
        N = check_int(N, "N", minimum=1)
        rng = check_rng(rng)
        return rng.standard_normal((N, self.d)) / np.sqrt(self.d)

    def l2_error(self, W) -> float:
        r"""Exact :math:`\|f - f_N\|^2_{L^2}` for the network with neurons the rows of ``W`` (N, d)."""
        W = as_array(W, "W", ndim=2)
        if W.shape[1] != self.d or W.shape[0] == 0:
            raise ValueError(f"W must have shape (N, {self.d}) with N >= 1, got {W.shape}")
        N = W.shape[0]
        A = np.einsum("ij,ij->i", W, W)
        C = W @ W.T
        np.fill_diagonal(C, A)
        U = arccos1(np.outer(A, A), C).k
        cross = np.sqrt(A).sum() * self.c_d / np.sqrt(2.0 * np.pi * self.d)
        return float(max(self.norm2 - 2.0 * cross / N + U.sum() / N**2, 0.0))

    def expected_l2_error(self, N) -> np.ndarray:
        r""":math:`E\|f - f_N\|^2 = (1/2 - 1/(2\pi))/N` for :math:`N` i.i.d. neurons."""
        N = as_array(N, "N")
        if np.any(N < 1):
            raise ValueError("N must be >= 1")
        return self.maurey_constant / N

    def as_problem(self, M: int, rng: np.random.Generator) -> TeacherStudent:
        """A finite teacher with ``M`` neurons drawn from rho (for SGD experiments)."""
        M = check_int(M, "M", minimum=1)
        return TeacherStudent(self.sample_neurons(M, rng))


def maurey_errors(target: GaussianReluTarget, Ns, reps: int, rng: np.random.Generator) -> np.ndarray:
    r"""Exact :math:`\|f - f_N\|^2` for ``reps`` independent draws at each width in ``Ns``.

    Returns an array of shape (len(Ns), reps).
    """
    if not isinstance(target, GaussianReluTarget):
        raise TypeError(f"target must be a GaussianReluTarget, got {type(target).__name__}")
    Ns = as_array(Ns, "Ns", ndim=1, dtype=None)
    if Ns.dtype.kind not in "iu" and not (Ns.dtype.kind == "f" and np.all(Ns == np.round(Ns))):
        raise TypeError(f"Ns must be a 1-D sequence of integers, got {Ns!r}")
    Ns = [check_int(int(N), "Ns", minimum=1) for N in Ns]
    reps = check_int(reps, "reps", minimum=1)
    rng = check_rng(rng)
    out = np.array([[target.l2_error(target.sample_neurons(N, rng)) for _ in range(reps)] for N in Ns])
    return out.reshape(len(Ns), reps)
