"""Which build of the core runs: compiled or pure Python.

Where a C compiler exists, `pip install` compiles every module of ``core/`` with mypyc
(``hatch_build.py``) and records a hash of each source it compiled in ``core-build.json``.
The compiled modules run only when every one of them was built from the ``.py`` beside it
as it is now; otherwise, and when ``TRIGGERSTREAM_PURE=1``, the ``.py`` files run (same
results, slower). An editable install whose core was edited after the build so never runs
old code: it runs the new source, pure, and says so once on stderr with how to rebuild.

The choice is made when ``triggerstream`` is imported, before any module of ``core/`` is,
so this is the one place outside ``settings.py`` that reads the environment: the settings
object is built later, by the command, and mypyc's modules cannot be swapped once loaded.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

PURE_ENV = "TRIGGERSTREAM_PURE"
CORE = Path(__file__).with_name("core")
MANIFEST = Path(__file__).with_name("core-build.json")
REBUILD = "pip install -e '.[dev]'"


def source_digest(path: Path) -> str:
    """The hash recorded at build time and compared at import (hatch_build.py uses it too)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def core_sources(core: Path) -> list[Path]:
    """Every module of the core that the build compiles: all but the package's __init__."""
    return sorted(p for p in core.glob("*.py") if p.name != "__init__.py")


def _compiled_file(source: Path) -> Path | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = source.with_name(source.stem + suffix)
        if candidate.exists():
            return candidate
    return None


def choose(core: Path, manifest_path: Path, pure: str | None) -> tuple[bool, str, str | None]:
    """(whether the compiled core runs, which build runs and why, a warning or None), for
    the core in ``core``, the build's record ``manifest_path`` and TRIGGERSTREAM_PURE."""
    if pure not in (None, "", "0"):
        return False, f"pure Python ({PURE_ENV} is set)", None
    sources = core_sources(core)
    compiled = [s for s in sources if _compiled_file(s) is not None]
    if not manifest_path.exists():
        return False, "pure Python (no compiled build)", None
    try:
        manifest = json.loads(manifest_path.read_text())
        recorded: dict[str, str] = manifest["sources"]
        compiler = str(manifest["compiler"])
    except (ValueError, KeyError, TypeError, OSError):
        return False, "pure Python (unreadable core-build.json)", None
    changed = sorted(
        {s.name for s in sources if recorded.get(s.name) != source_digest(s)}
        | (set(recorded) - {s.name for s in sources})
        | {s.name for s in sources if s not in compiled}
    )
    if changed:
        why = f"core/{changed[0]}" + (f" and {len(changed) - 1} more" if len(changed) > 1 else "")
        return (
            False,
            "pure Python (compiled core is stale)",
            f"triggerstream: the compiled core is older than {why}; running pure Python "
            f"(rebuild: {REBUILD}, or set {PURE_ENV}=1)",
        )
    return True, f"compiled ({compiler})", None


class _SourceOnly(importlib.abc.MetaPathFinder):
    """Loads ``triggerstream.core.*`` from its ``.py`` even where a compiled file sits
    beside it (the import system would otherwise prefer the extension module)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != "triggerstream.core":
            return None
        source = CORE / f"{name}.py"
        if not source.exists():
            return None
        return importlib.util.spec_from_file_location(fullname, source)


COMPILED, BUILD, _warning = choose(CORE, MANIFEST, os.environ.get(PURE_ENV))
"""Whether the compiled core runs, and a phrase saying which build does and why."""

if not COMPILED:
    sys.meta_path.insert(0, _SourceOnly())
if _warning is not None:
    print(_warning, file=sys.stderr)
