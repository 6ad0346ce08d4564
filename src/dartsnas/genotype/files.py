"""Genotype files: the JSON format (written atomically) and ``load_genotype``, which takes a JSON or classic
text file, ``FILE::NAME``, a published name, or the genotype text itself."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ..errors import GenotypeError
from ..fileio import atomic_write_text
from .model import Genotype, PathLike
from .published import PUBLISHED, published_names
from .text import _parse_all


def _dumps(obj: Any, indent: int = 0, width: int = 100) -> str:
    """JSON with two-space indents, keeping short lists (pairs, nodes, concat) on one line."""
    pad = " " * indent
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{pad}  {json.dumps(key)}: {_dumps(value, indent + 2, width)}" for key, value in obj.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(obj, list):
        inline = json.dumps(obj)
        if indent + len(inline) <= width and not any(isinstance(x, dict) for x in obj):
            return inline
        items = [f"{pad}  {_dumps(x, indent + 2, width)}" for x in obj]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(obj)


def save_genotype(genotype: Genotype, path: PathLike) -> Path:
    """Write ``genotype`` as a JSON file atomically (temp file in the same folder, fsync, rename); returns the path."""
    if not isinstance(genotype, Genotype):
        raise TypeError(f"save_genotype expects a Genotype, got {type(genotype).__name__}")
    return atomic_write_text(path, _dumps(genotype.to_dict()) + "\n")


def _parse_json(text: str) -> Genotype:
    """A genotype from JSON file content."""
    try:
        data = json.loads(text.lstrip("\ufeff"))
    except json.JSONDecodeError as e:
        raise GenotypeError(f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except RecursionError:
        raise GenotypeError("JSON nested too deep for a genotype") from None
    try:
        return Genotype.from_dict(data)
    except RecursionError:
        raise GenotypeError("JSON nested too deep for a genotype") from None


def _looks_like_json(text: str) -> bool:
    """JSON genotype files are objects: the first non-blank character is ``{``."""
    return text.lstrip("\ufeff \t\r\n").startswith("{")


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False for strings the OS cannot take as a path (too long, NUL bytes)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


_INLINE_RE = re.compile(r"^\s*(\{|(\w+\s*=\s*)?(\w+\.)?Genotype(_nested|_opt)?\s*\()")


def _looks_inline(text: str) -> bool:
    """A genotype given as text itself: JSON, or a ``Genotype(...)``-family call (as D-DARTS' ``--arch`` takes)."""
    return bool(_INLINE_RE.match(text.lstrip("\ufeff")))


def load_genotype(source: PathLike) -> Genotype:
    """Load a genotype from a JSON or classic text file, ``FILE::NAME`` (one of several in a file), a published
    name, or the genotype text itself (JSON, ``Genotype(...)``, ``Genotype_nested(...)``, ``Genotype_opt(...)``).

    An existing file wins over a published genotype of the same name.
    """
    if isinstance(source, Genotype):
        return source
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"load_genotype expects a path or a name, got {type(source).__name__}")
    text_source = os.fspath(source)
    path = Path(text_source)
    if _is_file(path):
        return _load_file(path, None)
    if isinstance(source, str) and _looks_inline(text_source):
        try:
            return parse_genotype_text(text_source)
        except GenotypeError as e:
            raise GenotypeError(f"the genotype text given inline: {e}") from None
    if "::" in text_source:
        file_part, name = text_source.rsplit("::", 1)
        file_path = Path(file_part)
        if _is_file(file_path):
            return _load_file(file_path, name)
        raise GenotypeError(f"no genotype file {file_part!r}; check the path before '::{name}'")
    if is_dir(path):
        raise GenotypeError(f"{path} is a folder; pass a genotype file such as {path / 'genotype.json'}")
    if text_source in PUBLISHED:
        return PUBLISHED.get(text_source)
    shown = text_source if len(text_source) <= 80 else text_source[:77] + "..."
    raise GenotypeError(
        f"no genotype file or published genotype named {shown!r}, and it is not a genotype text "
        f"(Genotype(...), Genotype_nested(...) or JSON); published: {', '.join(published_names())}"
    )


def is_dir(path: Path) -> bool:
    """``path.is_dir()``, False for strings the OS cannot take as a path (an inline genotype text)."""
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def _load_file(path: Path, name: str | None) -> Genotype:
    """Read and parse one file; errors start with the file's path."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise GenotypeError(f"{path}: not a text file; expected a JSON or classic genotype text") from None
    except OSError as e:
        raise GenotypeError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        if _looks_like_json(text):
            if name is not None:
                raise GenotypeError(f"a JSON genotype file holds one genotype; drop '::{name}'")
            return _parse_json(text)
        found = _parse_all(text)
        if name is not None:
            if name not in found:
                known = ", ".join(n or "(unnamed)" for n in found) or "none"
                raise GenotypeError(f"no genotype named {name!r}; the file holds: {known}")
            return _built(found[name])
        return _single(found, hint=f"'{path}::NAME'")
    except GenotypeError as e:
        raise GenotypeError(f"{path}: {e}") from None


def _single(found: dict[str, Genotype | GenotypeError], hint: str) -> Genotype:
    """The one genotype of a text, or an error saying there are none or several."""
    if not found:
        raise GenotypeError("no Genotype(...) or Genotype_nested(...) found; expected a genotype text or JSON")
    if len(found) > 1:
        names = ", ".join(n or "(unnamed)" for n in found)
        raise GenotypeError(f"found several genotypes ({names}); pick one with {hint}")
    return _built(next(iter(found.values())))


def _built(value: Genotype | GenotypeError) -> Genotype:
    if isinstance(value, GenotypeError):
        raise value
    return value


def parse_genotype_text(text: str) -> Genotype:
    """Parse one genotype from text: the JSON file format or a classic text holding exactly one genotype."""
    if _looks_like_json(text):
        return _parse_json(text)
    return _single(_parse_all(text), hint="parse_genotype_texts(text)[NAME] or 'FILE::NAME'")
