"""Loading playbook bundles.

A *bundle* is a directory of playbook modules, identified by a content hash
computed by the platform.

Module selection rule (the Rust side applies exactly the same rule when it
hashes a bundle, so keep both in sync):

* walk ``bundle_dir`` recursively; symbolic links (to files or directories)
  are ignored, only regular files and directories count;
* skip every directory named ``sdk``, ``tests``, ``__pycache__``, ``venv`` or
  ``.venv``, or whose name starts with ``.`` (and everything below it);
* keep every file whose name ends with ``.py``, except ``conftest.py``,
  ``setup.py``, ``test_*.py`` and ``*_test.py``;
* report paths relative to ``bundle_dir`` with ``/`` separators, sorted by
  code point (equivalently, by UTF-8 bytes).

Loading: the bundle becomes a synthetic package named
``_tocsin_bundle_<first 16 characters of the hash>`` whose ``__path__`` is
``bundle_dir``; ``examples/triage.py`` is imported as
``<package>.examples.triage`` (directories without ``__init__.py`` become
namespace packages), and a root ``__init__.py``, if any, initialises the
package itself. Different bundle versions therefore coexist in one process,
and relative imports (``from .common import helper``) work inside a bundle.
Absolute imports of bundle modules (``import examples.common``) do not.

Every :class:`~tocsin.Playbook` that is a module attribute and was defined in
that module is collected; playbook names must be unique across the bundle.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import re
import sys
import traceback
import types
from dataclasses import dataclass, field
from typing import Any

from ._decorators import Playbook

__all__ = [
    "EXCLUDED_DIRS",
    "EXCLUDED_FILES",
    "BundleError",
    "LoadedBundle",
    "list_modules",
    "module_name",
    "package_name",
    "load_bundle",
    "unload_bundle",
]

#: Directory names never descended into (in addition to names starting with ".").
EXCLUDED_DIRS: frozenset[str] = frozenset({"sdk", "tests", "__pycache__", "venv", ".venv"})
#: File names never treated as playbook modules (plus ``test_*.py`` / ``*_test.py``).
EXCLUDED_FILES: frozenset[str] = frozenset({"conftest.py", "setup.py"})

PACKAGE_PREFIX = "_tocsin_bundle_"


class BundleError(Exception):
    """A bundle could not be loaded. ``str()`` gives ``"<file>:<line>: <message>"``
    (``file`` relative to the bundle directory) when the location is known."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line

    def __str__(self) -> str:
        if self.file and self.line:
            return f"{self.file}:{self.line}: {self.message}"
        if self.file:
            return f"{self.file}: {self.message}"
        return self.message


def _excluded_dir(name: str) -> bool:
    return name in EXCLUDED_DIRS or name.startswith(".")


def _is_module_file(name: str) -> bool:
    return (
        name.endswith(".py")
        and name not in EXCLUDED_FILES
        and not name.startswith("test_")
        and not name.endswith("_test.py")
    )


def list_modules(bundle_dir: str | os.PathLike[str]) -> list[str]:
    """Relative paths (``/``-separated, sorted) of the bundle's modules."""
    root = os.path.abspath(os.fspath(bundle_dir))
    if not os.path.isdir(root):
        raise BundleError(f"bundle directory {root!r} does not exist or is not a directory")
    found: list[str] = []
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        with os.scandir(os.path.join(root, rel_dir) if rel_dir else root) as entries:
            for entry in entries:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                if entry.is_dir(follow_symlinks=False):
                    if not _excluded_dir(entry.name):
                        pending.append(rel)
                elif entry.is_file(follow_symlinks=False) and _is_module_file(entry.name):
                    found.append(rel)
    return sorted(found)


def module_name(rel_path: str) -> str:
    """Path-derived module name: ``examples/triage.py -> examples.triage``,
    ``examples/__init__.py -> examples``, ``__init__.py -> ""`` (the root)."""
    parts = rel_path[: -len(".py")].split("/")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_name(bundle_hash: str) -> str:
    """Name of the synthetic package a bundle is loaded as."""
    if not isinstance(bundle_hash, str) or not bundle_hash.strip():
        raise BundleError("bundle_hash must be a non-empty string")
    return PACKAGE_PREFIX + re.sub(r"[^0-9A-Za-z_]", "_", bundle_hash.strip()[:16])


@dataclass
class LoadedBundle:
    """A bundle imported into this process."""

    bundle_dir: str
    bundle_hash: str
    package: str
    #: path-derived module name -> module, in load order
    modules: dict[str, types.ModuleType] = field(default_factory=dict)
    #: playbook name -> playbook, in (module, line) order
    playbooks: dict[str, Playbook] = field(default_factory=dict)
    #: playbook name -> path-derived module name
    playbook_modules: dict[str, str] = field(default_factory=dict)

    def describe(self) -> list[dict[str, Any]]:
        """Metadata of every playbook, as sent in ``inspect_result``."""
        out = []
        for name, pb in self.playbooks.items():
            info = pb.describe(self.bundle_dir)
            info["module"] = self.playbook_modules[name]
            out.append(info)
        return out


def unload_bundle(package: str) -> None:
    """Remove a bundle's package and all its submodules from ``sys.modules``."""
    prefix = package + "."
    for name in [n for n in sys.modules if n == package or n.startswith(prefix)]:
        del sys.modules[name]


def load_bundle(bundle_dir: str | os.PathLike[str], bundle_hash: str) -> LoadedBundle:
    """Import every module of the bundle and collect its playbooks.

    A previous load of the same hash is discarded first. On failure nothing
    stays in ``sys.modules``.

    :raises BundleError: with file and line when known (syntax errors,
        exceptions raised while importing, invalid playbook metadata,
        duplicate playbook names).
    """
    root = os.path.abspath(os.fspath(bundle_dir))
    package = package_name(bundle_hash)
    rel_paths = list_modules(root)
    unload_bundle(package)
    importlib.invalidate_caches()
    bundle = LoadedBundle(bundle_dir=root, bundle_hash=bundle_hash, package=package)
    try:
        root_module = _create_root_package(package, root)
        for rel in rel_paths:
            name = module_name(rel)
            if name and not all(part.isidentifier() for part in name.split(".")):
                raise BundleError(
                    "cannot import this file: every directory and file name on a module path must be a "
                    "valid Python identifier",
                    rel,
                )
            try:
                module = root_module if not name else importlib.import_module(f"{package}.{name}")
            except BundleError:
                raise
            except (Exception, SystemExit) as exc:
                raise _locate(exc, root, set(rel_paths), rel) from exc
            bundle.modules[name] = module
        _collect_playbooks(bundle, rel_paths)
    except BaseException:
        unload_bundle(package)
        raise
    return bundle


def _create_root_package(package: str, root: str) -> types.ModuleType:
    init = os.path.join(root, "__init__.py")
    if os.path.isfile(init):
        spec = importlib.util.spec_from_file_location(package, init, submodule_search_locations=[root])
    else:
        spec = importlib.machinery.ModuleSpec(package, None, is_package=True)
        spec.submodule_search_locations = [root]
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[package] = module
    if spec.loader is not None:
        try:
            spec.loader.exec_module(module)
        except (Exception, SystemExit) as exc:
            raise _locate(exc, root, {"__init__.py"}, "__init__.py") from exc
    return module


def _relative(path: str, root: str) -> str | None:
    try:
        rel = os.path.relpath(os.path.realpath(path), os.path.realpath(root))
    except ValueError:
        return None
    return rel.replace(os.sep, "/")


def _locate(exc: BaseException, root: str, bundle_files: set[str], importing: str) -> BundleError:
    """Turn an import-time exception into a BundleError pointing into the bundle."""
    if isinstance(exc, SyntaxError) and exc.filename:
        rel = _relative(exc.filename, root)
        if rel is not None and rel != ".." and not rel.startswith("../"):
            return BundleError(f"{type(exc).__name__}: {exc.msg}", rel, exc.lineno)
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        rel = _relative(frame.filename, root)
        if rel in bundle_files:
            return BundleError(_describe(exc), rel, frame.lineno)
    return BundleError(_describe(exc), importing)


def _describe(exc: BaseException) -> str:
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _collect_playbooks(bundle: LoadedBundle, rel_paths: list[str]) -> None:
    locations: dict[str, str] = {}
    by_module = {module_name(rel): rel for rel in rel_paths}
    for name, module in bundle.modules.items():
        found: list[Playbook] = []
        seen: set[int] = set()
        for obj in list(vars(module).values()):
            if isinstance(obj, Playbook) and obj.module == module.__name__ and id(obj) not in seen:
                seen.add(id(obj))
                found.append(obj)
        found.sort(key=lambda pb: pb.line)
        for pb in found:
            where = f"{_relative(pb.file, bundle.bundle_dir) or by_module[name]}:{pb.line}"
            if pb.name in bundle.playbooks:
                raise BundleError(
                    f"duplicate playbook name {pb.name!r} (also defined at {locations[pb.name]})",
                    _relative(pb.file, bundle.bundle_dir) or by_module[name],
                    pb.line,
                )
            bundle.playbooks[pb.name] = pb
            bundle.playbook_modules[pb.name] = name
            locations[pb.name] = where
