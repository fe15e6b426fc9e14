"""genre_cls/plots.py: figures draw any label (CJK, symbols, dollar signs) without a missing glyph."""

from __future__ import annotations

import warnings

import pytest

from genre_cls.plots import _chars, _installed_fonts, confusion_figure, save_figure, timeline_figure


def _drawn_labels(fig):
    fig.canvas.draw()
    return [t.get_text() for ax in fig.axes for t in ax.get_xticklabels() + ax.get_yticklabels()]


def _has_a_font(char: str) -> bool:
    return any(ord(char) in _chars(path) for _, path in _installed_fonts())


@pytest.mark.parametrize("builder", ["confusion", "timeline"])
def test_figures_draw_labels_in_any_script_without_missing_glyphs(tmp_path, builder):
    classes = ["メタル", "Arc ⌒", "Rock $5$ & roll", "blues"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if builder == "confusion":
            fig = confusion_figure([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], classes, "曲 vs ⌒")
        else:
            result = {"file": "曲 1.wav", "duration_s": 6.0, "genre": classes[0], "probability": 0.7,
                      "probabilities": dict(zip(classes, (0.7, 0.1, 0.1, 0.1))), "unit": "3 s segment",
                      "segments": [{"segment": i, "start_s": 3.0 * i, "end_s": 3.0 * (i + 1), "padding": False,
                                    "genre": classes[0], "probabilities": dict(zip(classes, (0.7, 0.1, 0.1, 0.1)))}
                                   for i in range(2)]}
            fig = timeline_figure([result], classes)
        labels = _drawn_labels(fig)
        save_figure(fig, tmp_path / "figure.png")
    assert not [w for w in caught if "missing from font" in str(w.message)], [str(w.message) for w in caught]
    # A character DejaVu Sans lacks is drawn by an installed font that has it (DejaVu Sans Mono, which
    # ships with matplotlib, has U+2312); one no installed font has is written as its escape.
    assert "Arc ⌒" in labels and "Rock $5$ & roll" in labels
    metal = "メタル" if _has_a_font("メ") else "\\u30e1\\u30bf\\u30eb"
    assert metal in labels
