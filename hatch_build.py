"""Build hook: compiles the pure core (every module of src/triggerstream/core) with mypyc.

Where a C compiler works, the wheel carries the compiled modules and core-build.json (a
hash of each source compiled, which src/triggerstream/compiled.py compares at import). An
editable install puts them beside the sources, in src/. Where compiling fails (no
compiler, no headers, a module mypyc cannot compile), the install goes on pure Python and
says why in pip's verbose output; `triggerstream --version` names the build that runs.
TRIGGERSTREAM_PURE=1 at install time skips compiling. docs/performance.md, "The compiled
core", has the measurements behind choosing mypyc over Cython.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.machinery
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

PACKAGE = Path("src", "triggerstream")
CORE = PACKAGE / "core"
MANIFEST = "core-build.json"


class CompiledCoreHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version not in ("standard", "editable"):
            return
        root = Path(self.root)
        editable = version == "editable"
        if editable:
            # What an earlier editable install compiled is dropped first, so that a build
            # that falls back to pure leaves no compiled modules of older sources behind.
            remove_in_place(root)
        if os.environ.get("TRIGGERSTREAM_PURE", "") not in ("", "0"):
            self.app.display_info("triggerstream: TRIGGERSTREAM_PURE is set; core not compiled")
            return
        self._work = tempfile.mkdtemp(prefix="triggerstream-core-")
        try:
            built = compile_core(root, Path(self._work))
        # Any failure to compile leaves a working pure install (mypy exits on type errors).
        except (Exception, SystemExit) as error:
            command = getattr(error, "cmd", None)  # a compiler that failed or is missing
            if isinstance(error, SystemExit):
                reason = "mypyc stopped on the errors above"
            elif isinstance(command, list) and command:
                reason = f"{command[0]} exited with {error.returncode}"
            else:
                reason = " ".join(str(error).split())[:200] or type(error).__name__
            self.app.display_warning(
                f"triggerstream: core not compiled, installing pure Python ({reason})"
            )
            return
        if editable:
            for relative, path in built.items():
                shutil.copy2(path, root / "src" / relative)
        else:
            build_data["pure_python"] = False
            build_data["infer_tag"] = True
            for relative, path in built.items():
                build_data["force_include"][str(path)] = relative
        self.app.display_info(f"triggerstream: core compiled ({len(built) - 1} files)")

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        work = getattr(self, "_work", None)
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)


def core_sources(root: Path) -> list[Path]:
    """Every module of the core but its __init__ (which stays Python), by glob."""
    return sorted(p for p in (root / CORE).glob("*.py") if p.name != "__init__.py")


def remove_in_place(root: Path) -> None:
    package = root / PACKAGE
    (package / MANIFEST).unlink(missing_ok=True)
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        for path in [
            *package.glob(f"core__mypyc*{suffix}"),
            *(package / "core").glob(f"*{suffix}"),
        ]:
            path.unlink()


def compile_core(root: Path, work: Path) -> dict[str, Path]:
    """Compiles the core in ``work``; returns each file to install by its path in the
    package tree (``triggerstream/core/engine.cpython-311-x86_64-linux-gnu.so``)."""
    from mypyc.build import mypycify
    from setuptools import Distribution
    from setuptools.command.build_ext import build_ext

    sources = core_sources(root)
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sources}
    # mypyc compiles with the core's types and those of what it uses (pydantic's models,
    # through pydantic's mypy plugin, and orjson): both are build requirements, so that a
    # build sees the same types whether or not the target environment has them yet. Type
    # errors are mypy's job in CI (strict); here other modules are only read.
    config = work / "mypy.ini"
    config.write_text(
        "[mypy]\nplugins = pydantic.mypy\nfollow_imports = silent\nignore_missing_imports = True\n"
    )
    here = os.getcwd()
    os.chdir(root)  # module names come from the paths: src/triggerstream/core/engine.py
    try:
        extensions = mypycify(
            [f"--config-file={config}", *(str(p.relative_to(root)) for p in sources)],
            group_name="triggerstream.core",
            target_dir=str(work / "c"),
        )
        command = build_ext(Distribution({"name": "triggerstream-core", "ext_modules": extensions}))
        command.build_lib = str(work / "lib")
        command.build_temp = str(work / "temp")
        command.ensure_finalized()
        command.run()
    finally:
        os.chdir(here)
    lib = work / "lib"
    built = {
        str(Path(path).relative_to(lib)): Path(path)
        for suffix in importlib.machinery.EXTENSION_SUFFIXES
        for path in glob.glob(f"{lib}/**/*{suffix}", recursive=True)
    }
    missing = [
        p.name
        for p in sources
        if not any(k.startswith(f"triggerstream/core/{p.stem}.") for k in built)
    ]
    if missing:
        raise RuntimeError(f"mypyc built no module for {', '.join(missing)}")
    manifest = work / MANIFEST
    manifest.write_text(
        json.dumps(
            {
                "compiler": f"mypyc {mypyc_version()}",
                "python": sys.implementation.cache_tag,
                "sources": digests,
            },
            indent=1,
        )
    )
    built[f"triggerstream/{MANIFEST}"] = manifest
    return built


def mypyc_version() -> str:
    from mypy.version import __version__

    return __version__
