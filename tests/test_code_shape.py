"""tools/code_shape.py: it finds long functions and wide calls (the limits of the developers' guide)."""
import ast
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("code_shape", Path(__file__).resolve().parents[1] / "tools" / "code_shape.py")
code_shape = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(code_shape)


def test_it_finds_a_long_function_and_a_wide_call_and_nothing_else():
    body = "\n".join("    x{} = {}".format(i, i) for i in range(85))
    source = "def long():\n{}\n\ndef short():\n    f(1, 2, 3, 4, 5, 6, 7, 8)\n    g(1, 2, 3, 4, 5, 6, 7, 8, 9)\n" \
             "    h(*range(20))\n    k(1, 2, 3, 4, 5, 6, 7, 8, *rest, a=1, b=2)\n".format(body)
    tree = ast.parse(source)
    assert list(code_shape.long_functions(tree, 80)) == [(1, "long", 86)]
    assert list(code_shape.wide_calls(tree, 8)) == [(90, "g", 9)]


def test_every_source_file_is_outside_tests():
    files = code_shape.source_files()
    assert files and all("tests" not in f.parts for f in files)
    assert any(f.name == "train.py" and f.parent.name == "chainer_va" for f in files)


def test_the_repository_keeps_the_limits():
    """No non-test function over 80 lines, no call with more than 8 positional arguments (issue 19)."""
    found = []
    for path in code_shape.source_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        found += ["{}:{} {} ({} lines)".format(path, *hit) for hit in code_shape.long_functions(tree, 80)]
        found += ["{}:{} {} ({} positional)".format(path, *hit) for hit in code_shape.wide_calls(tree, 8)]
    assert found == []
