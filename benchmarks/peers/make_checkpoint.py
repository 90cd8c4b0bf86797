"""Writes the tiny random Qwen2 checkpoint the GRPO-step comparison runs on.

A 3.3M-parameter Qwen2 (hidden 256, 4 layers, 4 query and 2 key/value
heads, MLP 768, tied embeddings) and a 512-token byte-level BPE tokenizer
trained on the benchmark's own arithmetic sentences, saved in the Hugging
Face layout so that mathrl (`models.from_pretrained`), TRL (PyTorch) and
Tunix (its Qwen2 safetensors loader) all read the same weights and the
same token ids. Needs torch, transformers and tokenizers (all in mathrl's
environment and in the peers' virtual environments).

  python benchmarks/peers/make_checkpoint.py /tmp/tinyqwen
"""

import argparse
import os
import random

import tokenizers
import torch
import transformers
from tokenizers import decoders
from tokenizers import models as tok_models
from tokenizers import pre_tokenizers
from tokenizers import trainers

SPECIAL = ("<pad>", "<eos>", "<unk>")


def corpus(num: int, seed: int):
  """Arithmetic sentences like the benchmark's prompts and answers."""
  rnd = random.Random(seed)
  for _ in range(num):
    x, y = rnd.randint(0, 999), rnd.randint(0, 999)
    yield f"Question: What is {x} + {y}? Answer: {x + y}"
    yield (f"Tom has {x} apples and buys {y} more. How many apples?"
           f" The answer is \\boxed{{{x + y}}}.")


def train_tokenizer(vocab: int, seed: int):
  """A byte-level BPE of `vocab` ids (3 special) wrapped for transformers."""
  tok = tokenizers.Tokenizer(tok_models.BPE(unk_token="<unk>"))
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
      vocab_size=vocab, special_tokens=list(SPECIAL),
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
  tok.train_from_iterator(corpus(20000, seed), trainer)
  fast = transformers.PreTrainedTokenizerFast(
      tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>",
      unk_token="<unk>")
  # A plain-concatenation chat template: the benchmarks send raw text.
  fast.chat_template = (
      "{% for m in messages %}{{ m['content'] }}{% endfor %}")
  return fast


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("out")
  p.add_argument("--hidden", type=int, default=256)
  p.add_argument("--layers", type=int, default=4)
  p.add_argument("--heads", type=int, default=4)
  p.add_argument("--kv_heads", type=int, default=2)
  p.add_argument("--vocab", type=int, default=512)
  p.add_argument("--seed", type=int, default=0)
  a = p.parse_args()
  torch.manual_seed(a.seed)
  tok = train_tokenizer(a.vocab, a.seed)
  config = transformers.Qwen2Config(
      vocab_size=len(tok), hidden_size=a.hidden,
      intermediate_size=3 * a.hidden, num_hidden_layers=a.layers,
      num_attention_heads=a.heads, num_key_value_heads=a.kv_heads,
      max_position_embeddings=1024, tie_word_embeddings=True,
      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
      bos_token_id=tok.eos_token_id)
  model = transformers.Qwen2ForCausalLM(config)
  os.makedirs(a.out, exist_ok=True)
  model.save_pretrained(a.out)
  tok.save_pretrained(a.out)
  n = sum(t.numel() for t in model.parameters())
  print(f"wrote {a.out}: {n:,} parameters, vocabulary {len(tok)}")


if __name__ == "__main__":
  main()
