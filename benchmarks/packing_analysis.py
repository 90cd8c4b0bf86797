"""What sequence packing could save in the GRPO update, from real lengths.

Reads the per-sample prompt and completion lengths written by
`benchmarks/completion_lengths.py` (SmolLM2-135M-Instruct on GSM8K) and
counts, for one scoring pass of the policy over that batch, the token
positions, the padding among them and the forward FLOPs
(`mathrl.roofline.forward_flops`: dense layers per position, attention
per (query, key slot) pair, as the model attends to every slot, masked;
the output head per scored position) of each layout:

  shared        every group's prompt run once into a cache, the B
                completions padded to T against it (rl.share_prompts);
  unshared      every row prompt + completion padded to L + T - 1;
  packed_unshared xK  whole sequences packed first-fit-decreasing into
                rows K·(L + T - 1) wide, attention masked within a
                segment (so every query still pays for the row's slots);
  packed_shared_group  completions of one group packed into rows T - 1
                wide (every row attends to one prompt, no extra slots);
  packed_shared xK  completions of any groups packed into rows
                K·(T - 1) wide, each row attending to the prompts of
                every group it holds;
  no_padding    the shared layout's real tokens only, each attending to
                L + T slots (a bound no layout reaches).

The head is charged only on real completion positions in every packed
layout (the most favourable case for packing).

  python benchmarks/packing_analysis.py \\
      benchmarks/lengths_smollm2_gsm8k.json --model smollm2-135m-instruct
"""

import argparse
import json

import numpy as np

from mathrl import roofline
from mathrl.models import checkpoints
from mathrl.models import gguf_import
from mathrl.models import presets


def first_fit_decreasing(sizes, capacity):
  """Bins (lists of item indices) of a first-fit-decreasing packing."""
  bins, loads = [], []
  for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
    for b, load in enumerate(loads):
      if load + sizes[i] <= capacity:
        bins[b].append(i)
        loads[b] += sizes[i]
        break
    else:
      bins.append([i])
      loads.append(sizes[i])
  return bins


def layouts(p_B, c_B, group_size, cap, width=None):
  """{layout: (positions, real positions, logit positions, pairs)}.

  Args:
    p_B: prompt lengths, rows p·G .. p·G + G − 1 share a prompt.
    c_B: completion lengths (stop token included), at most `cap`.
    group_size: G.
    cap: T, the completion width of the unpacked layouts.
    width: the padded prompt length L (None: the longest prompt).
  """
  b = len(c_B)
  g = group_size
  num_p = b // g
  l = width or int(p_B.max())
  t = cap
  s = l + t - 1
  prompts = p_B[::g]
  real_c = int((c_B - 1).sum())
  out = {}
  m = l + t - 1
  pos = num_p * l + b * (t - 1)
  out["shared"] = (pos, int(prompts.sum()) + real_c, num_p + b * (t - 1),
                   pos * m)
  out["unshared"] = (b * s, int((p_B + c_B - 1).sum()), b * t, b * s * s)
  seq = list(p_B + c_B - 1)
  for k in (1, 2, 4):
    rows = len(first_fit_decreasing(seq, k * s))
    out[f"packed_unshared x{k}"] = (rows * k * s, int(sum(seq)),
                                    int(c_B.sum()), rows * (k * s) ** 2)
  rows = sum(len(first_fit_decreasing(list(c_B[q * g:(q + 1) * g] - 1),
                                      t - 1)) for q in range(num_p))
  pos = num_p * l + rows * (t - 1)
  out["packed_shared_group"] = (pos, int(prompts.sum()) + real_c,
                                num_p + real_c, pos * m)
  group_B = np.arange(b) // g
  for k in (2, 4):
    bins = first_fit_decreasing(list(c_B - 1), k * (t - 1))
    pairs = num_p * l * m
    for rows_b in bins:
      held = len(set(group_B[rows_b]))
      pairs += k * (t - 1) * (held * l + k * (t - 1))
    out[f"packed_shared x{k}"] = (num_p * l + len(bins) * k * (t - 1),
                                  int(prompts.sum()) + real_c,
                                  num_p + real_c, pairs)
  real = int(prompts.sum()) + real_c
  out["no_padding"] = (real, real, num_p + real_c, real * (l + t))
  return out


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("lengths", help="completion_lengths.py's JSON")
  p.add_argument("--model", default="smollm2-135m-instruct",
                 help="a GGUF checkpoint name/path or a preset name")
  p.add_argument("--prompt_bucket", type=int, default=0,
                 help="padded prompt length L (0: the longest prompt)")
  a = p.parse_args()
  with open(a.lengths) as f:
    d = json.load(f)
  if a.model in presets.PRESETS:
    cfg = presets.get(a.model)
  else:
    import gguf  # pylint: disable=g-import-not-at-top
    cfg = gguf_import.read_config(
        gguf.GGUFReader(checkpoints.checkpoint_path(a.model)))
  p_B = np.asarray(d["prompt_lengths"])
  c_B = np.asarray(d["completion_lengths"])
  cap = d["max_new_tokens"]
  print(f"{len(c_B)} samples, G={d['G']}, T={cap}: completion mean"
        f" {c_B.mean():.1f}, median {np.median(c_B):.0f}, min {c_B.min()},"
        f" at the cap {(c_B == cap).sum()}; prompts {p_B.min()}-{p_B.max()}"
        f" tokens; completion padding {1 - c_B.sum() / c_B.size / cap:.3f}")
  out = layouts(p_B, c_B, d["G"], cap, a.prompt_bucket or None)
  base = None
  print("| layout | positions | padding | forward GFLOP | vs shared |")
  print("|---|---|---|---|---|")
  for name, (pos, real, logits, pairs) in out.items():
    flops = roofline.forward_flops(cfg, tokens=pos, logit_positions=logits,
                                   attention_pairs=pairs)
    base = base or flops
    print(f"| {name} | {pos} | {1 - real / pos:.3f} | {flops / 1e9:.0f}"
          f" | {flops / base:.3f} |")


if __name__ == "__main__":
  main()
