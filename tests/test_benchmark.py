"""The search-step benchmark script runs end to end on tiny shapes and prints the JSON it promises."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "search_step.py"


@pytest.mark.slow
def test_interleaved_rounds_ratios_and_files(tmp_path):
    """--rounds repeats each group with the implementations interleaved; times and ratios are medians over the
    rounds, each ratio taken within a round; the JSON on stdout and in --out, the Markdown table."""
    out, md = tmp_path / "bench.json", tmp_path / "bench.md"
    yardstick = (SCRIPT.parents[2] / "shared" / "yardstick").is_dir()
    impls = ("yardstick," if yardstick else "") + "ours"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--impl", impls, "--orders", "1",
                           "--batch-sizes", "4", "--rounds", "2", "--warmup", "0", "--iters", "2",
                           "--out", str(out), "--markdown", str(md)], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == report
    assert {"platform", "cpu_count", "torch", "threads", "device"} <= set(report["machine"])
    assert report["config"]["quick"] is True
    assert all("error" not in r for r in report["results"]), report["results"]
    search = report["results"]
    names = impls.split(",")
    assert [(r["impl"], r["round"]) for r in search] == [(n, k) for k in (0, 1) for n in names]  # a, b, a, b
    for r in search:
        assert r["batch"] == 4 and 0 < r["min_s"] <= r["median_s"]
        assert len(r["times_s"]) == 2  # --iters 2
        assert r["peak_rss_mib"] > 0 and r["peak_rss_delta_mib"] >= 0
    for entry in report["summary"]:
        runs = [r["median_s"] for r in search if r["impl"] == entry["impl"]]
        assert entry["rounds"] == 2 and entry["median_s"] == pytest.approx(sum(runs) / 2)  # median of two
    if yardstick:
        for q in report["ratios"]:
            assert q["rounds"] == 2 and len(q["speedup_per_round"]) == 2
            assert q["speedup_vs_yardstick"] == pytest.approx(sum(q["speedup_per_round"]) / 2)
    else:
        assert report["ratios"] == []  # no yardstick, so no pair to compare
    text = md.read_text()
    assert "2 interleaved rounds" in text and "| ours | 1 | 4 |" in text


@pytest.mark.slow
def test_a_second_order_bf16_row_and_training_against_the_original(tmp_path):
    """Second order in another mode than the default, and the training rows: ours against the original-style
    network, with the ratio taken within the round."""
    md = tmp_path / "bench.md"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--impl", "ours-bf16", "--orders", "2",
                           "--batch-sizes", "4", "--warmup", "0", "--iters", "1", "--train", "--train-impls",
                           "original,channels-last", "--markdown", str(md)], capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert all("error" not in r for r in report["results"]), report["results"]
    row = report["results"][0]
    assert (row["impl"], row["order"]) == ("ours-bf16", 2) and row["median_s"] > 0
    train = [r for r in report["results"] if r.get("mode") == "train"]
    assert [r["impl"] for r in train] == ["original", "channels-last"]
    assert all(r["images_per_s"] > 0 and r["batch"] == 8 for r in train)
    [ratio] = [q for q in report["train_ratios"] if q["impl"] == "channels-last"]
    assert ratio["speedup_vs_original"] == pytest.approx(train[1]["images_per_s"] / train[0]["images_per_s"])
    text = md.read_text()
    assert "images / s" in text and "speed-up vs original" in text


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
