"""Choosing the candidate ops: named spaces, --primitives, YAML space files, and user ops from --ops-module
(a module of the user's, loaded in search, train, evaluate and plot alike, with no edit of dartsnas)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dartsnas.cli import main
from dartsnas.space import SPACES

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "my_ops.py"
TINY = ["--dataset", "digits", "--layers", "3", "--init-channels", "4", "--batch-size", "128", "--workers", "0",
        "-q", "--epochs", "1", "--limit-batches", "3"]


def _cli(*args, cwd=None, env_extra=None):
    """dartsnas in a fresh process: nothing registered beforehand but what the command loads."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "dartsnas", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


def _genotype_ops(run):
    return set(json.loads((Path(run) / "genotype.json").read_text())["ops"])


@pytest.mark.parametrize("space", ["mobile", "attention", "approx"])
def test_every_shipped_named_space_searches_on_digits(space, tmp_path):
    if space not in SPACES:
        pytest.skip(f"space {space} not registered")
    run = tmp_path / space
    assert main(["search", *TINY, "--space", space, "--nodes", "2", "--out", str(run)]) == 0
    used = _genotype_ops(run)
    assert used and used <= set(SPACES.get(space).primitives)
    saved = (run / "config.yaml").read_text()
    assert f"space: {space}" in saved and "nodes: 2" in saved


def test_user_ops_from_a_file_through_search_train_evaluate_and_plot(tmp_path):
    search, train = tmp_path / "search", tmp_path / "train"
    prims = "conv_3x3_gelu,grouped_bottleneck_3x3,skip_connect"
    done = _cli("search", *TINY, "--ops-module", str(EXAMPLE), "--primitives", prims, "--nodes", "2",
                "--out", str(search), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert _genotype_ops(search) <= set(prims.split(","))
    assert str(EXAMPLE) in (search / "config.yaml").read_text()  # recorded with its absolute path
    # training and evaluation in fresh processes find the ops through the search's config alone
    done = _cli("train", "--from-run", str(search), "--dataset", "digits", "--layers", "3", "--init-channels", "4",
                "--batch-size", "128", "--workers", "0", "--epochs", "1", "--limit-batches", "3", "--out", str(train),
                "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    done = _cli("evaluate", str(train), "--workers", "0", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["params"] > 0
    # info takes the flag too (in this process: the module is loaded once per file, see test_op_contract)
    assert main(["info", "--genotype", str(search / "genotype.json"), "--dataset", "digits", "--ops-module",
                 str(EXAMPLE), "--init-channels", "8", "--layers", "3", "--json"]) == 0
    # without the module, training the genotype is one line that names the way out
    done = _cli("train", "--genotype", str(search / "genotype.json"), "--dataset", "digits", "--epochs", "1",
                "--out", str(tmp_path / "t2"), "-q")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "--ops-module" in done.stderr


def test_user_ops_by_module_name_and_a_yaml_space_file(tmp_path):
    pkg = tmp_path / "my_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "my_ops.py").write_text(EXAMPLE.read_text())
    space = tmp_path / "space.yaml"
    space.write_text("primitives: [conv_3x3_gelu, skip_connect, max_pool_3x3]\nnodes: 3\nmultiplier: 2\n"
                     "ops_module: my_pkg.my_ops\n")
    run = tmp_path / "run"
    done = _cli("search", *TINY, "--space", str(space), "--out", str(run), cwd=tmp_path,
                env_extra={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    g = json.loads((run / "genotype.json").read_text())
    assert len(g["normal"]["nodes"]) == 3 and g["normal"]["concat"] == [3, 4]
    assert _genotype_ops(run) <= {"conv_3x3_gelu", "skip_connect", "max_pool_3x3"}
    saved = (run / "config.yaml").read_text()
    assert "my_pkg.my_ops" in saved and "nodes: 3" in saved and "multiplier: 2" in saved
    # flags still override the file
    done = _cli("search", *TINY, "--space", str(space), "--nodes", "2", "--ops-module", "my_pkg.my_ops",
                "--out", str(tmp_path / "run2"), cwd=tmp_path, env_extra={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert len(json.loads((tmp_path / "run2" / "genotype.json").read_text())["normal"]["nodes"]) == 2


@pytest.mark.parametrize("args, message", [
    (["--primitives", "sep_conv_3x3,conv_9x9_magic"], "unknown op 'conv_9x9_magic'"),
    (["--ops-module", "no_such_pkg.ops"], "cannot import ops module 'no_such_pkg.ops'"),
    (["--ops-module", "missing_ops.py"], "ops module missing_ops.py does not exist"),
    (["--space", "nowhere.yaml"], "search space file nowhere.yaml does not exist"),
    (["--space", "galaxy"], "unknown search space 'galaxy'"),
])
def test_bad_spaces_and_modules_are_one_line(args, message, tmp_path, capsys):
    assert main(["search", *TINY, *args, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "r").exists()


def test_a_broken_ops_module_and_a_bad_space_file_are_one_line(tmp_path, capsys):
    broken = tmp_path / "broken_ops.py"
    broken.write_text("import torch\nraise RuntimeError('my op is not ready')\n")
    assert main(["search", *TINY, "--ops-module", str(broken), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "failed to import: RuntimeError: my op is not ready" in err[0]
    clash = tmp_path / "clash_ops.py"
    clash.write_text("from dartsnas import register_op\nregister_op('sep_conv_3x3', lambda C, s, a: None)\n")
    assert main(["search", *TINY, "--ops-module", str(clash), "--out", str(tmp_path / "r")]) == 2
    assert "already registered" in capsys.readouterr().err
    space = tmp_path / "s.yaml"
    space.write_text("primitives: [sep_conv_3x3]\nlayers: 3\n")
    assert main(["search", *TINY, "--space", str(space), "--out", str(tmp_path / "r")]) == 2
    assert "unknown key(s) layers" in capsys.readouterr().err


def test_an_approximate_multiplier_table_travels_from_search_to_training_and_evaluation(tmp_path):
    import numpy as np

    from dartsnas.engine.evaluate import load_network
    from dartsnas.ops.approx import ApproxConv2d, MultiplierTable

    exact = MultiplierTable.exact(signed=True).values
    np.save(tmp_path / "trunc4.npy", exact - exact % 16)  # products with their low 4 bits dropped
    search, train = tmp_path / "search", tmp_path / "train"
    assert main(["search", *TINY, "--primitives", "approx_sep_conv_3x3,approx_dil_conv_3x3", "--nodes", "2",
                 "--approx-table",
                 str(tmp_path / "trunc4.npy"), "--out", str(search)]) == 0
    assert ApproxConv2d(2, 2, 1).table.is_exact  # no global default changed by that search
    done = _cli("train", "--from-run", str(search), "--dataset", "digits", "--layers", "3", "--init-channels", "4",
                "--batch-size", "128", "--workers", "0", "--epochs", "1", "--limit-batches", "3", "--out", str(train),
                "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "trunc4.npy" in (train / "config.yaml").read_text()
    network, _ = load_network(train)
    assert {m.table.name for m in network.modules() if isinstance(m, ApproxConv2d)} == {"trunc4"}
    assert main(["evaluate", str(train), "--workers", "0", "--json"]) == 0  # the approx ops are shipped ones
