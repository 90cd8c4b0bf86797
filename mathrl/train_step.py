"""The jitted RL train step: the one place advantages, losses and optax meet.

  step_fn = train_step.make_train_step(graphdef, optimizer, adv_tx,
                                       policy_loss=losses.ppo_clip(),
                                       aggregate=losses.token_mean, ...)
  state, metrics = jax.jit(step_fn, donate_argnums=0)(state, rollout, ref)

Inside one call:
  1. a forward pass of the current (= behaviour) policy gives the old
     log-probs and entropies; a forward pass of the reference policy gives
     the reference log-probs when KL is on;
  2. the advantage transform turns rewards [P, G(, K)] into advantages
     [P, G] or [P, G, T];
  3. `ppo_epochs` × `num_minibatches` optimizer updates run in a `lax.scan`:
     each minibatch is a set of whole prompt groups, split into
     `num_microbatches` for gradient accumulation. Every aggregation is
     normalised by the minibatch's *global* token and sequence counts, so the
     loss and gradients do not depend on micro-batching or sharding;
  4. an update whose loss or gradients are not finite is skipped (parameters
     and optimizer state untouched) and counted in `num_skipped`.
"""

import dataclasses
import functools
import inspect
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from flax import struct

from mathrl import logprobs as logprobs_lib
from mathrl.losses.siren import selected_entropy
from mathrl import sharding
from mathrl.advantages import base as adv_base


@struct.dataclass
class TrainState:
  """Everything an RL run checkpoints about the policy."""

  step: jax.Array
  """int32 scalar: completed train steps."""
  params: Any
  """The policy's parameters (`nnx.split(model)[1]`)."""
  opt_state: Any
  """optax state."""
  adv_state: Any
  """State of the advantage transform (ha_dw's anchor, aapo's momentum...)."""
  rng: jax.Array
  """uint32 key data; each step folds in its step number."""
  num_skipped: jax.Array
  """int32 scalar: updates skipped so far because of non-finite values."""
  consecutive_skipped: jax.Array
  """int32 scalar: non-finite updates in a row (0 after a good update)."""
  entropy_anchor: jax.Array
  """float32 scalar: SIREN's H0, NaN until its first step sets it."""


@struct.dataclass
class Rollout:
  """One RL batch: B = P·G sequences, row p·G + g is sample g of prompt p."""

  prompt_tokens_BL: jax.Array
  """Left-padded prompt ids."""
  prompt_mask_BL: jax.Array
  """1 on real prompt tokens."""
  completion_tokens_BT: jax.Array
  """Right-padded sampled ids."""
  completion_mask_BT: jax.Array
  """1 up to and including the stop token."""
  rewards_PG: jax.Array
  """Rewards [P, G] or multi-reward [P, G, K]."""
  valid_PG: jax.Array
  """1 for samples that take part (0 = padding group/sample)."""
  progress: jax.Array
  """float32 scalar in [0, 1]: fraction of the run done (CAPO's schedule)."""
  extras: dict[str, jax.Array] = dataclasses.field(default_factory=dict)
  """Per-sample inputs [P, G, ...] given by name to the advantage transform
  (as [P, G, ...]) and to the policy loss (as [B, ...]): e.g. `correctness`
  (DRPO), `step_verdicts` [P, G, T] (FSPO), `ref_rewards` (AAPO)."""


def init_train_state(
    params: Any, optimizer: optax.GradientTransformation, adv_state: Any,
    rng: jax.Array,
) -> TrainState:
  """A fresh TrainState.

  Args:
    params: the policy parameters (already sharded).
    optimizer: its state is initialised here, sharded like `params`.
    adv_state: the advantage transform's `init(rewards_like)`.
    rng: uint32 key data (`jax.random.key_data(key)`).

  Returns:
    A TrainState at step 0.
  """
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=optimizer.init(params),
      adv_state=adv_state,
      rng=rng,
      num_skipped=jnp.zeros((), jnp.int32),
      consecutive_skipped=jnp.zeros((), jnp.int32),
      entropy_anchor=jnp.full((), jnp.nan, jnp.float32),
  )


def state_shardings(
    state: TrainState, optimizer: optax.GradientTransformation,
    mesh: jax.sharding.Mesh, rules: sharding.Rules,
) -> TrainState:
  """NamedShardings for every leaf of `state`, by the logical-axis rules.

  Parameters follow `rules`; optimizer moments follow their parameter;
  everything else (step, counters, RNG, advantage state) is replicated. Use
  them to place the initial state and as the jitted step's out_shardings, so
  every call sees identical input shardings and the step compiles once.
  """
  # One sharding per parameter array, in the params' own tree structure
  # (Variables included), so optimizer moments can be matched leaf by leaf.
  params = jax.tree.unflatten(
      jax.tree.structure(state.params),
      jax.tree.leaves(sharding.logical_to_sharding(state.params, mesh, rules)),
  )
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  opt_state = optax.tree_utils.tree_map_params(
      optimizer, lambda _, s: s, state.opt_state, params,
      transform_non_params=lambda _: replicated,
  )
  return TrainState(
      step=replicated, params=params, opt_state=opt_state,
      adv_state=jax.tree.map(lambda _: replicated, state.adv_state),
      rng=replicated, num_skipped=replicated,
      consecutive_skipped=replicated, entropy_anchor=replicated,
  )


_EXTRA = "extra/"


def _masked_mean(x, mask):
  return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def _group_rows(tree, num_prompts, group_size):
  """[P·G, ...] → [P, G, ...] for every leaf."""
  return jax.tree.map(
      lambda x: x.reshape((num_prompts, group_size) + x.shape[1:]), tree
  )


def guarded_update(
    optimizer: optax.GradientTransformation, grads: Any, loss: jax.Array,
    params: Any, opt_state: Any,
) -> tuple[Any, Any, jax.Array, jax.Array]:
  """θ', s' = optimizer step if loss and ‖g‖₂ are finite, else θ, s unchanged.

  Returns:
    (params, opt_state, finite, grad_norm).
  """
  grad_norm = optax.tree.norm(grads)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  updates, new_opt_state = optimizer.update(grads, opt_state, params)
  new_params = optax.apply_updates(params, updates)
  keep = lambda new, old: jax.tree.map(
      lambda n, o: jnp.where(finite, n, o), new, old
  )
  return (
      keep(new_params, params), keep(new_opt_state, opt_state), finite,
      grad_norm,
  )


def global_count_kwargs(aggregate: Callable[..., jax.Array]) -> tuple[str, ...]:
  """Which of `num_tokens` / `num_sequences` an aggregation accepts.

  The train step passes the minibatch's global counts under these names so
  that summing the micro-batch losses gives the full-minibatch loss. For
  `seq_mean_token_sum_norm` this selects TRL's Dr. GRPO normaliser
  Σ/(B·C) (verl's Σ/C differs by the constant factor B).
  """
  params = inspect.signature(aggregate).parameters
  return tuple(k for k in ("num_tokens", "num_sequences") if k in params)


def make_train_step(
    graphdef: nnx.GraphDef,
    optimizer: optax.GradientTransformation,
    adv_tx: adv_base.AdvantageTransform,
    *,
    policy_loss: Callable[..., tuple[jax.Array, dict[str, jax.Array]]],
    aggregate: Callable[..., jax.Array],
    kl_estimator: Optional[Callable[[jax.Array, jax.Array], jax.Array]] = None,
    kl_coef: float = 0.0,
    entropy_coef: float = 0.0,
    ppo_epochs: int = 1,
    num_minibatches: int = 1,
    num_microbatches: int = 1,
    recompute_old_logp: bool = True,
    loss_sample_mask: Optional[Callable[..., jax.Array]] = None,
    share_prompts: bool = False,
    temperature: float = 1.0,
    logits_chunk_size: Optional[int] = None,
) -> Callable[..., tuple[TrainState, dict[str, jax.Array]]]:
  """Builds `train_step(state, rollout, ref_params) -> (state, metrics)`.

  Loss of a minibatch (what is minimised):
    agg(ℓ_pg) + β·agg(KL(π_θ‖π_ref)) − c_H·agg(H(π_θ)),
  with agg the configured aggregation over the minibatch's valid tokens.

  Args:
    graphdef: the policy graph (`nnx.split(model)[0]`); static.
    optimizer: optax transformation applied to the accumulated gradients.
    adv_tx: advantage transform (`mathrl.advantages.*`).
    policy_loss: a `mathrl.losses` policy loss (already configured).
    aggregate: a `mathrl.losses` aggregation, called with the global counts
      `num_tokens` and `num_sequences` of the minibatch.
    kl_estimator: `mathrl.losses.kl_k1/k2/k3` or None for no KL term.
    kl_coef: β; the reference policy is needed iff β > 0.
    entropy_coef: c_H of the entropy bonus (0 = off).
    ppo_epochs: passes over the batch per step.
    num_minibatches: optimizer updates per epoch; must divide P.
    num_microbatches: gradient-accumulation chunks per minibatch; must
      divide the prompts per minibatch.
    recompute_old_logp: compute the behaviour policy's log-probs and
      entropies with a forward pass before any update (needed for several
      PPO updates per batch, and for advantages that read the policy's
      entropy, e.g. canon). False is the on-policy shortcut for one update
      per batch: old = stop_gradient(current), so the ratio is exactly 1 and
      one forward pass is saved; the advantage transform then gets no
      `entropy` extra.
    loss_sample_mask: optional `(rewards, mask_PG) -> [P, G]` 0/1 mask of
      the samples that enter the loss, applied after the advantage transform
      has seen every valid sample: a 0 drops the sample from the loss and
      from every normaliser (MC-GRPO's pivot:
      `advantages.mc_grpo_keep_mask`).
    share_prompts: run each group's prompt once in every forward pass
      (`logprobs.completion_logprobs(group_size=G)`): the same log-probs
      and gradients for about half the FLOPs of a GRPO batch; needs the
      rollout's G rows of a group to hold the same prompt.
    temperature: the sampling temperature τ; every log-prob and entropy
      (policy, behaviour and reference) is of softmax(logits / τ), the
      distribution the rollout was sampled from.
    logits_chunk_size: compute log-probs over blocks of this many positions
      without holding the [B, T, V] logits (`logprobs.completion_logprobs`'s
      chunk_size); None: all at once.

  Returns:
    The (un-jitted) train step function.
  """
  use_kl = kl_coef > 0.0
  count_names = global_count_kwargs(aggregate)
  if not recompute_old_logp and (ppo_epochs > 1 or num_minibatches > 1):
    raise ValueError(
        "recompute_old_logp=False is only valid with one update per batch"
        f" (ppo_epochs={ppo_epochs}, num_minibatches={num_minibatches}):"
        " later updates need the behaviour policy's log-probs"
    )
  if use_kl and kl_estimator is None:
    raise ValueError("kl_coef > 0 needs a kl_estimator (e.g. losses.kl_k3)")
  # SIREN: the train step supplies the nucleus entropies of the current
  # logits and the anchor H0 (set from the first step's rollout batch, then
  # held in TrainState), and adds c·(H_sel − H0)² to the aggregated loss
  # itself, so the penalty is exact under every aggregation; the loss runs
  # with coef 0.
  siren_hp = None
  if getattr(policy_loss, "name", None) == "siren":
    siren_hp = dict(policy_loss.hparams)
    policy_loss = dataclasses.replace(policy_loss, hparams=tuple(sorted(
        dict(siren_hp, coef=0.0).items())))

  def row_logprobs(params, rows, prompt_group, nucleus=False):
    return logprobs_lib.completion_logprobs(
        graphdef, params, rows["prompt_tokens_BL"], rows["prompt_mask_BL"],
        rows["completion_tokens_BT"], rows["completion_mask_BT"],
        nucleus_top_p=siren_hp["top_p"] if nucleus else None,
        group_size=prompt_group, temperature=temperature,
        chunk_size=logits_chunk_size,
    )

  def micro_loss(params, rows, counts, rng, anchor, prompt_group):
    siren_extras = {}
    if siren_hp:
      logp_BT, entropy_BT, nucleus_BT = row_logprobs(
          params, rows, prompt_group, True)
      siren_extras = dict(entropy_nucleus=nucleus_BT, entropy_anchor=anchor)
    else:
      logp_BT, entropy_BT = row_logprobs(params, rows, prompt_group)
    if recompute_old_logp:
      old_logp_BT, old_entropy_BT = rows["old_logp_BT"], rows["old_entropy_BT"]
    else:
      old_logp_BT = jax.lax.stop_gradient(logp_BT)
      old_entropy_BT = jax.lax.stop_gradient(entropy_BT)
    mask_BT = rows["completion_mask_BT"]
    count_kw = {k: counts[k] for k in count_names}
    agg = lambda x: aggregate(x, mask_BT, **count_kw)
    pg_BT, pg_metrics = policy_loss(
        logp=logp_BT, old_logp=old_logp_BT,
        advantages=rows["advantages"], mask=mask_BT,
        entropy=old_entropy_BT, rng=rng, lengths=rows["lengths_B"],
        rewards=rows["rewards_B"], **siren_extras,
        **{k[len(_EXTRA):]: v for k, v in rows.items()
           if k.startswith(_EXTRA)},
    )
    loss = agg(pg_BT)
    metrics = {"pg_loss": loss}
    if siren_hp:
      # H_sel of this micro-batch, weighted by its share of the minibatch's
      # sequences (the authors' per-micro-batch penalty, averaged).
      h_sel = selected_entropy(
          siren_extras["entropy_nucleus"], mask_BT,
          siren_hp["entropy_top_fraction"])
      rows_share = jnp.sum(jnp.any(mask_BT > 0, axis=-1)) / jnp.maximum(
          counts["num_sequences"], 1.0)
      penalty = siren_hp["coef"] * jnp.square(h_sel - anchor)
      loss = loss + rows_share * penalty
      siren_metrics = dict(entropy_selected=rows_share * h_sel,
                           entropy_penalty=rows_share * penalty)
    if use_kl:
      kl = agg(kl_estimator(logp_BT, rows["ref_logp_BT"]))
      loss = loss + kl_coef * kl
      metrics["kl"] = kl
    if entropy_coef:
      loss = loss - entropy_coef * agg(entropy_BT)
    metrics["entropy"] = agg(entropy_BT)
    metrics["loss"] = loss
    # Per-micro metric means are weighted by this micro's token share.
    share = jnp.sum(mask_BT) / jnp.maximum(counts["num_tokens"], 1.0)
    metrics.update({k: v * share for k, v in pg_metrics.items()})
    if siren_hp:
      metrics.update(siren_metrics)
    return loss, metrics

  def minibatch_update(carry, mb, anchor, prompt_group):
    grad_fn = jax.grad(
        functools.partial(micro_loss, prompt_group=prompt_group), has_aux=True)
    params, opt_state, num_skipped, consecutive, rng = carry
    rng, mb_rng = jax.random.split(rng)
    mask_BT = mb["completion_mask_BT"]
    counts = {
        "num_tokens": jnp.sum(mask_BT),
        "num_sequences": jnp.sum(jnp.any(mask_BT > 0, axis=-1)),
    }
    micro = jax.tree.map(
        lambda x: x.reshape((num_microbatches, -1) + x.shape[1:]), mb
    )

    def accumulate(acc, inputs):
      rows, i = inputs
      grads, metrics = grad_fn(
          params, rows, counts, jax.random.fold_in(mb_rng, i), anchor
      )
      return jax.tree.map(jnp.add, acc, (grads, metrics)), None

    zeros = jax.eval_shape(
        grad_fn, params, jax.tree.map(lambda x: x[0], micro), counts, mb_rng,
        anchor,
    )
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), zeros)
    (grads, metrics), _ = jax.lax.scan(
        accumulate, zeros, (micro, jnp.arange(num_microbatches))
    )
    params, opt_state, finite, grad_norm = guarded_update(
        optimizer, grads, metrics["loss"], params, opt_state
    )
    skipped = (~finite).astype(jnp.int32)
    consecutive = jnp.where(finite, 0, consecutive + 1)
    metrics = dict(metrics, grad_norm=grad_norm)
    return (params, opt_state, num_skipped + skipped, consecutive, rng), metrics

  def train_step(state: TrainState, rollout: Rollout, ref_params=None):
    rewards = rollout.rewards_PG
    num_prompts, group_size = rewards.shape[:2]
    if num_prompts % num_minibatches:
      raise ValueError(
          f"num_minibatches={num_minibatches} must divide the {num_prompts}"
          " prompts of a batch"
      )
    if (num_prompts // num_minibatches) % num_microbatches:
      raise ValueError(
          f"num_microbatches={num_microbatches} must divide the"
          f" {num_prompts // num_minibatches} prompts of a minibatch"
      )
    # Rows sharing one prompt, run once per forward pass (1 = no sharing).
    prompt_group = group_size if share_prompts else 1
    rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    perm_rng, update_rng = jax.random.split(rng)
    valid_PG = rollout.valid_PG.astype(jnp.float32)
    in_loss_PG = valid_PG
    if loss_sample_mask is not None:
      in_loss_PG = valid_PG * jax.lax.stop_gradient(
          loss_sample_mask(rewards, valid_PG).astype(jnp.float32))
    # What the advantage transform sees (every valid sample), and what the
    # loss sees (minus the samples loss_sample_mask drops).
    seen_BT = rollout.completion_mask_BT.astype(jnp.float32) * (
        valid_PG.reshape(-1, 1)
    )
    mask_BT = seen_BT * in_loss_PG.reshape(-1, 1)
    rows = {
        "prompt_tokens_BL": rollout.prompt_tokens_BL,
        "prompt_mask_BL": rollout.prompt_mask_BL,
        "completion_tokens_BT": rollout.completion_tokens_BT,
        "completion_mask_BT": mask_BT,
    }
    num_tokens = rollout.completion_tokens_BT.shape[1]
    lengths_PG = jnp.sum(seen_BT, axis=-1).reshape(num_prompts, group_size)
    mask_PGT = seen_BT.reshape(num_prompts, group_size, num_tokens)
    policy_extras = {}
    if recompute_old_logp:
      old_logp_BT, old_entropy_BT = jax.lax.stop_gradient(
          row_logprobs(state.params, rows, prompt_group)
      )
      rows.update(old_logp_BT=old_logp_BT, old_entropy_BT=old_entropy_BT)
      policy_extras["entropy"] = (
          jnp.sum(old_entropy_BT * seen_BT, -1)
          / jnp.maximum(jnp.sum(seen_BT, -1), 1.0)
      ).reshape(num_prompts, group_size)
    adv, adv_state = adv_tx.update(
        rewards, state.adv_state, mask=valid_PG,
        lengths=lengths_PG.astype(jnp.int32), token_mask=mask_PGT,
        tokens=rollout.completion_tokens_BT.reshape(num_prompts, group_size, -1),
        progress=rollout.progress, **policy_extras, **rollout.extras,
    )
    adv = jax.lax.stop_gradient(adv.astype(jnp.float32))
    advantages = adv.reshape((num_prompts * group_size,) + adv.shape[2:])
    rewards_B = (
        rewards.sum(-1) if rewards.ndim == 3 else rewards
    ).reshape(-1).astype(jnp.float32)
    rows.update(
        advantages=advantages, lengths_B=lengths_PG.reshape(-1),
        rewards_B=rewards_B,
    )
    # Per-sample extras travel with their rows into minibatches, flattened
    # [P, G, ...] → [B, ...], and reach the policy loss by name.
    for name, value in rollout.extras.items():
      rows[_EXTRA + name] = value.reshape(
          (num_prompts * group_size,) + value.shape[2:])
    if use_kl:
      if ref_params is None:
        raise ValueError("kl_coef > 0: pass the reference policy's params")
      rows["ref_logp_BT"] = jax.lax.stop_gradient(
          row_logprobs(ref_params, rows, prompt_group)[0]
      )

    anchor = state.entropy_anchor
    if siren_hp:
      def first_anchor():
        nucleus_BT = jax.lax.stop_gradient(
            row_logprobs(state.params, rows, prompt_group, True)[2])
        return selected_entropy(
            nucleus_BT, mask_BT, siren_hp["entropy_top_fraction"])

      anchor = jax.lax.cond(jnp.isnan(anchor), first_anchor, lambda: anchor)

    groups = _group_rows(rows, num_prompts, group_size)

    def epoch_minibatches(key):
      perm = jax.random.permutation(key, num_prompts)
      shuffled = jax.tree.map(lambda x: x[perm], groups)
      return jax.tree.map(
          lambda x: x.reshape((num_minibatches, -1) + x.shape[2:]), shuffled
      )

    if ppo_epochs == 1 and num_minibatches == 1:
      batches = jax.tree.map(
          lambda x: x.reshape((1, -1) + x.shape[2:]), groups
      )
    else:
      keys = jax.random.split(perm_rng, ppo_epochs)
      batches = jax.vmap(epoch_minibatches)(keys)
      batches = jax.tree.map(
          lambda x: x.reshape((ppo_epochs * num_minibatches,) + x.shape[2:]),
          batches,
      )
    carry = (
        state.params, state.opt_state, state.num_skipped,
        state.consecutive_skipped, update_rng,
    )
    carry, metrics_U = jax.lax.scan(
        lambda c, mb: minibatch_update(c, mb, anchor, prompt_group), carry,
        batches)
    params, opt_state, num_skipped, consecutive, _ = carry
    metrics = {k: jnp.mean(v) for k, v in metrics_U.items()}
    adv_seq = advantages if advantages.ndim == 1 else jnp.sum(
        advantages * mask_BT, -1) / jnp.maximum(jnp.sum(mask_BT, -1), 1.0)
    valid_B = valid_PG.reshape(-1)
    metrics.update(
        advantage_mean=_masked_mean(adv_seq, valid_B),
        advantage_abs_mean=_masked_mean(jnp.abs(adv_seq), valid_B),
        reward_mean=_masked_mean(rewards_B, valid_B),
        response_length_mean=_masked_mean(lengths_PG.reshape(-1), valid_B),
        num_skipped=num_skipped,
        consecutive_skipped=consecutive,
    )
    if siren_hp:
      metrics["entropy_anchor"] = anchor
    new_state = state.replace(
        step=state.step + 1, params=params, opt_state=opt_state,
        adv_state=adv_state, num_skipped=num_skipped,
        consecutive_skipped=consecutive, entropy_anchor=anchor,
    )
    return new_state, metrics

  return train_step
