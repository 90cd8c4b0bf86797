"""VADE prompt selection: posterior updates, Thompson selection, resume."""

import numpy as np
import pytest

from mathrl import builders
from mathrl import configlib
from mathrl.data import pipeline
from mathrl.data import synthetic
from mathrl.data import vade
import tiny_tokenizer


def test_posterior_update_golden():
  # α₀ = β₀ = 1, λ = 0.9. 3 of 4 correct: α = 0.9 + 0.1 + 3 = 4,
  # β = 0.9 + 0.1 + 1 = 2. Then 0 of 4: α = 0.9·4 + 0.1 = 3.7,
  # β = 0.9·2 + 0.1 + 4 = 5.9.
  a, b = vade.update_posterior(np.array([1.0]), np.array([1.0]),
                               np.array([3.0]), np.array([4.0]),
                               decay=0.9, prior=(1.0, 1.0))
  np.testing.assert_allclose([a[0], b[0]], [4.0, 2.0])
  a, b = vade.update_posterior(a, b, np.array([0.0]), np.array([4.0]),
                               decay=0.9, prior=(1.0, 1.0))
  np.testing.assert_allclose([a[0], b[0]], [3.7, 5.9])


def test_thompson_selection_prefers_success_rates_near_one_half():
  # Posteriors concentrated at p = 0.95, 0.5, 0.05, 0.45: the two near 1/2
  # have p(1 − p) ≈ 0.25 against ≈ 0.05, on every draw.
  alpha = np.array([950.0, 500.0, 50.0, 450.0])
  beta = np.array([50.0, 500.0, 950.0, 550.0])
  for seed in range(5):
    keep = vade.thompson_select(alpha, beta, 2, np.random.default_rng(seed))
    np.testing.assert_array_equal(keep, [1, 3])


class _Batches:
  """Candidate batches of 4 prompts with ids q0..q3, G = 2."""

  def __init__(self):
    self.position = 0

  def __next__(self):
    self.position += 1
    ids = tuple(f"q{i}" for i in range(4))
    return pipeline.PromptBatch(
        tokens_BL=np.arange(8)[:, None] * np.ones((1, 3), int),
        mask_BL=np.ones((8, 3), int), prompts_P=ids, answers_P=ids,
        ids_P=ids, records_P=tuple({} for _ in ids), group_size=2)

  def get_state(self):
    return {"position": self.position}

  def set_state(self, state):
    self.position = state["position"]


def test_selector_learns_from_feedback_and_resumes():
  selector = vade.VadeSelector(_Batches(), prompts_per_batch=2, seed=0,
                               decay=1.0)
  first = next(selector)
  assert len(first.ids_P) == 2 and first.tokens_BL.shape == (4, 3)
  # Rows of a kept prompt p are its G rows 2p, 2p + 1 of the candidates.
  p = int(first.ids_P[0][1:])
  np.testing.assert_array_equal(first.tokens_BL[:2, 0], [2 * p, 2 * p + 1])
  # q0 and q1 always solved, q2 and q3 half solved: VADE keeps q2, q3.
  for _ in range(20):
    selector.observe(("q0", "q1", "q2", "q3"),
                     np.array([[1, 1], [1, 1], [1, 0], [0, 1]]))
  assert next(selector).ids_P == ("q2", "q3")
  state = selector.get_state()
  resumed = vade.VadeSelector(_Batches(), prompts_per_batch=2, seed=0,
                              decay=1.0)
  resumed.set_state(state)
  assert resumed.posterior == selector.posterior
  assert next(resumed).ids_P == next(selector).ids_P


def test_config_builds_vade_batches():
  config = configlib.base_config()
  config.rl.prompt_selection = "vade"
  config.rl.prompts_per_step = 2
  records = synthetic.ArithmeticTasks(40, seed=1)
  batches = builders.make_rl_batches(
      config, records, tiny_tokenizer.make(chat=False),
      builders.make_template(config))
  batch = next(batches)
  assert len(batch.ids_P) == 2 and isinstance(batches, vade.VadeSelector)
  config.rl.prompt_selection = "vades"
  with pytest.raises(builders.ConfigError, match="rl.prompt_selection"):
    builders.make_rl(config)
