"""``dartsnas hypergrad-check``: the finite-difference and first-order hypergradients against the exact one."""
import json

import pytest

from dartsnas.cli import main

TINY = ["--dataset", "digits", "--layers", "3", "--init-channels", "4", "--nodes", "2", "--multiplier", "2",
        "--batch-size", "16", "--workers", "0", "-q"]


def test_hypergrad_check_reports_each_method_per_dtype(tmp_path, capsys):
    out = tmp_path / "check.json"
    assert main(["hypergrad-check", *TINY, "--batches", "2", "--radii", "0.01,0.0001", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "finite difference R=0.01/||v||" in printed and "first order" in printed
    results = json.loads(out.read_text())
    assert [r["dtype"] for r in results["runs"]] == ["float32", "float64"]
    for run in results["runs"]:
        assert len(run["rows"]) == 2
        for row in run["rows"]:
            assert row["exact_norm"] > 0
            # the paper's step differs from the exact one on a ReLU network, and first order more still
            assert 0 < row["fd_0.01"] < 10 and 0 < row["first_order"]


def test_with_a_vanishing_weight_step_every_method_meets_the_first_order_gradient(tmp_path):
    """xi -> 0: the second-order term vanishes, so exact, finite difference and first order agree (float64)."""
    out = tmp_path / "check.json"
    assert main(["hypergrad-check", *TINY, "--batches", "2", "--dtypes", "float64", "--lr", "1e-9", "--lr-min", "0",
                 "--weight-steps", "0", "--json", str(out)]) == 0
    run = json.loads(out.read_text())["runs"][0]
    for row in run["rows"]:
        assert row["first_order"] < 1e-6 and row["fd_0.01"] < 1e-6


@pytest.mark.parametrize("args, message", [(["--dtypes", "float16"], "--dtypes: choose from float32, float64"),
                                           (["--radii", "0.01,x"], "--radii takes comma-separated numbers"),
                                           (["--batches", "500"], "too few batches")])
def test_bad_input_is_one_line(args, message, capsys):
    assert main(["hypergrad-check", *TINY, *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_hypergrad_check_offers_only_the_options_it_reads(capsys):
    with pytest.raises(SystemExit):
        main(["hypergrad-check", "--help"])
    shown = capsys.readouterr().out
    assert all(flag in shown for flag in ("--layers", "--primitives", "--lr", "--momentum", "--threads"))
    assert not any(flag in shown for flag in ("--epochs", "--arch-lr", "--order", "--early-stop-distance", "--amp"))

