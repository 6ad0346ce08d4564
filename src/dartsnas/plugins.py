"""User op modules: ``--ops-module my_pkg.my_ops`` or ``--ops-module path/to/my_ops.py``.

Importing such a module runs its ``@register_op("name")`` decorators, which is all it takes to make new
candidate ops available to search, train, evaluate, plot and report. A module is imported once per process
(a file by its resolved path), so naming it again is harmless.

A file's folder (for a dotted name, the working directory) is on ``sys.path`` only while the module is
imported, so it can import its neighbours at the top; ``sys.path`` is left as it was.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from .errors import ConfigError, DartsNASError

_loaded: dict[str, ModuleType] = {}


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec or (os.altsep is not None and os.altsep in spec)


def load_ops_module(spec: str) -> ModuleType:
    """Import one module of user ops, by dotted name or by file path (relative to the working directory). Any
    failure is one ConfigError line."""
    spec = str(spec).strip()
    if not spec:
        raise ConfigError("--ops-module: empty module name")
    if _is_path(spec):
        path = Path(spec).expanduser().resolve()
        key = f"file:{path}"
        if key in _loaded:
            return _loaded[key]
        if not path.is_file():
            raise ConfigError(f"ops module {spec} does not exist")
        name = f"dartsnas_user_ops_{path.stem}_{abs(hash(str(path))) % 10**8}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise ConfigError(f"ops module {spec} is not a Python file")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            with _on_path(str(path.parent)):  # so that the file can import its neighbours
                module_spec.loader.exec_module(module)
        except DartsNASError as e:
            sys.modules.pop(name, None)
            raise ConfigError(f"ops module {spec}: {e}") from None
        except (Exception, SystemExit) as e:  # the user's code: any error (sys.exit too) is one line naming it
            sys.modules.pop(name, None)
            raise ConfigError(f"ops module {spec} failed to import: {type(e).__name__}: {e}") from None
        _loaded[key] = module
        return module
    key = f"module:{spec}"
    if key in _loaded:
        return _loaded[key]
    try:
        with _on_path(os.getcwd()):  # the `dartsnas` script does not put . on the path
            module = importlib.import_module(spec)
    except ModuleNotFoundError as e:
        raise ConfigError(f"cannot import ops module {spec!r} ({e}); give a module on the Python path or a .py "
                          "file path") from None
    except DartsNASError as e:
        raise ConfigError(f"ops module {spec}: {e}") from None
    except (Exception, SystemExit) as e:  # a module that calls sys.exit() must not end a search with its code
        raise ConfigError(f"ops module {spec} failed to import: {type(e).__name__}: {e}") from None
    _loaded[key] = module
    return module


@contextlib.contextmanager
def _on_path(folder: str):
    """``folder`` at the end of ``sys.path`` inside the block (unless already there), removed after."""
    added = folder not in sys.path and not (folder == os.getcwd() and "" in sys.path)
    if added:
        sys.path.append(folder)
    try:
        yield
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)


def load_ops_modules(specs: Iterable[str] | str | None) -> list[ModuleType]:
    """Import each of ``specs`` (a list, or one comma-separated string; None: nothing)."""
    if specs is None:
        return []
    if isinstance(specs, str):
        specs = [s for s in specs.split(",") if s.strip()]
    return [load_ops_module(s) for s in specs]


__all__ = ["load_ops_module", "load_ops_modules"]
