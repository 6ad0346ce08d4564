"""The documentation stays true: every Python block in the README and docs/ runs, every YAML block loads as a
space file, every command in them parses, every relative link resolves, the command-line reference is what the
parser says, the op table lists every op."""
import importlib.util
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
OPTION = re.compile(r"(?<![\w-])(--[A-Za-z][\w-]*|-[A-Za-z](?![\w-]))")  # --flag or -f, not (-resnet50)
TINY = {"dataset": "digits", "layers": 3, "init_channels": 4, "batch_size": 64, "workers": 0, "limit_batches": 2}


def _blocks(lang: str) -> list[tuple[Path, str]]:
    return [(page, b) for page in PAGES for b in re.findall(rf"```{lang}\n(.*?)```", page.read_text(), flags=re.S)]


def test_the_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) < 300


def test_every_relative_link_resolves():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.name}: broken link {target}"


def test_the_cli_reference_is_current():
    """docs/cli.md has a section per command holding every option the parser has (compared by option, not by
    text, since argparse's layout changes between Python versions); `make docs` regenerates it."""
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "tools" / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from dartsnas.cli import build_parser

    page = (ROOT / "docs" / "cli.md").read_text()
    sections = dict(re.findall(r"^## dartsnas (\S+)\n(.*?)(?=^## |\Z)", page, flags=re.S | re.M))
    commands = module._subcommands(build_parser())
    assert list(sections) == list(commands), "run: python tools/cli_reference.py"
    for name, parser in commands.items():
        options = {o for a in parser._actions for o in a.option_strings}
        shown = set(OPTION.findall(sections[name]))
        assert options <= shown, f"dartsnas {name}: {sorted(options - shown)} missing; run tools/cli_reference.py"
        usage = set(OPTION.findall(sections[name].split("\n\n", 1)[0]))
        assert usage <= options, f"dartsnas {name}: {sorted(usage - options)} no longer exist"


def _commands() -> list[tuple[Path, str]]:
    """Every `dartsnas ...` line of the docs' shell blocks and indented examples (continuations joined)."""
    found = []
    for page in PAGES:
        if page.name == "design.md":  # its indented blocks are diagrams of the layers, not commands
            continue
        text = re.sub(r"\\\n\s*", " ", page.read_text())
        fenced = "\n".join(re.findall(r"```(?:bash|sh)?\n(.*?)```", text, flags=re.S))
        indented = "\n".join(line[4:] for line in text.splitlines() if line.startswith("    "))
        for line in (fenced + "\n" + indented).splitlines():
            line = line.strip().removeprefix("$ ")
            if " -m dartsnas " in line:
                line = "dartsnas " + line.split(" -m dartsnas ", 1)[1]
            if line.startswith("dartsnas "):
                found.append((page, line))
    return found


def test_every_command_in_the_docs_parses(capsys):
    from dartsnas.cli import build_parser

    commands = _commands()
    assert len(commands) > 60
    for page, line in commands:
        words = [{"N": "2", "K": "4", "M": "2"}.get(w, w) for w in shlex.split(line, comments=True)[1:] if w != "..."]
        try:
            build_parser().parse_args(words)
        except SystemExit as stop:
            assert stop.code == 0, f"{page.name}: {line}\n{capsys.readouterr().err}"


def _shrunk(run):
    """``run`` on a tiny network for a few batches, epochs divided by ten: the docs' calls, as written, in
    seconds."""
    def small(values):
        values = dict(values or {})
        if "epochs" in values:
            values["epochs"] = max(1, values["epochs"] // 10)
        return values

    def call(config=None, overrides=None, **kwargs):
        if isinstance(config, dict):
            config = {**small(config), **TINY}
        kwargs.setdefault("hooks", [])  # no pictures unless the block asks for hooks
        return run(config, overrides={**small(overrides), **({} if kwargs.get("resume") else TINY)}, **kwargs)
    return call


def test_every_python_block_in_the_docs_runs(tmp_path, monkeypatch):
    """Each block in a fresh namespace, in a scratch folder holding the files the docs name (the API page's
    search run as RUN, a multiplier table); whole runs are shrunk. The example ops module is compared with its
    file."""
    import numpy as np

    import dartsnas
    from dartsnas.ops import OPS
    from dartsnas.ops.approx import MultiplierTable

    blocks = _blocks("python")
    example = (ROOT / "examples" / "my_ops.py").read_text()
    assert any(b == example for _, b in blocks), "the docs' copy of examples/my_ops.py differs from the file"
    monkeypatch.chdir(tmp_path)
    exact = MultiplierTable.exact(signed=True).values
    (tmp_path / "mul8s_1KV9.bin").write_bytes(exact.astype("<i2").tobytes())
    for name in ("run_search", "run_training"):
        monkeypatch.setattr(dartsnas, name, _shrunk(getattr(dartsnas, name)))
    import itertools

    import dartsnas.data
    import dartsnas.engine.search  # noqa: F401  (bound to the real loaders before the patch below)

    loaders = dartsnas.data.build_search_loaders  # the loop of your own: two batches, not an epoch
    monkeypatch.setattr(dartsnas.data, "build_search_loaders", lambda *a, **k: (
        lambda t, v, info: (list(itertools.islice(t, 2)), list(itertools.islice(v, 2)), info))(*loaders(*a, **k)))
    registered = set(OPS.names())
    try:
        for page, block in blocks:
            if '"RUN/' in block and not Path("RUN").exists():  # a run directory the docs call RUN: the API's
                Path("RUN").symlink_to("runs/s1", target_is_directory=True)
            if block != example:
                exec(compile(block, str(page), "exec"), {})
    finally:
        for name in set(OPS.names()) - registered:
            OPS.unregister(name)
    assert (tmp_path / "genotype.json").is_file() and (tmp_path / "runs" / "s1" / "genotype.json").is_file()
    assert np.load(tmp_path / "RUN" / "alphas.npz")["alpha_normal"].shape[0] == 3  # epochs 0 to 2


def test_every_yaml_block_in_the_docs_is_a_space_file_that_loads(tmp_path):
    from dartsnas.space import load_space_file

    blocks = _blocks("yaml")
    assert blocks
    for i, (page, block) in enumerate(blocks):
        path = tmp_path / f"space{i}.yaml"
        path.write_text(block)
        space = load_space_file(path)
        assert space.primitives and space.nodes >= 1, page.name


def test_the_op_table_lists_every_shipped_op():
    from dartsnas.ops import OPS

    text = (ROOT / "docs" / "spaces.md").read_text()
    table = text.split("| op | parameters | multiply-adds (C=16, 32x32, stride 1) | what it is |", 1)[1]
    listed = re.findall(r"^\| `([^`]+)` \|", table.split("\n\n", 1)[0], flags=re.M)
    # what dartsnas registers (other tests register ops of their own in this process)
    shipped = {n for n in OPS.names() if getattr(OPS.get(n), "__module__", "").startswith("dartsnas.")}
    assert set(listed) == shipped, "regenerate the table with: dartsnas ops --markdown"


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs is not installed (make docs)")
def test_the_site_builds_strictly(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "index.html").is_file() and (tmp_path / "cli" / "index.html").is_file()
