"""``dartsnas plot``: every picture of a run from the files it saved; and the per-epoch hook of a search."""
from __future__ import annotations

import logging
from pathlib import Path

from ..engine.hooks import FailSafeHook
from ..errors import ConfigError

logger = logging.getLogger(__name__)
DEFAULT_KINDS = ("diagrams", "gif", "curves", "heatmaps", "totals")
KINDS = DEFAULT_KINDS + ("mp4", "tensorboard")  # not by default: an encoder; rewriting the events


def _epochs(spec: str, last: int) -> list[int]:
    if spec == "last":
        return [last]
    if spec == "all":
        return list(range(1, last + 1)) or [0]
    try:
        epochs = [int(e) for e in spec.split(",") if e.strip()]
    except ValueError:
        raise ConfigError(f"--epochs takes last, all or comma-separated numbers, got {spec!r}") from None
    bad = [e for e in epochs if not 0 <= e <= last]
    if bad or not epochs:
        raise ConfigError(f"--epochs {spec}: the run has epochs 0 to {last}")
    return epochs


def plot_run(source: str | Path, *, out: str | Path | None = None, epochs: str = "last",
             only: str = ",".join(DEFAULT_KINDS)) -> list[Path]:
    """Draw what ``only`` names for a search run, a training run, or a genotype file / published name."""
    from ..genotype import is_dir, load_genotype
    from ..runs import RunDir
    from .cells import draw_genotype
    from .plots import plot_alpha_heatmaps, plot_curves, plot_op_totals, search_gif, search_mp4

    wanted = [w.strip() for w in only.split(",") if w.strip()]
    unknown = [w for w in wanted if w not in KINDS]
    if unknown:
        raise ConfigError(f"--only: unknown {', '.join(unknown)}; known: {', '.join(KINDS)}")
    if not is_dir(Path(str(source))):  # a genotype file, a published name or a genotype text
        genotype = load_genotype(str(source))
        folder = Path(out) if out else Path(".")
        text = str(source)
        # FILE::NAME draws as NAME_normal, a file as its name without suffix, a genotype text as genotype_normal
        stem = (text.rsplit("::", 1)[1] if "::" in text else Path(text).stem) if len(text) < 200 and "(" not in text \
            else "genotype"
        return draw_genotype(genotype, folder, stem=f"{stem}_")
    source = Path(str(source))
    run = RunDir.open(source)
    folder = Path(out) if out else run.path / "pictures"
    rows = run.read_metrics() if run.metrics_path.is_file() else []
    files: list[Path] = []
    is_search = run.alphas_path.is_file()
    if "tensorboard" in wanted:
        from .tensorboard import export_run

        files.append(export_run(run.path))
    if "curves" in wanted and rows:
        files.append(plot_curves(rows, folder / "curves.png", title=run.path.name))
    if not is_search:  # a training run: its genotype and curves
        if "diagrams" in wanted and run.genotype_path.is_file():
            # named as the report names a run's final cells
            files += draw_genotype(load_genotype(run.genotype_path), folder / "cells", stem="final_")
        return files
    history = run.read_alpha_history()
    primitives = [str(p) for p in history["primitives"]]
    from .plots import alpha_kinds

    last = history[alpha_kinds(history)[0]].shape[0] - 1
    chosen = _epochs(epochs, last)
    if "diagrams" in wanted:
        for e in chosen:
            files += draw_genotype(_genotype_at(run, e), folder / "cells", stem=f"epoch_{e:03d}_",
                                   title=f"epoch {e}: ")
    if "heatmaps" in wanted:
        files.append(plot_alpha_heatmaps(history, primitives, chosen, folder / "alphas.png"))
    if "totals" in wanted:
        files.append(plot_op_totals(history, primitives, folder / "op_weights.png"))
    if ("gif" in wanted or "mp4" in wanted) and last >= 1:
        val = {int(float(r["epoch"])): r.get("val_acc") for r in rows}
        genotypes = [_genotype_at(run, e) for e in range(1, last + 1)]
        captions = [f"epoch {e}/{last}" + (f"   validation accuracy {float(val[e]):.2f}%" if val.get(e) else "")
                    for e in range(1, last + 1)]
        if "gif" in wanted:
            files.append(search_gif(genotypes, captions, folder / "search.gif"))
        if "mp4" in wanted:
            files.append(search_mp4(genotypes, captions, folder / "search.mp4"))
    return files


def _genotype_at(run, epoch: int):
    from ..runs import derive_from_history

    if epoch >= 1 and run.epoch_genotype_path(epoch).is_file():
        return run.epoch_genotype(epoch)
    return derive_from_history(run.path, epoch)[0]


class DrawCells(FailSafeHook):
    """Search hook: the diagrams of the epoch's cells in RUN/pictures/cells as the epoch ends. Without graphviz
    (or on any other drawing error) it warns once and the search goes on."""

    what = "cell diagrams"

    def before_run(self, loop) -> None:
        """A resumed search first draws the epochs a kill left without diagrams (it may land between the
        checkpoint and this hook)."""
        folder = loop.run_dir.path / "pictures" / "cells"
        for epoch in range(1, loop.epoch + 1):
            if self.disabled:
                return
            if not any(folder.glob(f"epoch_{epoch:03d}_*.png")):
                genotype = loop.network.genotype(raw={n: rows[epoch] for n, rows in loop.history.items()})
                self.guarded(epoch, lambda e=epoch, g=genotype: self.draw(loop, e, g))

    def write(self, loop, end) -> None:
        self.draw(loop, end.epoch, loop.genotype)

    @staticmethod
    def draw(loop, epoch: int, genotype) -> None:
        from .cells import draw_genotype

        draw_genotype(genotype, loop.run_dir.path / "pictures" / "cells", stem=f"epoch_{epoch:03d}_",
                      title=f"epoch {epoch}: ")
