"""Pictures of a search or a training run: cell diagrams (graphviz), the search as a GIF, curves and alpha heat
maps (matplotlib). Everything is drawn from what a run saved; nothing here is needed to search or train."""
from .cells import GraphvizMissing, cell_graph, dot_available, draw_cell, draw_genotype
from .plots import plot_alpha_heatmaps, plot_curves, plot_op_totals, search_gif

__all__ = ["GraphvizMissing", "cell_graph", "dot_available", "draw_cell", "draw_genotype", "plot_alpha_heatmaps",
           "plot_curves", "plot_op_totals", "search_gif"]
