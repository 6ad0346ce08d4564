"""Cell diagrams: the two inputs, the intermediate nodes, the output, each edge labelled with its op in a colour
that is the same for that op in every picture.

graphviz's ``dot`` draws them when it is installed; without it matplotlib does (a layered drawing: the inputs on
the left, each node one column right of the latest state it reads, the output on the right), so that every
picture exists on any machine. The first diagram of a process logs which of the two drew.
"""
from __future__ import annotations

import io
import logging
import shutil
from collections.abc import Iterable
from pathlib import Path

from ..errors import DartsNASError
from ..genotype import CellDesign, Genotype

logger = logging.getLogger(__name__)

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
    """Write the diagram of ``design`` as ``path`` with each suffix of ``formats``; returns the files. graphviz
    draws it when ``dot`` is installed, matplotlib otherwise."""
    from ..fileio import atomic_write_bytes

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    use_dot = dot_available()
    _announce(use_dot)
    g = cell_graph(design, title) if use_dot else None
    out = []
    for fmt in formats:
        if g is not None:
            # graphviz scales an SVG's drawing by dpi/72 but not its viewBox, which crops it in browsers: SVG at 72
            g.graph_attr["dpi"] = "72" if fmt == "svg" else "96"
            data = g.pipe(format=fmt)
        else:
            data = cell_figure_bytes(design, title, fmt)
        target = path.with_name(f"{path.name}.{fmt}")  # not with_suffix: a stem may hold dots (g.v2_normal)
        atomic_write_bytes(target, data)
        out.append(target)
    return out


def cell_png(design: CellDesign, title: str | None = None) -> bytes:
    """The diagram of ``design`` as PNG bytes (graphviz when ``dot`` is installed, else matplotlib)."""
    use_dot = dot_available()
    _announce(use_dot)
    return cell_graph(design, title).pipe(format="png") if use_dot else cell_figure_bytes(design, title, "png")


_announced: set[bool] = set()


def _announce(use_dot: bool) -> None:
    if use_dot not in _announced:
        _announced.add(use_dot)
        if use_dot:
            logger.info("cell diagrams drawn by graphviz")
        else:
            logger.info("cell diagrams drawn by matplotlib (%s, for graphviz's layout)", INSTALL_HINT)


def cell_layout(design: CellDesign) -> dict[int, tuple[float, float]]:
    """Positions of the states that exist (0, 1: the inputs; 2 + i: node i; -1: the output): each node one
    column right of the latest state it reads, the nodes of a column spread top to bottom."""
    live = design.live_states()
    column = {0: 0, 1: 0}
    for i in range(len(design.nodes)):
        if 2 + i in live:
            column[2 + i] = 1 + max((column[src] for _, src in design.live_pairs(i) if src in column), default=0)
    last = max(column.values()) + 1
    column[-1] = last
    pos: dict[int, tuple[float, float]] = {}
    for c in range(last + 1):
        members = sorted(s for s, col in column.items() if col == c and s != -1) or ([-1] if c == last else [])
        for k, state in enumerate(members):
            pos[state] = (float(c), (len(members) - 1) / 2 - k)
    return pos


def cell_figure_bytes(design: CellDesign, title: str | None, fmt: str) -> bytes:
    """The matplotlib drawing of ``design`` as ``fmt`` (png, svg, pdf) bytes."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch

    pos = cell_layout(design)
    width = 2.4 * (max(x for x, _ in pos.values()) + 1) + 0.6
    height = 1.15 * (max(y for _, y in pos.values()) - min(y for _, y in pos.values()) + 1) + 0.9
    fig, ax = plt.subplots(figsize=(max(width, 4.0), max(height, 2.4)), dpi=96)
    try:
        ax.set_axis_off()
        names = {0: "c_{k-2}", 1: "c_{k-1}", -1: "c_{k}"}
        colors = {0: "#FFE4B5", 1: "#FFE4B5", -1: "#C1E1C1"}
        edges: dict[tuple[int, int], int] = {}
        arrows = [(src, 2 + i, op) for i in range(len(design.nodes)) for op, src in design.live_pairs(i)]
        arrows += [(j, -1, None) for j in design.concat if j in pos]
        for src, dst, op in arrows:
            k = edges.get((src, dst), 0)
            edges[(src, dst)] = k + 1
            rad = 0.15 * k * (1 if k % 2 else -1) + (0.08 if pos[src][0] + 1 < pos[dst][0] else 0.0)
            (x0, y0), (x1, y1) = pos[src], pos[dst]
            color = op_color(op) if op else "#666666"
            ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=12,
                                         connectionstyle=f"arc3,rad={rad}", color=color,
                                         lw=2.0 if op else 1.2, shrinkA=17, shrinkB=17))
            if op:  # the label two thirds of the way along: edges leaving one input part there
                t = 0.66
                mx, my = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
                ax.text(mx - rad * (y1 - y0) / 2, my + rad * (x1 - x0) / 2, op, color=color, fontsize=8,
                        ha="center", va="center", bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none",
                                                            alpha=0.85))
        for state, (x, y) in pos.items():
            label = names.get(state, str(state - 2))
            box = "circle,pad=0.3" if state >= 2 else "round,pad=0.35"
            ax.text(x, y, label, ha="center", va="center", fontsize=10, zorder=3,
                    bbox=dict(boxstyle=box, fc=colors.get(state, "#ADD8E6"), ec="#333333", lw=1.2))
        xs = [x for x, _ in pos.values()]
        ys = [y for _, y in pos.values()]
        ax.set_xlim(min(xs) - 0.5, max(xs) + 0.5)
        ax.set_ylim(min(ys) - 0.6, max(ys) + 0.6)
        if title:
            ax.set_title(title, fontsize=11)
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, bbox_inches="tight", facecolor="white")
        return buf.getvalue()
    finally:
        plt.close(fig)


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
