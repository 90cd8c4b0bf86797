"""The trainer's RL steps on 8 fake CPU devices: sharded equals one device.

Two RL steps of the tiny config (sampling, rewards, update: the trainer's
`_rl_step` inside `Run.training()`) on the meshes (data 2, fsdp 2,
tensor 2) and (fsdp 8) end with the parameters of the one-device run; the
train step compiles once and the sampler does not recompile per step.
"""
# pylint: disable=protected-access

import jax
import numpy as np
import pytest
from flax import nnx

from mathrl import builders
from mathrl import rewards
from mathrl import sampling
from mathrl import sharding
from mathrl import trainer
from tests.trainer_test import tiny_config

# One worker runs the whole module, so its module fixture (two trainer RL
# steps on three meshes) runs once (`--dist loadgroup`, pyproject.toml).
pytestmark = pytest.mark.xdist_group("trainer_sharding")

MESHES = {
    "one_device": None,
    "data2_fsdp2_tensor2": dict(data=2, fsdp=2, tensor=2),
    "fsdp8": dict(fsdp=8),
}


def _mesh(name):
  if MESHES[name] is None:
    return sharding.make_mesh(devices=jax.devices()[:1])
  return sharding.make_mesh(**MESHES[name])


def _length_reward(completions, answers, **kw):
  """1 for completions of an even number of characters: a random policy
  earns mixed rewards, so the advantages and the update are not zero."""
  del answers, kw
  return np.asarray([len(c) % 2 == 0 for c in completions], np.float32)


def _two_rl_steps(workdir, mesh):
  """Two trainer RL steps on `mesh`: (params, metrics rows, compile counts)."""
  # Steps that move the parameters far more than the tolerance of
  # test_sharded_rl_steps_equal_one_device (1% of one step at this lr).
  config = tiny_config(**{"sft.steps": 0, "rl.learning_rate": 3e-3,
                          "rl.warmup_steps": 0})
  run = trainer.Run(config, workdir, mesh=mesh)
  try:
    setup = trainer.RLSetup(run)
    tree = setup.initial_tree(run.init_params)
    init = jax.device_get(run.init_params)
    step_fn = setup.step_fn()
    batches = builders.make_rl_batches(config, run.rl_source, run.tokenizer,
                                       run.template)
    state, rows, sampler_sizes, args = tree["state"], [], [], []

    def recording_step(*step_args):
      args[:] = [jax.tree.map(_abstract, step_args)]
      return step_fn(*step_args)

    with run.training():
      for step in range(2):
        sample_params = run.sampling_model(state.params)
        same = all(a is b for a, b in zip(
            jax.tree.leaves(nnx.state(sample_params)),
            jax.tree.leaves(state.params)))
        sample_sh = jax.tree.map(lambda x: x.sharding, nnx.state(
            sample_params))
        state, row = trainer._rl_step(
            run, setup, recording_step, state, tree["ref"], batches,
            rng=jax.random.PRNGKey(step), progress=step / 2)
        rows.append(row)
        # The sampler's compiled programs: prefill, decode loop, compaction.
        sampler_sizes.append(tuple(
            f._cache_size() for f in (sampling._prefill, sampling._decode,
                                      sampling._compact)))
    return dict(init=init, params=jax.device_get(state.params), rows=rows,
                step_compiles=step_fn._cache_size(),
                sampler_sizes=sampler_sizes,
                reshard_compiles=run._to_sampling._cache_size(),
                sampled_on_train_buffers=same,
                sample_sh=sample_sh, train_sh=setup.state_sh.params,
                sample_rules_sh=run.sample_shardings,
                constraints=_constraints(run, setup, args[0]))
  finally:
    run.close()


def _abstract(x):
  if x is None:
    return None
  return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)


def _constraints(run, setup, args):
  """Sharding constraints in the train step lowered (in, out of) the
  trainer's training context."""

  def count():
    text = jax.jit(setup.parts.train_step).lower(*args).as_text()
    return text.count("sharding_constraint") + text.count("@Sharding")

  with run.training():
    inside = count()
  return inside, count()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("sharded_rl"))  # one tokenizer
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(rewards.functions, "correctness", _length_reward)
    return {name: _two_rl_steps(workdir, _mesh(name)) for name in MESHES}


def test_updates_are_not_trivial(runs):
  one = runs["one_device"]
  assert [r["skipped"] for r in one["rows"]] == [False, False]
  moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()),
                       one["params"], one["init"])
  assert max(jax.tree.leaves(moved)) > 1e-3


@pytest.mark.parametrize("name", ["data2_fsdp2_tensor2", "fsdp8"])
def test_sharded_rl_steps_equal_one_device(runs, name):
  one, sharded = runs["one_device"], runs[name]
  jax.tree.map(np.testing.assert_array_equal, sharded["init"], one["init"])
  for a, b in zip(sharded["rows"], one["rows"]):
    # The same samples were drawn and scored on both meshes.
    assert a["reward_mean"] == b["reward_mean"]
    assert a["generated_tokens"] == b["generated_tokens"]
  # Adam divides each gradient entry by its own scale, so an entry whose
  # gradient is float noise of the reduction order takes a step of up to
  # lr = 3e-3 in a direction that noise picks; the tolerance is 1% of one
  # step, against parameters that moved by more than 1e-3
  # (test_updates_are_not_trivial).
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=3e-5),
               sharded["params"], one["params"])


@pytest.mark.parametrize("name", list(MESHES))
def test_train_step_compiles_once_and_sampler_not_per_step(runs, name):
  run = runs[name]
  assert run["step_compiles"] == 1
  # Once per rollout phase, one compile; on one device the training
  # layout is the sampling one: no reshard, the weights are not copied.
  assert run["reshard_compiles"] == (0 if name == "one_device" else 1)
  assert run["sampled_on_train_buffers"] == (name == "one_device")
  # Step 2 samples the same bucket as step 1: no new sampler compile.
  first, second = run["sampler_sizes"]
  assert second == first


@pytest.mark.parametrize("name", ["data2_fsdp2_tensor2", "fsdp8"])
def test_training_applies_the_rules_and_sampling_its_own(runs, name):
  run = runs[name]
  inside, outside = run["constraints"]
  # The model's `shard(...)` calls constrain activations only inside
  # `Run.training()` (outside they are no-ops).
  assert inside > 0 and outside == 0, (inside, outside)
  # Rollouts sample on weights resharded to the sampling rules, which on
  # these meshes differ from the training shardings (no FSDP).
  sample = jax.tree.leaves(run["sample_sh"])
  assert sample == jax.tree.leaves(run["sample_rules_sh"])
  train = jax.tree.leaves(run["train_sh"])
  assert len(sample) == len(train)
  assert any(a.spec != b.spec for a, b in zip(sample, train))
  assert not any("fsdp" in str(a.spec) for a in sample)
  assert any("fsdp" in str(b.spec) for b in train)
