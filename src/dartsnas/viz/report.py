"""``dartsnas report RUN [RUN ...]``: one self-contained HTML page (every picture embedded as a data URI, no
script, no network) with a run's config, final genotype and its diagrams, curves, alpha heat maps, the search
GIF, the parameters and multiply-adds of the derived network and, for a training run, its test accuracy.
Several runs make one comparison page: a summary table, the accuracy curves overlaid, then each run."""
from __future__ import annotations

import base64
import datetime as _dt
import html
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import DartsNASError

logger = logging.getLogger(__name__)

MIME = {".png": "image/png", ".gif": "image/gif", ".svg": "image/svg+xml"}

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 1.5em 2em 4em; color: #222; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2em;
     margin-top: 2.2em; } h3 { margin-top: 1.6em; }
.sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.7em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.figs { display: flex; flex-wrap: wrap; gap: 1.2em; align-items: flex-start; }
figure { margin: 0.4em 0; } figcaption { color: #555; font-size: 0.9em; margin-top: 0.3em; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
code, pre { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 0.88em; }
pre { background: #f7f7f7; padding: 0.7em; overflow-x: auto; white-space: pre-wrap; }
details summary { cursor: pointer; color: #345; }
.note { color: #8a5a00; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, digits: int = 2) -> str:
    if value in (None, ""):
        return "–"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return _e(value)
    whole = isinstance(value, int) or (isinstance(value, str) and value.strip().lstrip("-").isdigit())
    if whole or (v.is_integer() and abs(v) >= 1000):  # counts as counts, not 1.00
        return f"{int(v):,}"
    if 0 < abs(v) < 10 ** -digits:  # a small loss or weight: significant digits rather than 0.00
        return f"{v:.3g}"
    return f"{v:.{digits}f}"


def _img(path: Path, caption: str, width: int | None = None) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    style = f' style="max-width:{width}px"' if width else ""
    return (f'<figure><img src="data:{MIME[path.suffix.lower()]};base64,{data}" alt="{_e(caption)}"{style}>'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


class RunReport:
    """What one run's section of a page shows, gathered from its files (drawing what is missing)."""

    def __init__(self, path: str | Path, *, arch_channels: int | None = None, arch_layers: int | None = None):
        from ..config import read_yaml
        from ..plugins import load_ops_modules
        from ..runs import RunDir

        self.run = RunDir.open(path)
        self.name = self.run.path.name
        self.config: dict[str, Any] = read_yaml(self.run.config_path) or {}
        load_ops_modules(self.config.get("ops_module"))  # user ops, to count the derived network
        self.rows = self.run.read_metrics() if self.run.metrics_path.is_file() else []
        self.kind = "search" if self.run.alphas_path.is_file() else "train"
        self.final = self._json(self.run.final_path)
        self.evaluation = self._json(self.run.evaluation_path)
        self.genotype = self._genotype()
        self.counts = self._counts(arch_channels, arch_layers)
        self.notes: list[str] = []
        self.pictures = self._pictures()

    def _json(self, p: Path) -> dict[str, Any]:
        import json

        if not p.is_file():
            return {}
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError):
            logger.warning("%s is unreadable; the report leaves it out", p)
            return {}

    def _genotype(self):
        from ..genotype import load_genotype

        if self.run.genotype_path.is_file():
            return load_genotype(self.run.genotype_path)
        if self.kind == "train":
            return None
        done = self.run.saved_epochs()
        return load_genotype(self.run.epoch_genotype_path(done[-1])) if done else None

    def _counts(self, channels: int | None, layers: int | None) -> dict[str, Any]:
        """Parameters and multiply-adds: a training run's own network; for a search, the evaluation network the
        found cells make (the paper's C=36, 20 layers unless told otherwise)."""
        if self.kind == "train" and self.final.get("params"):
            return {"params": self.final["params"], "macs": self.final.get("macs"),
                    "init_channels": self.config.get("init_channels"), "layers": self.config.get("layers")}
        if self.genotype is None:
            return {}
        from ..engine.evaluate import genotype_info

        if self.kind == "train":
            channels, layers = self.config.get("init_channels"), self.config.get("layers")
        try:
            info = genotype_info(self.genotype, dataset=str(self.config.get("dataset", "cifar10")),
                                 data=self.config.get("data"), init_channels=channels, layers=layers)
        except (DartsNASError, OSError, ValueError, RuntimeError) as e:
            logger.warning("%s: no parameter count (%s)", self.name, e)
            return {}
        return {k: info[k] for k in ("params", "macs", "init_channels", "layers")}

    def _pictures(self) -> list[tuple[str, list[tuple[Path, str]]]]:
        """(heading, [(file, caption)]) groups, drawn into RUN/pictures when not there yet."""
        from .cells import draw_genotype
        from .plots import plot_alpha_heatmaps, plot_curves, plot_op_totals

        folder = self.run.path / "pictures"
        groups: list[tuple[str, list[tuple[Path, str]]]] = []
        if self.genotype is not None:  # graphviz draws them when installed, matplotlib otherwise
            files = draw_genotype(self.genotype, folder / "cells", stem="final_")
            svgs = [f for f in files if f.suffix == ".svg"]
            groups.append(("Final cells", [(f, f.stem[len("final_"):].replace("reduce", "reduction cell")
                                            .replace("normal", "normal cell").replace("_", " ")) for f in svgs]))
        if self.rows:
            curves = plot_curves(self.rows, folder / "curves.png", title=self.name)
            groups.append(("Curves", [(curves, "loss, accuracy and learning rate by epoch")]))
        if self.kind == "search":
            history = self.run.read_alpha_history()
            primitives = [str(p) for p in history["primitives"]]
            from .plots import alpha_kinds

            last = history[alpha_kinds(history)[0]].shape[0] - 1
            epochs = sorted({0, last // 2, last}) if last >= 2 else sorted({0, last})
            alphas = [(plot_alpha_heatmaps(history, primitives, epochs, folder / "alphas.png"),
                       f"op weights (softmax or sigmoid of the alphas), edges by ops, after epochs "
                       f"{', '.join(map(str, epochs))} "
                       "(each panel on its own colour scale)"),
                      (plot_op_totals(history, primitives, folder / "op_weights.png"),
                       "each op's weight summed over edges, by epoch (skip-connection collapse shows as "
                       "skip_connect rising)")]
            groups.append(("Architecture weights", alphas))
            if last >= 1:
                from .run_plots import plot_run

                gif = plot_run(self.run.path, only="gif")
                if gif:
                    groups.append(("The search, epoch by epoch", [(gif[0], "normal and reduction cells after "
                                                                           "each epoch")]))
        return groups

    # -- figures --------------------------------------------------------------------------------------------
    def last(self, key: str) -> Any:
        for row in reversed(self.rows):
            if row.get(key) not in (None, ""):
                return row[key]
        return None

    def summary(self) -> dict[str, Any]:
        accuracy = (self.evaluation.get("top1") or self.final.get("test_acc") or self.last("test_acc")
                    if self.kind == "train" else self.last("val_acc"))
        return {"run": self.name, "kind": self.kind, "dataset": self.config.get("dataset", "?"),
                "epochs": len(self.rows), "planned": self.config.get("epochs"),
                "accuracy": accuracy, "accuracy_of": "test" if self.kind == "train" else "validation",
                "params": self.counts.get("params"), "macs": self.counts.get("macs"),
                "genotype": str(self.genotype) if self.genotype is not None else "–"}

    def html(self, level: int = 2) -> str:
        h = f"h{level}"
        s = self.summary()
        parts = [f'<{h} id="{_e(self.name)}">{_e(self.name)} <small>({self.kind} run)</small></{h}>',
                 f'<p class="sub"><code>{_e(self.run.path.resolve())}</code></p>']
        parts += [f'<p class="note">{_e(n)}</p>' for n in self.notes]
        facts = [("data set", s["dataset"]), ("epochs", f"{s['epochs']} of {s['planned']}")]
        if self.kind == "train":
            if self.evaluation.get("test_images"):
                facts.append(("test set", f"{self.evaluation.get('dataset', s['dataset'])} "
                                          f"({self.evaluation['test_images']:,} images)"))
            facts.append(("test accuracy (%)", _num(s["accuracy"])))
            if self.evaluation.get("top5") or self.final.get("test_top5"):
                facts.append(("test top-5 accuracy (%)", _num(self.evaluation.get("top5") or
                                                              self.final.get("test_top5"))))
            if self.final.get("best_val_acc") is not None:
                facts.append(("best validation accuracy (%)", _num(self.final["best_val_acc"])))
        else:
            facts.append(("final validation accuracy (%)", _num(s["accuracy"])))
            facts.append(("final training accuracy (%)", _num(self.last("train_acc"))))
        if self.counts:
            where = (f"this run's network (C={self.counts.get('init_channels')}, {self.counts.get('layers')} cells)"
                     if self.kind == "train" else
                     f"network from these cells at C={self.counts.get('init_channels')}, "
                     f"{self.counts.get('layers')} cells")
            facts.append((f"parameters, {where}", _num(s["params"])))
            facts.append(("multiply-adds per image", _num(s["macs"])))
        parts.append("<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts) +
                     "</table>")
        if self.genotype is not None:
            parts.append(f"<{h[0]}{int(h[1]) + 1}>Genotype</{h[0]}{int(h[1]) + 1}><pre>{_e(self.genotype)}</pre>")
        for heading, figs in self.pictures:
            sub = f"h{level + 1}"
            parts.append(f"<{sub}>{_e(heading)}</{sub}><div class='figs'>" +
                         "".join(_img(p, c) for p, c in figs) + "</div>")
        if self.rows:
            keys = [k for k in self.rows[0] if k != "seconds"]
            table = ("<table><tr>" + "".join(f"<th>{_e(k)}</th>" for k in keys) + "</tr>" +
                     "".join("<tr>" + "".join(f"<td class='num'>{_num(r.get(k), 4 if 'lr' in k else 2)}</td>"
                                              for k in keys) + "</tr>" for r in self.rows) + "</table>")
            parts.append(f"<details><summary>Metrics by epoch</summary>{table}</details>")
        config = "".join(f"<tr><th>{_e(k)}</th><td><code>{_e(v)}</code></td></tr>" for k, v in self.config.items())
        parts.append(f"<details><summary>Config (repeat with <code>dartsnas {self.kind} --config "
                     f"{_e(self.run.config_path)}</code>)</summary><table>{config}</table></details>")
        return "\n".join(parts)


def _overlay(reports: Sequence[RunReport], path: Path) -> Path:
    """Validation (search) and test (training) accuracy of every run on one chart."""
    from .plots import _int_locator, _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.2), constrained_layout=True)
    for r in reports:
        key = "val_acc" if r.kind == "search" else "test_acc"
        pts = [(int(float(row["epoch"])), float(row[key])) for row in r.rows if row.get(key) not in (None, "")]
        if pts:
            ax.plot(*zip(*pts), marker="o", markersize=3, label=f"{r.name} ({'val' if r.kind == 'search' else 'test'})")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(_int_locator())
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def markdown_html(text: str) -> str:
    """The small Markdown dartsnas writes (``#`` headings, pipe tables, paragraphs, `code`) as HTML."""
    import re

    def inline(s: str) -> str:
        return re.sub(r"`([^`]*)`", r"<code>\1</code>", _e(s))

    out, table = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                table.append(cells)
            continue
        if table:
            head, *rows = table
            out.append("<table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in head) + "</tr>" + "".join(
                "<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>" for row in rows) + "</table>")
            table = []
        if line.startswith("#"):
            out.append(f"<h2>{inline(line.lstrip('#').strip())}</h2>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    return "\n".join(out)


def write_report(runs: Sequence[str | Path], out: str | Path | None = None, *, init_channels: int | None = None,
                 layers: int | None = None, summary: str | None = None) -> Path:
    """The page for one run (default ``RUN/report.html``) or the comparison of several (default
    ``report.html`` here), after ``summary`` (Markdown: a repeated study's table) when given. Returns the file
    written."""
    import tempfile

    from .. import __version__
    from ..fileio import atomic_write_bytes

    if not runs:
        raise DartsNASError("report needs at least one run directory")
    reports = [RunReport(r, arch_channels=init_channels, arch_layers=layers) for r in runs]
    names = [r.name for r in reports]
    if len(set(names)) < len(names):  # anchors must be unique
        for i, r in enumerate(reports):
            r.name = f"{i + 1}. {r.name}"
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    if len(reports) == 1:
        r = reports[0]
        title = f"dartsnas report: {r.name}"
        body = r.html(level=2)
        target = Path(out) if out else r.run.path / "report.html"
    else:
        title = f"dartsnas comparison of {len(reports)} runs"
        head = ["run", "kind", "data set", "epochs", "accuracy (%)", "parameters", "multiply-adds", "genotype"]
        rows = []
        for r in reports:
            s = r.summary()
            rows.append(f"<tr><td><a href='#{_e(r.name)}'>{_e(r.name)}</a></td><td>{_e(s['kind'])}</td>"
                        f"<td>{_e(s['dataset'])}</td><td class='num'>{s['epochs']}</td>"
                        f"<td class='num'>{_num(s['accuracy'])} <small>({s['accuracy_of']})</small></td>"
                        f"<td class='num'>{_num(s['params'])}</td><td class='num'>{_num(s['macs'])}</td>"
                        f"<td><code>{_e(s['genotype'])}</code></td></tr>")
        table = ("<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>" + "".join(rows) +
                 "</table><p class='sub'>Accuracy: the last epoch's validation accuracy of a search, the test "
                 "accuracy of a training run. Parameters and multiply-adds of a search: the network its cells make "
                 "at the evaluation size.</p>")
        with tempfile.TemporaryDirectory() as tmp:
            chart = _img(_overlay(reports, Path(tmp) / "accuracy.png"), "accuracy by epoch, every run")
        body = "<h2>Summary</h2>" + table + chart + "\n".join(r.html(level=2) for r in reports)
        target = Path(out) if out else Path("report.html")
    page = (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{_e(title)}</title>"
            f"<link rel='icon' href='data:,'><style>{CSS}</style></head><body><h1>{_e(title)}</h1>"
            f"<p class='sub'>made by dartsnas {_e(__version__)} on {stamp}</p>"
            f"{markdown_html(summary) if summary else ''}{body}</body></html>\n")
    return atomic_write_bytes(target, page.encode("utf-8"))
