r"""The house style of the book's figures: rate plots, particle histograms, neuron clouds.

Opt-in, like POT's ``ot.plot``: no numerical module imports it, and matplotlib is imported only
inside these functions, so ``import mflib`` never loads matplotlib. Every function draws on a
given ``matplotlib.axes.Axes`` (a new figure when ``ax`` is None) and returns it.

:func:`loglog_axes`
    log-log axes with plain tick labels at the data (chapters 4, 6, 7).
:func:`rate_plot`
    a measured rate: points with error bars on log-log axes, the fitted line of
    :func:`mflib.fitting.loglog_fit` and a theorem's rate, labelled with the fitted slope
    (chapters 1, 4, 7).
:func:`hist_overlay`
    histograms of particles over a density, a second particle system or a reference histogram
    (chapters 4, 7).
:func:`plot_neurons`
    neurons of a two-layer network on the lifted circle, before and after training (chapter 6).
:func:`risk_curves`
    the risk of several runs against time (anything with ``t`` and ``risk``; chapter 5).
:func:`run_groups`
    risk curves of groups of replicate runs, one legend entry per group (chapters 2, 4).
:func:`radii_cloud`
    neurons in reduced coordinates :math:`(r_1, r_2)`, over a density's contours (chapters 2, 4).
:func:`potential_map`
    :math:`\log_{10}(\Psi_\lambda - \mu/2)` over a dictionary and the optimum's support (chapter 3).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

__all__ = ["loglog_axes", "rate_plot", "slope_text", "hist_overlay", "plot_neurons", "risk_curves",
           "run_groups", "radii_cloud", "potential_map"]


def _axes(ax):
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots()
    return ax


def _tick(v) -> str:
    v = float(v)
    return str(int(v)) if v.is_integer() else f"{v:g}"


def _legend(ax, legend):
    """``ax.legend(fontsize=8)`` (or with the keywords in ``legend``) when something is labelled."""
    if legend and ax.get_legend_handles_labels()[1]:
        ax.legend(**({"fontsize": 8} if legend is True else legend))


def loglog_axes(ax=None, xticks=None, *, xlabel=None, ylabel=None, title=None):
    """Log scales on both axes; tick labels at ``xticks`` (plain numbers, no minor x ticks).

    Without ``xticks`` the major ticks are matplotlib's and the minor x ticks are unlabelled (a
    range under a decade otherwise fills the axis with ``2x10^-3``-style labels).

    Parameters
    ----------
    ax : matplotlib Axes, optional
    xticks : sequence of float, optional
        Typically the measured sizes (``N``, ``eps``, ``n``).
    xlabel, ylabel, title : str, optional

    Returns
    -------
    ax
    """
    from matplotlib import ticker

    ax = _axes(ax)
    ax.set_xscale("log")
    ax.set_yscale("log")
    if xticks is not None:
        xticks = np.asarray(xticks, dtype=float).ravel()
        ax.set_xticks(xticks, [_tick(v) for v in xticks])
        ax.xaxis.set_minor_locator(ticker.NullLocator())
    else:
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    for key, val in (("xlabel", xlabel), ("ylabel", ylabel), ("title", title)):
        if val is not None:
            ax.set(**{key: val})
    return ax


def _field(fit, name):
    """``fit.name`` or ``fit[name]`` (the fit result may be an object or a mapping), else None."""
    if hasattr(fit, name):
        return getattr(fit, name)
    if isinstance(fit, Mapping) or hasattr(fit, "__getitem__") and not isinstance(fit, tuple | list):
        try:
            return fit[name]
        except (KeyError, IndexError, TypeError):
            return None
    return None


def _fit_numbers(fit) -> dict:
    """slope, se, lo, hi (NaN where the fit does not say) of a fit result or a (slope, se) pair."""
    if isinstance(fit, tuple | list) and len(fit) == 2 and np.isscalar(fit[0]):
        return {"slope": float(fit[0]), "se": float(fit[1]), "lo": np.nan, "hi": np.nan}
    slope = _field(fit, "slope")
    if slope is None:
        raise TypeError("fit must be a result of mflib.fitting.loglog_fit (with a slope) or a "
                        f"(slope, slope_se) pair, got {type(fit).__name__}")
    se = _field(fit, "slope_se")
    ci = _field(fit, "ci")
    lo, hi = (np.nan, np.nan) if ci is None else (float(ci[0]), float(ci[1]))
    return {"slope": float(slope), "se": np.nan if se is None else float(se), "lo": lo, "hi": hi}


def slope_text(fit, fmt: str | None = None) -> str:
    r"""The fitted slope as legend text: ``"slope -0.48 $\pm$ 0.03"`` (standard error), or
    ``"slope -0.48 [-0.55, -0.41]"`` (confidence interval) when the fit has no standard error.

    ``fit`` is a :func:`mflib.fitting.loglog_fit` result (attribute or key access) or a
    ``(slope, slope_se)`` pair; ``fmt`` may use the fields ``slope``, ``se``, ``lo``, ``hi``.
    """
    nums = _fit_numbers(fit)
    if fmt is None:
        fmt = ("slope {slope:.2f} $\\pm$ {se:.2f}" if np.isfinite(nums["se"])
               else "slope {slope:.2f} [{lo:.2f}, {hi:.2f}]" if np.isfinite(nums["lo"])
               else "slope {slope:.2f}")
    return fmt.format(**nums)


def _fit_line(fit, x):
    """The fitted line at x: the middle of ``band(x)``, else ``exp(intercept) x^slope``, else None."""
    band = _field(fit, "band")
    if callable(band):
        out = band(x)
        if isinstance(out, tuple | list) and len(out) == 3:
            return np.asarray(out[1], dtype=float)
        for name in ("mid", "middle", "center", "fit"):
            if hasattr(out, name):
                return np.asarray(getattr(out, name), dtype=float)
    intercept, slope = _field(fit, "intercept"), _field(fit, "slope")
    if intercept is not None and slope is not None:
        return np.exp(float(intercept)) * x ** float(slope)
    return None


def rate_plot(ax, x, y, y_se=None, *, fit=None, label: str | None = None,
              slope_format: str | None = None, fit_line: bool = True,
              reference: float | Callable | None = None, reference_label: str | None = None,
              reference_style: dict | None = None, color=None, fmt: str = "o-", xticks=None,
              xlabel=None, ylabel=None, title=None, legend: bool | dict = True, **errorbar_kw):
    r"""A measured rate on log-log axes: points, error bars, the fitted line and a theorem's rate.

    Parameters
    ----------
    ax : matplotlib Axes or None
    x, y : array, shape (K,)
        Sizes (``N``, ``eps``, ...) and positive measured values.
    y_se : array, shape (K,), optional
        Error bars (standard errors of ``y``).
    fit : optional
        A :func:`mflib.fitting.loglog_fit` result (read by attribute or key: ``slope``,
        ``slope_se``, ``ci``, ``band(x)`` or ``intercept``) or a ``(slope, slope_se)`` pair. Its
        slope is appended to ``label`` (:func:`slope_text` with ``slope_format``).
    fit_line : bool
        Draw the fitted line (dashed, in the colour of the points) when ``fit`` has one (a pair
        does not).
    reference : float or callable, optional
        The theorem's rate: an exponent :math:`r` (the line :math:`C x^r`) or a function
        :math:`g` (the curve :math:`C g(x)`, e.g. :math:`\sqrt{\log N/N}`), with :math:`C` such
        that it passes through the first point.
    reference_label : str, optional
    reference_style : dict, optional
        ``ax.plot`` keywords of the reference line (default black dashed).
    color, fmt, errorbar_kw
        Passed to ``ax.errorbar`` (``fmt="o-"``: markers joined by lines).
    xticks, xlabel, ylabel, title
        As in :func:`loglog_axes`.
    legend : bool or dict
        Draw the legend (``ax.legend(fontsize=8)``, or with these keywords).

    Returns
    -------
    ax
    """
    ax = _axes(ax)
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if y.shape != x.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    if np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("x and y must be positive for a log-log plot")
    text = label
    if fit is not None:
        s = slope_text(fit, slope_format)
        text = s if label is None else f"{label}, {s}"
    bars = ax.errorbar(x, y, yerr=None if y_se is None else np.asarray(y_se, dtype=float), fmt=fmt,
                       color=color, label=text, **errorbar_kw)
    col = bars.lines[0].get_color()
    if fit is not None and fit_line:
        line = _fit_line(fit, x)
        if line is not None:
            ax.plot(x, line, "--", color=col, lw=1.0, alpha=0.8)
    if reference is not None:
        g = reference if callable(reference) else (lambda t, r=float(reference): t ** r)
        gx = np.asarray(g(x), dtype=float)
        style = {"color": "k", "ls": "--"} if reference_style is None else dict(reference_style)
        ax.plot(x, y[0] * gx / gx[0], label=reference_label, **style)
    loglog_axes(ax, xticks, xlabel=xlabel, ylabel=ylabel, title=title)
    _legend(ax, legend)
    return ax


def hist_overlay(ax, samples, density=None, *, bins=40, range=None, histtype: str = "step",
                 alpha=None, colors=None, density_label: str | None = None,
                 reference=None, reference_label: str | None = None,
                 xlabel=None, ylabel="density", title=None, legend: bool | dict = True):
    r"""Histograms of particles over a density.

    All histograms are normalised to densities and share one set of bin edges.

    Parameters
    ----------
    ax : matplotlib Axes or None
    samples : array (n,), sequence of arrays, or dict {label: array (n,)}
        The particle systems (one histogram each, drawn with ``histtype``, ``alpha`` and
        ``colors``).
    density : optional
        The law they should follow: a pair ``(x, p)`` drawn as a black curve (a density on a
        grid), or an array of particles of the limit drawn as a black step histogram.
    bins : int or array
        Number of bins over the range of all the data, or the edges.
    range : (float, float), optional
        Range of the bins when ``bins`` is a number.
    reference : array (m,), optional
        Particles drawn first as a filled grey histogram (a reference law to compare against).
    density_label, reference_label : str, optional
    xlabel, ylabel, title : str, optional
    legend : bool or dict
        Draw the legend (``ax.legend(fontsize=8)``, or with these keywords).

    Returns
    -------
    ax
    """
    ax = _axes(ax)
    if isinstance(samples, Mapping):
        items = [(k, np.asarray(v, dtype=float).ravel()) for k, v in samples.items()]
    elif isinstance(samples, np.ndarray) and samples.ndim == 1:
        items = [(None, samples.astype(float))]
    else:
        items = [(None, np.asarray(v, dtype=float).ravel()) for v in samples]
    curve = isinstance(density, tuple | list) and len(density) == 2
    data = [v for _, v in items]
    if density is not None and not curve:
        data.append(np.asarray(density, dtype=float).ravel())
    if reference is not None:
        data.append(np.asarray(reference, dtype=float).ravel())
    edges = (np.histogram_bin_edges(np.concatenate(data), bins=bins, range=range)
             if np.ndim(bins) == 0 else np.asarray(bins, dtype=float))
    if reference is not None:
        ax.hist(np.asarray(reference, dtype=float).ravel(), bins=edges, density=True,
                histtype="stepfilled", color="0.85", label=reference_label)
    for i, (lab, v) in enumerate(items):
        kw = {} if colors is None else {"color": colors[i]}
        if alpha is not None:
            kw["alpha"] = alpha
        ax.hist(v, bins=edges, density=True, histtype=histtype, label=lab, **kw)
    if density is not None:
        if curve:
            ax.plot(np.asarray(density[0], dtype=float), np.asarray(density[1], dtype=float), "k-",
                    label=density_label)
        else:
            ax.hist(np.asarray(density, dtype=float).ravel(), bins=edges, density=True,
                    histtype="step", color="k", lw=1.5, label=density_label)
    for key, val in (("xlabel", xlabel), ("ylabel", ylabel), ("title", title)):
        if val is not None:
            ax.set(**{key: val})
    _legend(ax, legend)
    return ax


def plot_neurons(ax, a0, W0, a1, W1, title: str = ""):
    r"""Neurons of a network on :func:`mflib.datasets.lifted_circle` data, before (grey) and after
    (colour) training.

    Each neuron :math:`\bar a_k\,\mathrm{relu}(\langle w_k, x\rangle)` is drawn at its preferred
    angle :math:`\psi_k = \operatorname{atan2}(w_{k2}, w_{k1})` on the circle (where its response is
    largest) and its signed size :math:`\bar a_k |w_k|` (relu is 1-homogeneous), on a symlog axis.

    Parameters
    ----------
    ax : matplotlib Axes or None
    a0, a1 : array, shape (N,)
        Output weights :math:`\bar a` before and after.
    W0, W1 : array, shape (N, d), d >= 2
        Input weights before and after.
    title : str

    Returns
    -------
    ax
    """
    ax = _axes(ax)
    for a, W, c, lab in ((a0, W0, "0.65", "before"), (a1, W1, "C1", "after")):
        a, W = np.asarray(a, dtype=float), np.asarray(W, dtype=float)
        ax.scatter(np.arctan2(W[:, 1], W[:, 0]), a * np.linalg.norm(W, axis=1), s=5, c=c, label=lab)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xlabel(r"preferred angle $\psi_k$ (rad)")
    ax.set_ylabel(r"signed size $\bar a_k |w_k|$")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    return ax


def risk_curves(ax, runs: Mapping, styles=None, *, logy: bool = False, xlim=None, ylim=None,
                xlabel: str = r"time $t$", ylabel: str = r"population risk $R_N$", title=None,
                legend=True):
    """The risk of several runs against time, one line each (markers of size 3).

    Parameters
    ----------
    ax : matplotlib Axes or None
    runs : mapping label -> run
        Each run has arrays ``t`` and ``risk`` of equal length (e.g. :class:`mflib.jko.ParticleFlow`,
        :class:`mflib.sgd.Trajectory`).
    styles : sequence of matplotlib format strings, optional
        One per run, in order (default: matplotlib's colour cycle, solid lines).
    logy : bool
        Log scale for the risk.
    xlim, ylim, xlabel, ylabel, title
        Passed to ``ax.set``.

    Returns
    -------
    ax
    """
    ax = _axes(ax)
    styles = list(styles) if styles is not None else ["-"] * len(runs)
    if len(styles) != len(runs):
        raise ValueError(f"styles must hold one format per run ({len(runs)}), got {len(styles)}")
    for (label, run), fmt in zip(runs.items(), styles, strict=True):
        t, r = np.asarray(run.t, dtype=float), np.asarray(run.risk, dtype=float)
        if t.shape != r.shape:
            raise ValueError(f"run {label!r}: t and risk must have the same shape, got {t.shape}, {r.shape}")
        ax.plot(t, r, fmt, ms=3, label=label)
    if logy:
        ax.set_yscale("log")
    for key, val in (("xlim", xlim), ("ylim", ylim), ("xlabel", xlabel), ("ylabel", ylabel),
                     ("title", title)):
        if val is not None:
            ax.set(**{key: val})
    _legend(ax, legend)
    return ax


def run_groups(ax, groups: Mapping, *, reference: Mapping | None = None, logx: bool = False,
               tmax: float | None = None, xlabel: str = r"time $t = k\varepsilon$",
               ylabel: str = r"population risk $R_N$",
               xlim=None, ylim=None, title=None, legend=True):
    """Risk curves of groups of replicate runs: one line per run, one legend entry per group.

    Parameters
    ----------
    ax : matplotlib Axes or None
    groups : mapping label -> (runs, style)
        ``runs`` a run or a sequence of runs with arrays ``t`` and ``risk``; ``style`` a dict of
        ``ax.plot`` keywords for every run of the group (``{"color": "k", "lw": 2}``, say). Points
        at ``t = 0`` are dropped with ``logx``.
    reference : mapping label -> float, optional
        Horizontal reference lines (dotted red), an optimum say.
    logx : bool
        Log scale for the time.
    tmax : float, optional
        Draw only the points with ``t <= tmax``.

    Returns
    -------
    ax
    """
    ax = _axes(ax)
    for label, (runs, style) in groups.items():
        runs = [runs] if hasattr(runs, "t") else list(runs)
        for i, run in enumerate(runs):
            t, r = np.asarray(run.t, dtype=float), np.asarray(run.risk, dtype=float)
            keep = t > 0 if logx else np.ones(t.shape, bool)
            if tmax is not None:
                keep &= t <= tmax
            ax.plot(t[keep], r[keep], label=label if i == 0 else None, **dict(style))
    for label, value in (reference or {}).items():
        ax.axhline(value, color="r", ls=":", label=label)
    if logx:
        ax.set_xscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel)
    for key, val in (("xlim", xlim), ("ylim", ylim), ("title", title)):
        if val is not None:
            ax.set(**{key: val})
    ax.grid(alpha=0.3, which="both")
    _legend(ax, legend)
    return ax


def radii_cloud(ax, clouds: Mapping, *, density=None, xlim=None, ylim=None, title=None,
                legend=True):
    r"""Neurons in reduced coordinates :math:`(r_1, r_2)`, optionally over a density's contours.

    Parameters
    ----------
    ax : matplotlib Axes or None
    clouds : mapping label -> (R, style)
        ``R`` (n, 2) radii (``problem.radii(W)``); ``style`` a dict of ``ax.plot`` keywords
        (drawn as points: ``ms``, ``color``, ``alpha``...). A label None is not in the legend.
    density : (X1, X2, rho, levels), optional
        A density on a grid (``ax.contour(X1, X2, rho, levels)``, blue).

    Returns
    -------
    ax
    """
    ax = _axes(ax)
    for label, (R, style) in clouds.items():
        R = np.asarray(R, dtype=float)
        if R.ndim != 2 or R.shape[1] != 2:
            raise ValueError(f"cloud {label!r}: R must have shape (n, 2), got {R.shape}")
        ax.plot(R[:, 0], R[:, 1], label=label, **{"ls": "none", "marker": ".", "ms": 2, **dict(style)})
    if density is not None:
        X1, X2, rho, levels = density
        ax.contour(X1, X2, rho, levels=levels, cmap="Blues_r", linewidths=1)
    ax.set(xlabel="$r_1$", ylabel="$r_2$")
    for key, val in (("xlim", xlim), ("ylim", ylim), ("title", title)):
        if val is not None:
            ax.set(**{key: val})
    _legend(ax, {"fontsize": 8, "markerscale": 2} if legend is True else legend)
    return ax


def runs_and_cloud(pde_run, sgd_runs, radii, density, *, tmax: float, color="C0",
                   risk_ylim=None, cloud_xlim=None, cloud_ylim=None, risk_title=None,
                   cloud_title=None):
    r"""Chapter 4's two-panel view of one step size: the PDE's risk (black) with SGD's replicate
    runs (:func:`run_groups`, up to ``tmax``), and one run's neurons in :math:`(r_1, r_2)` over the
    PDE's density at that time (:func:`radii_cloud`, ``density = (X1, X2, rho, levels)``).

    ``sgd_runs`` is a sequence of runs with ``t`` and ``risk``; ``radii`` an (n, 2) array.
    Returns the figure.
    """
    import matplotlib.pyplot as plt

    fig, (a0, a1) = plt.subplots(1, 2, figsize=(10, 3.4), layout="constrained")
    style = {"color": color, "marker": ".", "ms": 3, "lw": 0.8}
    sgd_runs = list(sgd_runs)
    run_groups(a0, {"PDE": (pde_run, {"color": "k", "lw": 2}),
                    f"SGD, {len(sgd_runs)} runs": (sgd_runs, style)},
               tmax=tmax, ylim=risk_ylim, title=risk_title)
    radii_cloud(a1, {None: (radii, {"ms": 1.5, "color": "C3", "alpha": 0.3})}, density=density,
                xlim=cloud_xlim, ylim=cloud_ylim, title=cloud_title)
    return fig


def potential_map(ax, dictionary, result, *, vmin: float = -4.0, vmax: float = 0.0, title=None):
    r"""Chapter 3's optimality picture on a dictionary of reduced neurons:
    :math:`\log_{10}(\Psi_\lambda - \mu/2)` over the atoms (clipped below at :math:`10^{v_{\min}}`;
    it vanishes exactly on the support of an optimum) and the support, dots sized by weight.

    Parameters
    ----------
    ax : matplotlib Axes or None
    dictionary : :class:`mflib.statics.Dictionary`
        Atoms (M, 2) in :math:`(r_1, r_2)`.
    result : :class:`mflib.statics.StaticsResult`
        Its ``Psi`` over the atoms, ``multiplier`` :math:`\mu`, ``atoms`` and ``weights``.

    Returns
    -------
    ax
    """
    ax = _axes(ax)
    level = np.log10(np.maximum(result.Psi - result.multiplier / 2, 10.0 ** vmin))
    tc = ax.tripcolor(*np.asarray(dictionary.atoms).T, level, cmap="viridis", vmin=vmin, vmax=vmax,
                      shading="gouraud")
    ax.scatter(*np.asarray(result.atoms).T, s=60 * np.asarray(result.weights), c="r",
               label=r"support of $\bar\rho^*$")
    ax.figure.colorbar(tc, ax=ax, label=r"$\log_{10}(\Psi_{\lambda} - \mu/2)$")
    ax.set(xlabel="$r_1$", ylabel="$r_2$", aspect="equal")
    if title is not None:
        ax.set(title=title)
    ax.legend(loc="upper right")
    return ax
