"""Hostile input: values and files that once gave a traceback or exhausted memory now give one line, exit 2, and
write nothing."""
import pytest

from dartsnas.cli import main

SEARCH = ["search", "--dataset", "digits", "--workers", "0", "--epochs", "1"]
TRAIN = ["train", "--genotype", "DARTS_V2", "--dataset", "digits", "--workers", "0", "--epochs", "1"]
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b]\n"


@pytest.mark.parametrize("args, message", [
    ([*SEARCH, "--lr", "nan"], "lr must be a finite number"),
    ([*SEARCH, "--arch-lr", "nan"], "arch_lr must be a finite number"),
    ([*SEARCH, "--arch-weight-decay", "inf"], "arch_weight_decay must be a finite number"),
    ([*SEARCH, "--momentum", "nan"], "momentum must be a finite number"),
    ([*TRAIN, "--weight-decay", "nan"], "weight_decay must be a finite number"),
    ([*SEARCH, "--seed", str(2**64)], "seed must be between 0 and 2**63 - 1"),
    ([*SEARCH, "--layers", "2"], "layers must be >= 3"),
    ([*SEARCH, "--nodes", "5000"], "nodes must be at most 32"),
    ([*SEARCH, "--layers", "100000"], "layers must be at most 256"),
    ([*SEARCH, "--init-channels", "100000"], "init_channels must be at most 1024"),
    ([*TRAIN, "--init-channels", "100000"], "init_channels must be at most 1024"),
])
def test_bad_values_are_one_line(args, message, tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()


@pytest.mark.parametrize("content, message", [
    (BOMB, "aliases (*name) are not accepted"),
    ("seed: " + "9" * 5000 + "\n", "holds a value dartsnas will not read"),
    ("epochs: " + "[" * 100000 + "\n", "config file"),
    (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "is not UTF-8 text"),
    ("epochs: 1\n" + "#" * (2 << 20) + "\n", "larger than 1 MB"),
])
def test_bad_config_and_space_files_are_one_line(content, message, tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    for args in (["--config", str(path)], ["--space", str(path)]):
        assert main([*SEARCH, *args, "--out", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "run").exists()


def test_bad_genotype_files_and_targets_are_one_line(tmp_path, capsys):
    deep = tmp_path / "deep.json"
    deep.write_text('{"a":' * 100000 + "1" + "}" * 100000)
    digits = tmp_path / "digits.py"
    digits.write_text("G = Genotype(normal=[('sep_conv_3x3', " + "9" * 5000 + ")], normal_concat=[2], reduce=[], "
                      "reduce_concat=[2])\n")
    huge_range = tmp_path / "range.py"
    huge_range.write_text("G = Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], "
                          "normal_concat=range(0, 100000000), reduce=[], reduce_concat=[2])\n")
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("")
    cases = [(["info", "--genotype", str(deep)], "nested too deep"),
             (["info", "--genotype", f"{digits}::G"], "digits"),
             (["info", "--genotype", f"{huge_range}::G"], "over 100000 items"),
             (["genotype", "DARTS_V2", "--out", str(tmp_path / "folder")], "is a folder; name a file"),
             (["genotype", "DARTS_V2", "--out", str(tmp_path / "file" / "g.json")], "a file stands where")]
    for args, message in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


@pytest.fixture(scope="module")
def finished_search(tmp_path_factory):
    run = tmp_path_factory.mktemp("ckpt") / "run"
    assert main(["search", "--dataset", "digits", "--layers", "3", "--init-channels", "2", "--nodes", "2",
                 "--multiplier", "2", "--batch-size", "128", "--workers", "0", "--epochs", "1", "--limit-batches",
                 "2", "-q", "--out", str(run)]) == 0
    return run


@pytest.mark.parametrize("field, value, message", [
    ("epoch", -1, "damaged: epoch"),
    ("epoch", "1", "damaged: epoch"),
    ("metrics", 3, "damaged: metrics"),
    ("alpha_history", [1, 2], "damaged: alpha_history"),
    ("partial", {"step": 10**9, "avg": [0.0, 0, 0]}, "damaged: partial"),
    ("rng", {"python": 1, "numpy": "x", "torch": "y"}, "does not match"),
    ("scheduler", None, "damaged: scheduler"),
])
def test_a_damaged_checkpoint_names_its_field(finished_search, tmp_path, field, value, message, capsys):
    import shutil

    import torch

    run = tmp_path / "run"
    shutil.copytree(finished_search, run)
    path = run / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    state[field] = value
    torch.save(state, path)
    (run / "checkpoints" / "last.pt.sha256").unlink()  # a file that passes its checksum: the schema must hold
    assert main(["search", "--resume", str(run), "--epochs", "2", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_a_run_in_use_is_not_resumed_twice(finished_search, tmp_path, capsys):
    import shutil

    from dartsnas.runs import RunDir

    run = tmp_path / "run"
    shutil.copytree(finished_search, run)
    holder = RunDir(run)
    holder.lock()  # another process resuming it, as far as the lock can tell
    try:
        assert main(["search", "--resume", str(run), "--epochs", "2", "-q"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is in use by another dartsnas run (pid" in err[0], err
    finally:
        holder.unlock()
    assert main(["search", "--resume", str(run), "--epochs", "2", "-q"]) == 0  # free again
    assert main(["search", "--resume", str(run), "--epochs", "2", "-q"]) == 2  # finished: refused, lock let go
    assert main(["search", "--resume", str(run), "--epochs", "3", "-q"]) == 0


def test_a_failing_user_op_is_one_line_naming_it(tmp_path, capsys):
    module = tmp_path / "broken_ops.py"
    module.write_text(
        "import torch.nn as nn\nfrom dartsnas import register_op\n\n"
        "@register_op('hostile_broken_build')\ndef broken(C, stride, affine):\n"
        "    raise ValueError('no such width')\n\n"
        "class Bad(nn.Module):\n    def forward(self, x):\n        raise TypeError('cannot add a str')\n\n"
        "register_op('hostile_broken_run', lambda C, stride, affine: Bad())\n")
    base = [*SEARCH, "--ops-module", str(module), "--layers", "3", "--init-channels", "4", "--out",
            str(tmp_path / "run")]
    try:
        assert main([*base, "--primitives", "skip_connect,hostile_broken_build"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"op 'hostile_broken_build' (from {module})" in err[0], err
        assert "ValueError: no such width" in err[0]
        assert main([*base, "--primitives", "skip_connect,hostile_broken_run"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "TypeError: cannot add a str" in err[0], err
        assert main([*base, "--primitives", "skip_connect,hostile_broken_build", "-v"]) == 2
        assert "Traceback" in capsys.readouterr().err  # the user's traceback, asked for
    finally:
        from dartsnas.ops import OPS

        for name in ("hostile_broken_build", "hostile_broken_run"):
            OPS.unregister(name)
    assert not (tmp_path / "run").exists()


def test_unreadable_images_are_skipped_with_a_warning_and_a_broken_folder_stops(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("val", 4)):
        for cls in ("a", "b"):
            folder = tmp_path / "data" / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    good = (tmp_path / "data" / "train" / "a" / "00.png").read_bytes()
    (tmp_path / "data" / "train" / "a" / "zz_truncated.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "data" / "train" / "b" / "zz_not_an_image.png").write_bytes(b"this is text")
    args = ["search", "--dataset", "imagefolder", "--data", str(tmp_path / "data"), "--layers", "3",
            "--init-channels", "2", "--nodes", "2", "--multiplier", "2", "--batch-size", "13", "--workers", "1",
            "--epochs", "1", "-q"]
    assert main([*args, "--out", str(tmp_path / "run")]) == 0  # 26 training images: each half one batch of 13
    # a worker process read them: its warnings go to its stderr and the run's log (pytest captures only ours)
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "skipping unreadable image" in log and "zz_truncated.png" in log and "zz_not_an_image.png" in log
    # counted in the epoch's line (the halves summed)
    epoch_line = [line for line in log.splitlines() if "epoch 1/1" in line]
    assert len(epoch_line) == 1 and epoch_line[0].endswith("(2 unreadable images skipped)"), epoch_line
    capsys.readouterr()
    for path in sorted((tmp_path / "data" / "train").rglob("*.png"))[2:]:  # now nearly every image is broken
        path.write_bytes(b"broken")
    assert main([*args, "--out", str(tmp_path / "run2")]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if not line.startswith("skipping unreadable image")]
    assert len(errors) == 1 and errors[0].startswith("dartsnas: error:") and "could not be read" in errors[0], err
    assert "worker" not in errors[0]  # the message, not the worker's traceback


def test_a_run_that_died_before_its_first_checkpoint_restarts_in_place(tmp_path, monkeypatch, capsys):
    import torch

    run = tmp_path / "run"
    args = ["search", "--dataset", "digits", "--layers", "3", "--init-channels", "2", "--nodes", "2", "--multiplier",
            "2", "--batch-size", "128", "--workers", "0", "--epochs", "1", "--limit-batches", "2", "-q"]
    real = torch.nn.functional.cross_entropy
    monkeypatch.setattr(torch.nn.functional, "cross_entropy",
                        lambda *a, **k: torch.tensor(float("nan"), requires_grad=True))
    assert main([*args, "--out", str(run)]) == 2  # a NaN in its first step: nothing to resume from
    assert not (run / "checkpoints" / "last.pt").exists()
    monkeypatch.setattr(torch.nn.functional, "cross_entropy", real)
    capsys.readouterr()
    assert main(["search", "--resume", str(run), "-q"]) == 0
    assert (run / "genotype.json").is_file() and (run / "checkpoints" / "last.pt").is_file()
    assert (run / "log.txt").read_text().count("search run directory:") == 2  # the first try's log kept
    assert "has no checkpoint" in capsys.readouterr().err


def test_messages_argparse_a_leaving_module_an_impossible_out_and_leftover_temporaries(finished_search, tmp_path,
                                                                                       capsys):
    import shutil

    with pytest.raises(SystemExit) as stop:
        from dartsnas.cli import build_parser

        build_parser().parse_args(["search", "--epochs", "many"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "invalid" in err[-1] and "--help" in err[-1], err  # one line, not the usage
    leaving = tmp_path / "leaving_ops.py"
    leaving.write_text("import sys\nsys.exit(0)\n")
    assert main([*SEARCH, "--ops-module", str(leaving), "--out", str(tmp_path / "a")]) == 2
    (tmp_path / "afile").write_text("")
    assert main([*SEARCH, "--layers", "3", "--init-channels", "2", "--out", str(tmp_path / "afile" / "run")]) == 2
    assert main(["genotype", "x" * 100000]) == 2  # the echoed input is cut
    err = capsys.readouterr().err.strip().splitlines()
    assert "SystemExit" in err[0] and "cannot create the run directory" in err[1] and len(err[2]) < 1000, err
    run = tmp_path / "run"
    shutil.copytree(finished_search, run)
    (run / "checkpoints" / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    assert main(["search", "--resume", str(run), "--epochs", "2", "-q"]) == 0
    assert not list(run.rglob(".*.tmp"))


def test_flipped_bytes_in_a_checkpoint_are_caught(finished_search, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_search, run)
    path = run / "checkpoints" / "last.pt"
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 16):  # inside a tensor's bytes: torch.load would not notice
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    assert main(["search", "--resume", str(run), "--epochs", "2", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "do not match the checksum" in err[0], err


def test_a_resume_draws_the_diagrams_and_events_a_kill_left_out(finished_search, tmp_path):
    import shutil

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    shutil.copytree(finished_search, run)
    cells = run / "pictures" / "cells"
    for path in cells.glob("epoch_001_*"):  # a kill between the checkpoint and the diagram hook
        path.unlink()
    shutil.rmtree(run / "tensorboard")  # ... and before TensorBoard's events were flushed
    assert main(["search", "--resume", str(run), "--epochs", "2", "-q"]) == 0
    assert (cells / "epoch_001_normal.png").is_file() and (cells / "epoch_002_normal.png").is_file()
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    assert sorted(e.step for e in events.Scalars("loss/train")) == [1, 2]  # each once
    assert sorted(e.step for e in events.Images("cells/normal")) == [1, 2]


LONG = "x" * 5000  # longer than any file name the system accepts


@pytest.mark.parametrize("args, message", [
    (["--dataset", "imagefolder", "--data", "{tmp}/missing"], "missing"),
    (["--dataset", "imagefolder", "--data", LONG], "too long"),
    (["--space", "{tmp}/missing.yaml"], "missing.yaml"),
    (["--space", LONG], "unknown search space"),
    (["--ops-module", "{tmp}/missing.py"], "missing.py"),
    (["--ops-module", LONG], "cannot import ops module"),
    (["--resume", "{tmp}/missing"], "missing"),
    (["--resume", LONG], "too long"),
    (["--out", "{tmp}/" + LONG], "too long"),
])
def test_bad_paths_are_one_line(args, message, tmp_path, capsys):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "run")]
    assert main([*SEARCH, *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dartsnas: error:") and message in err[0], err
    assert len(err[0]) < 1000 and not (tmp_path / "run").exists()


def test_an_output_folder_that_cannot_be_written_is_one_line(tmp_path, monkeypatch, capsys):
    """A read-only folder (simulated: the tests may run as root, whom permissions do not stop)."""
    import pathlib

    real = pathlib.Path.mkdir

    def refuse(self, *a, **k):
        if str(self).startswith(str(tmp_path / "ro")):
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(pathlib.Path, "mkdir", refuse)
    assert main([*SEARCH, "--out", str(tmp_path / "ro" / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Permission denied" in err[0] and str(tmp_path / "ro") in err[0], err
