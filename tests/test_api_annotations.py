"""Every public function and method of chainer_va has type hints that resolve.

With ``from __future__ import annotations`` hints are strings that nothing evaluates, so a misspelt or
unimported name in one goes unnoticed until a user's type checker or ``typing.get_type_hints`` reads it.
"""
import importlib
import inspect
import pkgutil
import typing

import chainer_va


def _public_callables():
    for info in pkgutil.walk_packages(chainer_va.__path__, "chainer_va."):
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.isfunction(obj) and obj.__module__ == info.name:
                yield obj
            elif inspect.isclass(obj) and obj.__module__ == info.name:
                for attr, value in vars(obj).items():
                    if inspect.isfunction(value) and (not attr.startswith("_") or attr == "__init__"):
                        yield value


def test_public_type_hints_resolve():
    callables = list(_public_callables())
    assert len(callables) > 100  # the walk found the package's API
    failures = []
    for function in callables:
        try:
            typing.get_type_hints(function)
        except Exception as e:  # NameError for an unimported name, SyntaxError for a malformed hint
            failures.append("{}.{}: {!r}".format(function.__module__, function.__qualname__, e))
    assert not failures, "\n".join(failures)
