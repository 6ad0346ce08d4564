"""The text forms of the original DARTS code and its forks (``Genotype(...)`` in pair, nested-list or triple
form, D-DARTS' ``Genotype_nested`` and ``Genotype_opt``), read without ``eval``: Python's own parser builds the
syntax tree, which is walked, never executed, refusing anything but literals, names, calls and list arithmetic,
with size and depth limits and line-numbered errors."""
from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from typing import Any

from ..errors import GenotypeError
from .model import CellDesign, Genotype, sparse_design


@dataclass
class _Lit:
    """A string or number literal."""

    value: Any
    line: int


@dataclass
class _Seq:
    """A list or tuple literal."""

    items: list[Any]
    line: int
    kind: str  # "list" or "tuple"


@dataclass
class _Name:
    """A (possibly dotted) bare name."""

    name: str
    line: int


@dataclass
class _Call:
    """A call ``name(args, key=value)``, never executed: only its literal arguments are read."""

    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    line: int


@dataclass
class _BinOp:
    """``left * right`` or ``left + right``: evaluated on literal lists and integers only (see _resolve)."""

    op: str
    left: Any
    right: Any
    line: int


_Expr = _Lit | _Seq | _Name | _Call | _BinOp
_MAX_ITEMS = 100_000  # list arithmetic never builds more than this many items


def _resolve(node: _Expr, env: dict[str, _Expr]) -> _Expr:
    """``node`` with names of earlier literal assignments substituted and list arithmetic evaluated."""
    if isinstance(node, _Name) and node.name in env:
        return env[node.name]
    if isinstance(node, _Seq):
        return _Seq([_resolve(x, env) for x in node.items], node.line, node.kind)
    if isinstance(node, _Call):
        return _Call(node.name, [_resolve(x, env) for x in node.args],
                     {k: _resolve(v, env) for k, v in node.kwargs.items()}, node.line)
    if not isinstance(node, _BinOp):
        return node
    left, right = _resolve(node.left, env), _resolve(node.right, env)
    if node.op == "*" and isinstance(right, _Seq) and isinstance(left, _Lit):
        left, right = right, left
    if node.op == "*" and isinstance(left, _Seq) and isinstance(right, _Lit) and type(right.value) is int:
        count = max(right.value, 0)
        if len(left.items) * count > _MAX_ITEMS:
            raise GenotypeError(f"line {node.line}: the list product makes over {_MAX_ITEMS} items; not a genotype")
        return _Seq(left.items * count, node.line, left.kind)
    if node.op == "+" and isinstance(left, _Seq) and isinstance(right, _Seq) and left.kind == right.kind:
        if len(left.items) + len(right.items) > _MAX_ITEMS:
            raise GenotypeError(f"line {node.line}: the list sum makes over {_MAX_ITEMS} items; not a genotype")
        return _Seq(left.items + right.items, node.line, left.kind)
    raise GenotypeError(
        f"line {node.line}: {_describe(left)} {node.op} {_describe(right)} is not list arithmetic a genotype "
        "file uses (list * integer, list + list)"
    )


def _describe(node: _Expr) -> str:
    """A short description of a parsed value for error messages."""
    if isinstance(node, _Call):
        return f"a call to {node.name}(...)"
    if isinstance(node, _Seq):
        return f"a {node.kind}"
    if isinstance(node, _Name):
        return f"the name {node.name}"
    if isinstance(node, _BinOp):
        return f"an expression with {node.op!r}"
    if isinstance(node.value, str):
        return f"the string {node.value!r}"
    return f"the number {node.value!r}"


_MAX_TEXT = 2_000_000  # characters: genotype files, whole genotypes.py ones included, are a few kilobytes
_MAX_DEPTH = 64  # genotypes nest three or four deep


def _statements(text: str) -> list[tuple[str | None, _Expr]]:
    """The top-level statements of a genotype text, parsed by Python's own parser and never executed:
    ``NAME = value`` or a bare value (imports and docstrings skipped); anything else is refused with its line."""
    text = textwrap.dedent(text.lstrip("\ufeff"))  # a genotype pasted from an indented log or docstring
    if len(text) > _MAX_TEXT:
        raise GenotypeError(f"the text has {len(text):,} characters, over the {_MAX_TEXT:,} a genotype text may have")
    try:
        tree = ast.parse(text)
    except SyntaxError as e:
        raise GenotypeError(f"line {e.lineno or 1}: {e.msg}") from None
    except (RecursionError, MemoryError, ValueError) as e:  # nesting past the parser's stack, NUL bytes, huge ints
        raise GenotypeError(f"not a genotype text ({type(e).__name__}: {str(e)[:80]})") from None
    out: list[tuple[str | None, _Expr]] = []
    for stmt in tree.body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
            continue  # a docstring
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            out.append((stmt.targets[0].id, _expr(stmt.value, 0)))
        elif isinstance(stmt, ast.Expr):
            out.append((None, _expr(stmt.value, 0)))
        else:
            raise GenotypeError(f"line {stmt.lineno}: expected NAME = Genotype(...) or a bare genotype, found "
                                f"{_kind(stmt)}")
    return out


def _kind(node: ast.AST) -> str:
    """``a FunctionDef statement``, ``a ListComp expression``: what an unexpected piece of syntax is."""
    return f"a {type(node).__name__} {'statement' if isinstance(node, ast.stmt) else 'expression'}"


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` of a name or attribute chain, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def _expr(node: ast.AST, depth: int) -> _Expr:
    """A literal value of the syntax tree: strings, numbers, lists, tuples, names, calls and list arithmetic only."""
    line = getattr(node, "lineno", 1)
    if depth > _MAX_DEPTH:
        raise GenotypeError(f"line {line}: values nested more than {_MAX_DEPTH} deep; not a genotype")
    if isinstance(node, ast.Constant) and type(node.value) in (str, int, float):
        return _Lit(node.value, line)
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd))
            and isinstance(node.operand, ast.Constant) and type(node.operand.value) in (int, float)):
        value = node.operand.value
        return _Lit(-value if isinstance(node.op, ast.USub) else value, line)
    if isinstance(node, (ast.List, ast.Tuple)):
        return _Seq([_expr(x, depth + 1) for x in node.elts], line, "list" if isinstance(node, ast.List) else "tuple")
    name = _dotted(node)
    if name is not None:
        return _Name(name, line)
    if isinstance(node, ast.Call) and _dotted(node.func) is not None:
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            raise GenotypeError(f"line {line}: *args and **kwargs are not literals; write the values out")
        return _Call(_dotted(node.func), [_expr(a, depth + 1) for a in node.args],
                     {k.arg: _expr(k.value, depth + 1) for k in node.keywords}, line)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
        op = "+" if isinstance(node.op, ast.Add) else "*"
        return _BinOp(op, _expr(node.left, depth + 1), _expr(node.right, depth + 1), line)
    shown = ast.unparse(node)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    raise GenotypeError(f"line {line}: {shown!r} is not a literal; a genotype text holds lists, tuples, strings, "
                        "numbers, names and Genotype(...) calls (and lists joined with + or repeated with *)")


_CLASSIC_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")
_NESTED_FIELDS = ("genes", "concat", "reductions")
_OPT_FIELDS = ("genes", "seq", "concat", "reductions")
_GENOTYPE_CALLS = ("Genotype", "Genotype_nested", "Genotype_opt")


def parse_genotype_texts(text: str) -> dict[str, Genotype]:
    """All genotypes of a classic text (a file like the original ``genotypes.py``), by assigned name.

    Reads ``NAME = Genotype(...)``, ``NAME = Genotype_nested(...)`` and ``NAME = Genotype_opt(...)`` (D-DARTS'
    baselines: ``genes`` indexed by ``seq``, one entry per cell) statements, aliases such as
    ``DARTS = DARTS_V2``, and one bare unnamed genotype (keyed ``""``). Imports, docstrings and other
    literal assignments (``PRIMITIVES = [...]``) are skipped; nothing is ever executed.
    """
    found = _parse_all(text)
    for value in found.values():
        if isinstance(value, GenotypeError):
            raise value
    return found  # type: ignore[return-value]


def _parse_all(text: str) -> dict[str, Genotype | GenotypeError]:
    """Every genotype of a text by name; one that does not build is kept as its error, so that a file of many
    (D-DARTS' ``genotypes.py`` holds empty placeholders) still gives the good ones by name."""
    statements = _statements(text)
    found: dict[str, Genotype | GenotypeError] = {}
    env: dict[str, _Expr] = {}
    for name, value in statements:
        if isinstance(value, _Call) and value.name.rsplit(".", 1)[-1] in _GENOTYPE_CALLS:
            key = name or ""
            if name is None and "" in found:
                raise GenotypeError(f"line {value.line}: a second unnamed genotype; name them (NAME = Genotype(...))")
            try:
                found[key] = _genotype_from_call(_resolve(value, env), name)
            except GenotypeError as e:
                if name is None:
                    raise
                found[key] = e
        elif name is not None and isinstance(value, _Name) and value.name in found:
            found[name] = found[value.name]
        elif name is not None:
            try:
                env[name] = _resolve(value, env)  # a literal used by later genotypes (D-DARTS' gene lists)
            except GenotypeError:
                env.pop(name, None)
        else:
            raise GenotypeError(
                f"line {value.line}: expected Genotype(...) or Genotype_nested(...), found {_describe(value)}"
            )
    return found


def _genotype_from_call(call: _Call, name: str | None) -> Genotype:
    """Build a genotype from a parsed ``Genotype(...)`` or ``Genotype_nested(...)`` call."""
    try:
        if call.name.rsplit(".", 1)[-1] in ("Genotype_nested", "Genotype_opt"):
            return _nested_genotype(call)
        return _classic_genotype(call)
    except GenotypeError as e:
        msg = str(e)
        if not msg.startswith("line "):
            msg = f"line {call.line}: {name}: {msg}" if name else f"line {call.line}: {msg}"
        raise GenotypeError(msg) from None


def _call_fields(call: _Call, fields: tuple[str, ...], positional_ok: bool) -> dict[str, _Expr]:
    """The call's arguments by field name; unknown or repeated fields are errors."""
    if call.args and not positional_ok:
        raise GenotypeError(f"{call.name}() takes keyword arguments only ({', '.join(fields)})")
    if len(call.args) > len(fields):
        raise GenotypeError(f"{call.name}() takes at most {len(fields)} arguments ({', '.join(fields)})")
    got: dict[str, _Expr] = dict(zip(fields, call.args, strict=False))
    for key, value in call.kwargs.items():
        if key not in fields:
            raise GenotypeError(f"{call.name}() has no field {key!r}; its fields are {', '.join(fields)}")
        if key in got:
            raise GenotypeError(f"{call.name}() gets {key!r} twice")
        got[key] = value
    return got


def _classic_genotype(call: _Call) -> Genotype:
    """``Genotype(normal=[...], normal_concat=..., reduce=[...], reduce_concat=...)`` in pair or triple form."""
    got = _call_fields(call, _CLASSIC_FIELDS, positional_ok=True)
    missing = [f for f in _CLASSIC_FIELDS if f not in got]
    if missing:
        raise GenotypeError(f"Genotype() is missing {', '.join(missing)}")
    normal = _design(got["normal"], "'normal'", _int_list(got["normal_concat"], "normal_concat"), False)
    reduce = _design(got["reduce"], "'reduce'", _int_list(got["reduce_concat"], "reduce_concat"), True)
    return Genotype(normal=normal, reduce=reduce)


def _nested_genotype(call: _Call) -> Genotype:
    """D-DARTS' ``Genotype_nested(genes=[[...], ...], concat=..., reductions=[...])``: one design per position;
    or its ``Genotype_opt(genes, seq, concat, reductions)``: position i takes ``genes[seq[i]]``."""
    opt = call.name.rsplit(".", 1)[-1] == "Genotype_opt"
    fields = _OPT_FIELDS if opt else _NESTED_FIELDS
    got = _call_fields(call, fields, positional_ok=True)
    for f in fields[:-1]:
        if f not in got:
            raise GenotypeError(f"{call.name}() is missing {f}")
    genes = got["genes"]
    if not isinstance(genes, _Seq) or not genes.items:
        raise GenotypeError(f"line {genes.line}: expected a list of cells (lists of genes) in 'genes'")
    if opt:
        seq = _int_list(got["seq"], "seq")
        bad = [i for i in seq if i >= len(genes.items)]
        if not seq or bad:
            raise GenotypeError(f"line {genes.line}: 'seq' must index the {len(genes.items)} entries of 'genes'"
                                + (f", found {bad[0]}" if bad else ", found none"))
        genes = _Seq([genes.items[i] for i in seq], genes.line, genes.kind)
    n = len(genes.items)
    concat_node = got["concat"]
    if isinstance(concat_node, _Seq) and concat_node.items and all(isinstance(c, _Seq) for c in concat_node.items):
        concats = [_int_list(c, f"concat[{i}]") for i, c in enumerate(concat_node.items)]  # one per cell
        if len(concats) != n:
            raise GenotypeError(f"line {concat_node.line}: 'concat' lists {len(concats)} cells, 'genes' {n}")
    else:
        concats = [_int_list(concat_node, "concat")] * n
    if "reductions" in got:
        reductions = _int_list(got["reductions"], "reductions")
        bad = [r for r in reductions if r >= n]
        if bad:
            raise GenotypeError(f"reductions {bad} are outside the {n} cells of 'genes' (positions 0..{n - 1})")
    else:
        reductions = (n // 3, 2 * n // 3)  # the DARTS positions
    cells = tuple(
        _design(cell, f"cell {i} of 'genes'", concats[i], i in reductions) for i, cell in enumerate(genes.items)
    )
    return Genotype(cells=cells)


def _int_list(node: _Expr, what: str) -> tuple[int, ...]:
    """A list/tuple of integers or ``range(...)`` of integer literals."""
    if isinstance(node, _Call) and node.name == "range":
        if node.kwargs or not 1 <= len(node.args) <= 3:
            raise GenotypeError(f"line {node.line}: range() in {what!r} takes one to three integers")
        bounds = []
        for a in node.args:
            if not isinstance(a, _Lit) or not isinstance(a.value, int):
                raise GenotypeError(f"line {node.line}: range() in {what!r} takes integers, found {_describe(a)}")
            bounds.append(a.value)
        if len(bounds) == 3 and bounds[2] == 0:
            raise GenotypeError(f"line {node.line}: range() in {what!r} has a step of 0")
        if len(range(*bounds)) > _MAX_ITEMS:  # len() of a range costs nothing; its items would
            raise GenotypeError(f"line {node.line}: range() in {what!r} has over {_MAX_ITEMS} items; not a genotype")
        return tuple(range(*bounds))
    if isinstance(node, _Seq):
        values = []
        for item in node.items:
            if not isinstance(item, _Lit) or not isinstance(item.value, int) or item.value < 0:
                raise GenotypeError(
                    f"line {item.line}: {what!r} must list state indices (integers >= 0), found {_describe(item)}"
                )
            values.append(item.value)
        return tuple(values)
    raise GenotypeError(
        f"line {node.line}: expected a list of integers or range(a, b) in {what!r}, found {_describe(node)}"
    )


def _gene(item: _Expr, what: str) -> tuple[Any, ...]:
    """One gene: ``(op, input)`` or ``(op, to_node, from_node)``, as plain values."""
    shape = "(op, input) pairs or (op, to_node, from_node) triples"
    if not isinstance(item, _Seq) or len(item.items) not in (2, 3):
        raise GenotypeError(f"line {item.line}: expected a list of {shape} in {what}, found {_describe(item)}")
    op, *idx = item.items
    if not isinstance(op, _Lit) or not isinstance(op.value, str) or not op.value:
        raise GenotypeError(f"line {item.line}: a gene in {what} must start with an op name, found {_describe(op)}")
    for x in idx:
        if not isinstance(x, _Lit) or not isinstance(x.value, int) or x.value < 0:
            raise GenotypeError(
                f"line {item.line}: gene {op.value!r} in {what} needs integer states, found {_describe(x)}"
            )
    return (op.value, *(x.value for x in idx))


def _is_nested(node: _Seq) -> bool:
    """The nested-list form (pt.darts, the TF2 port): one list of ``(op, input)`` pairs per node."""
    return all(isinstance(item, _Seq) and all(isinstance(x, _Seq) for x in item.items) for item in node.items)


def _check_gene_order(item: _Expr, gene: tuple[Any, ...], target: int, what: str) -> None:
    """A node reads the cell inputs or earlier nodes; report the offending gene's own line."""
    if gene[-1] >= target >= 2:
        raise GenotypeError(
            f"line {item.line}: gene {gene!r} in {what}: state {target} reads state {gene[-1]}, which is not "
            f"computed before it; a node reads the cell inputs 0 and 1 or an earlier node"
        )


def _design(node: _Expr, what: str, concat: tuple[int, ...], reduction: bool) -> CellDesign:
    """A cell design from a gene list in any of the three forms the seed systems write:

    - flat ``(op, input)`` pairs, two per node in order (the 2018 DARTS code); ``concat`` applies;
    - nested lists, one list of ``(op, input)`` pairs per node (pt.darts, the TF2 port); ``concat`` applies;
    - ``(op, to, from)`` triples (FairDARTS, D-DARTS): a node no gene enters does not exist, a gene from a
      missing node is skipped, and the output concatenates the nodes that exist, whatever ``concat`` says
      (as their ``DCOCell`` does).
    """
    if not isinstance(node, _Seq):
        raise GenotypeError(
            f"line {node.line}: expected a list of (op, input) pairs in {what}, found {_describe(node)}"
        )
    if not node.items:
        raise GenotypeError(f"line {node.line}: {what} is empty; a cell needs at least one node")
    if _is_nested(node):
        nodes = []
        for i, item in enumerate(node.items):
            pairs = []
            for x in item.items:
                gene = _gene(x, what)
                if len(gene) != 2:
                    raise GenotypeError(f"line {x.line}: node {i} of {what} holds {gene!r}; nested lists hold "
                                        "(op, input) pairs")
                _check_gene_order(x, gene, 2 + i, what)
                pairs.append(gene)
            nodes.append(tuple(pairs))
        return _make_design(node, what, nodes, concat, reduction)
    genes = [_gene(item, what) for item in node.items]
    for i, (item, gene) in enumerate(zip(node.items, genes, strict=True)):
        _check_gene_order(item, gene, 2 + i // 2 if len(gene) == 2 else gene[1], what)
    lengths = {len(g) for g in genes}
    if len(lengths) > 1:
        raise GenotypeError(f"line {node.line}: {what} mixes (op, input) pairs and (op, to, from) triples")
    if lengths == {2}:
        if len(genes) % 2:
            raise GenotypeError(
                f"line {node.line}: {what} has {len(genes)} (op, input) pairs; the classic form takes two per "
                "node, so the count must be even"
            )
        nodes = [(genes[2 * i], genes[2 * i + 1]) for i in range(len(genes) // 2)]
        return _make_design(node, what, nodes, concat, reduction)
    try:
        return sparse_design(genes, reduction=reduction)
    except GenotypeError as e:
        raise GenotypeError(f"line {node.line}: {what}: {e}") from None


def _make_design(node: _Seq, what: str, nodes: list, concat: tuple[int, ...], reduction: bool) -> CellDesign:
    try:
        return CellDesign(nodes=tuple(nodes), concat=concat, reduction=reduction)
    except GenotypeError as e:
        raise GenotypeError(f"line {node.line}: {what}: {e}") from None
