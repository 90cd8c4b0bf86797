"""mathrl.compile_cache: the command line's persistent compilation cache."""

import jax
import pytest

from mathrl import compile_cache
from mathrl import configlib


@pytest.fixture
def no_cache_dir():
  """jax_compilation_cache_dir unset for the test, restored after it."""
  saved = jax.config.jax_compilation_cache_dir
  jax.config.update("jax_compilation_cache_dir", None)
  yield
  jax.config.update("jax_compilation_cache_dir", saved)


def test_the_config_directory_is_created_and_used(no_cache_dir, tmp_path,
                                                   monkeypatch):
  monkeypatch.setenv("HOME", str(tmp_path))
  used = compile_cache.enable("~/cache/xla")
  assert used == str(tmp_path / "cache" / "xla")
  assert (tmp_path / "cache" / "xla").is_dir()
  assert jax.config.jax_compilation_cache_dir == used


def test_a_directory_set_outside_the_config_wins(no_cache_dir, tmp_path):
  jax.config.update("jax_compilation_cache_dir", str(tmp_path / "mine"))
  assert compile_cache.enable(str(tmp_path / "config")) == str(
      tmp_path / "mine")
  assert not (tmp_path / "config").exists()


def test_empty_means_off(no_cache_dir):
  assert compile_cache.enable("") is None
  assert not jax.config.jax_compilation_cache_dir


def test_an_unwritable_directory_names_the_field(no_cache_dir, tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  with pytest.raises(ValueError, match="compile_cache_dir"):
    compile_cache.enable(str(blocker / "xla"))


def test_the_default_config_turns_it_on():
  assert configlib.base_config().compile_cache_dir == "~/.cache/mathrl/xla"
