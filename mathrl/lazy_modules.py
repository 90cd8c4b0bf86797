"""Submodules imported on first attribute access (PEP 562), so that
importing a package stays cheap.

  __getattr__, __dir__ = lazy_modules.attributes(
      __name__, _SUBMODULES, globals())
"""

from collections.abc import Callable, Iterable
import importlib
import types
from typing import Any


def attributes(
    package: str, names: Iterable[str], namespace: dict[str, Any]
) -> tuple[Callable[[str], types.ModuleType], Callable[[], list[str]]]:
  """A package's `__getattr__` and `__dir__` for lazily imported `names`.

  Args:
    package: the package's `__name__`, e.g. "mathrl.data".
    names: its submodules imported on first access.
    namespace: the package's `globals()`, listed by `__dir__`.

  Returns:
    (`__getattr__`: `package.NAME` imported for a name in `names`, else an
    AttributeError; `__dir__`: the namespace and `names`, sorted).
  """
  names = tuple(names)

  def getattr_(name: str) -> types.ModuleType:
    if name in names:
      return importlib.import_module(f"{package}.{name}")
    raise AttributeError(f"module {package!r} has no attribute {name!r}")

  def dir_() -> list[str]:
    return sorted(list(namespace) + list(names))

  return getattr_, dir_
