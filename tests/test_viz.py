"""Pictures from a real short search and training run: valid images of sensible size, the right frames."""
import shutil

import pytest
from PIL import Image

from dartsnas.cli import main

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is not installed")
TINY = ["--dataset", "digits", "--layers", "3", "--init-channels", "4", "--nodes", "3", "--multiplier", "2",
        "--batch-size", "128", "--workers", "0", "-q"]


@pytest.fixture(scope="module")
def search_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("viz") / "search"
    assert main(["search", *TINY, "--epochs", "3", "--out", str(run)]) == 0
    return run


def image(path, min_width=200, min_height=100):
    with Image.open(path) as im:
        im.load()
        assert im.width >= min_width and im.height >= min_height, (path, im.size)
        return im.format, im.size, getattr(im, "n_frames", 1)


@needs_dot
def test_the_search_draws_both_cells_of_every_epoch(search_run):
    cells = search_run / "pictures" / "cells"
    for e in (1, 2, 3):
        for kind in ("normal", "reduce"):
            assert image(cells / f"epoch_{e:03d}_{kind}.png")[0] == "PNG"
            assert (cells / f"epoch_{e:03d}_{kind}.svg").read_text().lstrip().startswith("<?xml")


@needs_dot
def test_plot_makes_gif_curves_heatmaps_and_totals(search_run, tmp_path, capsys):
    out = tmp_path / "pics"
    assert main(["plot", str(search_run), "--epochs", "1,3", "--out", str(out)]) == 0
    fmt, size, frames = image(out / "search.gif", 600)
    assert fmt == "GIF" and frames == 3  # one frame per epoch
    assert image(out / "curves.png", 800)[0] == "PNG"
    assert image(out / "alphas.png", 600, 400)[0] == "PNG"
    assert image(out / "op_weights.png", 600)[0] == "PNG"
    assert (out / "cells" / "epoch_001_normal.png").is_file() and (out / "cells" / "epoch_003_reduce.svg").is_file()
    assert not (out / "cells" / "epoch_002_normal.png").exists()
    printed = capsys.readouterr().out.split()
    assert str(out / "search.gif") in printed


@needs_dot
def test_plot_a_published_genotype_and_a_training_run(search_run, tmp_path):
    assert main(["plot", "DARTS_V2", "--out", str(tmp_path / "g")]) == 0
    assert image(tmp_path / "g" / "DARTS_V2_normal.png")[0] == "PNG"
    train = tmp_path / "train"
    assert main(["train", "--from-run", str(search_run), "--dataset", "digits", "--layers", "3", "--init-channels",
                 "4", "--batch-size", "128", "--workers", "0", "--epochs", "2", "--out", str(train), "-q"]) == 0
    assert main(["plot", str(train)]) == 0
    assert image(train / "pictures" / "curves.png", 800)[0] == "PNG"
    assert (train / "pictures" / "cells" / "normal.png").is_file()


def test_without_graphviz_a_search_warns_once_and_plot_says_how_to_install(tmp_path, monkeypatch, capsys):
    import dartsnas.viz.cells as cells

    monkeypatch.setattr(cells.shutil, "which", lambda name: None)
    run = tmp_path / "run"
    assert main(["search", *TINY, "--epochs", "2", "--out", str(run)]) == 0
    err = capsys.readouterr().err
    assert err.count("no cell diagrams") == 1 and "apt-get install graphviz" in err
    assert main(["plot", str(run), "--only", "diagrams"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "apt-get install graphviz" in err[0]
    assert main(["plot", str(run), "--only", "curves,heatmaps"]) == 0  # matplotlib pictures need no dot


def test_plot_bad_input_is_one_line(search_run, tmp_path, capsys):
    assert main(["plot", str(search_run), "--epochs", "9"]) == 2
    assert main(["plot", str(search_run), "--only", "movies"]) == 2
    assert main(["plot", str(tmp_path / "nothing")]) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("dartsnas: error")]
    assert len(lines) == 3
