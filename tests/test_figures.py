"""Figures: composition arithmetic, option checking, and each figure rendered for the tiny generator."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from fpbench.figures import compose
from fpbench.figures.__main__ import main
from fpbench.figures.common import TreatmentSpec, parse_seeds, parse_treatments, psnr


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The tiny generator is far cheaper on one thread than on two contended ones (shared CI cores)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


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
    assert compose.default_cell(1024) == 512 and compose.default_cell(1024, 1024) == 1024
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
    assert parse_treatments(["rescale:risk_rule=official"])[0].kwargs == {"risk_rule": "official"}
    assert specs == [TreatmentSpec("rescale", (("t", 2), ("p", 2.5))),
                     TreatmentSpec("truncation", (("psi", 0.7),))]
    assert specs[1].label == "truncation (ψ=0.7)"


@pytest.mark.parametrize("argv, message", [
    (["comparison", "--seeds", "3-1"], "seed range '3-1' runs backwards"),
    (["comparison", "--seeds", "a"], "bad seed 'a'"),
    (["comparison", "--treatments", "truncation:psi"], "write key=value"),
    (["comparison", "--treatments", "truncation:psi=high"], "psi must be a finite number, got 'high'"),
    (["comparison", "--treatments", "rescale:q=1"], "treatment 'rescale' has no parameter(s) q"),
    (["comparison", "--treatments", "rescale:risk_rule=odd"], "risk_rule must be one of"),
    (["comparison", "--treatments", "blur"], "unknown treatment 'blur'"),
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


# --- every figure for the tiny generator ------------------------------------------------------

TINY = ["--model", "tiny", "--device", "cpu", "--no-wandb", "--stats-n", "32", "--batch-size", "8"]
CELL = 128  # tiny renders 32x32, enlarged x4 by default


def _render(tmp_path, *argv) -> list[str]:
    out = tmp_path / "figs"
    assert main([*argv, *TINY, "--out", str(out)]) == 0
    return sorted(p.name for p in out.iterdir())


def _check_grid(path, rows: int, cols: int, blanks: int = 0):
    """The PNG has rows x cols panels of CELL pixels (from its size and stored layout), none empty."""
    assert path.stat().st_size > 1000
    layout = compose.read_layout(path)
    with Image.open(path) as im:
        w, h = im.size
        a = np.asarray(im.convert("RGB")).astype(int)
    assert (layout.rows, layout.cols, layout.cell) == (rows, cols, CELL)
    assert w == layout.left + cols * (CELL + layout.pad) and h == layout.top + rows * (CELL + layout.pad)
    assert (w - layout.left) // (CELL + layout.pad) == cols
    empty = 0
    for r in range(rows):
        for c in range(cols):
            x0, y0, x1, y1 = layout.panel_box(r, c)
            panel = a[y0:y1, x0:x1]
            empty += int((panel.reshape(-1, 3).std(axis=0) == 0).all())  # one flat colour
    assert empty == blanks
    return layout, a


def test_comparison_grid(tmp_path):
    files = _render(tmp_path, "comparison", "--seeds", "0,3")
    assert files == ["comparison_tiny.png"]
    layout, a = _check_grid(tmp_path / "figs" / files[0], rows=2, cols=3)
    for row in range(2):  # both treatments visibly change the image
        untreated, *treated = [a[y0:y1, x0:x1] for x0, y0, x1, y1 in (layout.panel_box(row, c) for c in range(3))]
        assert all(np.abs(t - untreated).mean() > 1 for t in treated)


def test_comparison_transposed_paper_layout(tmp_path):
    files = _render(tmp_path, "comparison", "--seeds", "0,1,2", "--treatments", "truncation", "--transpose")
    _check_grid(tmp_path / "figs" / files[0], rows=2, cols=3)


def test_auto_pick_chooses_most_changed_seeds():
    from fpbench.figures.common import Session, TreatmentSpec
    from fpbench.figures.comparison import auto_pick
    from fpbench.generators import tiny

    s = Session(G=tiny(), device="cpu", model="tiny", stats_n=64)
    spec = TreatmentSpec.parse("truncation:psi=0.5")
    picked = auto_pick(s, list(range(4)), spec, 2)
    z = s.z(range(4))
    scores = psnr(s.images(z), s.images(z, spec))
    assert [seed for seed, _ in picked] == np.argsort(scores)[:2].tolist()
    assert [v for _, v in picked] == pytest.approx(np.sort(scores)[:2].tolist())


def test_difference_maps(tmp_path):
    files = _render(tmp_path, "difference", "--seeds", "0,1", "--treatments", "truncation:psi=0.5")
    _check_grid(tmp_path / "figs" / files[0], rows=2, cols=3)


def test_difference_map_known_answer():
    from fpbench.figures.difference import difference_map

    a = np.zeros((1, 2, 2, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = (30, 60, 90)  # mean |diff| = 60
    assert difference_map(a, b, gain=2.0)[0].tolist() == [[120, 0], [0, 0]]


def test_hyperparameter_grid(tmp_path):
    files = _render(tmp_path, "hyperparams", "--seeds", "2", "--psis", "0.5,0.7,0.9", "--ts", "1,2", "--ps", "2")
    # row 0: untreated + 3 psi; row 1: untreated + 2 t values + one blank
    _check_grid(tmp_path / "figs" / files[0], rows=2, cols=4, blanks=1)


def test_interpolation_strip_and_gif(tmp_path):
    files = _render(tmp_path, "interpolation", "--seeds", "0,1", "--steps", "3", "--gif")
    assert files == ["interpolation_tiny.gif", "interpolation_tiny.png"]
    layout, a = _check_grid(tmp_path / "figs" / "interpolation_tiny.png", rows=2, cols=4)
    with Image.open(tmp_path / "figs" / "interpolation_tiny.gif") as gif:
        assert gif.n_frames == 4 + 2  # forth, then back without repeating the ends
        assert gif.size == (2 * CELL + 4, CELL)


def test_interpolation_endpoints_are_the_seeds_images():
    from fpbench.figures.common import Session, TreatmentSpec
    from fpbench.figures.interpolation import path_images
    from fpbench.generators import tiny

    s = Session(G=tiny(), device="cpu", model="tiny")
    spec = TreatmentSpec.parse("truncation:psi=0.6")
    for space in ("w", "z"):
        path = path_images(s, [4, 9], 2, space, spec)
        ends = s.images(s.z([4, 9]), spec)
        assert path.shape[0] == 3
        assert np.abs(path[[0, 2]].astype(int) - ends.astype(int)).max() <= 1, space


def test_layerwise_vs_ours(tmp_path):
    files = _render(tmp_path, "layerwise", "--seeds", "1", "--t-primes", "0.3,0.9", "--pixelnorm")
    _check_grid(tmp_path / "figs" / files[0], rows=1, cols=5)


def test_mp4_without_ffmpeg_is_a_clear_error(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    assert main(["interpolation", "--seeds", "0,1", "--mp4", *TINY, "--out", str(tmp_path)]) == 2
    assert "--mp4 needs imageio and imageio-ffmpeg" in capsys.readouterr().err


def test_wandb_offline_run_logs_and_failure_is_a_warning(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    argv = ["comparison", "--seeds", "0", "--treatments", "truncation", "--model", "tiny", "--device", "cpu",
            "--out", str(tmp_path / "figs"), "--wandb-dir", str(tmp_path / "wb")]
    assert main(argv) == 0
    media = list((tmp_path / "wb").rglob("media/images/**/*.png"))
    assert len(media) == 1

    from fpbench.figures.common import FigureOutput
    from fpbench.figures.wandb_log import log_figures

    finished = []
    monkeypatch.setattr(wandb, "init", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no network")))
    monkeypatch.setattr(wandb, "finish", lambda *a, **k: finished.append(True))
    out = FigureOutput("comparison", tmp_path / "figs" / "comparison_tiny.png")
    with pytest.warns(UserWarning, match="W&B logging failed .*no network.*figures are on disk"):
        assert log_figures([out], config={}) is False
    assert finished == [True] and out.png.stat().st_size > 0


def _meta(path) -> dict:
    with Image.open(path) as im:
        return json.loads(im.text["fpbench"])


def test_proliferation_cure_and_insert(tmp_path):
    files = _render(tmp_path, "proliferation", "--seeds", "0,1")
    path = tmp_path / "figs" / files[0]
    # tiny: edited layer b8.conv1 -> 4 downstream convs; columns: edited map, 4 layers, image.
    # Rows: cancer, cured, normal, inserted, inserted + rescaling; the cured map is all zeros (flat).
    _check_grid(path, rows=5, cols=6, blanks=1)
    meta = _meta(path)
    assert meta["layer"] == "synthesis.b8.conv1"
    assert set(meta["eta"]) == {"cancer", "cured", "normal", "inserted", "treated"}

    from fpbench.analysis import cure_experiment
    from fpbench.generators import seeds_to_z, tiny

    G = tiny()
    cure = cure_experiment(G, seeds_to_z([0], G.z_dim), meta["layer"], meta["channel"])
    assert list(meta["eta"]["cancer"]) == cure.layers
    assert [meta["eta"]["cured"][l] for l in cure.layers] == pytest.approx(cure.mean_eta("cured").tolist())


def test_proliferation_cure_only_with_explicit_channel(tmp_path):
    files = _render(tmp_path, "proliferation", "--seeds", "4", "--channel", "3", "--layer", "synthesis.b16.conv0")
    _check_grid(tmp_path / "figs" / files[0], rows=2, cols=1 + 3 + 1, blanks=1)
    assert _meta(tmp_path / "figs" / files[0])["channel"] == 3


def test_proliferation_rejects_unknown_layer(tmp_path, capsys):
    assert main(["proliferation", "--layer", "synthesis.b99.conv0", *TINY, "--out", str(tmp_path)]) == 2
    assert "synthesis.b99.conv0" in capsys.readouterr().err


def test_feature_histograms_png_and_pdf(tmp_path):
    files = _render(tmp_path, "histograms", "--n", "16", "--bins", "20")
    assert files == ["histograms_tiny.pdf", "histograms_tiny.png"]
    from fpbench.figures.histograms import DPI, FIGSIZE

    with Image.open(tmp_path / "figs" / "histograms_tiny.png") as im:
        assert im.size == (round(FIGSIZE[0] * DPI), round(FIGSIZE[1] * DPI))
        assert np.asarray(im.convert("L")).std() > 10
    assert (tmp_path / "figs" / "histograms_tiny.pdf").read_bytes()[:5] == b"%PDF-"
    meta = _meta(tmp_path / "figs" / "histograms_tiny.png")
    assert meta["n"] == 16 and len(meta["layers"]) == 7


def test_edit_strip_along_a_direction(tmp_path):
    d = np.zeros(64, np.float32)
    d[0] = 1.0
    np.save(tmp_path / "dir.npy", d)
    files = _render(tmp_path, "interpolation", "--seeds", "5", "--direction", str(tmp_path / "dir.npy"),
                    "--alphas=-2,0,2", "--treatments", "truncation:psi=0.7")
    _check_grid(tmp_path / "figs" / files[0], rows=2, cols=3)
