"""The packages' lazily imported submodules (mathrl.lazy_modules)."""

import sys

import pytest

import mathrl
from mathrl import lazy_modules


def test_a_listed_name_imports_its_submodule():
  module = mathrl.data.records
  assert module is sys.modules["mathrl.data.records"]
  assert {"records", "pipeline", "lazy_modules"} <= set(dir(mathrl.data))
  assert {"models", "sharding", "tpu_env"} <= set(dir(mathrl))


def test_an_unknown_name_is_an_attribute_error():
  with pytest.raises(AttributeError,
                     match="module 'mathrl.data' has no attribute 'nope'"):
    mathrl.data.nope  # pylint: disable=pointless-statement


def test_attributes_on_a_fresh_namespace():
  namespace = {"x": 1}
  getattr_, dir_ = lazy_modules.attributes("json", ("decoder",), namespace)
  assert getattr_("decoder") is sys.modules["json.decoder"]
  assert dir_() == ["decoder", "x"]
  with pytest.raises(AttributeError, match="'json' has no attribute 'y'"):
    getattr_("y")


def test_every_data_module_is_listed():
  # mathrl.data.NAME works for each of its modules (the notebooks use
  # mathrl.data.tokenizer and mathrl.data.prompts this way).
  import pathlib  # pylint: disable=g-import-not-at-top
  files = pathlib.Path(mathrl.data.__file__).parent.glob("*.py")
  names = sorted(p.stem for p in files if p.stem != "__init__")
  assert sorted(mathrl.data._SUBMODULES) == names  # pylint: disable=protected-access
