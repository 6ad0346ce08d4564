"""Genotypes: the discrete architecture a search produces, as pure data.

A genotype holds either one cell design per cell type (``normal`` and ``reduce``, as in DARTS) or one
design per cell position (``cells``, as in D-DARTS' per-cell search). A cell design lists its intermediate
nodes; node ``i`` (0-based) is state ``2 + i`` and sums any number of ``(op, input)`` pairs, where inputs 0
and 1 are the two cell inputs (a node without pairs does not exist: sparse cells). ``concat`` names the states
whose concatenation is the cell output.

The package: ``model`` (the data), ``derivation`` (gated weights and raw alphas to a genotype, by the DARTS
top-k rule or D-DARTS' threshold rules), ``files`` (the JSON format and ``load_genotype``), ``text`` (the
classic text forms of the original code and its forks, read without ``eval``) and ``published`` (published
cells by name).
"""
from .derivation import (
    DEFAULT_THRESHOLD,
    DERIVATION_RULES,
    GATES,
    derive_cell,
    derive_from_gates,
    derive_genotype,
    derive_per_cell_genotype,
    edge_normalized,
    gate_values,
    per_cell_names,
    softmax,
)
from .files import is_dir, load_genotype, parse_genotype_text, save_genotype
from .model import FORMAT_NAME, FORMAT_VERSION, CellDesign, Genotype, gene_matrix, num_edges, sparse_design
from .published import PUBLISHED, published_genotype, published_names
from .text import parse_genotype_texts

__all__ = [
    "DEFAULT_THRESHOLD",
    "DERIVATION_RULES",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "GATES",
    "PUBLISHED",
    "CellDesign",
    "Genotype",
    "derive_cell",
    "derive_from_gates",
    "derive_genotype",
    "derive_per_cell_genotype",
    "edge_normalized",
    "gate_values",
    "gene_matrix",
    "is_dir",
    "load_genotype",
    "num_edges",
    "parse_genotype_text",
    "parse_genotype_texts",
    "per_cell_names",
    "published_genotype",
    "published_names",
    "save_genotype",
    "softmax",
    "sparse_design",
]
