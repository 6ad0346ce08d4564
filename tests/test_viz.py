"""Pictures from a real short search and training run: valid images of sensible size, the right frames."""
import shutil

import pytest
from PIL import Image

from dartsnas.cli import main

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is not installed")
TINY = ["--dataset", "digits", "--layers", "3", "--init-channels", "4", "--nodes", "3", "--multiplier", "2",
        "--batch-size", "128", "--workers", "0", "-q", "--limit-batches", "3"]


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
    assert (train / "pictures" / "cells" / "final_normal.png").is_file()


def test_without_graphviz_matplotlib_draws_every_picture(tmp_path, monkeypatch, capsys):
    """No `dot`: the cell diagrams, the GIF and the report's cells are drawn by matplotlib, and the log says so
    once."""
    from PIL import Image

    import dartsnas.viz.cells as cells

    monkeypatch.setattr(cells.shutil, "which", lambda name: None)
    monkeypatch.setattr(cells, "_announced", set())
    run = tmp_path / "run"
    assert main(["search", *TINY, "--epochs", "2", "--out", str(run)]) == 0
    log = (run / "log.txt").read_text()
    assert log.count("drawn by matplotlib") == 1 and "apt-get install graphviz" in log
    for stem in ("epoch_001_normal", "epoch_002_reduce"):
        with Image.open(run / "pictures" / "cells" / f"{stem}.png") as im:
            low, high = im.convert("L").getextrema()
            assert im.width > 200 and im.height > 100 and high - low > 100
        svg = (run / "pictures" / "cells" / f"{stem}.svg").read_text()
        assert "<svg" in svg and "c_{k}" in svg.replace("c_{k-1}", "").replace("c_{k-2}", "")
    assert main(["plot", str(run), "--only", "diagrams,gif"]) == 0
    with Image.open(run / "pictures" / "search.gif") as gif:
        assert gif.n_frames == 2


def test_cell_layout_puts_each_node_right_of_what_it_reads():
    from dartsnas.genotype import load_genotype
    from dartsnas.viz.cells import cell_layout

    normal = load_genotype("DARTS_V2").normal
    pos = cell_layout(normal)
    for i in range(len(normal.nodes)):
        for _, src in normal.live_pairs(i):
            assert pos[src][0] < pos[2 + i][0]
    assert pos[-1][0] == max(x for x, _ in pos.values()) and pos[0][0] == pos[1][0] == 0


def test_plot_bad_input_is_one_line(search_run, tmp_path, capsys):
    assert main(["plot", str(search_run), "--epochs", "9"]) == 2
    assert main(["plot", str(search_run), "--only", "movies"]) == 2
    assert main(["plot", str(tmp_path / "nothing")]) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("dartsnas: error")]
    assert len(lines) == 3


# -- TensorBoard ------------------------------------------------------------------------------------------------
def _events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def test_a_search_writes_tensorboard_scalars_alpha_weights_and_cell_images(search_run):
    import csv

    import numpy as np

    from dartsnas.genotype import softmax
    from dartsnas.runs import RunDir

    acc = _events(search_run / "tensorboard")
    rows = list(csv.DictReader(open(search_run / "metrics.csv")))
    for key, tag in (("val_acc", "accuracy/val"), ("train_loss", "loss/train"), ("lr", "lr/weights")):
        events = acc.Scalars(tag)
        assert [e.step for e in events] == [int(r["epoch"]) for r in rows]
        # the CSV keeps 6 digits
        assert [e.value for e in events] == pytest.approx([float(r[key]) for r in rows], rel=1e-5)
    history = RunDir.open(search_run).read_alpha_history()
    primitives = [str(p) for p in history["primitives"]]
    tags = acc.Tags()["scalars"]
    edges = history["alpha_normal"].shape[1]  # 3 nodes: 2 + 3 + 4 edges
    assert edges == 9
    assert len([t for t in tags if t.startswith("alphas_normal/")]) == edges * len(primitives)
    assert len([t for t in tags if t.startswith("alphas_reduce/")]) == edges * len(primitives)
    # the weight of one op on one edge after epoch 2 is the softmax of the saved alphas
    tag = next(t for t in tags if t.startswith("alphas_reduce/04 ") and t.endswith(" skip_connect"))
    want = softmax(history["alpha_reduce"][2])[4, primitives.index("skip_connect")]
    assert dict((e.step, e.value) for e in acc.Scalars(tag))[2] == pytest.approx(float(want), rel=1e-5)
    totals = [e.value for e in acc.Scalars("op_totals_normal/none")]
    assert totals == pytest.approx(list(softmax(history["alpha_normal"][1:], axis=-1).sum(axis=1)[:, 0]), rel=1e-5)
    if shutil.which("dot"):
        images = acc.Images("cells/normal")
        assert [i.step for i in images] == [1, 2, 3] and images[0].width > 200
    assert np.isfinite([e.value for e in acc.Scalars("loss/arch")]).all()


def test_plot_rewrites_tensorboard_events_from_the_run_files(search_run, tmp_path):
    import shutil as sh

    copy = tmp_path / "copy"
    sh.copytree(search_run, copy)
    sh.rmtree(copy / "tensorboard")
    assert main(["plot", str(copy), "--only", "tensorboard"]) == 0
    a, b = _events(search_run / "tensorboard"), _events(copy / "tensorboard")
    assert sorted(a.Tags()["scalars"]) == sorted(b.Tags()["scalars"])
    rewritten = [e.value for e in b.Scalars("accuracy/val")]  # from metrics.csv, which keeps 6 digits
    assert [e.value for e in a.Scalars("accuracy/val")] == pytest.approx(rewritten, rel=1e-5)


def _encoder():
    from dartsnas.viz.plots import ffmpeg_executable

    return ffmpeg_executable()


@needs_dot
def test_plot_mp4_has_a_frame_per_epoch_plus_the_held_result(search_run, tmp_path):
    import subprocess

    ffmpeg = _encoder()
    if ffmpeg is None:
        pytest.skip("no ffmpeg (pip install imageio-ffmpeg)")
    out = tmp_path / "v"
    assert main(["plot", str(search_run), "--only", "mp4", "--out", str(out)]) == 0
    video = out / "search.mp4"
    assert video.read_bytes()[4:8] == b"ftyp"
    probe = subprocess.run([ffmpeg, "-i", str(video), "-map", "0:v:0", "-f", "null", "-"], capture_output=True,
                           text=True)
    assert "Video:" in probe.stderr and "yuv420p" in probe.stderr
    # 3 epochs at 0.8 s a frame, the last shown twice more (held about 2.5 s): 5 frames, 4.0 s at 25 fps
    frames = int(probe.stderr.rsplit("frame=", 1)[1].split()[0])
    assert 95 <= frames <= 105, frames


# -- the report page ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def train_run(search_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("viz_train") / "train"
    assert main(["train", "--from-run", str(search_run), "--dataset", "digits", "--layers", "3", "--init-channels",
                 "4", "--batch-size", "128", "--workers", "0", "--epochs", "2", "--out", str(run), "-q"]) == 0
    return run


def _page_images(page: str) -> list[str]:
    import re

    return re.findall(r'<img src="([^"]*)"', page)


@needs_dot
def test_report_is_one_self_contained_page(search_run, train_run, tmp_path, capsys):
    import json

    assert main(["report", str(search_run)]) == 0
    page_path = search_run / "report.html"
    assert capsys.readouterr().out.strip() == str(page_path)
    page = page_path.read_text()
    srcs = _page_images(page)
    # two cells, curves, heat maps, op totals, the GIF
    assert len(srcs) == 6 and all(s.startswith("data:image/") for s in srcs)
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org", "")
    assert "https://" not in page and "<link rel='stylesheet'" not in page
    genotype = json.loads((search_run / "genotype.json").read_text())
    assert all(op in page for op in genotype["ops"])
    assert "final validation accuracy" in page and "multiply-adds per image" in page

    assert main(["report", str(train_run), "--out", str(tmp_path / "t.html")]) == 0
    page = (tmp_path / "t.html").read_text()
    final = json.loads((train_run / "final.json").read_text())
    assert f"{final['test_acc']:.2f}" in page and f"{final['params']:,}" in page
    assert len(_page_images(page)) == 3  # two cells, curves


def test_report_of_something_that_is_not_a_run_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path) in err[0]


def test_heatmaps_keep_an_epoch_per_row_and_one_colour_scale():
    import numpy as np

    from dartsnas.viz.plots import heatmap_layout, heatmap_range

    # shared alphas, three epochs: three rows of (normal, reduce), never an epoch wrapped onto the next row
    assert heatmap_layout(3, 2) == (3, 2, [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)])
    # six cells of a per-cell search, two epochs: each epoch two rows of up to four
    rows, cols, cells = heatmap_layout(2, 6)
    assert (rows, cols) == (4, 4) and cells[5] == (1, 1) and cells[6] == (2, 0)
    near_uniform = [np.full((14, 8), 0.125) + 1e-4 * np.arange(8), np.full((14, 8), 0.125)]
    low, high = heatmap_range(near_uniform, "softmax")
    assert low == 0 and high == pytest.approx(0.125 + 7e-4)  # from 0: near-uniform weights look uniform
    assert heatmap_range(near_uniform, "sigmoid") == (0.0, 1.0)
