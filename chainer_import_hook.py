"""Let a plain ``import chainer`` work on numpy 2, in any order: Chainer 7.8.1 imported through chainer_va.compat.

Chainer 7.8.1 does not import on numpy 2 by itself (``np.sctypes`` was removed). ``chainer_va.compat``
patches it, but only if it runs first. This module (standard library only, so it costs nothing at start-up)
puts a finder on ``sys.meta_path`` that, the first time anything imports ``chainer``, imports
``chainer_va.compat`` (which imports Chainer with the patches applied) and hands that module to the
import that asked for it. So a notebook or a script that starts with ``import chainer`` works.

``make install`` installs it into the virtual environment as a one-line ``.pth`` file, which Python runs at
start-up::

    python -m chainer_import_hook install      # writes <site-packages>/chainer_import_hook.pth
    python -m chainer_import_hook uninstall

Without the ``.pth`` file, ``import chainer_va`` before ``import chainer`` has the same effect.
"""
from __future__ import annotations

import os
import sys
import sysconfig
import tempfile
from importlib.machinery import ModuleSpec
from pathlib import Path

PTH_NAME = "chainer_import_hook.pth"
# one line, run by site.py at start-up; does nothing once this module is no longer installed
PTH_LINE = ("import importlib.util; importlib.util.find_spec('chainer_import_hook') is not None and "
            "__import__('chainer_import_hook').install()\n")


class _Imported:
    """Loader that hands over a module imported already and restores its own spec on it."""

    def __init__(self, module):
        self.module = module
        self.spec = module.__spec__

    def create_module(self, spec):
        return self.module

    def exec_module(self, module):
        module.__spec__ = self.spec  # the import system set ours; the module keeps its real one


class ChainerFirstImport:
    """Meta-path finder: the first ``import chainer`` goes through ``chainer_va.compat``; then it removes itself."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "chainer":
            return None
        uninstall()
        if "chainer_va.compat" in sys.modules:  # compat is importing Chainer itself: let that import run
            return None
        import chainer_va.compat  # noqa: F401  (imports chainer with the patches)
        module = sys.modules["chainer"]
        spec = ModuleSpec("chainer", _Imported(module), origin=module.__spec__.origin, is_package=True)
        # the import system, finding "chainer" in sys.modules now, loads the module's own __spec__: make
        # that ours until _Imported.exec_module puts the real one back (else chainer would run twice)
        module.__spec__ = spec
        return spec


def install() -> None:
    """Put the finder on ``sys.meta_path`` (unless Chainer is imported already). Idempotent."""
    if "chainer" in sys.modules or any(isinstance(f, ChainerFirstImport) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, ChainerFirstImport())


def uninstall() -> None:
    """Take the finder off ``sys.meta_path``."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, ChainerFirstImport)]


def pth_path() -> Path:
    """Where :func:`write_pth` puts the start-up file: this interpreter's site-packages."""
    return Path(sysconfig.get_paths()["purelib"]) / PTH_NAME


def write_pth(path: Path | None = None) -> Path:
    """Write the ``.pth`` file (default: :func:`pth_path`) atomically; returns its path."""
    path = Path(path) if path is not None else pth_path()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".chainer_import_hook.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(PTH_LINE)
    os.replace(tmp, path)
    return path


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv not in (["install"], ["uninstall"]):
        print("usage: python -m chainer_import_hook install|uninstall", file=sys.stderr)
        return 2
    if argv == ["install"]:
        print("wrote", write_pth())
    else:
        pth_path().unlink(missing_ok=True)
        print("removed", pth_path())
    return 0


if __name__ == "__main__":
    sys.exit(main())
