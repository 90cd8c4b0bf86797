"""The jitted RL train step: the one place advantages, losses and optax meet.

  step_fn = train_step.make_train_step(graphdef, optimizer, adv_tx,
                                       policy_loss=losses.ppo_clip(),
                                       aggregate=losses.token_mean, ...)
  state, metrics = jax.jit(step_fn, donate_argnums=0)(state, rollout, ref)

One call runs named stages over a `Batch` (the rollout's rows, [B, ...]):
  1. prepare: forward passes of the current (= behaviour) policy and, with
     KL on, of the reference policy give the old and reference log-probs,
     micro-batched like the policy's own passes; the advantage transform
     turns rewards [P, G(, K)] into advantages [P, G] or [P, G, T]; the
     methods' loss sample masks (DGPO's valid groups, MC-GRPO's pivot) and
     stateful regulariser (SIREN's anchor) are applied;
  2. minibatches: `ppo_epochs` × `num_minibatches` sets of whole prompt
     groups, shuffled per epoch;
  3. loss: per micro-batch, the policy loss, KL and entropy terms. Every
     aggregation is normalised by the minibatch's *global* token and
     sequence counts, so the loss and gradients do not depend on
     micro-batching or sharding;
  4. update: the accumulated gradients go through optax. An update whose
     loss or gradients are not finite is skipped (parameters and optimizer
     state untouched) and counted in `num_skipped`; a minibatch without
     any token is skipped too and counted in the `empty_updates` metric.

What a method needs (the behaviour or current policy's entropy, rollout
extras, a loss sample mask, a regulariser) is read from its declaration,
`adv_tx.needs` and `policy_loss.needs` (`types.Needs`).
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
from mathrl import precision
from mathrl import sharding
from mathrl.updates import guarded_update  # pylint: disable=unused-import
from mathrl.advantages import base as adv_base
from mathrl.types import Needs
from mathrl.types import Rollout  # pylint: disable=unused-import
from mathrl.types import TrainState


def init_method_state(policy_loss: Any) -> Any:
  """The initial `TrainState.method_state` for a policy loss (() if none)."""
  reg = getattr(policy_loss, "needs", Needs()).regulariser
  return () if reg is None else reg.init()


def init_train_state(
    params: Any, optimizer: optax.GradientTransformation, adv_state: Any,
    rng: jax.Array, method_state: Any = (),
) -> TrainState:
  """A fresh TrainState.

  Args:
    params: the policy parameters (already sharded).
    optimizer: its state is initialised here, sharded like `params`.
    adv_state: the advantage transform's `init(rewards_like)`.
    rng: uint32 key data (`jax.random.key_data(key)`).
    method_state: the policy loss's regulariser state
      (`init_method_state(policy_loss)`).

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
      method_state=method_state,
  )


def reference_params(params: Any, compute_dtype: Any) -> Any:
  """θ_ref = cast_c(θ), as cast_c ∘ cast_c = cast_c; arXiv:1710.03740.

  The reference policy's own copy of `params`, for `train_step(state,
  rollout, ref_params)`. Every forward pass reads a parameter cast to the
  compute dtype c (`model.dtype`; `models.transformer` casts each weight
  where a layer reads it, as in mixed-precision training), and rounding
  is idempotent, so storing a floating-point leaf already in the narrower
  of its own dtype and c gives bit-identical reference log-probs (the KL
  at step 1, policy = reference, stays exactly 0). With float32 master
  weights and bfloat16 compute the copy costs 2 bytes per parameter
  instead of 4; with float32 compute it is a float32 copy.

  Args:
    params: the policy parameters (float32 master weights or any other
      `model.param_dtype`).
    compute_dtype: the model's compute dtype (`model.dtype`).

  Returns:
    New buffers (never `params`' own: the train step donates the state's),
    placed and sharded like `params`.
  """
  return precision.cast_floating(params, compute_dtype, narrow_only=True,
                                copy=True)


def state_shardings(
    state: TrainState, optimizer: optax.GradientTransformation,
    mesh: jax.sharding.Mesh, rules: sharding.Rules,
) -> TrainState:
  """NamedShardings for every leaf of `state`, by the logical-axis rules.

  Parameters follow `rules`; optimizer moments follow their parameter;
  everything else (step, counters, RNG, advantage and method state) is
  replicated. Use them to place the initial state and as the jitted step's
  out_shardings, so every call sees identical input shardings and the step
  compiles once.
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
  rep = lambda tree: jax.tree.map(lambda _: replicated, tree)
  return TrainState(
      step=replicated, params=params, opt_state=opt_state,
      adv_state=rep(state.adv_state), rng=replicated, num_skipped=replicated,
      consecutive_skipped=replicated, method_state=rep(state.method_state),
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


@struct.dataclass
class Batch:
  """The rollout's rows as the update stages see them; leading axis B."""

  prompt_tokens_BL: jax.Array
  prompt_mask_BL: jax.Array
  completion_tokens_BT: jax.Array
  mask_BT: jax.Array
  """float32: completion mask × valid × the loss sample mask."""
  advantages: jax.Array
  """[B] or [B, T], constant."""
  lengths_B: jax.Array
  rewards_B: jax.Array
  old_logp_BT: Optional[jax.Array] = None
  """Behaviour log-probs (None: on-policy shortcut)."""
  old_entropy_BT: Optional[jax.Array] = None
  ref_logp_BT: Optional[jax.Array] = None
  """Reference log-probs (None: no KL term)."""
  extras: dict[str, jax.Array] = dataclasses.field(default_factory=dict)
  """Per-sample rollout extras, [B, ...]."""


@struct.dataclass
class Carry:
  """What the minibatch scan carries from one update to the next."""

  params: Any
  opt_state: Any
  num_skipped: jax.Array
  consecutive_skipped: jax.Array
  rng: jax.Array


def _masked_mean(x, mask):
  return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def _split(tree, num):
  """[N, ...] → [num, N/num, ...] for every leaf (None leaves stay None)."""
  return jax.tree.map(lambda x: x.reshape((num, -1) + x.shape[1:]), tree)


def _merge(tree):
  """[A, C, ...] → [A·C, ...] for every leaf."""
  return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), tree)


@dataclasses.dataclass(frozen=True)
class StepSpec:
  """The static settings of a train step (see `make_train_step`)."""

  graphdef: nnx.GraphDef
  optimizer: optax.GradientTransformation
  adv_tx: adv_base.AdvantageTransform
  policy_loss: Callable[..., Any]
  aggregate: Callable[..., jax.Array]
  kl_estimator: Optional[Callable[[jax.Array, jax.Array], jax.Array]]
  kl_coef: float
  entropy_coef: float
  ppo_epochs: int
  num_minibatches: int
  num_microbatches: int
  recompute_old_logp: bool
  loss_sample_mask: Optional[Callable[..., jax.Array]]
  share_prompts: bool
  temperature: float
  logits_chunk_size: Optional[int] = None

  @property
  def regulariser(self):
    return self.policy_loss.needs.regulariser

  @property
  def surrogate(self):
    reg = self.regulariser
    return self.policy_loss if reg is None else reg.surrogate

  def check_prompts(self, num_prompts: int) -> None:
    """Fails unless the minibatch and micro-batch counts divide P."""
    if num_prompts % self.num_minibatches:
      raise ValueError(
          f"num_minibatches={self.num_minibatches} (rl.num_minibatches) must"
          f" divide the {num_prompts} prompts of a batch"
          " (rl.prompts_per_step)")
    per_minibatch = num_prompts // self.num_minibatches
    if per_minibatch % self.num_microbatches:
      raise ValueError(
          f"num_microbatches={self.num_microbatches} (rl.num_microbatches)"
          f" must divide the {per_minibatch} prompts of a minibatch")

  # --- forward passes -----------------------------------------------------

  def logprobs(self, params, rows, mask_BT, prompt_group, nucleus=False):
    """(logp_BT, entropy_BT[, nucleus_BT]) of `rows` at temperature τ.

    With `nucleus`, also the nucleus entropy the loss declares
    (`Needs.nucleus_top_p`).
    """
    top_p = self.policy_loss.needs.nucleus_top_p
    return logprobs_lib.completion_logprobs(
        self.graphdef, params, rows.prompt_tokens_BL, rows.prompt_mask_BL,
        rows.completion_tokens_BT, mask_BT,
        nucleus_top_p=top_p if nucleus else None,
        group_size=prompt_group, temperature=self.temperature,
        chunk_size=self.logits_chunk_size,
    )

  def chunked_logprobs(self, params, rows, mask_BT, prompt_group,
                       nucleus=False):
    """`logprobs` of the whole batch, in the policy update's chunk size.

    The behaviour, reference and anchor passes run over
    num_minibatches × num_microbatches chunks of whole groups, so no
    forward pass holds more rows than a policy micro-batch.
    """
    chunks = self.num_minibatches * self.num_microbatches
    inputs = _split((rows.prompt_tokens_BL, rows.prompt_mask_BL,
                     rows.completion_tokens_BT, mask_BT), chunks)

    def one(chunk):
      prompt, prompt_mask, completion, mask = chunk
      chunk_rows = rows.replace(
          prompt_tokens_BL=prompt, prompt_mask_BL=prompt_mask,
          completion_tokens_BT=completion)
      return jax.lax.stop_gradient(self.logprobs(
          params, chunk_rows, mask, prompt_group, nucleus))

    return _merge(jax.lax.map(one, inputs))

  # --- stage 1: prepare ---------------------------------------------------

  def prepare(self, state: TrainState, rollout: Rollout, ref_params,
              prompt_group: int) -> tuple[Batch, Any, jax.Array]:
    """Masks, behaviour/reference log-probs and advantages of a rollout.

    Returns:
      (batch, new advantage state, lengths_PG of the valid samples).
    """
    rewards = rollout.rewards_PG
    num_prompts, group_size = rewards.shape[:2]
    valid_PG = rollout.valid_PG.astype(jnp.float32)
    # The advantages see every valid sample; the loss sees those in_loss.
    seen_BT = rollout.completion_mask_BT.astype(jnp.float32) * (
        valid_PG.reshape(-1, 1))
    lengths_PG = jnp.sum(seen_BT, -1).reshape(num_prompts, group_size)
    rewards_B = (rewards.sum(-1) if rewards.ndim == 3 else rewards)
    batch = Batch(
        prompt_tokens_BL=rollout.prompt_tokens_BL,
        prompt_mask_BL=rollout.prompt_mask_BL,
        completion_tokens_BT=rollout.completion_tokens_BT,
        mask_BT=seen_BT,
        advantages=jnp.zeros(()), lengths_B=lengths_PG.reshape(-1),
        rewards_B=rewards_B.reshape(-1).astype(jnp.float32),
        extras={k: v.reshape((num_prompts * group_size,) + v.shape[2:])
                for k, v in rollout.extras.items()},
    )
    adv_extras = {}
    if self.recompute_old_logp:
      old_logp_BT, old_entropy_BT = self.chunked_logprobs(
          state.params, batch, seen_BT, prompt_group)
      batch = batch.replace(old_logp_BT=old_logp_BT,
                            old_entropy_BT=old_entropy_BT)
      if self.adv_tx.needs.entropy:
        adv_extras["entropy"] = (
            jnp.sum(old_entropy_BT * seen_BT, -1)
            / jnp.maximum(jnp.sum(seen_BT, -1), 1.0)
        ).reshape(num_prompts, group_size)
    adv, adv_state = self.adv_tx.update(
        rewards, state.adv_state, mask=valid_PG,
        lengths=lengths_PG.astype(jnp.int32),
        token_mask=seen_BT.reshape(num_prompts, group_size, -1),
        tokens=rollout.completion_tokens_BT.reshape(
            num_prompts, group_size, -1),
        progress=rollout.progress, **adv_extras, **rollout.extras,
    )
    adv = jax.lax.stop_gradient(adv.astype(jnp.float32))
    in_loss_PG = valid_PG
    if self.loss_sample_mask is not None:
      adv_PG = adv if adv.ndim == 2 else jnp.sum(adv, -1)
      in_loss_PG = valid_PG * jax.lax.stop_gradient(self.loss_sample_mask(
          rewards, valid_PG, advantages=adv_PG,
          progress=rollout.progress).astype(jnp.float32))
    batch = batch.replace(
        mask_BT=seen_BT * in_loss_PG.reshape(-1, 1),
        advantages=adv.reshape((num_prompts * group_size,) + adv.shape[2:]))
    if self.kl_coef > 0:
      if ref_params is None:
        raise ValueError("kl_coef > 0: pass the reference policy's params")
      batch = batch.replace(ref_logp_BT=self.chunked_logprobs(
          ref_params, batch, batch.mask_BT, prompt_group)[0])
    return batch, adv_state, lengths_PG

  def begin_regulariser(self, state, batch, prompt_group):
    """The regulariser's state for this step (SIREN: H0 set once)."""
    reg = self.regulariser
    if reg is None:
      return state.method_state
    nucleus_fn = lambda: self.chunked_logprobs(
        state.params, batch, batch.mask_BT, prompt_group, nucleus=True)[2]
    return reg.begin(state.method_state, nucleus_fn, batch.mask_BT)

  # --- stage 2: minibatches -----------------------------------------------

  def minibatches(self, batch: Batch, key, num_prompts: int) -> Batch:
    """[U, rows per minibatch, ...]: U = epochs × minibatches sets of groups.

    Each epoch shuffles whole prompt groups and splits them into
    `num_minibatches` minibatches.
    """
    if self.ppo_epochs == 1 and self.num_minibatches == 1:
      return jax.tree.map(lambda x: x[None], batch)
    groups = _split(batch, num_prompts)

    def epoch(k):
      perm = jax.random.permutation(k, num_prompts)
      shuffled = jax.tree.map(lambda x: x[perm], groups)
      return _split(_merge(shuffled), self.num_minibatches)

    per_epoch = jax.vmap(epoch)(jax.random.split(key, self.ppo_epochs))
    return _merge(per_epoch)

  # --- stage 3: loss ------------------------------------------------------

  def loss_extras(self, rows, logp_out, method_state):
    """The policy loss's method-specific inputs, from its declaration."""
    extras = dict(rows.extras)
    needs = self.policy_loss.needs
    if needs.entropy == "current":
      extras["entropy"] = jax.lax.stop_gradient(logp_out[1])
    elif needs.entropy == "behaviour":
      extras["entropy"] = (rows.old_entropy_BT if self.recompute_old_logp
                           else jax.lax.stop_gradient(logp_out[1]))
    if self.regulariser is not None:
      extras.update(self.regulariser.extras(method_state, logp_out[2]))
    return extras

  def micro_loss(self, params, rows: Batch, counts, rng, method_state,
                 prompt_group):
    """(loss, metrics) of one micro-batch; sums to the minibatch's."""
    reg = self.regulariser
    mask_BT = rows.mask_BT
    out = self.logprobs(
        params, rows, mask_BT, prompt_group,
        nucleus=self.policy_loss.needs.nucleus_top_p is not None)
    logp_BT, entropy_BT = out[0], out[1]
    old_logp_BT = (rows.old_logp_BT if self.recompute_old_logp
                   else jax.lax.stop_gradient(logp_BT))
    count_kw = {k: counts[k] for k in global_count_kwargs(self.aggregate)}
    agg = lambda x: self.aggregate(x, mask_BT, **count_kw)
    pg_BT, pg_metrics = self.surrogate(
        logp=logp_BT, old_logp=old_logp_BT, advantages=rows.advantages,
        mask=mask_BT, rng=rng, lengths=rows.lengths_B,
        rewards=rows.rewards_B, **self.loss_extras(rows, out, method_state))
    loss = agg(pg_BT)
    metrics = {"pg_loss": loss}
    if reg is not None:
      # Weighted by this micro-batch's share of the minibatch's sequences.
      rows_share = jnp.sum(jnp.any(mask_BT > 0, axis=-1)) / jnp.maximum(
          counts["num_sequences"], 1.0)
      penalty, reg_metrics = reg.penalty(method_state, out[2], mask_BT)
      loss = loss + rows_share * penalty
    # Logged KL and entropy are token means whatever the loss aggregation
    # (a token-sum aggregation would log them x response length), so runs
    # of different methods plot on one scale.
    token_mean = lambda x_BT: jnp.sum(x_BT * mask_BT) / jnp.maximum(
        counts["num_tokens"], 1.0)
    if self.kl_coef > 0:
      kl_BT = self.kl_estimator(logp_BT, rows.ref_logp_BT)
      loss = loss + self.kl_coef * agg(kl_BT)
      metrics["kl"] = token_mean(kl_BT)
    if self.entropy_coef:
      loss = loss - self.entropy_coef * agg(entropy_BT)
    metrics["entropy"] = token_mean(entropy_BT)
    metrics["loss"] = loss
    # Per-micro metric means are weighted by this micro's token share.
    share = jnp.sum(mask_BT) / jnp.maximum(counts["num_tokens"], 1.0)
    metrics.update({k: v * share for k, v in pg_metrics.items()})
    if reg is not None:
      metrics.update({k: rows_share * v for k, v in reg_metrics.items()})
    return loss, metrics

  # --- stage 4: update ----------------------------------------------------

  def update(self, carry: Carry, mb: Batch, method_state, prompt_group):
    """One optimizer update from a minibatch (gradient accumulation)."""
    grad_fn = jax.grad(
        functools.partial(self.micro_loss, prompt_group=prompt_group),
        has_aux=True)
    rng, mb_rng = jax.random.split(carry.rng)
    counts = {
        "num_tokens": jnp.sum(mb.mask_BT),
        "num_sequences": jnp.sum(jnp.any(mb.mask_BT > 0, axis=-1)),
    }
    micro = _split(mb, self.num_microbatches)

    def accumulate(acc, inputs):
      rows, i = inputs
      out = grad_fn(carry.params, rows, counts, jax.random.fold_in(mb_rng, i),
                    method_state)
      return jax.tree.map(jnp.add, acc, out), None

    zeros = jax.eval_shape(
        grad_fn, carry.params, jax.tree.map(lambda x: x[0], micro), counts,
        mb_rng, method_state)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), zeros)
    (grads, metrics), _ = jax.lax.scan(
        accumulate, zeros, (micro, jnp.arange(self.num_microbatches)))
    nonempty = counts["num_tokens"] > 0
    params, opt_state, finite, grad_norm = guarded_update(
        self.optimizer, grads, metrics["loss"], carry.params,
        carry.opt_state, apply=nonempty)
    carry = Carry(
        params=params, opt_state=opt_state,
        num_skipped=carry.num_skipped + (~finite).astype(jnp.int32),
        consecutive_skipped=jnp.where(finite, 0,
                                      carry.consecutive_skipped + 1),
        rng=rng)
    metrics = dict(metrics, grad_norm=grad_norm,
                   empty_updates=(~nonempty).astype(jnp.float32))
    return carry, metrics

  # --- the step -----------------------------------------------------------

  def __call__(self, state: TrainState, rollout: Rollout, ref_params=None):
    num_prompts, group_size = rollout.rewards_PG.shape[:2]
    self.check_prompts(num_prompts)
    # Rows sharing one prompt, run once per forward pass (1 = no sharing).
    prompt_group = group_size if self.share_prompts else 1
    rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    perm_rng, update_rng = jax.random.split(rng)
    batch, adv_state, lengths_PG = self.prepare(
        state, rollout, ref_params, prompt_group)
    method_state = self.begin_regulariser(state, batch, prompt_group)
    carry = Carry(params=state.params, opt_state=state.opt_state,
                  num_skipped=state.num_skipped,
                  consecutive_skipped=state.consecutive_skipped,
                  rng=update_rng)
    carry, metrics_U = jax.lax.scan(
        lambda c, mb: self.update(c, mb, method_state, prompt_group), carry,
        self.minibatches(batch, perm_rng, num_prompts))
    metrics = {k: jnp.mean(v) for k, v in metrics_U.items()}
    metrics["empty_updates"] = jnp.sum(metrics_U["empty_updates"])
    metrics.update(self.summary(rollout, batch, lengths_PG, carry))
    if self.regulariser is not None:
      metrics.update(method_state)
    new_state = state.replace(
        step=state.step + 1, params=carry.params, opt_state=carry.opt_state,
        adv_state=adv_state, num_skipped=carry.num_skipped,
        consecutive_skipped=carry.consecutive_skipped,
        method_state=method_state)
    return new_state, metrics

  def summary(self, rollout, batch, lengths_PG, carry):
    """Per-step metrics of the rollout batch (over its valid samples)."""
    adv = batch.advantages
    adv_seq = adv if adv.ndim == 1 else jnp.sum(
        adv * batch.mask_BT, -1) / jnp.maximum(jnp.sum(batch.mask_BT, -1), 1.0)
    valid_B = rollout.valid_PG.astype(jnp.float32).reshape(-1)
    return dict(
        advantage_mean=_masked_mean(adv_seq, valid_B),
        advantage_abs_mean=_masked_mean(jnp.abs(adv_seq), valid_B),
        reward_mean=_masked_mean(batch.rewards_B, valid_B),
        response_length_mean=_masked_mean(lengths_PG.reshape(-1), valid_B),
        num_skipped=carry.num_skipped,
        consecutive_skipped=carry.consecutive_skipped,
    )


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
    num_prompts: Optional[int] = None,
    logits_chunk_size: Optional[int] = None,
) -> StepSpec:
  """Builds `train_step(state, rollout, ref_params) -> (state, metrics)`.

  Loss of a minibatch (what is minimised):
    agg(ℓ_pg) + β·agg(KL(π_θ‖π_ref)) − c_H·agg(H(π_θ)) + regulariser,
  with agg the configured aggregation over the minibatch's loss tokens.

  Args:
    graphdef: the policy graph (`nnx.split(model)[0]`); static.
    optimizer: optax transformation applied to the accumulated gradients.
    adv_tx: advantage transform (`mathrl.advantages.*`); its `needs` are
      read (behaviour entropy, loss sample mask).
    policy_loss: a `mathrl.losses` policy loss (already configured); its
      `needs` are read (current or behaviour entropy, regulariser).
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
      updates per batch and for the behaviour entropy). False: the
      on-policy shortcut, old = stop_gradient(current), ratio exactly 1.
    loss_sample_mask: optional extra `(rewards, mask_PG) -> [P, G]` 0/1
      mask of the samples that enter the loss, multiplied with the one the
      advantage transform declares (`adv_tx.needs.loss_sample_mask`, which
      is also given `advantages=` [P, G] and `progress=`).
    share_prompts: run each group's prompt once in every forward pass
      (`logprobs.completion_logprobs(group_size=G)`; same log-probs and
      gradients, about half the FLOPs); a group's G rows share a prompt.
    temperature: the sampling temperature τ; every log-prob and entropy
      is of softmax(logits / τ), the distribution that was sampled.
    num_prompts: P of every rollout, when known: the minibatch and
      micro-batch counts are checked now instead of at the first call.
    logits_chunk_size: compute log-probs over blocks of this many positions
      without holding the [B, T, V] logits (`logprobs.completion_logprobs`'s
      chunk_size); None: all at once.

  Returns:
    The (un-jitted) train step, a callable `StepSpec`.
  """
  spec = StepSpec(
      graphdef=graphdef, optimizer=optimizer, adv_tx=adv_tx,
      policy_loss=policy_loss, aggregate=aggregate,
      kl_estimator=kl_estimator, kl_coef=float(kl_coef),
      entropy_coef=float(entropy_coef), ppo_epochs=ppo_epochs,
      num_minibatches=num_minibatches, num_microbatches=num_microbatches,
      recompute_old_logp=recompute_old_logp,
      loss_sample_mask=_sample_mask(adv_tx, loss_sample_mask),
      share_prompts=share_prompts,
      temperature=temperature, logits_chunk_size=logits_chunk_size)
  if num_prompts is not None:
    spec.check_prompts(num_prompts)
  _check_spec(spec)
  return spec


def _sample_mask(adv_tx, loss_sample_mask):
  """The advantage transform's declared loss sample mask times the user's."""
  needs = adv_tx.needs
  if loss_sample_mask is not None:
    needs = needs.merge(Needs(loss_sample_mask=lambda rewards, mask, **_: (
        loss_sample_mask(rewards, mask))))
  return needs.loss_sample_mask


def _check_spec(spec: StepSpec) -> None:
  """Errors for settings no train step can run with."""
  if not spec.recompute_old_logp:
    if spec.ppo_epochs > 1 or spec.num_minibatches > 1:
      raise ValueError(
          "recompute_old_logp=False (rl.recompute_old_logp) is only valid"
          f" with one update per batch (ppo_epochs={spec.ppo_epochs},"
          f" num_minibatches={spec.num_minibatches}): later updates need"
          " the behaviour policy's log-probs")
    if spec.adv_tx.needs.entropy:
      raise ValueError(
          "the advantage transform reads the behaviour policy's entropy:"
          " set recompute_old_logp=True (rl.recompute_old_logp)")
  if spec.kl_coef > 0 and spec.kl_estimator is None:
    raise ValueError("kl_coef > 0 needs a kl_estimator (e.g. losses.kl_k3)")
  if not isinstance(getattr(spec.policy_loss, "needs", None), Needs):
    raise ValueError(
        "policy_loss must be a mathrl.losses policy loss (with `needs`);"
        f" got {spec.policy_loss!r}")
