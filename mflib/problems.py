r"""Learning problems with exact population potentials (chapters 2, 3 and 4).

A :class:`Problem` is a data distribution :math:`(x, y) \sim P` together with a neuron
:math:`\sigma_*(x; w) = \sigma(\langle w, x\rangle)` (here :math:`\theta = w`). It knows

.. math::

    V(w) = -E[y\,\sigma(\langle w, x\rangle)], \qquad
    U(w, w') = E[\sigma(\langle w, x\rangle)\,\sigma(\langle w', x\rangle)],

and therefore the exact population risk of :math:`f_N(x) = \frac1N\sum_i \sigma(\langle w_i,x\rangle)`,

.. math::

    R_N(w_1,\dots,w_N) = E[y^2] + \frac2N\sum_i V(w_i) + \frac1{N^2}\sum_{i,j} U(w_i, w_j),

and the mean-field potential :math:`\Psi(w;\rho) = V(w) + \int U(w, w')\,\rho(dw')` with its gradient.

All inputs are centred Gaussian mixtures, so everything reduces to the Gaussian pair expectation
:math:`k(A, B, C) = E[\sigma(u)\sigma(v)]` with :math:`\operatorname{Var}u = A = w^\top\Sigma w`,
:math:`\operatorname{Var}v = B = w'^\top\Sigma w'`, :math:`\operatorname{Cov}(u,v) = C = w^\top\Sigma w'`.
For ReLU it is the degree-1 arc-cosine formula (Cho and Saul 2009)

.. math::

    k(A,B,C) = \frac{1}{2\pi}\Big(\sqrt{AB - C^2} + (\pi - \vartheta)\,C\Big),\qquad
    \cos\vartheta = C/\sqrt{AB},

with :math:`\nabla_w U = \frac{1}{2\pi}\big((\pi-\vartheta)\,\Sigma w' + \sqrt{AB-C^2}\,\Sigma w/A\big)`;
for any other activation :math:`k` comes from the kink-aware quadrature of :mod:`mflib.quadrature`
(accuracy pinned by the tests at 1e-8 or better).

Problems
--------
:class:`AnisotropicGaussians`
    Mei-Montanari-Nguyen (2018): centred Gaussians with covariances
    :math:`\Sigma_\pm = \mathrm{diag}((1\pm\Delta)^2 I_{s_0}, I_{d-s_0})`, labels :math:`y = \pm 1`.
:class:`TeacherStudent`
    :math:`x \sim \mathcal N(0, I_d)`, :math:`y = f_*(x) + \text{noise}` with a two-layer teacher
    :math:`f_*(x) = \frac1M\sum_j a_j\sigma(\langle w^*_j, x\rangle)`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numba
import numpy as np

from . import activations as _act
from . import quadrature as _quad
from .validation import as_array, check_int, check_real, check_rng

_SQRT_2PI = np.sqrt(2.0 * np.pi)
_PANEL = 64   # rows per panel of the Gram matrices in the ReLU risk


# ----------------------------------------------------------------------------------------------
# Gaussian expectations for one centred Gaussian component with diagonal covariance.
# ----------------------------------------------------------------------------------------------
def _pair_moments(W1, W2, cov):
    """A (N1,), B (N2,), C (N1, N2) for the diagonal covariance vector ``cov`` (d,)."""
    SW2 = W2 * cov
    A = np.einsum("ij,ij->i", W1 * cov, W1)
    B = np.einsum("ij,ij->i", SW2, W2)
    C = W1 @ SW2.T
    return A, B, C


def _relu_k(A, B, C, same: bool = False):
    """Arc-cosine k(A, B, C) (:func:`mflib.quadrature.arccos1`) and the two coefficients of its
    w-gradient: returns k, gA, gC with grad_w k = gA * Sigma w + gC * Sigma w'. ``same`` says that
    the two sets of neurons are the same, so the diagonal pairs are exactly parallel (angle 0)."""
    AB = A[:, None] * B[None, :]
    if same:
        C = C.copy()
        np.fill_diagonal(C, A)
    r = _quad.arccos1(AB, C)
    with np.errstate(divide="ignore", invalid="ignore"):
        gA = np.where(A[:, None] > 0, r.root / A[:, None], 0.0) / (2.0 * np.pi)
    return r.k, gA, r.kappa0


def _generic_k(act, A, B, C, grad: bool):
    r"""Quadrature version of k, and (if grad) the w-gradient coefficients.

    Conditioning on :math:`u` and using Stein's lemma for the part of :math:`v` independent of
    :math:`u` gives, with no division by :math:`AB - C^2` (so parallel pairs are fine),

    .. math::

        \nabla_w E[\sigma(u)\sigma(v)] = \frac{E[\sigma'(u)\sigma(v)\,u] - C\,E[\sigma'(u)\sigma'(v)]}{A}
        \,\Sigma w + E[\sigma'(u)\sigma'(v)]\,\Sigma w'.
    """
    AA, BB = np.broadcast_to(A[:, None], C.shape), np.broadcast_to(B[None, :], C.shape)
    s, ds, kk = act.sigma, act.dsigma, act.kinks
    k = _quad.gauss_expect_pair(s, s, kk, kk, AA, BB, C)
    if not grad:
        return k, None, None
    gC = _quad.gauss_expect_pair(ds, ds, kk, kk, AA, BB, C)
    Eu = _quad.gauss_expect_pair(lambda u: ds(u) * u, s, kk, kk, AA, BB, C)
    with np.errstate(divide="ignore", invalid="ignore"):
        gA = np.where(AA > 0, (Eu - C * gC) / AA, 0.0)
    return k, gA, gC


@numba.njit(cache=True)
def _relu_pair_row(i, Gs, coef, weights, A):
    """Row i of :func:`_relu_pair_sum`: half its diagonal term plus its pairs j > i."""
    n_g, N = Gs.shape[0], Gs.shape[1]
    s = 0.0
    for c in range(coef.shape[0]):
        Ai = A[c, i]
        sc = 0.5 * _quad.arccos1_scalar(Ai * Ai, Ai)
        for j in range(i + 1, N):
            C = 0.0
            for g in range(n_g):
                C += coef[c, g] * Gs[g, i, j]
            sc += _quad.arccos1_scalar(Ai * A[c, j], C)
        s += weights[c] * sc
    return s


@numba.njit(cache=True)
def _relu_pair_sum(Gs, coef, weights):
    r""":math:`\sum_c \pi_c \sum_{i,j} k(A_{c,i}A_{c,j}, C_{c,ij})` with
    :math:`C_c = \sum_g \mathrm{coef}[c, g]\,G_g` (``Gs`` (n_g, N, N), symmetric, only its upper
    triangle read) and :math:`A_{c,i} = C_{c,ii}`; k is :func:`mflib.quadrature.arccos1_scalar`.
    Only the pairs :math:`i < j` are evaluated (k is symmetric in the pair), plus the diagonal, where
    the pair is exactly parallel (:math:`C = A`, as in ``_relu_k(..., same=True)``). One thread:
    the cost, about 25 ns a pair, is that of ``atan2`` (and ``sin``, ``cos`` for obtuse pairs)."""
    n_g, N = Gs.shape[0], Gs.shape[1]
    n_c = coef.shape[0]
    A = np.zeros((n_c, N))
    for c in range(n_c):
        for i in range(N):
            for g in range(n_g):
                A[c, i] += coef[c, g] * Gs[g, i, i]
    s = 0.0
    for i in range(N):
        s += _relu_pair_row(i, Gs, coef, weights, A)
    return 2.0 * s


@numba.njit(cache=True)
def _tail_sum(buf, j0, n):
    """buf[j0:n].sum() with four partial sums (no fastmath: a fixed order)."""
    s0 = s1 = s2 = s3 = 0.0
    j = j0
    while j + 4 <= n:
        s0 += buf[j]
        s1 += buf[j + 1]
        s2 += buf[j + 2]
        s3 += buf[j + 3]
        j += 4
    while j < n:
        s0 += buf[j]
        j += 1
    return (s0 + s1) + (s2 + s3)


@numba.njit(cache=True, error_model="numpy")
def _relu_pair_panel(Gp, coef, weights, A, S, i0, P, N, buf):
    r"""Rows :math:`i_0 \le i < i_0 + P` of :func:`_relu_pair_sum_simd` (without its factor 2):
    half the diagonal term plus the pairs :math:`i < j < N`. ``Gp`` (n_g, >= P, >= N) holds
    :math:`G_g[i, j]` at ``[g, i - i0, j]`` (only :math:`j \ge i` is read); ``A`` (n_c, >= N) the
    variances :math:`C_{c,jj}`, ``S`` their square roots; ``buf`` (>= N,) workspace. The pairs of
    a row are evaluated by :func:`mflib.quadrature.arccos1_simd` (no branches or library calls:
    the loop over :math:`j` runs in SIMD lanes) into ``buf``, then summed. The loop stores to
    ``buf[j]`` while it loads ``Gp[g, i - i0, j]``, ``A[c, j]``, ``S[c, j]``: a load whose address
    equals that of a store a few iterations earlier modulo 4096 bytes waits for it (4K aliasing),
    which made this loop 3.6 times slower in some processes; :func:`_panel_workspace` places the
    arrays so that it cannot happen."""
    n_g = Gp.shape[0]
    n_c = A.shape[0]
    total = 0.0
    for li in range(P):
        i = i0 + li
        diag = 0.0
        for c in range(n_c):
            diag += weights[c] * 0.5 * _quad.arccos1_scalar(A[c, i] * A[c, i], A[c, i])
        if n_c == 2 and n_g == 2:   # AnisotropicGaussians: both components in one pass
            A0, A1, S0, S1, G0, G1 = A[0], A[1], S[0], S[1], Gp[0, li], Gp[1, li]
            u0, u1, v0, v1 = coef[0, 0], coef[0, 1], coef[1, 0], coef[1, 1]
            p0, p1, a0, a1, r0, r1 = weights[0], weights[1], A0[i], A1[i], S0[i], S1[i]
            for j in range(i + 1, N):
                buf[j] = (p0 * _quad.arccos1_simd(a0 * A0[j], u0 * G0[j] + u1 * G1[j], r0 * S0[j])
                          + p1 * _quad.arccos1_simd(a1 * A1[j], v0 * G0[j] + v1 * G1[j],
                                                     r1 * S1[j]))
            total += diag + _tail_sum(buf, i + 1, N)
            continue
        row = 0.0
        for c in range(n_c):
            Ai, si, Ac, Sc = A[c, i], S[c, i], A[c], S[c]
            if n_g == 1:
                a0, G0 = coef[c, 0], Gp[0, li]
                for j in range(i + 1, N):
                    buf[j] = _quad.arccos1_simd(Ai * Ac[j], a0 * G0[j], si * Sc[j])
            else:
                for j in range(i + 1, N):
                    C = 0.0
                    for g in range(n_g):
                        C += coef[c, g] * Gp[g, li, j]
                    buf[j] = _quad.arccos1_simd(Ai * Ac[j], C, si * Sc[j])
            row += weights[c] * _tail_sum(buf, i + 1, N)
        total += diag + row
    return total


def _relu_pair_sum_simd(Gs, coef, weights):
    r""":func:`_relu_pair_sum` (same arguments, same pairs :math:`i \le j`) with the pairs in SIMD
    lanes (:func:`_relu_pair_panel` on all rows at once; the risk itself uses panels of rows).
    At :math:`N = 800` (640k pair evaluations), one core: about 2.6 ms against 16 ms for
    :func:`_relu_pair_sum`; equal to it within :math:`10^{-13}` relative
    (tests/test_risk_kernel.py)."""
    n_g, N = Gs.shape[0], Gs.shape[1]
    Gp, A, S, buf = _panel_workspace(n_g, coef.shape[0], N, N)
    Gp[:, :, :N] = Gs
    A[:, :N] = coef @ np.array([np.diagonal(G) for G in Gs])
    S[:, :N] = np.sqrt(A[:, :N])
    return 2.0 * _relu_pair_panel(Gp, coef, weights, A, S, 0, N, N, buf)


def _panel_workspace(n_g, n_c, N, P):
    """Gp (n_g, P, L), A (n_c, L), S (n_c, L), buf (L,), L >= N a multiple of 512 doubles, carved
    from one buffer so that, modulo 4096 bytes, every row of Gp starts 256 bytes after ``buf``,
    every row of A 768 and of S 1280 (rows 4096-byte multiples long): the loads of
    :func:`_relu_pair_panel` then alias only stores at least 44 SIMD iterations old."""
    L = -(-N // 512) * 512
    sizes = (L, n_g * P * L, n_c * L, n_c * L)
    slab = np.empty(sum(sizes) + 4 * 512 + 512)
    start = (-slab.ctypes.data % 4096) // 8                     # first 4096-byte boundary
    out, pos = [], start
    for size, off in zip(sizes, (0, 32, 96, 160), strict=True):  # offsets in doubles
        pos += (off - pos + start) % 512
        out.append(slab[pos:pos + size])
        pos += size
    buf, Gp, A, S = out
    return Gp.reshape(n_g, P, L), A.reshape(n_c, L), S.reshape(n_c, L), buf


class Problem(ABC):
    r"""A data distribution with a neuron :math:`\sigma(\langle w, x\rangle)` and exact potentials.

    Subclasses define :meth:`sample`, :attr:`Ey2`, :meth:`V`, :meth:`U` and the gradients; this
    class derives the risk, :math:`\Psi` and :math:`\nabla\Psi` from them.
    """

    d: int
    activation: _act.Activation

    @property
    @abstractmethod
    def Ey2(self) -> float:
        """:math:`E[y^2]`."""

    @abstractmethod
    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` i.i.d. pairs: ``X`` (n, d), ``y`` (n,)."""

    @abstractmethod
    def V(self, W) -> np.ndarray:
        """External potential :math:`V(w_i)`, shape (N,)."""

    @abstractmethod
    def U(self, W1, W2=None) -> np.ndarray:
        """Interaction :math:`U(w_i, w'_j)`, shape (N1, N2) (``W2`` defaults to ``W1``)."""

    @abstractmethod
    def grad_V(self, W) -> np.ndarray:
        r""":math:`\nabla V(w_i)`, shape (N, d)."""

    @abstractmethod
    def _grad_U_coeffs(self, W1, W2):
        """List of (cov, gA, gC): grad_w U(w_i, w'_j) = sum cov*(gA_ij w_i + gC_ij w'_j)."""

    # -- derived quantities ------------------------------------------------------------------
    def check_weights(self, W, name: str = "W") -> np.ndarray:
        """Validate neurons: ``W`` as a finite float array of shape (N, d) with N >= 1, else a
        ValueError naming ``name``. Returns the array."""
        W = as_array(W, name, ndim=2)
        if W.shape[1] != self.d:
            raise ValueError(f"{name} must have d = {self.d} columns, got shape {W.shape}")
        if W.shape[0] == 0:
            raise ValueError(f"{name} must have at least one row (N >= 1), got shape {W.shape}")
        return W

    def init_weights(self, N: int, kappa: float, rng: np.random.Generator) -> np.ndarray:
        r"""Gaussian initialisation :math:`w_i\sim\mathcal N(0,\kappa^2 I_d/d)`, shape (N, d):
        exactly ``rng.standard_normal((N, d)) * kappa / np.sqrt(d)`` (one draw of N d normals, so
        the random stream and the values are those of that expression)."""
        N = check_int(N, "N", minimum=1)
        kappa = check_real(kappa, "kappa", low=0.0)
        return check_rng(rng).standard_normal((N, self.d)) * kappa / np.sqrt(self.d)

    def grad1_U(self, W1, W2=None) -> np.ndarray:
        r""":math:`\nabla_w U(w_i, w'_j)`, shape (N1, N2, d). Memory :math:`N_1 N_2 d`."""
        W1 = self.check_weights(W1, "W1")
        W2 = W1 if W2 is None else self.check_weights(W2, "W2")
        out = np.zeros((W1.shape[0], W2.shape[0], self.d))
        for cov, gA, gC in self._grad_U_coeffs(W1, W2):
            out += gA[:, :, None] * (W1 * cov)[:, None, :] + gC[:, :, None] * (W2 * cov)[None, :, :]
        return out

    def Psi(self, W, W_rho) -> np.ndarray:
        r""":math:`\Psi(w_i;\rho) = V(w_i) + \frac1M\sum_j U(w_i, w'_j)` for :math:`\rho` the
        empirical measure of the rows of ``W_rho`` (M, d). Shape (N,)."""
        W = self.check_weights(W)
        W_rho = self.check_weights(W_rho, "W_rho")
        return self.V(W) + self.U(W, W_rho).mean(axis=1)

    def grad_Psi(self, W, W_rho) -> np.ndarray:
        r""":math:`\nabla_w\Psi(w_i;\rho)`, shape (N, d), without forming the (N, M, d) array."""
        W = self.check_weights(W)
        W_rho = self.check_weights(W_rho, "W_rho")
        M = W_rho.shape[0]
        g = self.grad_V(W)
        for cov, gA, gC in self._grad_U_coeffs(W, W_rho):
            g += (gA.mean(axis=1)[:, None] * W + (gC @ W_rho) / M) * cov
        return g

    def risk(self, W) -> float:
        r"""Exact population risk :math:`R_N` of :math:`f_N` with neurons the rows of ``W``."""
        W = self.check_weights(W)
        N = W.shape[0]
        return float(self.Ey2 + 2.0 * self.V(W).sum() / N + self.U(W).sum() / N**2)

    def empirical_risk(self, W, X, y) -> float:
        r"""Monte Carlo risk :math:`\frac1n\sum_j (y_j - f_N(x_j))^2` on samples (X, y)."""
        W = self.check_weights(W)
        X = as_array(X, "X", shape=(None, self.d))
        y = as_array(y, "y", shape=(X.shape[0],))
        f = self.activation.sigma(X @ W.T).mean(axis=1)
        return float(np.mean((y - f) ** 2))


class _CentredGaussianMixture(Problem):
    """Shared machinery: x | class c ~ N(0, diag(cov_c)) with class weights pi_c."""

    components: list[tuple[float, np.ndarray]]      # (weight, diagonal covariance (d,))

    def _k(self, W1, W2, cov, grad=False):
        A, B, C = _pair_moments(W1, W2, cov)
        if self.activation is _act.relu:
            return _relu_k(A, B, C, same=W1 is W2)
        return _generic_k(self.activation, A, B, C, grad)

    def U(self, W1, W2=None) -> np.ndarray:
        W1 = self.check_weights(W1, "W1")
        W2 = W1 if W2 is None else self.check_weights(W2, "W2")
        return sum(p * self._k(W1, W2, cov)[0] for p, cov in self.components)

    def risk(self, W) -> float:
        r"""Exact population risk :math:`R_N` (:meth:`Problem.risk`). For ReLU, the pair sum
        :math:`\sum_{i,j}U(w_i, w_j)` runs in a compiled kernel over the pairs :math:`i \le j`
        (:func:`_relu_pair_panel`, SIMD lanes over the pairs of a row) on Gram matrices of
        groups of coordinates with equal variances in every component (two groups for
        :class:`AnisotropicGaussians`, one for :class:`TeacherStudent`), formed in panels of
        64 rows (columns :math:`j \ge i` only) that the kernel reads while they are in cache:
        at :math:`N = 800`, :math:`d = 320`, one core, about 7 ms (half of it the products)
        against 85 ms for :meth:`Problem.risk`; equal to it within :math:`10^{-12}` relative
        (tests/test_problems.py, tests/test_risk_kernel.py)."""
        if self.activation is not _act.relu:
            return super().risk(W)
        W = self.check_weights(W)
        N = W.shape[0]
        covs = np.array([cov for _, cov in self.components])               # (n_c, d)
        levels, group = np.unique(covs.T, axis=0, return_inverse=True)     # (n_g, n_c), (d,)
        group = group.reshape(-1)
        if levels.shape[0] <= covs.shape[0]:     # C_c = sum_g cov_c[g] W_g W_g^T
            Ws = []
            for g in range(levels.shape[0]):
                cols = np.flatnonzero(group == g)
                if cols[-1] - cols[0] == cols.size - 1:   # a range of columns: a view, no copy
                    Ws.append(W[:, cols[0]:cols[-1] + 1])
                else:
                    Ws.append(np.ascontiguousarray(W[:, cols]))
            coef = np.ascontiguousarray(levels.T)
        else:                                    # one Gram matrix per component
            Ws = [W * np.sqrt(cov) for cov in covs]
            coef = np.eye(covs.shape[0])
        weights = np.array([p for p, _ in self.components], dtype=float)
        # Row panels of the Gram matrices (rows i0..i1, columns j >= i0): one product each, then
        # the kernel on the panel while it is in cache; 1 MB of workspace instead of 2 N^2.
        P = min(N, _PANEL)
        Gp, A, S, buf = _panel_workspace(len(Ws), coef.shape[0], N, P)
        A[:, :N] = coef @ np.array([np.einsum("ij,ij->i", Wg, Wg) for Wg in Ws])
        S[:, :N] = np.sqrt(A[:, :N])
        pair = 0.0
        for i0 in range(0, N, P):
            i1 = min(N, i0 + P)
            for g, Wg in enumerate(Ws):
                np.matmul(Wg[i0:i1], Wg[i0:].T, out=Gp[g, : i1 - i0, i0:N])
            pair += _relu_pair_panel(Gp, coef, weights, A, S, i0, i1 - i0, N, buf)
        pair *= 2.0
        return float(self.Ey2 + 2.0 * self.V(W).sum() / N + pair / N**2)

    def _grad_U_coeffs(self, W1, W2):
        out = []
        for p, cov in self.components:
            _, gA, gC = self._k(W1, W2, cov, grad=True)
            out.append((cov, p * gA, p * gC))
        return out

    def _mean_sigma(self, W, cov):
        """E[sigma(<w, x>)] and the coefficient g with grad_w = g * Sigma w, for x ~ N(0, Sigma)."""
        A = np.einsum("ij,ij->i", W * cov, W)
        if self.activation is _act.relu:
            s = np.sqrt(A)
            with np.errstate(divide="ignore", invalid="ignore"):
                g = np.where(s > 0, 1.0 / (_SQRT_2PI * s), 0.0)
            return s / _SQRT_2PI, g
        act = self.activation
        m = _quad.gauss_expect(act.sigma, act.kinks, A)
        # Stein: E[sigma'(u) x] = Sigma w E[sigma'(u) u] / A.
        Eu = _quad.gauss_expect(lambda u: act.dsigma(u) * u, act.kinks, A)
        with np.errstate(divide="ignore", invalid="ignore"):
            g = np.where(A > 0, Eu / A, 0.0)
        return m, g


class AnisotropicGaussians(_CentredGaussianMixture):
    r"""Centred anisotropic Gaussians (Mei, Montanari and Nguyen 2018).

    With probability 1/2, :math:`y = +1` and :math:`x \sim \mathcal N(0, \Sigma_+)`; otherwise
    :math:`y = -1` and :math:`x \sim \mathcal N(0, \Sigma_-)`, where
    :math:`\Sigma_\pm = \mathrm{diag}((1\pm\Delta)^2 I_{s_0}, I_{d-s_0})`. Only the first
    :math:`s_0` coordinates (the subspace :math:`V`) carry information. Then :math:`E y^2 = 1`,

    .. math::

        \begin{aligned}
        V(w) &= -\tfrac12\big(E_+\sigma(\langle w,x\rangle) - E_-\sigma(\langle w,x\rangle)\big),\\
        U(w,w') &= \tfrac12\big(k_+(w,w') + k_-(w,w')\big),
        \end{aligned}

    and for ReLU :math:`V(w) = -(s_+(w) - s_-(w))/(2\sqrt{2\pi})` with
    :math:`s_\pm(w)^2 = (1\pm\Delta)^2|P_V w|^2 + |P_V^\perp w|^2`.

    Parameters
    ----------
    d : int
        Dimension, >= 1.
    s0 : int
        Informative dimensions, 1 <= s0 <= d.
    delta : float
        Anisotropy :math:`\Delta \in [0, 1)`.
    activation : str or Activation
        Default ``"relu"`` (closed forms); others use quadrature.
    """

    def __init__(self, d: int, s0: int, delta: float, activation="relu"):
        self.d = check_int(d, "d", minimum=1)
        self.s0 = check_int(s0, "s0", minimum=1)
        if self.s0 > self.d:
            raise ValueError(f"s0 must be <= d = {self.d} (informative dimensions), got {s0}")
        self.delta = check_real(delta, "delta", low=0.0, high=1.0, high_open=True)
        self.activation = _act.get(activation)
        self.cov_plus = np.ones(self.d)
        self.cov_plus[: self.s0] = (1.0 + self.delta) ** 2
        self.cov_minus = np.ones(self.d)
        self.cov_minus[: self.s0] = (1.0 - self.delta) ** 2
        self.components = [(0.5, self.cov_plus), (0.5, self.cov_minus)]

    def __repr__(self) -> str:
        return (f"AnisotropicGaussians(d={self.d}, s0={self.s0}, delta={self.delta}, "
                f"activation={self.activation.name!r})")

    @property
    def Ey2(self) -> float:
        return 1.0

    def sample(self, n: int, rng: np.random.Generator):
        n = check_int(n, "n", minimum=0)
        rng = check_rng(rng)
        y = np.where(rng.random(n) < 0.5, 1.0, -1.0)
        X = rng.standard_normal((n, self.d))
        X[:, : self.s0] *= (1.0 + self.delta * y)[:, None]
        return X, y

    def V(self, W) -> np.ndarray:
        W = self.check_weights(W)
        mp, _ = self._mean_sigma(W, self.cov_plus)
        mm, _ = self._mean_sigma(W, self.cov_minus)
        return -0.5 * (mp - mm)

    def grad_V(self, W) -> np.ndarray:
        W = self.check_weights(W)
        _, gp = self._mean_sigma(W, self.cov_plus)
        _, gm = self._mean_sigma(W, self.cov_minus)
        return -0.5 * (gp[:, None] * W * self.cov_plus - gm[:, None] * W * self.cov_minus)

    def radii(self, W) -> np.ndarray:
        r"""Reduced coordinates :math:`(r_1, r_2) = (|P_V w|, |P_V^\perp w|)`, shape (N, 2)."""
        W = self.check_weights(W)
        return np.stack([np.linalg.norm(W[:, : self.s0], axis=1),
                         np.linalg.norm(W[:, self.s0:], axis=1)], axis=1)


class TeacherStudent(_CentredGaussianMixture):
    r"""Teacher-student regression with Gaussian inputs.

    :math:`x \sim \mathcal N(0, I_d)` and :math:`y = f_*(x) + \xi`, :math:`\xi \sim \mathcal
    N(0, \text{noise\_std}^2)` independent, with the teacher
    :math:`f_*(x) = \frac1M\sum_{j=1}^M a_j\,\sigma(\langle w^*_j, x\rangle)`. Then

    .. math::

        \begin{aligned}
        V(w) &= -\frac1M\sum_j a_j\,U(w, w^*_j),\\
        E y^2 &= \frac1{M^2}\sum_{j,l} a_j a_l U(w^*_j, w^*_l) + \text{noise\_std}^2,
        \end{aligned}

    and the minimal risk over all functions is ``noise_std**2``.

    Parameters
    ----------
    W_teacher : array, shape (M, d)
    a_teacher : array, shape (M,), optional (default all ones)
    noise_std : float, >= 0
    activation : str or Activation
    """

    def __init__(self, W_teacher, a_teacher=None, noise_std: float = 0.0, activation="relu"):
        Wt = as_array(W_teacher, "W_teacher", ndim=2)
        if Wt.shape[0] == 0 or Wt.shape[1] == 0:
            raise ValueError(f"W_teacher must have shape (M, d) with M, d >= 1, got {Wt.shape}")
        self.d = Wt.shape[1]
        self.W_teacher = Wt
        M = Wt.shape[0]
        self.a_teacher = (np.ones(M) if a_teacher is None
                          else as_array(a_teacher, "a_teacher", shape=(M,)))
        self.noise_std = check_real(noise_std, "noise_std", low=0.0)
        self.activation = _act.get(activation)
        self.components = [(1.0, np.ones(self.d))]
        Ut = self.U(Wt)
        self._Ey2 = float(self.a_teacher @ Ut @ self.a_teacher / M**2 + self.noise_std**2)

    def __repr__(self) -> str:
        return (f"TeacherStudent(d={self.d}, M={self.W_teacher.shape[0]}, "
                f"noise_std={self.noise_std}, activation={self.activation.name!r})")

    @property
    def Ey2(self) -> float:
        return self._Ey2

    def teacher(self, X) -> np.ndarray:
        """:math:`f_*(x)` for rows of X, shape (n,)."""
        X = as_array(X, "X", shape=(None, self.d))
        return self.activation.sigma(X @ self.W_teacher.T) @ self.a_teacher / self.W_teacher.shape[0]

    def sample(self, n: int, rng: np.random.Generator):
        n = check_int(n, "n", minimum=0)
        rng = check_rng(rng)
        X = rng.standard_normal((n, self.d))
        y = self.teacher(X)
        if self.noise_std > 0:
            y = y + self.noise_std * rng.standard_normal(n)
        return X, y

    def V(self, W) -> np.ndarray:
        W = self.check_weights(W)
        return -(self.U(W, self.W_teacher) @ self.a_teacher) / self.W_teacher.shape[0]

    def grad_V(self, W) -> np.ndarray:
        W = self.check_weights(W)
        M = self.W_teacher.shape[0]
        g = np.zeros_like(W)
        for cov, gA, gC in self._grad_U_coeffs(W, self.W_teacher):
            g -= ((gA @ self.a_teacher)[:, None] * W + (gC * self.a_teacher) @ self.W_teacher) * cov / M
        return g
