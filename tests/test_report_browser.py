"""The report page in a real headless browser (Debian's chromium over the DevTools protocol): it loads with no
console errors, every image on it has loaded, and a screenshot is taken (kept in the test's tmp folder)."""
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image

from dartsnas.cli import main

sys.path.insert(0, str(Path(__file__).parent / "helpers"))
from browser import chromium, load  # noqa: E402

pytest.importorskip("websocket", reason="the browser test needs websocket-client")
pytestmark = [pytest.mark.skipif(chromium() is None, reason="chromium is not installed (apt-get install chromium)"),
              pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is not installed")]
TINY = ["--dataset", "digits", "--layers", "3", "--init-channels", "4", "--nodes", "3", "--multiplier", "2",
        "--batch-size", "128", "--workers", "0", "-q", "--limit-batches", "3"]


def test_the_browser_check_catches_a_broken_page(tmp_path):
    """The check can fail: a missing image and a console error are both reported."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><img src='missing.png'><img src='data:image/png;base64,AAAA'>"
                   "<script>console.error('boom')</script></body></html>")
    result = load(bad, tmp_path / "bad.png")
    assert [i["naturalWidth"] for i in result["images"]] == [0, 0]
    assert any("boom" in e for e in result["errors"])
    assert any("missing.png" in e or "ERR_FILE_NOT_FOUND" in e for e in result["errors"]), result["errors"]


def test_the_comparison_report_loads_cleanly_in_chromium(tmp_path):
    search, train = tmp_path / "search", tmp_path / "train"
    assert main(["search", *TINY, "--epochs", "2", "--out", str(search)]) == 0
    assert main(["train", "--from-run", str(search), "--dataset", "digits", "--layers", "3", "--init-channels", "4",
                 "--batch-size", "128", "--workers", "0", "--epochs", "1", "--out", str(train), "-q"]) == 0
    # the comparison page holds both runs' sections (the one-run page is checked without a browser in test_viz)
    for pages, target in (([search, train], tmp_path / "compare.html"),):
        args = ["report", *map(str, pages)] + (["--out", str(target)] if len(pages) > 1 else [])
        assert main(args) == 0
        shot = target.with_suffix(".png")
        result = load(target, shot)
        assert result["errors"] == []
        images = result["images"]
        assert len(images) == (6 if len(pages) == 1 else 1 + 6 + 3)
        assert all(i["complete"] and i["naturalWidth"] > 0 and i["naturalHeight"] > 0 for i in images), images
        assert result["title"].startswith("dartsnas")
        with Image.open(shot) as im:
            assert im.format == "PNG" and im.width >= 1000 and im.height >= 2000
            # not a blank page: the screenshot has both dark text and coloured pictures
            colours = im.convert("RGB").resize((64, 256)).getcolors(64 * 256)
            assert len(colours) > 50
