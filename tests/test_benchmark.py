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
    assert [r["impl"] for r in results] == ["ours-edges", "ours-pc4", "original", "contiguous", "channels-last"]
    assert all("error" not in r for r in results), results
    train = [r for r in results if r.get("mode") == "train"]
    assert all(r["images_per_s"] > 0 and r["batch"] == 8 for r in train)
    # each of ours against the original-style training network, within the round
    ratios = {q["impl"]: q for q in report["train_ratios"]}
    by_impl = {r["impl"]: r for r in train}
    assert ratios["channels-last"]["speedup_vs_original"] == pytest.approx(
        by_impl["channels-last"]["images_per_s"] / by_impl["original"]["images_per_s"])
    text = md.read_text()
    assert "| ours-edges | 1 | 4 |" in text and "| ours-pc4 | 1 | 4 |" in text and "images / s" in text
    assert "speed-up vs original" in text


@pytest.mark.slow
def test_interleaved_rounds_and_bf16_rows(tmp_path):
    """--rounds repeats each group with the implementations interleaved; times and ratios are medians over the
    rounds, each ratio taken within a round; bf16 rows for search and training."""
    md = tmp_path / "bench.md"
    yardstick = (SCRIPT.parents[2] / "shared" / "yardstick").is_dir()
    impls = ("yardstick," if yardstick else "") + "ours,ours-bf16"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--impl", impls, "--orders", "1",
                           "--batch-sizes", "4", "--rounds", "2", "--train", "--train-impls", "channels-last-bf16",
                           "--markdown", str(md)], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    search = [(r["impl"], r["round"]) for r in report["results"] if r.get("mode") != "train"]
    names = impls.split(",")
    assert search == [(n, k) for k in (0, 1) for n in names]  # interleaved: a, b, a, b
    assert all("error" not in r for r in report["results"]), report["results"]
    for entry in report["summary"]:
        runs = [r["median_s"] for r in report["results"] if r.get("impl") == entry["impl"] and "round" in r]
        assert entry["rounds"] == 2 and entry["median_s"] == pytest.approx(sum(runs) / 2)  # median of two
    if yardstick:
        for q in report["ratios"]:
            assert q["rounds"] == 2 and len(q["speedup_per_round"]) == 2
            assert q["speedup_vs_yardstick"] == pytest.approx(sum(q["speedup_per_round"]) / 2)
    train = [r for r in report["results"] if r.get("mode") == "train"]
    assert [(r["impl"], r["round"]) for r in train] == [("channels-last-bf16", 0), ("channels-last-bf16", 1)]
    assert all(r["images_per_s"] > 0 for r in train)
    text = md.read_text()
    assert "2 interleaved rounds" in text and "| ours-bf16 | 1 | 4 |" in text and "channels-last-bf16" in text


def test_bad_rounds_and_train_impls_are_one_line_errors():
    for bad in (["--rounds", "0"], ["--train-impls", "fp8"]):
        proc = subprocess.run([sys.executable, str(SCRIPT), *bad], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2
        assert proc.stderr.strip().splitlines()[-1].startswith("search_step.py: error:")


def test_a_run_cut_short_keeps_what_it_measured(tmp_path, monkeypatch):
    """The JSON is rewritten after every configuration, so a run stopped by a time limit keeps its results."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("search_step", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    calls = []

    def fake_run_config(args, impl, order, batch, device, mode="search"):
        calls.append((impl, order))
        if len(calls) == 2:
            raise KeyboardInterrupt  # what a time limit's signal looks like to the parent
        return {"impl": impl, "order": order, "batch": batch, "median_s": 1.0, "min_s": 1.0, "times_s": [1.0],
                "peak_rss_mib": 1.0, "peak_rss_delta_mib": 0.0}

    monkeypatch.setattr(bench, "run_config", fake_run_config)
    out = tmp_path / "bench.json"
    with pytest.raises(KeyboardInterrupt):
        bench.main(["--impl", "ours", "--orders", "1,2", "--batch-sizes", "4", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["partial"] is True
    assert [(r["impl"], r["order"]) for r in saved["results"]] == [("ours", 1)]
