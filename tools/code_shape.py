"""The code's shape: functions longer than a limit and calls with many positional arguments, in non-test code.

    python tools/code_shape.py                 # limits 80 lines and 8 positional arguments
    python tools/code_shape.py --lines 50      # the developers' guide's aim

Prints each offender (file:line, name, size) and a summary line; exits 1 when there is any (so it can
gate a change). Non-test code: every .py file under the package and script folders, not tests/.
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("va_core", "chainer_va", "tfp_flows", "rl", "reproduce", "benchmarks", "datasets", "tools")
TOP_FILES = ("chainer_import_hook.py",)


def source_files(root: Path = ROOT):
    """Every non-test Python file of the repository, in a stable order."""
    files = [root / name for name in TOP_FILES if (root / name).is_file()]
    for folder in FOLDERS:
        files += sorted((root / folder).rglob("*.py"))
    return files


def long_functions(tree: ast.AST, limit: int):
    """(line, name, length) of each function or method longer than ``limit`` lines (decorators excluded)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > limit:
                yield node.lineno, node.name, length


def wide_calls(tree: ast.AST, limit: int):
    """(line, callee, count) of each call passing more than ``limit`` positional arguments."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            count = sum(1 for a in node.args if not isinstance(a, ast.Starred))
            if count > limit:
                yield node.lineno, ast.unparse(node.func), count


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lines", type=int, default=80, help="longest function allowed (80)")
    p.add_argument("--positional", type=int, default=8, help="most positional arguments in one call (8)")
    args = p.parse_args(argv)
    n_long = n_wide = n_lines = 0
    for path in source_files():
        text = path.read_text()
        n_lines += text.count("\n")
        tree = ast.parse(text, filename=str(path))
        rel = path.relative_to(ROOT)
        for line, name, length in sorted(long_functions(tree, args.lines)):
            print("{}:{}: function {} is {} lines".format(rel, line, name, length))
            n_long += 1
        for line, callee, count in sorted(wide_calls(tree, args.positional)):
            print("{}:{}: call to {} passes {} positional arguments".format(rel, line, callee, count))
            n_wide += 1
    print("{} functions over {} lines, {} calls over {} positional arguments; {} lines of non-test code".format(
        n_long, args.lines, n_wide, args.positional, n_lines))
    return 1 if n_long or n_wide else 0


if __name__ == "__main__":
    sys.exit(main())
