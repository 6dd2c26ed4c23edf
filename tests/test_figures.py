"""Figures: composition arithmetic, option checking, and each figure rendered for the tiny generator."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from fpbench.errors import ConfigError
from fpbench.figures import compose
from fpbench.figures.__main__ import main
from fpbench.figures.common import TreatmentSpec, parse_seeds, parse_treatments, psnr


# --- composition ------------------------------------------------------------------------------

def _solid(value: int, size: int = 16) -> Image.Image:
    return Image.new("RGB", (size, size), (value, value, value))


def test_grid_dimensions_and_panel_positions():
    cells = [[_solid(10 * (3 * r + c) + 5) for c in range(3)] for r in range(2)]
    img, layout = compose.grid(cells, cell=32, pad=6, col_labels=["a", "b", "c"], row_labels=["x", "y"])
    assert img.size == layout.size == (layout.left + 3 * (32 + 6), layout.top + 2 * (32 + 6))
    assert layout.left > 0 and layout.top > 0
    a = np.asarray(img)
    for r in range(2):
        for c in range(3):
            x0, y0, x1, y1 = layout.panel_box(r, c)
            panel = a[y0:y1, x0:x1]
            assert panel.shape == (32, 32, 3)
            assert (panel == 10 * (3 * r + c) + 5).all(), (r, c)


def test_grid_without_labels_is_exactly_cols_times_cell_plus_pad():
    img, layout = compose.grid([[_solid(0), _solid(50)]], cell=20, pad=2)
    assert img.size == (2 * 22, 22) and (layout.left, layout.top) == (0, 0)


def test_grid_rejects_label_count_mismatch():
    with pytest.raises(ValueError, match="2 column labels for 3 columns"):
        compose.grid([[_solid(0)] * 3], cell=16, col_labels=["a", "b"])


def test_fit_enlarges_with_nearest_and_default_cell():
    assert compose.default_cell(32) == 128 and compose.default_cell(256) == 256 and compose.default_cell(32, 64) == 64
    big = np.asarray(compose.fit(Image.fromarray(np.array([[0, 255]], np.uint8)).convert("RGB"), 4))
    assert set(np.unique(big)) == {0, 255}  # nearest: no blended values


def test_to_uint8_matches_nvidia_mapping():
    import torch

    x = torch.tensor([-1.0, 0.0, 1.0, 2.0]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    out = compose.to_uint8(x)
    assert out.shape == (1, 2, 2, 3) and out.dtype == np.uint8
    assert out[0, :, :, 0].ravel().tolist() == [0, 128, 255, 255]


def test_annotate_changes_only_a_corner():
    base = _solid(200, 128)
    out = np.asarray(compose.annotate(base, "12.34 dB", corner="br")).astype(int)
    changed = np.argwhere((out != 200).any(axis=2))
    assert len(changed) > 0 and changed[:, 0].min() > 64 and changed[:, 1].min() > 32


def test_save_png_is_atomic_and_keeps_layout(tmp_path):
    img, layout = compose.grid([[_solid(0), _solid(1)]], cell=16, pad=2, col_labels=["a", "b"])
    dest = compose.save_png(img, tmp_path / "sub" / "g.png", {"layout": layout.to_dict()})
    assert [p.name for p in dest.parent.iterdir()] == ["g.png"]  # no temporary left behind
    assert compose.read_layout(dest) == layout


def test_psnr_known_answer():
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = a.copy()
    b[0] = 255  # mse = 255^2 -> 0 dB
    b[1, 0, 0, 0] = 255  # mse = 255^2 / 48 -> 10 log10(48) dB
    out = psnr(a, b)
    assert out[0] == pytest.approx(0.0) and out[1] == pytest.approx(10 * np.log10(48))
    assert np.isinf(psnr(a, a)).all()


# --- option parsing ---------------------------------------------------------------------------

def test_parse_seeds_and_treatments():
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    specs = parse_treatments(["ours:t=2,p=2.5", "truncation:psi=0.7"])
    assert specs == [TreatmentSpec("feature_rescaling", (("t", 2), ("p", 2.5))),
                     TreatmentSpec("truncation", (("psi", 0.7),))]
    assert specs[1].label == "truncation (ψ=0.7)"


@pytest.mark.parametrize("argv, message", [
    (["comparison", "--seeds", "3-1"], "seed range '3-1' runs backwards"),
    (["comparison", "--seeds", "a"], "bad seed 'a'"),
    (["comparison", "--treatments", "truncation:psi"], "write key=value"),
    (["comparison", "--treatments", "truncation:psi=high"], "values must be numbers"),
    (["comparison", "--auto-pick", "9", "--pool", "0-3"], "--auto-pick 9 must be between 1 and the pool size 4"),
    (["comparison", "--auto-pick", "2", "--curated-seeds", "1,2"], "exclude each other"),
    (["comparison", "--batch-size", "0"], "--batch-size and --stats-n must be >= 1"),
])
def test_cli_rejects_bad_options_in_one_line(argv, message, capsys, tmp_path):
    # --model points nowhere: the option check must fail before any model is loaded.
    assert main(argv + ["--model", str(tmp_path / "missing.pkl"), "--no-wandb", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and err.startswith("error: ")
    assert not list(tmp_path.iterdir())
