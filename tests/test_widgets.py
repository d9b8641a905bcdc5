"""mflib.widgets.precomputed: one image per value, a slider linked to them in the browser."""

import matplotlib

matplotlib.use("Agg")

import ipywidgets as widgets  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from ipywidgets.widgets.widget_link import Link  # noqa: E402

from mflib.widgets import CAPTION_CLASS, CONTROL_CLASS, STACK_CLASS, precomputed  # noqa: E402


def draw(k):
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [0, k])
    ax.set_title(f"k = {k}")
    return fig


def test_one_distinct_image_per_value_linked_to_the_slider():
    before = plt.get_fignums()
    box = precomputed(draw, [1, 2, 3], description="k", caption=lambda k: f"k = {k}: slope {k}",
                      index=1)
    assert plt.get_fignums() == before                      # every figure closed
    slider, _, stack = box.children
    assert CONTROL_CLASS in slider._dom_classes and STACK_CLASS in stack._dom_classes
    assert [lab for lab, _ in slider.options] == ["1", "2", "3"]
    assert slider.index == stack.selected_index == 1
    images = [page.children[1].value for page in stack.children]
    assert all(im[:8] == b"\x89PNG\r\n\x1a\n" for im in images)
    assert len(set(images)) == 3                            # three different figures
    captions = [page.children[0] for page in stack.children]
    assert all(CAPTION_CLASS in c._dom_classes for c in captions)
    assert "k = 2: slope 2" in captions[1].value
    links = [w for w in widgets.Widget.widgets.values() if isinstance(w, Link)
             and w.source == (slider, "index")]
    assert links and links[-1].target == (stack, "selected_index")


def test_images_are_reproducible():
    a = precomputed(draw, [1, 2], description="k").children[2].children[0].children[1].value
    b = precomputed(draw, [1, 2], description="k").children[2].children[0].children[1].value
    assert a == b


@pytest.mark.parametrize("kwargs, err, word", [
    (dict(draw=None), TypeError, "draw"),
    (dict(values=5), TypeError, "values"),
    (dict(values="ab"), TypeError, "values"),
    (dict(values=[1]), ValueError, "values"),
    (dict(description=""), TypeError, "description"),
    (dict(caption="x"), TypeError, "caption"),
    (dict(caption=lambda v: "no readout"), ValueError, "readout"),
    (dict(index=3), ValueError, "index"),
    (dict(index=True), ValueError, "index"),
    (dict(dpi=0), ValueError, "dpi"),
    (dict(label=lambda v: "same"), ValueError, "label"),
])
def test_bad_input(kwargs, err, word):
    args = dict(draw=draw, values=[1, 2, 3], description="k") | kwargs
    with pytest.raises(err, match=word):
        precomputed(args.pop("draw"), args.pop("values"), **args)
