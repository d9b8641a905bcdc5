"""mflib.plotting: smoke tests on the Agg backend (the artists each helper draws), and the rule that
``import mflib`` and the numerical modules never import matplotlib."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import mflib as mf
from mflib import plotting

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def _legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_loglog_axes(ax):
    N = [16, 64, 256]
    assert plotting.loglog_axes(ax, N, xlabel="N", ylabel="error", title="t") is ax
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["16", "64", "256"]
    assert list(ax.get_xticks()) == [16, 64, 256] and len(ax.xaxis.get_minorticklocs()) == 0
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("N", "error", "t")


def test_rate_plot_with_a_loglog_fit(ax):
    x = np.array([10.0, 20.0, 40.0, 80.0, 160.0])
    y = 3.0 * x**-0.5 * np.exp(0.02 * np.array([1, -1, 0.5, -0.5, 0]))
    se = 0.05 * y
    fit = mf.fitting.loglog_fit(x, y, se)
    out = plotting.rate_plot(ax, x, y, se, fit=fit, label="measured", reference=-0.5,
                             reference_label="theorem", xticks=x, xlabel="N", capsize=3)
    assert out is ax
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 1 and bars[0].has_yerr
    # the points, the fitted line and the reference line
    data, fitted, ref = ax.lines[0], ax.lines[-2], ax.lines[-1]
    np.testing.assert_allclose(data.get_ydata(), y)
    np.testing.assert_allclose(fitted.get_ydata(), fit["band"](x)[1], rtol=1e-12)
    np.testing.assert_allclose(ref.get_ydata(), y[0] * (x / x[0]) ** -0.5, rtol=1e-12)
    assert sorted(_legend_texts(ax)) == [
        f"measured, slope {fit['slope']:.2f} $\\pm$ {fit['slope_se']:.2f}", "theorem"]


def test_rate_plot_accepts_pairs_objects_and_callables(ax):
    x = np.array([1e-3, 2e-3, 4e-3])
    y = np.sqrt(x)
    # a (slope, se) pair: the slope in the label, no fitted line; a callable reference
    plotting.rate_plot(ax, x, y, fit=(0.5, 0.01), reference=lambda t: np.sqrt(t * np.log(1 / t)),
                       reference_style={"ls": ":", "color": "C3"}, legend=False)
    assert ax.get_legend() is None
    assert [c.get_label() for c in ax.containers] == ["slope 0.50 $\\pm$ 0.01"]
    assert len(ax.lines) == 2                                    # points and reference only
    assert ax.lines[-1].get_linestyle() == ":"

    class Fit:                                                    # attribute access, CI only
        slope, intercept, ci = 0.5, 0.0, (0.4, 0.6)

    plotting.rate_plot(ax, x, y, fit=Fit(), label="sqrt")
    np.testing.assert_allclose(ax.lines[-1].get_ydata(), np.sqrt(x), rtol=1e-12)
    assert "sqrt, slope 0.50 [0.40, 0.60]" in _legend_texts(ax)
    assert plotting.slope_text({"slope": -1.0, "slope_se": 0.2}, "{slope:+.1f}({se:.1f})") == "-1.0(0.2)"
    with pytest.raises(ValueError, match="positive"):
        plotting.rate_plot(ax, x, -y)
    with pytest.raises(TypeError, match="slope"):
        plotting.rate_plot(ax, x, y, fit="not a fit")


def test_rate_plot_new_figure():
    ax = plotting.rate_plot(None, [1, 2, 4], [1.0, 0.5, 0.25])
    assert ax.get_xscale() == "log" and ax.get_legend() is None      # nothing labelled
    plt.close(ax.figure)


def test_hist_overlay(ax):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(500), rng.standard_normal(400) + 0.1
    grid = np.linspace(-3, 3, 61)
    out = plotting.hist_overlay(ax, {"SGD": a, "PDE particles": b},
                                density=(grid, np.exp(-grid**2 / 2) / np.sqrt(2 * np.pi)),
                                density_label="Gibbs", reference=rng.standard_normal(300),
                                reference_label="reference", bins=30, xlabel="w")
    assert out is ax
    assert len(ax.patches) == 3 and len(ax.lines) == 1          # three histograms, one curve
    assert ax.patches[0].get_facecolor()[:3] == pytest.approx((0.85, 0.85, 0.85))
    # shared edges: every histogram spans the same range
    xs = [p.get_path().vertices[:, 0] for p in ax.patches]
    assert all(np.isclose(v.min(), xs[0].min()) and np.isclose(v.max(), xs[0].max()) for v in xs)
    assert sorted(_legend_texts(ax)) == ["Gibbs", "PDE particles", "SGD", "reference"]
    assert ax.get_ylabel() == "density" and ax.get_xlabel() == "w"


def test_hist_overlay_particles_as_density(ax):
    rng = np.random.default_rng(1)
    edges = np.linspace(-3, 3, 13)
    plotting.hist_overlay(ax, rng.standard_normal(200), density=rng.standard_normal(300),
                          density_label="PDE", bins=edges, histtype="stepfilled", alpha=0.5)
    assert len(ax.patches) == 2
    assert ax.patches[1].get_edgecolor()[:3] == pytest.approx((0.0, 0.0, 0.0))
    np.testing.assert_allclose(ax.patches[0].get_path().vertices[:, 0].min(), -3.0)


def test_plot_neurons(ax):
    a, W = mf.ntk.init(6, 3, np.random.default_rng(0))
    assert plotting.plot_neurons(ax, a, W, 2 * a, W + 1, title="t") is ax
    assert ax.get_yscale() == "symlog" and len(ax.collections) == 2
    assert ax.get_title() == "t" and _legend_texts(ax) == ["before", "after"]


def test_import_mflib_does_not_import_matplotlib():
    """Plotting is opt-in: importing the package and every numerical module leaves matplotlib
    unloaded (a fresh interpreter, since this test process has already imported it)."""
    numerical = sorted(set(mf.__all__) - {"plotting"})
    code = ("import sys, importlib, mflib\n"
            "assert 'matplotlib' not in sys.modules, 'import mflib'\n"
            f"for name in {numerical!r}:\n"
            "    importlib.import_module('mflib.' + name)\n"
            "    assert 'matplotlib' not in sys.modules, name\n"
            "import mflib.plotting\n"
            "assert 'matplotlib' not in sys.modules, 'import mflib.plotting'\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


def test_risk_curves(ax):
    from types import SimpleNamespace
    runs = {"a": SimpleNamespace(t=np.arange(5.0), risk=np.linspace(2, 1, 5)),
            "b": SimpleNamespace(t=np.arange(3.0), risk=np.array([3.0, 2.0, np.inf]))}
    out = plotting.risk_curves(ax, runs, ["k:", "C3o--"], logy=True, ylim=(0.8, 10), title="T")
    assert out is ax and ax.get_yscale() == "log" and ax.get_title() == "T"
    assert [ln.get_label() for ln in ax.get_lines()] == ["a", "b"]
    np.testing.assert_array_equal(ax.get_lines()[0].get_ydata(), runs["a"].risk)
    with pytest.raises(ValueError, match="styles"):
        plotting.risk_curves(ax, runs, ["k:"])


def test_run_groups_one_legend_entry_per_group_and_tmax():
    from types import SimpleNamespace

    import matplotlib.pyplot as plt

    t = np.linspace(0, 4, 9)
    runs = [SimpleNamespace(t=t, risk=1 + 0.1 * k + 0 * t) for k in range(3)]
    ax = plotting.run_groups(None, {"SGD": (runs, {"color": "C0"}), "PDE": (runs[0], {})},
                             reference={"optimum": 0.9}, logx=True, tmax=2.0)
    lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 2]
    assert len(lines) == 4
    assert all(0 < x <= 2.0 for ln in lines for x in ln.get_xdata())      # t = 0 dropped (log)
    assert [x.get_text() for x in ax.get_legend().get_texts()] == ["SGD", "PDE", "optimum"]
    plt.close(ax.figure)


def test_radii_cloud_and_potential_map():
    import matplotlib.pyplot as plt

    from mflib import problems, statics

    ax = plotting.radii_cloud(None, {"a": (np.ones((5, 2)), {"color": "r"}), None: (np.zeros((3, 2)), {})})
    assert [len(ln.get_xdata()) for ln in ax.get_lines()] == [5, 3]
    assert [x.get_text() for x in ax.get_legend().get_texts()] == ["a"]
    with pytest.raises(ValueError, match="shape"):
        plotting.radii_cloud(None, {"b": (np.ones(4), {})})
    prob = problems.AnisotropicGaussians(6, 2, 0.5)
    D = statics.reduced_dictionary(prob, statics.polar_grid(1.5, 8, 5), n_quad=6)
    r = statics.solve(D)
    ax = plotting.potential_map(None, D, r)
    assert len(ax.collections) == 2                                        # map and support
    plt.close("all")


def test_runs_and_cloud_two_panels():
    from types import SimpleNamespace

    import matplotlib.pyplot as plt

    t = np.linspace(0, 4, 9)
    runs = [SimpleNamespace(t=t, risk=1 + 0.1 * k + 0 * t) for k in range(3)]
    x = np.linspace(0, 1, 5)
    X1, X2 = np.meshgrid(x, x, indexing="ij")
    fig = plotting.runs_and_cloud(runs[0], runs, np.ones((7, 2)), (X1, X2, X1 + X2, [0.5, 1.0]),
                                  tmax=2.0, risk_title="left", cloud_title="right")
    a0, a1 = fig.axes
    assert [x.get_text() for x in a0.get_legend().get_texts()] == ["PDE", "SGD, 3 runs"]
    assert all(x <= 2.0 for ln in a0.get_lines() for x in ln.get_xdata())
    assert len(a1.get_lines()[0].get_xdata()) == 7 and a1.get_title() == "right"
    with pytest.raises(ValueError, match="shape"):
        plotting.runs_and_cloud(runs[0], runs, np.ones(4), None, tmax=2.0)
    plt.close("all")
