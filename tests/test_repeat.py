"""dartsnas repeat: 2 search seeds x 2 trainings on digits, killed in the middle and resumed; the summary."""
import json
import signal
import subprocess
import sys
import time

import pytest

from dartsnas.cli import main

pytestmark = pytest.mark.slow

SEARCH = ("dataset: digits\nlayers: 3\ninit_channels: 4\nnodes: 2\nmultiplier: 2\nbatch_size: 64\nworkers: 0\n"
          "epochs: 2\nlimit_batches: 2\ncheckpoint_every: 1\n")
TRAIN = "layers: 3\ninit_channels: 4\nbatch_size: 64\nworkers: 0\nepochs: 1\nlimit_batches: 2\n"


def test_two_seeds_two_trainings_killed_and_resumed(tmp_path, capsys):
    (tmp_path / "s.yaml").write_text(SEARCH)
    (tmp_path / "t.yaml").write_text(TRAIN)
    study = tmp_path / "study"
    proc = subprocess.Popen([sys.executable, "-m", "dartsnas", "repeat", "--search-config", str(tmp_path / "s.yaml"),
                             "--train-config", str(tmp_path / "t.yaml"), "--seeds", "2", "--retrains", "2", "--out",
                             str(study), "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    target = study / "search-seed1" / "checkpoints" / "last.pt"  # the second search, under way
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not target.exists():
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (study / "summary.md").exists(), "the study ended before it could be stopped"
    first = (study / "search-seed0" / "genotype.json").stat().st_mtime_ns
    assert main(["repeat", "--resume", str(study), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "| test accuracy after training (%) |" in printed and "| 4 |" in printed
    assert (study / "search-seed0" / "genotype.json").stat().st_mtime_ns == first  # a finished run is kept
    assert "resuming" in (study / "search-seed1" / "log.txt").read_text()
    summary = json.loads((study / "summary.json").read_text())
    assert [s["seed"] for s in summary["seeds"]] == [0, 1]
    assert all(len(s["trainings"]) == 2 and all("test_acc" in t for t in s["trainings"]) for s in summary["seeds"])
    accs = [t["test_acc"] for s in summary["seeds"] for t in s["trainings"]]
    mean = sum(accs) / 4
    assert summary["stats"]["test_acc"]["mean"] == pytest.approx(mean)
    assert summary["stats"]["test_acc"]["std"] == pytest.approx((sum((a - mean) ** 2 for a in accs) / 3) ** 0.5)
    d = summary["distances"]
    assert d[0][0] == d[1][1] == 0 and d[0][1] == d[1][0]
    page = (study / "report.html").read_text()
    assert "search seed(s) x 2 training(s)" in page and page.count("<table>") >= 3
    # a finished study resumes to the same summary; a plan with a run's own folder in it is refused
    assert main(["repeat", "--resume", str(study), "-q"]) == 0
    assert json.loads((study / "summary.json").read_text())["stats"] == summary["stats"]
    (tmp_path / "bad.yaml").write_text("dataset: digits\nout: elsewhere\n")
    assert main(["repeat", "--search-config", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "x")]) == 2
    assert main(["repeat", "--resume", str(tmp_path)]) == 2  # not a study folder
    assert main(["repeat", "--seeds", "a,b", "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("dartsnas: error:") for line in err), err
