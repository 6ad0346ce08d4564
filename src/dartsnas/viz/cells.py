"""Cell diagrams with graphviz: the two inputs, the intermediate nodes, the output, each edge labelled with its op
in a colour that is the same for that op in every picture."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterable

from ..errors import DartsNASError
from ..genotype import CellDesign, Genotype

INSTALL_HINT = ("graphviz's `dot` program is not installed; install it (Debian/Ubuntu: sudo apt-get install "
                "graphviz, macOS: brew install graphviz, conda: conda install graphviz)")

# Fixed colours for the DARTS ops (colour-blind-safe Okabe-Ito and Tableau hues); other ops get one by name.
OP_COLORS = {
    "none": "#999999", "skip_connect": "#009E73", "max_pool_3x3": "#0072B2", "avg_pool_3x3": "#56B4E9",
    "sep_conv_3x3": "#D55E00", "sep_conv_5x5": "#E69F00", "sep_conv_7x7": "#8C564B", "dil_conv_3x3": "#CC79A7",
    "dil_conv_5x5": "#882255", "conv_7x1_1x7": "#6A3D9A",
}
_EXTRA = ["#1F77B4", "#2CA02C", "#D62728", "#9467BD", "#17BECF", "#BCBD22", "#7F7F7F", "#E377C2", "#FF7F0E"]


class GraphvizMissing(DartsNASError):
    """graphviz's ``dot`` program is not on the PATH."""


def op_color(op: str) -> str:
    if op in OP_COLORS:
        return OP_COLORS[op]
    return _EXTRA[sum(op.encode()) % len(_EXTRA)]


def dot_available() -> bool:
    return shutil.which("dot") is not None


def cell_graph(design: CellDesign, title: str | None = None):
    """A ``graphviz.Digraph`` of one cell (left to right)."""
    import graphviz

    g = graphviz.Digraph(format="png", graph_attr={"rankdir": "LR", "fontname": "Helvetica", "fontsize": "16",
                                                    "bgcolor": "white", "nodesep": "0.35", "ranksep": "0.6",
                                                    "dpi": "96", "labelloc": "t"},
                         node_attr={"fontname": "Helvetica", "fontsize": "14", "style": "filled,rounded",
                                    "shape": "box", "penwidth": "1.5", "height": "0.5"},
                         edge_attr={"fontname": "Helvetica", "fontsize": "12", "penwidth": "2"})
    if title:
        g.attr(label=title)
    g.node("c_{k-2}", "c_{k-2}", fillcolor="#FFE4B5")
    g.node("c_{k-1}", "c_{k-1}", fillcolor="#FFE4B5")
    live = design.live_states()
    for i in range(len(design.nodes)):  # a sparse cell's missing nodes are not drawn, nor the genes reading them
        if 2 + i in live:
            g.node(str(i), str(i), fillcolor="#ADD8E6", shape="circle", width="0.5", fixedsize="true")
    g.node("c_{k}", "c_{k}", fillcolor="#C1E1C1")
    names = ["c_{k-2}", "c_{k-1}"] + [str(i) for i in range(len(design.nodes))]
    for i in range(len(design.nodes)):
        for op, j in design.live_pairs(i):
            color = op_color(op)
            g.edge(names[j], str(i), label=op, color=color, fontcolor=color)
    for j in design.concat:
        g.edge(names[j], "c_{k}", color="#666666", penwidth="1.2")
    return g


def draw_cell(design: CellDesign, path: str | Path, *, title: str | None = None,
              formats: Iterable[str] = ("png", "svg")) -> list[Path]:
    """Write the diagram of ``design`` as ``path`` with each suffix of ``formats``; returns the files."""
    if not dot_available():
        raise GraphvizMissing(INSTALL_HINT)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    g = cell_graph(design, title)
    out = []
    for fmt in formats:
        # graphviz scales an SVG's drawing by dpi/72 but not its viewBox, which crops it in browsers: SVG at 72
        g.graph_attr["dpi"] = "72" if fmt == "svg" else "96"
        data = g.pipe(format=fmt)
        target = path.with_name(f"{path.name}.{fmt}")  # not with_suffix: a stem may hold dots (g.v2_normal)
        from ..fileio import atomic_write_bytes

        atomic_write_bytes(target, data)
        out.append(target)
    return out


def draw_genotype(genotype: Genotype, folder: str | Path, stem: str = "", *, title: str = "",
                  formats: Iterable[str] = ("png", "svg")) -> list[Path]:
    """Diagrams of every cell of ``genotype`` in ``folder`` (``{stem}normal``, ``{stem}reduce``, or
    ``{stem}cell_NN`` for per-position genotypes)."""
    folder = Path(folder)
    files: list[Path] = []
    if genotype.cells is not None:
        for i, design in enumerate(genotype.cells):
            kind = "reduction" if design.reduction else "normal"
            files += draw_cell(design, folder / f"{stem}cell_{i:02d}", title=f"{title}cell {i} ({kind})".strip(),
                               formats=formats)
        return files
    for name, design in (("normal", genotype.normal), ("reduce", genotype.reduce)):
        label = "normal cell" if name == "normal" else "reduction cell"
        files += draw_cell(design, folder / f"{stem}{name}", title=f"{title}{label}", formats=formats)
    return files
