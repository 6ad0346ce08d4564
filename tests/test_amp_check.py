"""The bf16-against-float32 check (benchmarks/amp_check.py): it runs both precisions from one start, compares
them, and fails when they part ways."""
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "amp_check.py"


def _module():
    spec = importlib.util.spec_from_file_location("amp_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_cpu_check_compares_both_precisions_and_passes(tmp_path):
    out, md = tmp_path / "amp.json", tmp_path / "amp.md"
    code = _module().main(["--quick", "--device", "cpu", "--out", str(out), "--markdown", str(md)])
    report = json.loads(out.read_text())
    search, train = report["search"], report["train"]
    assert len(search["loss_fp32"]) == len(search["loss_bf16"]) == 4
    assert len(train["loss_fp32"]) == len(train["loss_bf16"]) == 4
    # autocast really ran: bf16 rounding changes the losses, a little
    assert search["loss_bf16"] != search["loss_fp32"] and train["loss_bf16"] != train["loss_fp32"]
    assert search["loss_bf16"][0] == pytest.approx(search["loss_fp32"][0], rel=0.05)
    assert len(search["alpha_movement_cosine"]) == len(search["first_alpha_grad_cosine"]) == 2  # normal, reduce
    assert min(search["first_alpha_grad_cosine"]) > 0.9
    assert code == 0 and report["ok"], report
    assert "| search (order 1) | 4 | 16 |" in md.read_text() and "FAIL" not in md.read_text()


def test_a_check_that_cannot_be_met_fails_with_status_1(tmp_path):
    md = tmp_path / "amp.md"
    code = _module().main(["--quick", "--device", "cpu", "--steps", "2", "--train-steps", "0",
                           "--min-cosine", "1.5", "--markdown", str(md)])
    assert code == 1
    assert "FAIL" in md.read_text() and "training" not in md.read_text()


def test_bad_input_is_one_line_and_status_2(capsys):
    with pytest.raises(SystemExit) as exc:
        _module().main(["--steps", "0"])
    assert exc.value.code == 2
    assert "--steps must be at least 1" in capsys.readouterr().err
