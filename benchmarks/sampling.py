"""Rollout throughput: mathrl's sampler vs transformers' generate (CPU).

Same checkpoint, same left-padded prompts, `rows` rows × `new` new tokens,
greedy and sampled (temperature 1), EOS disabled so every row generates
exactly `new` tokens. Warm-up runs (compilation, PyTorch first-call set-up)
are excluded; each timing is the median of `repeats` runs, taken in the
same process and alternating, so the ratio is measured under the same
machine load. Threads: JAX uses all cores; torch is set to the same count.

  python benchmarks/peers/make_checkpoint.py /tmp/tinyqwen
  python benchmarks/sampling.py --model /tmp/tinyqwen --rows 64 --new 64
  python benchmarks/sampling.py --model /tmp/tinyqwen --ragged --new 128

`--ragged` instead samples with stop ids, so rows finish at different
steps, and times mathrl with and without compaction of finished rows
against transformers in the same run.

`--group G` samples G completions of each of rows/G prompts of
`--prompt_tokens` tokens (as an RL step does) and times mathrl with one
prefill per prompt (`generate(num_samples=G)`), mathrl prefilling all rows
(the prompts repeated G times), and transformers
(`num_return_sequences=G`, which repeats the prompts before its prefill):

  python benchmarks/sampling.py --model /tmp/smollm2_hf --rows 32 --group 8 \
      --prompt_tokens 128 --new 128

With a GPU, `--gpu_roofline` instead times a Qwen2.5-0.5B-shaped random
model in bf16 with 256 rows and reports the fraction of the HBM-bandwidth
roofline reached: each decode step must read every weight and the KV cache
once, so tokens/s ≤ rows · bandwidth / (weight bytes + cache bytes).
"""

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mathrl import models
from mathrl import sampling


def _prompts(tok, rows):
  rng = np.random.default_rng(0)
  texts = [f"Question: What is {a} + {b}? Answer:"
           for a, b in rng.integers(0, 999, size=(rows, 2))]
  ids = [tok(t)["input_ids"] for t in texts]
  width = max(len(i) for i in ids)
  tokens = np.full((rows, width), tok.pad_token_id or 0, np.int32)
  mask = np.zeros((rows, width), np.int32)
  for r, i in enumerate(ids):
    tokens[r, width - len(i):] = i
    mask[r, width - len(i):] = 1
  return tokens, mask


def _median_time(fn, repeats):
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def _load_both(args, torch_threads: int):
  """The tokenizer, prompts and the checkpoint as a mathrl model and a torch model."""
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(torch_threads)
  tok = transformers.AutoTokenizer.from_pretrained(args.model)
  tokens, mask = _prompts(tok, args.rows)
  model = models.from_pretrained(args.model, dtype=jnp.float32)
  hf = transformers.AutoModelForCausalLM.from_pretrained(
      args.model, dtype=torch.float32)
  hf.eval()
  return tok, tokens, mask, model, hf


def cpu_comparison(args):
  import torch  # pylint: disable=g-import-not-at-top

  tok, tokens, mask, model, hf = _load_both(args, os.cpu_count())
  no_eos = (model.config.vocab_size + 1,)  # never sampled: full length

  results = {}
  for name, method, hf_kw in (
      ("greedy", sampling.Greedy(), dict(do_sample=False)),
      ("sampled", sampling.Temperature(1.0),
       dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0)),
  ):
    def run_mathrl():
      out = sampling.generate(model, tokens, mask, rng=jax.random.key(0),
                              max_new_tokens=args.new, eos_ids=no_eos,
                              method=method)
      jax.block_until_ready(out.tokens_BT)

    def run_hf():
      with torch.no_grad():
        hf.generate(torch.from_numpy(tokens).long(),
                    attention_mask=torch.from_numpy(mask).long(),
                    max_new_tokens=args.new, min_new_tokens=args.new,
                    pad_token_id=tok.pad_token_id, **hf_kw)

    run_mathrl()  # compile
    run_hf()      # first-call set-up
    t_m, t_h = [], []
    for _ in range(args.repeats):  # alternate: same load for both
      t_m.append(_median_time(run_mathrl, 1))
      t_h.append(_median_time(run_hf, 1))
    n = args.rows * args.new
    tm, th = statistics.median(t_m), statistics.median(t_h)
    results[name] = (n / tm, n / th)
    print(f"{name:8s} mathrl {n / tm:9.0f} tok/s   transformers"
          f" {n / th:9.0f} tok/s   ratio {th / tm:5.2f}x", flush=True)
  floor = matmul_floor(model, args.rows, args.new, args.repeats)
  print(f"matmul floor: {n / floor:9.0f} tok/s (the decode steps' matmuls"
        f" alone); at most {n / floor / min(r[1] for r in results.values()):.2f}x"
        " transformers on this machine", flush=True)
  return results


def ragged_comparison(args):
  """Rows that stop at different steps: compaction on and off vs transformers.

  Sampled at temperature 1 with a set of stop ids covering `stop_fraction`
  of the vocabulary: the random checkpoint's next-token distribution is
  nearly uniform, so each step ends a row with probability ≈ that fraction
  and lengths spread from 1 to `new` tokens, as completions do in RL.
  Throughput counts the tokens each system actually generated (up to and
  including the stop token).
  """
  import torch  # pylint: disable=g-import-not-at-top

  tok, tokens, mask, model, hf = _load_both(
      args, args.torch_threads or os.cpu_count())
  v = model.config.vocab_size
  stops = tuple(range(3, v, round(1 / args.stop_fraction)))
  counts = {}

  def run_mathrl(compact):
    out = sampling.generate(model, tokens, mask, rng=jax.random.key(0),
                            max_new_tokens=args.new, eos_ids=stops,
                            method=sampling.Temperature(1.0), compact=compact)
    counts[f"mathrl compact={compact}"] = int(out.mask_BT.sum())

  def run_hf():
    with torch.no_grad():
      out = hf.generate(torch.from_numpy(tokens).long(),
                        attention_mask=torch.from_numpy(mask).long(),
                        max_new_tokens=args.new, do_sample=True,
                        temperature=1.0, top_k=0, top_p=1.0,
                        eos_token_id=list(stops),
                        pad_token_id=tok.pad_token_id)
    stop_BT = np.isin(out[:, tokens.shape[1]:].numpy(), stops)
    # Tokens up to and including each row's first stop id.
    counts["transformers"] = int(np.where(
        stop_BT.any(1), stop_BT.argmax(1) + 1, stop_BT.shape[1]).sum())

  systems = {"mathrl compact=True": lambda: run_mathrl(True),
             "mathrl compact=False": lambda: run_mathrl(False),
             "transformers": run_hf}
  for fn in systems.values():  # compile every bucket / first-call set-up
    fn()
  times = {name: [] for name in systems}
  for _ in range(args.repeats):  # alternate: same load for all three
    for name, fn in systems.items():
      times[name].append(_median_time(fn, 1))
  hf_rate = counts["transformers"] / statistics.median(times["transformers"])
  for name in systems:
    t = statistics.median(times[name])
    rate = counts[name] / t
    print(f"ragged   {name:22s} {counts[name]:6d} tokens"
          f" ({counts[name] / args.rows:5.1f}/row) {t * 1e3:7.1f} ms"
          f" {rate:9.0f} tok/s   vs transformers {rate / hf_rate:5.2f}x",
          flush=True)


def _long_prompts(tok, num_prompts, length):
  """`num_prompts` distinct prompts of exactly `length` tokens, [P, L]."""
  rng = np.random.default_rng(1)
  rows = []
  for _ in range(num_prompts):
    ids = []
    while len(ids) < length:
      a, b = rng.integers(0, 999, size=2)
      ids += tok(f"Question: What is {a} + {b}? Answer: {a + b}. ")[
          "input_ids"]
    rows.append(ids[-length:])
  tokens = np.asarray(rows, np.int32)
  return tokens, np.ones_like(tokens)


def grouped_comparison(args):
  """G samples per prompt: one prefill per prompt vs one per row vs HF."""
  import torch  # pylint: disable=g-import-not-at-top

  tok, _, _, model, hf = _load_both(args, args.torch_threads or os.cpu_count())
  g = args.group
  tokens_PL, mask_PL = _long_prompts(tok, args.rows // g, args.prompt_tokens)
  no_eos = (model.config.vocab_size + 1,)
  kw = dict(rng=jax.random.key(0), max_new_tokens=args.new, eos_ids=no_eos,
            method=sampling.Temperature(1.0))

  def run_mathrl(shared):
    if shared:
      out = sampling.generate(model, tokens_PL, mask_PL, num_samples=g, **kw)
    else:
      out = sampling.generate(model, np.repeat(tokens_PL, g, 0),
                              np.repeat(mask_PL, g, 0), **kw)
    jax.block_until_ready(out.tokens_BT)

  def run_hf():
    with torch.no_grad():
      hf.generate(torch.from_numpy(tokens_PL).long(),
                  attention_mask=torch.from_numpy(mask_PL).long(),
                  num_return_sequences=g, do_sample=True, temperature=1.0,
                  top_k=0, top_p=1.0, max_new_tokens=args.new,
                  min_new_tokens=args.new, pad_token_id=tok.pad_token_id)

  systems = {"mathrl, one prefill per prompt": lambda: run_mathrl(True),
             "mathrl, one prefill per row": lambda: run_mathrl(False),
             "transformers": run_hf}
  for fn in systems.values():  # compile / first-call set-up
    fn()
  times = {name: [] for name in systems}
  for _ in range(args.repeats):  # alternate: same load for all three
    for name, fn in systems.items():
      times[name].append(_median_time(fn, 1))
  n = args.rows * args.new
  hf_s = statistics.median(times["transformers"])
  for name in systems:
    t = statistics.median(times[name])
    print(f"P {args.rows // g} x G {g}, L {args.prompt_tokens}, T {args.new}:"
          f" {name:31s} {t:7.2f} s {n / t:7.0f} tok/s   vs transformers"
          f" {hf_s / t:5.2f}x", flush=True)


def matmul_floor(model, rows, new, repeats):
  """Seconds for `new` decode steps' worth of the model's matmuls alone.

  Each step: per layer x·[Wq Wk Wv], attn·Wo, x·[Wgate Wup], h·Wdown on
  [rows, D] activations, then the LM head, in one jitted while loop (no
  attention, norms, cache or sampling). No sampler can decode faster on
  this machine without fewer FLOPs or faster matmuls, so it bounds the
  ratio to transformers from above.
  """
  cfg = model.config
  d, f, v = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
  qkv = (cfg.num_heads + 2 * cfg.num_kv_heads) * cfg.head_dim
  o = cfg.num_heads * cfg.head_dim
  keys = iter(jax.random.split(jax.random.key(0), 4 * cfg.num_layers + 1))
  normal = lambda shape: 0.02 * jax.random.normal(next(keys), shape)  # noqa: E731
  weights = [(normal((d, qkv)), normal((o, d)), normal((d, 2 * f)),
              normal((f, d))) for _ in range(cfg.num_layers)]
  head = normal((d, v))

  @jax.jit
  def steps(x_BD):
    def body(i, x_BD):
      for w_qkv, w_o, w_gu, w_down in weights:
        x_BD = x_BD + (x_BD @ w_qkv)[:, :o] @ w_o
        gu = x_BD @ w_gu
        x_BD = x_BD + (gu[:, :f] * gu[:, f:]) @ w_down
      return x_BD + 1e-3 * (x_BD @ head)[:, :1]
    return jax.lax.fori_loop(0, new, body, x_BD)

  x = jnp.ones((rows, d))
  jax.block_until_ready(steps(x))
  return _median_time(lambda: jax.block_until_ready(steps(x)), repeats)


def gpu_roofline(args):
  cfg = models.presets.QWEN2_5_0_5B
  model = models.Transformer(cfg, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
  rows, prompt_len = 256, 64
  tokens = np.random.default_rng(0).integers(
      0, cfg.vocab_size, (rows, prompt_len)).astype(np.int32)
  mask = np.ones_like(tokens)
  no_eos = (cfg.vocab_size + 1,)

  def run():
    out = sampling.generate(model, tokens, mask, rng=jax.random.key(0),
                            max_new_tokens=args.new, eos_ids=no_eos,
                            method=sampling.Temperature(1.0))
    jax.block_until_ready(out.tokens_BT)

  run()
  seconds = _median_time(run, args.repeats)
  tok_s = rows * args.new / seconds
  weight_bytes = sum(x.size * x.dtype.itemsize
                     for x in jax.tree.leaves(nnx.state(model)))
  # Mean KV cache read per step over the run (it grows from L to L + T).
  mean_len = prompt_len + args.new / 2
  cache_bytes = sampling.kv_cache_bytes(cfg, rows, int(mean_len),
                                        jnp.bfloat16)
  bandwidth = args.hbm_gbps * 1e9
  roofline = rows * bandwidth / (weight_bytes + cache_bytes)
  print(f"{jax.devices()[0].device_kind}: {tok_s:.0f} tok/s, roofline"
        f" {roofline:.0f} tok/s at {args.hbm_gbps} GB/s:"
        f" {tok_s / roofline:.1%} of roofline")


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--model", help="HF folder (CPU comparison)")
  p.add_argument("--rows", type=int, default=64)
  p.add_argument("--new", type=int, default=64)
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--ragged", action="store_true",
                 help="rows stop at different steps (compaction on/off)")
  p.add_argument("--stop_fraction", type=float, default=1 / 24,
                 help="--ragged: share of the vocabulary that ends a row")
  p.add_argument("--torch_threads", type=int, default=0,
                 help="--ragged: torch threads (0: all cores); 1 on an"
                 " oversubscribed machine, where OpenMP spin-waits")
  p.add_argument("--group", type=int, default=0,
                 help="G samples per prompt (rows/G prompts): shared"
                 " prefill vs one prefill per row vs transformers")
  p.add_argument("--prompt_tokens", type=int, default=128,
                 help="--group: tokens per prompt")
  p.add_argument("--gpu_roofline", action="store_true")
  p.add_argument("--hbm_gbps", type=float, default=3350.0,
                 help="HBM bandwidth of the GPU (H100 SXM: 3350)")
  args = p.parse_args()
  if args.gpu_roofline:
    gpu_roofline(args)
  else:
    if not args.model:
      p.error("--model is required for the CPU comparison")
    if args.group:
      grouped_comparison(args)
    elif args.ragged:
      ragged_comparison(args)
    else:
      cpu_comparison(args)


if __name__ == "__main__":
  main()
