"""The search-step benchmark script runs end to end on tiny shapes and prints the JSON it promises."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "search_step.py"


@pytest.mark.slow
def test_search_step_benchmark_quick(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--impl", "ours", "--orders", "1,2",
                           "--batch-sizes", "4", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == report
    assert {"platform", "cpu_count", "torch", "threads", "device"} <= set(report["machine"])
    assert report["config"]["quick"] is True
    results = report["results"]
    assert [(r["impl"], r["order"], r["batch"]) for r in results] == [("ours", 1, 4), ("ours", 2, 4)]
    for r in results:
        assert "error" not in r, r["error"]
        assert r["median_s"] > 0 and r["min_s"] > 0
        assert r["min_s"] <= r["median_s"]
        assert len(r["times_s"]) == 2  # --quick: 2 timed iterations
        assert r["peak_rss_mib"] > 0 and r["peak_rss_delta_mib"] >= 0
    assert report["ratios"] == []  # no yardstick asked for, so no pair to compare


@pytest.mark.slow
def test_modes_training_and_markdown(tmp_path):
    md = tmp_path / "bench.md"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--impl", "ours-edges,ours-pc4", "--orders", "1",
                           "--batch-sizes", "4", "--train", "--markdown", str(md)],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    results = report["results"]
    assert [r["impl"] for r in results] == ["ours-edges", "ours-pc4", "contiguous", "channels-last"]
    assert all("error" not in r for r in results), results
    train = [r for r in results if r.get("mode") == "train"]
    assert all(r["images_per_s"] > 0 and r["batch"] == 8 for r in train)
    text = md.read_text()
    assert "| ours-edges | 1 | 4 |" in text and "| ours-pc4 | 1 | 4 |" in text and "images / s" in text
