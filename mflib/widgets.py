"""Widgets that work without a kernel: a control over a grid of values, each figure drawn in advance.

The static book has no kernel, so a widget whose figure is recomputed by Python shows its default
figure whatever its slider says. `precomputed` draws the figure for every value of a grid when the
notebook executes, stores the images in the widget state that the notebook carries, and links the
slider to the images in the browser (`ipywidgets.jslink`): the static page and JupyterLab both switch
between them with no Python. For values off the grid, keep a live `ipywidgets.interact` cell that only
JupyterLab shows (tag it ``remove-cell``).

The site check (tests/check_site.py) finds these widgets by their CSS classes, moves each control to
new values and asserts that the image changes and that the caption names the control's value.
"""

from __future__ import annotations

import html
import io
from collections.abc import Callable, Sequence

CONTROL_CLASS = "mf-precomputed-control"
STACK_CLASS = "mf-precomputed"
CAPTION_CLASS = "mf-precomputed-caption"


def _png(fig, dpi: float) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    # Fixed metadata: the bytes (and so the notebook) depend only on the pixels.
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def precomputed(draw: Callable, values: Sequence, *, description: str,
                caption: Callable | None = None, label: Callable = str,
                index: int = 0, dpi: float = 80):
    """A slider over `values` that switches between figures drawn now, in the browser alone.

    draw(value) returns a matplotlib Figure (it is closed here). caption(value) returns the text shown
    above the figure: the control's value and any number the figure reports, as plain text (HTML is
    escaped); by default ``"<description> = <label(value)>"``. Each caption must contain
    ``label(value)``, the slider's readout, so that a reader (and the site check) can match them.
    `index` selects the value shown first. Returns an ``ipywidgets.VBox``; display it as a cell's
    last expression. Each image costs about 20-60 kB of notebook; keep grids to a few values.
    """
    import ipywidgets as widgets

    if not callable(draw):
        raise TypeError(f"draw must be a callable value -> matplotlib Figure, got {type(draw).__name__}")
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"values must be a sequence of control values, got {type(values).__name__}")
    values = list(values)
    if len(values) < 2:
        raise ValueError(f"values must hold at least two control values, got {len(values)}")
    if not isinstance(description, str) or not description:
        raise TypeError("description must be a non-empty string naming the control")
    if caption is not None and not callable(caption):
        raise TypeError(f"caption must be a callable value -> str or None, got {type(caption).__name__}")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(values):
        raise ValueError(f"index must be an int in [0, {len(values)}), got {index!r}")
    if isinstance(dpi, bool) or not isinstance(dpi, (int, float)) or not 20 <= dpi <= 300:
        raise ValueError(f"dpi must be a number in [20, 300], got {dpi!r}")
    labels = [str(label(v)) for v in values]
    if len(set(labels)) != len(labels):
        raise ValueError(f"label must give distinct readouts for distinct values, got {labels}")
    caption = caption or (lambda v: f"{description} = {label(v)}")

    pages = []
    for v, lab in zip(values, labels, strict=True):
        text = str(caption(v))
        if lab not in text:
            raise ValueError(f"caption({v!r}) = {text!r} does not contain the readout {lab!r}")
        cap = widgets.HTML(f"<b>{html.escape(text)}</b>")
        cap.add_class(CAPTION_CLASS)
        img = widgets.Image(value=_png(draw(v), dpi), format="png",
                            layout=widgets.Layout(max_width="100%", height="auto"))
        pages.append(widgets.VBox([cap, img]))
    stack = widgets.Stack(pages, selected_index=index)
    stack.add_class(STACK_CLASS)
    slider = widgets.SelectionSlider(options=list(zip(labels, range(len(values)), strict=True)), index=index,
                                     description=description, continuous_update=True,
                                     style={"description_width": "initial"},
                                     layout=widgets.Layout(width="min(100%, 36em)"))
    slider.add_class(CONTROL_CLASS)
    widgets.jslink((slider, "index"), (stack, "selected_index"))
    note = widgets.HTML(f"<small>{len(values)} values drawn in advance; the slider switches between "
                        "them without a kernel.</small>")
    return widgets.VBox([slider, note, stack])
