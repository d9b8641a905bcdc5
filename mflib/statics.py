r"""Statics: the global minimiser of the mean-field risk over probability measures (chapter 3).

For :math:`N\to\infty` the risk of a two-layer network becomes a convex quadratic functional of
the distribution :math:`\rho` of the neurons (DESIGN.md conventions),

.. math::

    R(\rho) = E y^2 + 2\int V\,d\rho + \iint U\,d\rho\,d\rho ,

and weight decay :math:`\lambda_{\rm wd}` (the ``lam`` of :func:`mflib.sgd.run`) adds the linear term
:math:`\lambda_{\rm wd}\int|\theta|^2 d\rho`. On a finite *dictionary* of neurons
:math:`\theta_1,\dots,\theta_n`, :math:`\rho = \sum_j p_j\delta_{\theta_j}` and the problem is the
quadratic program on the simplex

.. math::

    \min_{p\ge 0,\ \sum_j p_j = 1}\; Q(p) = E y^2 + 2\,p\cdot \tilde V + p^\top U p,
    \qquad \tilde V_j = V(\theta_j) + \tfrac{\lambda_{\rm wd}}{2}|\theta_j|^2 .

Its gradient is :math:`g = 2(\tilde V + Up)`, i.e. :math:`g_j = 2\Psi_{\lambda_{\rm wd}}(\theta_j;\rho)`
(:math:`\delta R/\delta\rho = 2\Psi`). The KKT conditions with multiplier :math:`\lambda` of the mass
constraint read

.. math::

    2\Psi(\theta_j;\rho^*) = \lambda \ \text{ where } p_j^* > 0, \qquad
    2\Psi(\theta_j;\rho^*) \ge \lambda \ \text{ everywhere,}

so :math:`\Psi = \lambda/2` on the support. For any feasible :math:`p`, convexity gives the
certificate (the Frank-Wolfe duality gap)

.. math::

    Q(p) - \min Q \;\le\; \mathrm{gap}(p) = p\cdot g - \min_j g_j ,

which :func:`solve_qp` drives below a tolerance with an exact primal active-set method.

Dictionaries
------------
:func:`explicit_dictionary`
    Any problem, atoms given as explicit weight vectors :math:`w_j` (e.g. a grid in ``d = 2``).
:func:`reduced_dictionary`
    :class:`~mflib.problems.AnisotropicGaussians` in the reduced coordinates
    :math:`(r_1, r_2) = (|P_V w|, |P_V^\perp w|)`: an atom is the uniform measure on the product of
    spheres with those radii; the directions are integrated exactly by Gauss-Jacobi quadrature.

References
----------
S. Mei, A. Montanari, P.-M. Nguyen, PNAS 115 (2018) (``mei2018mean``); L. Chizat, F. Bach, NeurIPS
2018 (``chizat2018global``); J. Nocedal, S. Wright, *Numerical Optimization*, ch. 16 (active sets).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .pde import ReducedAnisotropic
from .problems import AnisotropicGaussians, Problem
from .validation import as_array, check_int, check_real

__all__ = ["QPResult", "Dictionary", "StaticsResult", "Comparison", "solve_qp", "explicit_dictionary",
           "reduced_dictionary", "polar_grid", "solve", "compare", "certificate", "two_atom_optimum"]


# ----------------------------------------------------------------------------------------------
# The quadratic program on the simplex.
# ----------------------------------------------------------------------------------------------
@dataclass
class QPResult:
    r"""Output of :func:`solve_qp`.

    Attributes
    ----------
    p : array (n,)
        Optimal weights, :math:`p\ge0`, :math:`\sum_j p_j = 1`.
    value : float
        The objective :math:`Q(p) = c + 2V\cdot p + p^\top Up`.
    multiplier : float
        Lagrange multiplier :math:`\lambda = p\cdot g`, the common value of :math:`g_j` on the
        support.
    gap : float
        Certified duality gap :math:`p\cdot g - \min_j g_j \ge Q(p) - \min Q`.
    grad : array (n,)
        The gradient :math:`g = 2(V + Up)`.
    support : array of int
        Indices with :math:`p_j > 0`.
    iterations : int
        Outer (pricing) iterations of the active-set method.
    """

    p: np.ndarray
    value: float
    multiplier: float
    gap: float
    grad: np.ndarray
    support: np.ndarray
    iterations: int


def _null_basis(m: int) -> np.ndarray:
    """Orthonormal basis (m, m-1) of {x in R^m : sum x = 0} (a Householder reflection of e_1)."""
    v = np.full(m, 1.0 / np.sqrt(m))
    v[0] -= 1.0
    nv = v @ v
    H = np.eye(m) - (2.0 / nv) * np.outer(v, v) if nv > 0 else np.eye(m)
    return H[:, 1:]


def _ratio_step(pF, d, cap: float = 1.0):
    """Largest t in [0, cap] with pF + t d >= 0 and the index that blocks (-1 if none)."""
    neg = d < 0
    if not np.any(neg):
        return cap, -1
    t = np.full(d.shape, np.inf)
    t[neg] = pF[neg] / (-d[neg])
    k = int(np.argmin(t))
    return (cap, -1) if t[k] >= cap else (max(float(t[k]), 0.0), k)


def solve_qp(V, U, const: float = 0.0, tol: float = 1e-12, max_iter: int | None = None) -> QPResult:
    r"""Minimise :math:`Q(p) = c + 2V\cdot p + p^\top U p` over the simplex, with a certificate.

    A primal active-set method (Nocedal and Wright, Alg. 16.3, with inertia control for a singular
    :math:`U`). It keeps a free set :math:`F`; on :math:`F` it minimises :math:`Q` on the affine hull
    :math:`\{\sum_F p = 1\}` by a Newton step in an orthonormal basis :math:`Z` of :math:`\{\sum x =
    0\}` (eigen-decomposition of :math:`Z^\top U_{FF}Z`; along a flat direction with a non-zero slope
    it moves to the boundary instead), cut by the ratio test when a weight would turn negative (that
    atom leaves :math:`F`). When the affine minimiser is feasible, the atom with the smallest
    gradient :math:`g_j = 2(V_j + (Up)_j)` enters. It stops when the duality gap
    :math:`p\cdot g - \min_j g_j` is at most ``tol``. In exact arithmetic the objective decreases
    at every non-degenerate step and the method ends at the exact optimum after finitely many steps;
    the returned gap is computed afresh from the returned weights, so it bounds their suboptimality
    for the matrices given (which the method assumes positive semi-definite, as a Gram matrix is;
    a round-off violation of size :math:`\delta` weakens the bound by :math:`O(\delta)`).

    Parameters
    ----------
    V : array (n,)
        Linear coefficients (the external potential at the atoms).
    U : array (n, n)
        Symmetric positive semi-definite interaction matrix.
    const : float
        Constant added to the objective (:math:`E y^2`).
    tol : float > 0
        Stopping tolerance on the duality gap.
    max_iter : int, optional
        Cap on pricing iterations (default ``20 n + 100``); a ``RuntimeError`` names the gap reached.

    Returns
    -------
    QPResult
    """
    V = as_array(V, "V", ndim=1)
    n = V.size
    if n == 0:
        raise ValueError("V must have at least one entry (a dictionary with n >= 1 atoms)")
    U = _symmetric_U(U, n)
    const = check_real(const, "const")
    tol = check_real(tol, "tol", low=0.0, low_open=True)
    max_iter = 20 * n + 100 if max_iter is None else check_int(max_iter, "max_iter", minimum=1)

    eig_tol = 1e-13 * max(float(np.max(np.abs(np.diag(U)))), 1e-300)
    j0 = int(np.argmin(2.0 * V + np.diag(U)))
    F = [j0]
    p = np.zeros(n)
    p[j0] = 1.0
    it = 0
    while True:
        g = 2.0 * (U[:, F] @ p[F] + V)
        lam = float(p[F] @ g[F])
        jmin = int(np.argmin(g))
        gap = lam - float(g[jmin])
        if gap <= tol:
            break
        it += 1
        if it > max_iter:
            raise RuntimeError(f"solve_qp: no convergence in max_iter = {max_iter} iterations "
                               f"(duality gap {gap:.3g} > tol = {tol:g})")
        if jmin not in F:
            F.append(jmin)
        # Minimise on the affine hull of F, dropping atoms that hit zero.
        for _ in range(len(F) + 1):
            Fa = np.array(F)
            m = Fa.size
            pF = p[Fa]
            if m == 1:
                p[Fa] = 1.0
                break
            UF = U[np.ix_(Fa, Fa)]
            gF = 2.0 * (UF @ pF + V[Fa])
            Z = _null_basis(m)
            e, Q = np.linalg.eigh(Z.T @ UF @ Z)
            c = Q.T @ (Z.T @ gF)
            flat = e <= eig_tol
            slope_tol = 1e-14 * (np.abs(gF).max() + 1.0)
            steep = flat & (np.abs(c) > slope_tol)
            if np.any(steep):
                k = int(np.argmax(np.abs(c) * steep))
                d = -np.sign(c[k]) * (Z @ Q[:, k])     # the objective is linear and decreasing on d
                t, blk = _ratio_step(pF, d, cap=np.inf)
                if blk < 0:                              # cannot happen: sum d = 0, d != 0
                    raise RuntimeError("solve_qp: unbounded flat direction inside the simplex")
            else:
                y = np.where(flat, 0.0, -c / (2.0 * np.where(flat, 1.0, e)))
                d = Z @ (Q @ y)
                t, blk = _ratio_step(pF, d)
            pF = pF + t * d
            if blk < 0:
                p[Fa] = np.maximum(pF, 0.0)
                break
            pF[blk] = 0.0
            p[Fa] = np.maximum(pF, 0.0)
            F.pop(blk)
        s = p[F].sum()
        p[F] /= s
    p = np.where(p > 0, p, 0.0)
    g = 2.0 * (U @ p + V)
    lam = float(p @ g)
    gap = max(lam - float(g.min()), 0.0)
    value = float(const + 2.0 * V @ p + p @ U @ p)
    return QPResult(p=p, value=value, multiplier=lam, gap=gap, grad=g,
                    support=np.flatnonzero(p > 0), iterations=it)


def _symmetric_U(U, n):
    """U as a symmetric (n, n) array (the check solve_qp and two_atom_optimum share)."""
    U = as_array(U, "U", shape=(n, n))
    scale = max(float(np.max(np.abs(np.diag(U)))), 1e-300)
    if np.max(np.abs(U - U.T)) > 1e-10 * scale:
        raise ValueError("U must be symmetric (U[i, j] == U[j, i])")
    return U


def two_atom_optimum(V, U) -> tuple[np.ndarray, float]:
    r"""Closed-form optimum of the two-atom problem (the sympy derivation of chapter 3).

    With :math:`p = (q, 1-q)`, :math:`Q` is a parabola in :math:`q` with curvature
    :math:`a = U_{11} - 2U_{12} + U_{22} \ge 0`; its unconstrained minimiser is
    :math:`q^\circ = (U_{22} - U_{12} + V_2 - V_1)/a`, clipped to :math:`[0, 1]`. The multiplier
    is :math:`\lambda = 2(V_1 + U_{11}q + U_{12}(1-q))` when :math:`0 < q < 1`.

    Parameters
    ----------
    V : array (2,)
    U : array (2, 2), symmetric positive semi-definite

    Returns
    -------
    p : array (2,)
    multiplier : float   :math:`p\cdot g`
    """
    V = as_array(V, "V", shape=(2,))
    U = _symmetric_U(U, 2)
    if U[0, 0] < 0 or U[1, 1] < 0 or U[0, 1] ** 2 > U[0, 0] * U[1, 1] * (1 + 1e-12):
        raise ValueError("U must be positive semi-definite (a Gram matrix)")
    a = U[0, 0] - 2.0 * U[0, 1] + U[1, 1]
    b = U[1, 1] - U[0, 1] + V[1] - V[0]
    if a > 0:
        q = float(np.clip(b / a, 0.0, 1.0))
    else:
        q = 1.0 if b > 0 else 0.0
    p = np.array([q, 1.0 - q])
    g = 2.0 * (V + U @ p)
    return p, float(p @ g)


# ----------------------------------------------------------------------------------------------
# Dictionaries: a discretised parameter space with its exact potentials.
# ----------------------------------------------------------------------------------------------
@dataclass
class Dictionary:
    r"""A finite dictionary of neurons with the exact potentials of a problem.

    Attributes
    ----------
    problem : Problem
    atoms : array (n, k)
        Coordinates of the atoms: weight vectors (k = d) for ``kind == "explicit"``, radii
        :math:`(r_1, r_2)` for ``"reduced"``.
    V : array (n,)
        :math:`V(\theta_j)` (for a reduced atom, its value on the product of spheres).
    U : array (n, n)
        :math:`U(\theta_i, \theta_j)` (reduced: averaged over independent directions).
    sq_norm : array (n,)
        :math:`|\theta_j|^2`, the weight-decay term.
    Ey2 : float
        :math:`E y^2`.
    kind : str
        ``"explicit"`` or ``"reduced"``.
    n_quad : int
        Gauss-Jacobi nodes per sphere (reduced dictionaries; 0 otherwise).
    """

    problem: Problem
    atoms: np.ndarray
    V: np.ndarray
    U: np.ndarray
    sq_norm: np.ndarray
    Ey2: float
    kind: str
    n_quad: int = 0

    @property
    def n(self) -> int:
        """Number of atoms."""
        return self.V.size

    def coords(self, W) -> np.ndarray:
        """Coordinates of neurons ``W`` (N, d) in the dictionary's space: ``W`` or its radii (N, 2)."""
        W = self.problem.check_weights(W)
        return W if self.kind == "explicit" else self.problem.radii(W)

    def cross_U(self, W) -> np.ndarray:
        r""":math:`\int U(w_i,\theta)\,\delta_j(d\theta)` for neurons ``W`` (N, d) and every atom, (N, n).

        For a reduced atom this is the average over its directions, which depends on :math:`w_i`
        only through its radii.
        """
        W = self.problem.check_weights(W)
        if self.kind == "explicit":
            return self.problem.U(W, self.atoms)
        return _reduced(self.problem, self.n_quad).UBar(self.problem.radii(W), self.atoms)


def _check_problem(problem) -> Problem:
    if not isinstance(problem, Problem):
        raise TypeError(f"problem must be an mflib.problems.Problem, got {type(problem).__name__}")
    return problem


def explicit_dictionary(problem: Problem, W) -> Dictionary:
    r"""Dictionary whose atoms are the explicit neurons :math:`w_j` (rows of ``W``, shape (n, d)).

    :math:`V_j = V(w_j)`, :math:`U_{ij} = U(w_i, w_j)` from the problem's exact formulas.
    """
    problem = _check_problem(problem)
    W = problem.check_weights(W)
    U = problem.U(W)
    return Dictionary(problem=problem, atoms=W.copy(), V=problem.V(W), U=0.5 * (U + U.T),
                      sq_norm=np.einsum("ij,ij->i", W, W), Ey2=float(problem.Ey2), kind="explicit")


def _reduced(problem: AnisotropicGaussians, n_quad: int):
    """Reduced potentials of the problem with ``n_quad`` Gauss-Jacobi nodes per sphere; a
    non-ReLU activation gets the direct sum of its pair quadrature (no truncated series)."""
    return ReducedAnisotropic(problem, n_cos=(n_quad, n_quad), n_hermite=None)


def reduced_dictionary(problem: AnisotropicGaussians, R, n_quad: int = 16) -> Dictionary:
    r"""Dictionary of direction-symmetric atoms of the anisotropic-Gaussian problem.

    The distribution is invariant under rotations of :math:`V` and of :math:`V^\perp`, and
    :math:`R` is convex, so averaging any :math:`\rho` over these rotations does not increase the
    risk (Jensen): a minimiser may be taken symmetric, :math:`\rho = \bar\rho(r_1, r_2)\times
    \mathrm{Unif}(S^{s_0-1})\times\mathrm{Unif}(S^{d-s_0-1})`. An atom :math:`(r_1, r_2)` is this
    uniform measure on a product of spheres; then, exactly,

    .. math::

        V_j = V(w_j), \qquad U_{ij} = E\,U\big(w_i(u_1,u_2), w_j(u_1',u_2')\big),

    the expectation over independent directions, which only involves the cosines
    :math:`t_k = \langle u_k, u_k'\rangle` with density :math:`\propto(1 - t^2)^{(s-3)/2}` on
    :math:`[-1, 1]` (:math:`s = s_0` or :math:`d - s_0`); it is integrated by Gauss-Jacobi quadrature
    with ``n_quad`` nodes per sphere (exact: :math:`t = \pm1` for a sphere :math:`S^0`): the
    :math:`\bar U` of :class:`mflib.pde.ReducedAnisotropic` (for ReLU, which is positively
    homogeneous, evaluated once per pair of directions and scaled).

    Parameters
    ----------
    problem : AnisotropicGaussians
    R : array (n, 2)
        Radii :math:`(r_1, r_2) \ge 0` of the atoms (``r_2 = 0`` when ``d == s0``).
    n_quad : int >= 2
        Quadrature nodes per sphere.
    """
    if not isinstance(problem, AnisotropicGaussians):
        raise TypeError(f"problem must be an mflib.problems.AnisotropicGaussians, "
                        f"got {type(problem).__name__}")
    R = as_array(R, "R", ndim=2)
    if R.shape[1] != 2 or R.shape[0] == 0:
        raise ValueError(f"R must have shape (n, 2) with n >= 1 (radii r1, r2), got {R.shape}")
    if np.any(R < 0):
        raise ValueError("R must be non-negative (radii r1 = |P_V w|, r2 = |P_V^perp w|)")
    if problem.d == problem.s0 and np.any(R[:, 1] != 0):
        raise ValueError("R[:, 1] must be 0 when d == s0 (there is no orthogonal complement)")
    n_quad = check_int(n_quad, "n_quad", minimum=2)
    red = _reduced(problem, n_quad)
    U = red.UBar(R)
    V = problem.V(red.embed(R))
    return Dictionary(problem=problem, atoms=R.copy(), V=V, U=0.5 * (U + U.T),
                      sq_norm=np.einsum("ij,ij->i", R, R), Ey2=float(problem.Ey2), kind="reduced",
                      n_quad=n_quad)


def polar_grid(r_max: float, n_radii: int, n_angles: int, full_circle: bool = False,
               zero: bool = True) -> np.ndarray:
    r"""Atoms :math:`r(\cos\phi, \sin\phi)` on a polar grid, shape (n, 2).

    Radii :math:`r_{\max}k/n_{\rm radii}`, :math:`k = 1..n_{\rm radii}`; angles equally spaced on
    :math:`[0, \pi/2]` (both ends, for reduced coordinates :math:`(r_1, r_2)`) or on
    :math:`[0, 2\pi)` (``full_circle``, for explicit weights in ``d = 2``). ``zero`` adds the origin.
    """
    r_max = check_real(r_max, "r_max", low=0.0, low_open=True)
    n_radii = check_int(n_radii, "n_radii", minimum=1)
    n_angles = check_int(n_angles, "n_angles", minimum=1)
    r = r_max * np.arange(1, n_radii + 1) / n_radii
    if full_circle:
        phi = 2.0 * np.pi * np.arange(n_angles) / n_angles
    else:
        phi = np.linspace(0.0, 0.5 * np.pi, n_angles) if n_angles > 1 else np.zeros(1)
    P = np.stack([np.outer(r, np.cos(phi)).ravel(), np.outer(r, np.sin(phi)).ravel()], axis=1)
    P[np.abs(P) < 1e-15 * r_max] = 0.0
    return np.vstack([np.zeros((1, 2)), P]) if zero else P


# ----------------------------------------------------------------------------------------------
# The statics problem on a dictionary, and the distance of a finite network to its optimum.
# ----------------------------------------------------------------------------------------------
@dataclass
class StaticsResult:
    r"""Global minimiser of :math:`R_{\lambda_{\rm wd}}(\rho) = R(\rho) + \lambda_{\rm wd}\int|\theta|^2d\rho`
    over probability measures on a dictionary (output of :func:`solve`).

    Attributes
    ----------
    dictionary : Dictionary
    lam : float
        Weight decay :math:`\lambda_{\rm wd}` (0: the plain risk).
    p : array (n,)
        Optimal weights :math:`p^*` on the atoms.
    support : array of int
        Atoms with :math:`p^*_j > 0`.
    risk : float
        :math:`R(\rho^*)`, without the weight-decay term.
    objective : float
        :math:`R_{\lambda_{\rm wd}}(\rho^*)`.
    multiplier : float
        Lagrange multiplier :math:`\lambda` of :math:`\int d\rho = 1`: on the support,
        :math:`\delta R_{\lambda_{\rm wd}}/\delta\rho = 2\Psi_{\lambda_{\rm wd}} = \lambda`.
    Psi : array (n,)
        :math:`\Psi_{\lambda_{\rm wd}}(\theta_j;\rho^*) = V_j + \tfrac{\lambda_{\rm wd}}{2}|\theta_j|^2
        + (Up^*)_j` at every atom.
    gap : float
        Certified duality gap, :math:`\ge R_{\lambda_{\rm wd}}(\rho^*) - \min`.
    psi_spread : float
        :math:`\max - \min` of ``Psi`` over the support.
    psi_min_excess : float
        :math:`\min_j \Psi_j - \lambda/2` (:math:`\ge -\mathrm{gap}/2`).
    iterations : int
        Iterations of :func:`solve_qp`.
    """

    dictionary: Dictionary
    lam: float
    p: np.ndarray
    support: np.ndarray
    risk: float
    objective: float
    multiplier: float
    Psi: np.ndarray
    gap: float
    psi_spread: float
    psi_min_excess: float
    iterations: int

    @property
    def atoms(self) -> np.ndarray:
        """Coordinates of the support atoms, (m, k)."""
        return self.dictionary.atoms[self.support]

    @property
    def weights(self) -> np.ndarray:
        """Weights of the support atoms, (m,)."""
        return self.p[self.support]

    def Psi_at(self, W) -> np.ndarray:
        r""":math:`\Psi_{\lambda_{\rm wd}}(w_i;\rho^*)` at arbitrary neurons ``W`` (N, d), shape (N,)."""
        D = self.dictionary
        W = D.problem.check_weights(W)
        S = self.support
        return (D.problem.V(W) + 0.5 * self.lam * np.einsum("ij,ij->i", W, W)
                + D.cross_U(W)[:, S] @ self.p[S])


def solve(dictionary: Dictionary, lam: float = 0.0, tol: float = 1e-12,
          max_iter: int | None = None) -> StaticsResult:
    r"""Minimise :math:`R(\rho) + \lambda_{\rm wd}\int|\theta|^2 d\rho` over measures on a dictionary.

    Solves the quadratic program of the module docstring with :func:`solve_qp` (certified duality
    gap), then reports the risk, the multiplier :math:`\lambda` (:math:`2\Psi = \lambda` on the
    support) and the profile :math:`\Psi` over the dictionary.

    Parameters
    ----------
    dictionary : Dictionary
        From :func:`explicit_dictionary` or :func:`reduced_dictionary`.
    lam : float >= 0
        Weight decay :math:`\lambda_{\rm wd}`, the ``lam`` of :func:`mflib.sgd.run`, whose noiseless
        dynamics is the Wasserstein gradient flow of :math:`\tfrac12 R_{\lambda_{\rm wd}}`.
    tol : float > 0
        Duality-gap tolerance.
    max_iter : int, optional
        See :func:`solve_qp`.

    Returns
    -------
    StaticsResult
    """
    if not isinstance(dictionary, Dictionary):
        raise TypeError(f"dictionary must be an mflib.statics.Dictionary, got {type(dictionary).__name__}")
    lam = check_real(lam, "lam", low=0.0)
    D = dictionary
    Vt = D.V + 0.5 * lam * D.sq_norm
    qp = solve_qp(Vt, D.U, const=D.Ey2, tol=tol, max_iter=max_iter)
    p = qp.p
    Psi = 0.5 * qp.grad
    S = qp.support
    risk = float(D.Ey2 + 2.0 * D.V @ p + p @ D.U @ p)
    return StaticsResult(dictionary=D, lam=lam, p=p, support=S, risk=risk, objective=qp.value,
                         multiplier=qp.multiplier, Psi=Psi, gap=qp.gap,
                         psi_spread=float(Psi[S].max() - Psi[S].min()),
                         psi_min_excess=float(Psi.min() - 0.5 * qp.multiplier),
                         iterations=qp.iterations)


@dataclass
class Comparison:
    r"""A finite network against the optimum (output of :func:`compare`).

    With :math:`\rho_N = \frac1N\sum_i\delta_{w_i}` and :math:`f_\rho = \int\sigma_*(\cdot;\theta)d\rho`,
    the exact identity (KKT made quantitative)

    .. math::

        R_{\lambda_{\rm wd}}(\rho_N) - R_{\lambda_{\rm wd}}(\rho^*) = \|f_{\rho_N} - f_{\rho^*}\|^2_{L^2}
        + 2\int\Big(\Psi_{\lambda_{\rm wd}}(\theta;\rho^*) - \frac\lambda2\Big)\rho_N(d\theta)

    splits the excess objective into a distance between functions and the mass that
    :math:`\rho_N` puts where :math:`\Psi^*` is above its floor (both :math:`\ge 0` when the KKT
    conditions hold everywhere).

    Attributes
    ----------
    risk : float
        :math:`R(\rho_N)`, the exact population risk :math:`R_N`.
    excess : float
        :math:`R_{\lambda_{\rm wd}}(\rho_N) - R_{\lambda_{\rm wd}}(\rho^*)`.
    f_dist2 : float
        :math:`\|f_{\rho_N} - f_{\rho^*}\|^2_{L^2(P_x)}`.
    off_contact : float
        :math:`2\int(\Psi^*_{\lambda_{\rm wd}} - \lambda/2)\,d\rho_N`.
    w2 : float
        :math:`W_2` between :math:`\rho_N` and :math:`\rho^*` in the dictionary's coordinates
        (radii :math:`(r_1, r_2)` for a reduced dictionary).
    """

    risk: float
    excess: float
    f_dist2: float
    off_contact: float
    w2: float


def compare(result: StaticsResult, W) -> Comparison:
    r"""Distance of the network with neurons ``W`` (N, d) to the optimum ``result``.

    ``w2`` is exact (the transport linear program, :func:`mflib.transport.w2_emd`). It measures the
    distance to *this* minimiser; when the minimiser is not unique (e.g. ReLU without weight decay,
    where mass and radius trade freely) use ``excess`` and ``f_dist2``, which do not depend on the
    choice.
    """
    from . import transport as _tr

    if not isinstance(result, StaticsResult):
        raise TypeError(f"result must be an mflib.statics.StaticsResult, got {type(result).__name__}")
    D = result.dictionary
    W = D.problem.check_weights(W)
    N = W.shape[0]
    S, pS = result.support, result.p[result.support]
    sq = np.einsum("ij,ij->i", W, W)
    risk = D.problem.risk(W)
    cross = D.cross_U(W)[:, S] @ pS                      # (N,) int U(w_i, .) d rho*
    UW = D.problem.U(W)
    f_dist2 = float(UW.sum() / N**2 - 2.0 * cross.mean() + pS @ D.U[np.ix_(S, S)] @ pS)
    psi = D.problem.V(W) + 0.5 * result.lam * sq + cross
    off = float(2.0 * psi.mean() - result.multiplier)
    excess = float(risk + result.lam * sq.mean() - result.objective)
    w2 = _tr.w2_emd(D.coords(W), D.atoms[S], None, pS)
    return Comparison(risk=risk, excess=excess, f_dist2=f_dist2, off_contact=off, w2=float(w2))


def certificate(dictionary: Dictionary, W, lam: float = 0.0) -> float:
    r"""Duality gap of a finite network against a dictionary: a bound computable without the optimum.

    For :math:`\rho_N = \frac1N\sum_i\delta_{w_i}` and any measure :math:`\nu = \sum_j p_j\nu_j` on the
    dictionary's atoms :math:`\nu_j`, convexity of :math:`R_{\lambda_{\rm wd}}` gives
    :math:`R_{\lambda_{\rm wd}}(\nu) \ge R_{\lambda_{\rm wd}}(\rho_N) + 2\int\Psi_{\lambda_{\rm wd}}(\cdot;
    \rho_N)\,d(\nu-\rho_N)`, hence

    .. math::

        \begin{aligned}
        R_{\lambda_{\rm wd}}(\rho_N) - \min_{\nu} R_{\lambda_{\rm wd}}(\nu)
        &\le 2\Big(\frac1N\sum_i \Psi_{\lambda_{\rm wd}}(w_i;\rho_N)\\
        &\qquad {}- \min_j \int\Psi_{\lambda_{\rm wd}}(\cdot;\rho_N)\,d\nu_j\Big).
        \end{aligned}

    A stationary point of the particle dynamics (:math:`\nabla\Psi = 0` on the particles) that is
    not a global minimiser shows up as a large value.

    Parameters
    ----------
    dictionary : Dictionary
    W : array (N, d)
    lam : float >= 0
        Weight decay.

    Returns
    -------
    float (may be slightly negative only through round-off)
    """
    if not isinstance(dictionary, Dictionary):
        raise TypeError(f"dictionary must be an mflib.statics.Dictionary, got {type(dictionary).__name__}")
    lam = check_real(lam, "lam", low=0.0)
    D = dictionary
    W = D.problem.check_weights(W)
    sq = np.einsum("ij,ij->i", W, W)
    psi_particles = D.problem.Psi(W, W) + 0.5 * lam * sq
    psi_atoms = D.V + 0.5 * lam * D.sq_norm + D.cross_U(W).mean(axis=0)
    return float(2.0 * (psi_particles.mean() - psi_atoms.min()))
