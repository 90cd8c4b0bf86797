"""Ahead-of-time TPU compilation (mathrl.aot), the chip table, TPU env safety.

The compile tests need libtpu (the `tpu` extra, part of `test`); no TPU is
attached: JAX compiles for an abstract v5e:2x2 slice on the CPU.
"""

import dataclasses
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

from mathrl import aot
from mathrl import hlo
from mathrl import roofline
from mathrl import tpu_env
from mathrl.models import presets

ROOT = pathlib.Path(__file__).resolve().parents[1]
pytestmark = [
    # The test suite's persistent XLA cache stores the TPU executables but
    # cannot load them back without a TPU client; JAX then recompiles and
    # warns.
    pytest.mark.filterwarnings(
        "ignore:Error reading persistent compilation cache entry"),
    # One worker runs the whole module, so `tiny_report` (the tiny run's
    # programs compiled for v5e:2x2, ~20 s) is compiled once (`--dist
    # loadgroup`, pyproject.toml).
    pytest.mark.xdist_group("aot"),
]
needs_libtpu = pytest.mark.skipif(
    importlib.util.find_spec("libtpu") is None,
    reason="libtpu is not installed (pip install -e '.[tpu]')")


def _tiny_config():
  sys.path.insert(0, str(ROOT / "configs"))
  try:
    import tiny  # pylint: disable=g-import-not-at-top
  finally:
    sys.path.pop(0)
  c = tiny.get_config()
  # P = 8 prompts (B = 16 rows): every batch dimension divides the 4
  # chips, so each chip does a quarter of the work and the per-chip FLOPs
  # are the global count / 4.
  c.rl.prompts_per_step = 8
  # The library's default forward, each group's prompt run once (the tiny
  # config turns it off to compile faster on CPU); the FLOP counts below
  # are this one's.
  c.rl.share_prompts = True
  return c


@pytest.fixture(scope="module")
def tiny_report():
  if importlib.util.find_spec("libtpu") is None:
    pytest.skip("libtpu is not installed (pip install -e '.[tpu]')")
  return aot.compile_run(_tiny_config(), "v5e:2x2")


def test_import_mathrl_keeps_cpu_and_starts_no_tpu_runtime():
  if tpu_env.tpu_attached():
    pytest.skip("a TPU is attached: the env is left to JAX")
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("TPU_", "JAX_PLATFORMS", "ALLOW_MULTIPLE"))}
  code = (
      "import mathrl, os, jax\n"
      "print([d.platform for d in jax.devices()])\n"
      "print('libtpu' in open('/proc/self/maps').read())\n"
      "print(os.environ['TPU_SKIP_MDS_QUERY'], os.environ['JAX_PLATFORMS'])\n"
  )
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120,
                       check=True)
  lines = out.stdout.split("\n")
  assert set(eval(lines[0])) == {"cpu"}  # pylint: disable=eval-used
  assert lines[1] == "False"  # libtpu.so was never loaded
  assert lines[2] == "1 cpu"
  assert "TPU" not in out.stderr


def test_configure_keeps_values_already_set(monkeypatch):
  if tpu_env.tpu_attached():
    pytest.skip("a TPU is attached: configure() changes nothing")
  monkeypatch.setenv("TPU_ACCELERATOR_TYPE", "v6e-8")
  monkeypatch.delenv("TPU_WORKER_ID", raising=False)
  changed = tpu_env.configure()
  assert os.environ["TPU_ACCELERATOR_TYPE"] == "v6e-8"
  assert changed.get("TPU_WORKER_ID") == "0"
  assert "TPU_ACCELERATOR_TYPE" not in changed


def test_param_counts_match_the_published_checkpoints():
  # Parameter counts of the Hugging Face checkpoints (safetensors totals):
  # Qwen2.5-0.5B 494,032,768; Qwen2.5-1.5B 1,543,714,304; Qwen2.5-7B
  # 7,615,616,512; Llama-3.1-8B 8,030,261,248.
  # E.g. 0.5B: embed 151936·896 = 136,134,656 (tied head); per layer
  # 896·64·(2·14 + 2·2) + 3·896·4864 = 1,835,008 + 13,074,432 matmul
  # weights, 2·896 norms, 64·(14 + 4) = 1,152 biases → 14,912,384; ×24 =
  # 357,897,216; + final norm 896 → 494,032,768.
  assert roofline.param_count(presets.QWEN2_5_0_5B) == 494_032_768
  assert roofline.param_count(presets.QWEN2_5_1_5B) == 1_543_714_304
  assert roofline.param_count(presets.QWEN2_5_7B) == 7_615_616_512
  assert roofline.param_count(presets.LLAMA_3_1_8B) == 8_030_261_248


def test_train_step_flops_golden():
  # Tiny shapes: D=64, F=128, 1 layer, N=2, K=1, H=32, V=384.
  # Matmul weights per layer: 64·32·(2·2 + 2·1) + 3·64·128 = 36,864.
  # P=2, G=2 (B=4), L=10, T=3, shared prompts: tokens 2·10 + 4·2 = 28,
  # logit positions 2 + 4·2 = 10, pairs 28·(10 + 3 − 1) = 336.
  # Forward: 2·36,864·28 + 2·64·384·10 + 4·1·2·32·336 = 2,064,384 +
  # 491,520 + 86,016 = 2,641,920; train step (1 epoch) = 3× = 7,925,760.
  cfg = dataclasses.replace(
      presets.TINY, vocab_size=384, hidden_size=64, intermediate_size=128,
      num_layers=1, num_heads=2, num_kv_heads=1, head_dim=32)
  flops = roofline.train_step_flops(
      cfg, num_prompts=2, group_size=2, prompt_len=10, completion_len=3,
      share_prompts=True)
  assert flops == 7_925_760
  # Rematerialised layers: one more forward, 4 × 2,641,920 = 10,567,680.
  assert roofline.train_step_flops(
      cfg, num_prompts=2, group_size=2, prompt_len=10, completion_len=3,
      share_prompts=True, remat=True) == 10_567_680


def test_parse_topology_and_its_errors():
  chip, dims = roofline.parse_topology("v5p:2x2x1")
  assert (chip.name, dims) == ("v5p", (2, 2, 1))
  assert roofline.num_chips("v5e:4x4") == 16
  with pytest.raises(ValueError, match="CHIP:AxB"):
    roofline.parse_topology("v9x:2x2")


def test_loop_collectives_parser():
  text = "\n".join([
      "HloModule m",
      "",
      "%body.1 (p: (s32[], bf16[8,896])) -> (s32[], bf16[8,896]) {",
      "  %ag = bf16[896,4864]{1,0} all-gather(bf16[224,4864]{1,0} %w),"
      " dimensions={0}",
      "  %f = f32[8]{0} fusion(%x), kind=kLoop, calls=%fused.2",
      "}",
      "",
      "%fused.2 (a: f32[8]) -> f32[8] {",
      "  %ar = f32[8]{0} all-reduce(f32[8]{0} %a), to_apply=%add",
      "}",
      "",
      "ENTRY %main (a: bf16[8,896]) -> bf16[8,896] {",
      "  %top = f32[4]{0} all-reduce(f32[4]{0} %z), to_apply=%add",
      "  %w = (s32[], bf16[8,896]) while(%t), condition=%c, body=%body.1",
      "  %k = f32[2]{0} conditional(%i, %z), branch_computations={%b0, %b1}",
      "}",
      "",
      "%b1 (a: f32[2]) -> f32[2] {",
      "  %cp = f32[2]{0} collective-permute(f32[2]{0} %a), pairs={{0,1}}",
      "}",
  ])
  found = hlo.loop_collectives(text)
  # Inside the loop: the all-gather (896·4864·2 = 8,716,288 bytes) and the
  # all-reduce of the fusion it calls (8·4 = 32 bytes); not the top one.
  assert sorted((c.op, c.bytes) for c in found) == [
      ("all-gather", 8_716_288), ("all-reduce", 32)]
  # The whole program: the entry's all-reduce (4·4 = 16 bytes) and the
  # collective-permute of the second branch of its conditional (2·4 = 8).
  assert sorted((c.op, c.bytes) for c in hlo.collectives(text)) == [
      ("all-gather", 8_716_288), ("all-reduce", 16), ("all-reduce", 32),
      ("collective-permute", 8)]


def test_hbm_traffic_walks_a_while_body_named_after_its_condition():
  # TPU HLO names a loop's computations as `condition=%c, body=%b`: the
  # body's copy (1024·4 bytes read + written = 8,192) must be counted.
  text = "\n".join([
      "HloModule m",
      "",
      "%b (p: f32[1024]) -> f32[1024] {",
      "  %p = f32[1024]{0} parameter(0)",
      "  ROOT %cp = f32[1024]{0} copy(f32[1024]{0} %p)",
      "}",
      "",
      "ENTRY %main (a: f32[1024]) -> f32[1024] {",
      "  %a = f32[1024]{0} parameter(0)",
      "  ROOT %w = f32[1024]{0} while(f32[1024]{0} %a), condition=%c,"
      " body=%b",
      "}",
  ])
  found = hlo.hbm_traffic_by_instruction(text)
  assert [(t.computation, t.instruction.name) for t in found] == [
      ("b", "cp")]
  assert found[0].bytes == 8_192


def test_loop_trip_counts_from_the_condition():
  # A scan of 5 steps as TPU HLO writes it: counter < constant(5).
  text = "\n".join([
      "%cond.2 (p: (s32[], f32[4])) -> pred[] {",
      "  %c = s32[]{:T(128)} constant(5)",
      "  %i = s32[]{:T(128)} get-tuple-element(%p), index=0",
      "  ROOT %lt = pred[]{:T(512)} compare(%i, %c), direction=LT",
      "}",
      "",
      "ENTRY %main (a: f32[4]) -> f32[4] {",
      "  %w = (s32[], f32[4]) while(%t), condition=%cond.2, body=%b",
      '  %v = (s32[], f32[4]) while(%u), condition=%x, body=%y,'
      ' backend_config={"known_trip_count":{"n":"24"}}',
      "}",
  ])
  assert hlo.loop_trip_counts(text) == [5, 24]


def test_hbm_traffic_counts_prefetches_once_and_in_place_updates():
  text = "\n".join([
      "%fused_dus (p0: bf16[8,64], p1: bf16[1,64], p2: s32[]) -> bf16[8,64] {",
      "  %p0 = bf16[8,64]{1,0} parameter(0)",
      "  %p1 = bf16[1,64]{1,0} parameter(1)",
      "  %p2 = s32[] parameter(2)",
      "  %z = s32[] constant(0)",
      "  ROOT %d = bf16[8,64]{1,0} dynamic-update-slice(%p0, %p1, %p2, %z)",
      "}",
      "",
      "%fused_take (q0: f32[100,64], q1: s32[2]) -> f32[2,64] {",
      "  %q0 = f32[100,64]{1,0} parameter(0)",
      "  %q1 = s32[2]{0} parameter(1)",
      "  ROOT %g = f32[2,64]{1,0} gather(%q0, %q1), offset_dims={1}",
      "}",
      "",
      "ENTRY %main (w: bf16[256,64], c: bf16[8,64], u: bf16[1,64], i: s32[],"
      " e: f32[100,64], t: s32[2]) -> bf16[8,64] {",
      "  %w = bf16[256,64]{1,0} parameter(0)",
      "  %c = bf16[8,64]{1,0} parameter(1)",
      "  %u = bf16[1,64]{1,0} parameter(2)",
      "  %i = s32[] parameter(3)",
      "  %e = f32[100,64]{1,0} parameter(4)",
      "  %t = s32[2]{0} parameter(5)",
      "  %cs = (bf16[256,64]{1,0:S(1)}, bf16[256,64]{1,0}, u32[]{:S(2)})"
      " copy-start(%w)",
      "  %cd = bf16[256,64]{1,0:S(1)} copy-done(%cs)",
      "  %r = bf16[64]{0} reduce(%cd, %z), dimensions={0}, to_apply=%add",
      "  %g = f32[2,64]{1,0} fusion(%e, %t), kind=kLoop, calls=%fused_take",
      "  ROOT %f = bf16[8,64]{1,0} fusion(%c, %u, %i), kind=kLoop,"
      " calls=%fused_dus",
      "}",
  ])
  # The prefetch reads w from HBM once (256·64·2 = 32,768); the reduce
  # reads it from VMEM (free) and writes 64·2 = 128. The gather fusion
  # reads 2 rows of e (2·64·4 = 512, plus the 2·4 = 8 index bytes) and
  # writes 512. The cache fusion updates c in place: reads u (128) and
  # the index (4), writes the 128-byte update. Total 32,768 + 128 + 1,032
  # + 260 = 34,188.
  assert hlo.hbm_traffic(text) == 34_188


def test_hbm_traffic_by_instruction_shows_a_vmem_write_back():
  # A cache buffer c (bf16 [8, 64], 1,024 bytes) updated in VMEM: copied
  # in (1,024 read), one row written there from u in HBM (2·64 = 128
  # read), reduced from VMEM into HBM (64·2 = 128 written, plus the
  # 4-byte init value read), and copied back whole (1,024 written) for
  # the program's output. Terms largest first; total 1,024 + 1,024 +
  # 132 + 128 = 2,308, `hbm_traffic`.
  text = "\n".join([
      "ENTRY %main (c: bf16[8,64], u: bf16[1,64], i: s32[]) -> bf16[8,64] {",
      "  %c = bf16[8,64]{1,0} parameter(0)",
      "  %u = bf16[1,64]{1,0} parameter(1)",
      "  %i = s32[] parameter(2)",
      "  %z = s32[] constant(0)",
      "  %in = (bf16[8,64]{1,0:S(1)}, bf16[8,64]{1,0}, u32[]{:S(2)})"
      " copy-start(%c)",
      "  %vc = bf16[8,64]{1,0:S(1)} copy-done(%in)",
      "  %d = bf16[8,64]{1,0:S(1)} dynamic-update-slice(%vc, %u, %i, %z)",
      "  %r = bf16[64]{0} reduce(%d, %z), dimensions={0}, to_apply=%add",
      "  %out = (bf16[8,64]{1,0}, bf16[8,64]{1,0:S(1)}, u32[]{:S(2)})"
      " copy-start(%d)",
      "  ROOT %hc = bf16[8,64]{1,0} copy-done(%out)",
      "}",
  ])
  terms = hlo.hbm_traffic_by_instruction(text)
  assert [(t.instruction.name, t.bytes) for t in terms] == [
      ("in", 1024), ("out", 1024), ("r", 132), ("d", 128)]
  assert sum(t.bytes for t in terms) == hlo.hbm_traffic(text) == 2308


def _prefetch_program(refill_used: bool) -> str:
  """A program that prefetches w across executions and copies it again."""
  return "\n".join([
      "ENTRY %main (w: bf16[256,64], x: bf16[8,256]) -> bf16[8,64] {",
      "  %w = bf16[256,64]{1,0} parameter(0)",
      "  %x = bf16[8,256]{1,0} parameter(1)",
      "  %cs = (bf16[256,64]{1,0:S(1)}, bf16[256,64]{1,0}, u32[]{:S(2)})"
      " copy-start(%w), cross_program_prefetch_index=0",
      "  %cd = bf16[256,64]{1,0:S(1)} copy-done(%cs)",
      "  %d = bf16[8,64]{1,0:S(1)} dot(%x, %cd), lhs_contracting_dims={1},"
      " rhs_contracting_dims={0}",
      "  %cs.1 = (bf16[256,64]{1,0:S(1)}, bf16[256,64]{1,0}, u32[]{:S(2)})"
      " copy-start(%w)",
      "  %cd.1 = bf16[256,64]{1,0:S(1)} copy-done(%cs.1)",
      "  %e = bf16[8,64]{1,0} add(%d, %cd.1)" if refill_used else
      "  %e = bf16[8,64]{1,0} copy(%d)",
      "  ROOT %t = (bf16[8,64]{1,0}) tuple(%e)",
      "}",
  ])


def test_hbm_traffic_counts_a_cross_program_prefetch_once():
  # w (256·64·2 = 32,768 bytes) is prefetched into VMEM for the program;
  # the dot reads x from HBM (8·256·2 = 4,096) and writes to VMEM; the
  # copy of d writes 8·64·2 = 1,024. The second copy of w, read by
  # nothing, refills VMEM for the next execution: not counted again.
  # Total 32,768 + 4,096 + 1,024 = 37,888.
  assert hlo.hbm_traffic(_prefetch_program(refill_used=False)) == 37_888
  # When the program itself reads the second copy (an add instead of
  # the copy, writing the same 1,024 bytes), it is a second HBM read of
  # w: 37,888 + 32,768 = 70,656.
  assert hlo.hbm_traffic(_prefetch_program(refill_used=True)) == 70_656


@needs_libtpu
def test_hbm_traffic_of_a_layer_chain_is_its_weights():
  # 16 layers x = tanh(x·W_i), W_i bf16 [2048, 2048] (8 MiB each), on one
  # v5e chip: the program must read each weight once, 16·8 = 128 MiB,
  # read x (8·2048·2 = 32 KiB) and write the result (32 KiB). XLA
  # prefetches the weights into VMEM, the first across executions
  # (copied again at the end of the program for the next one), and its
  # cost analysis counts each several times (over 3x). The HBM count is
  # exact: 134,217,728 + 65,536 = 134,283,264.
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from mathrl import sharding  # pylint: disable=g-import-not-at-top
  mesh = sharding.topology_mesh("v5e:2x2", data=-1)
  rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

  def chain(x, *weights):
    for w in weights:
      x = jnp.tanh(x @ w)
    return x

  shape = lambda *s: jax.ShapeDtypeStruct(s, jnp.bfloat16, sharding=rep)
  compiled = jax.jit(chain).lower(
      shape(8, 2048), *[shape(2048, 2048)] * 16).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  ideal = 16 * 2048 * 2048 * 2
  text = compiled.as_text()
  assert "cross_program_prefetch_index" in text
  assert cost["bytes accessed"] > 3 * ideal
  assert hlo.hbm_traffic(text) == ideal + 65_536


@needs_libtpu
def test_hbm_traffic_of_an_untied_embedding_is_the_rows_it_takes():
  # A decode step's ends with an untied head, as in Qwen2.5-7B: look up
  # 32 tokens' rows of a bf16 [32768, 1024] table (64 MiB, too large to
  # prefetch into VMEM) and multiply by the bf16 [1024, 32768] head. The
  # table is gathered in HBM: 32·1024·2 = 65,536 bytes, not the 64 MiB
  # table. The head is read whole (67,108,864), the float32 [32, 32768]
  # logits written (4,194,304), the 32 int32 ids read by two fusions
  # (2·128). Total 71,368,960, 0.53x the table and head.
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from mathrl import sharding  # pylint: disable=g-import-not-at-top
  mesh = sharding.topology_mesh("v5e:2x2", data=-1)
  rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

  def logits(table, head, ids):
    return (jnp.take(table, ids, axis=0) @ head).astype(jnp.float32)

  shape = lambda s, dtype: jax.ShapeDtypeStruct(s, dtype, sharding=rep)
  text = jax.jit(logits).lower(
      shape((32768, 1024), jnp.bfloat16), shape((1024, 32768), jnp.bfloat16),
      shape((32,), jnp.int32)).compile().as_text()
  assert hlo.hbm_traffic(text) == 71_368_960


@needs_libtpu
def test_decode_ideal_reads_the_looked_up_rows_of_an_untied_embedding():
  # Tiny model with its own head (D 64, V 4096, float32), 16 rows over
  # the 4 chips of v5e:2x2 (4 per chip), weights whole on every chip.
  # Per chip: head 64·4096·4 = 1,048,576; final norm 64·4 = 256; the
  # layer's matmul weights 36,864·4 = 147,456, norms 2·64·4 = 512, q/k/v
  # biases 32·(2 + 2·1)·4 = 512; KV cache 2 × 4 rows · 88 slots · 1 head
  # · 32 · 4 = 90,112; the embedding's rows of the 4 tokens 4·64·4 =
  # 1,024 (not the 1 MiB table). Total 1,288,448.
  from mathrl import sharding  # pylint: disable=g-import-not-at-top
  c = _tiny_config()
  c.model.tie_word_embeddings = False
  c.tokenizer.vocab_size = 4096
  mesh = sharding.topology_mesh("v5e:2x2", data=-1)
  graphdef, params = aot.abstract_model(c, aot.model_config(c))
  _, _, ideal = aot._abstract_decode_step(  # pylint: disable=protected-access
      c, mesh, graphdef, params, 16)
  assert ideal == 1_288_448


@needs_libtpu
def test_tiny_programs_fit_and_memory_is_sane(tiny_report):
  r = tiny_report
  assert (r.chip, r.num_chips, r.mesh) == (
      "v5e", 4, {"data": 4, "fsdp": 1, "tensor": 1})
  for program in (r.train, r.sampler, r.decode):
    assert program.argument_bytes > 0
    assert 0 < program.peak_bytes < r.hbm_bytes
  assert r.fits and not aot.check_fits(r)
  # 16 rows = 8 prompts × G = 2 over 4 chips: one prefill per prompt.
  assert (r.shape["sampler_rows"], r.shape["sampler_prefills"]) == (16, 8)
  json.dumps(r.to_json())
  row = aot.table_row(r)
  assert row.startswith("| config shapes | v5e:2x2 | 4x1x1 | yes |")
  assert row.count("|") == aot.TABLE_HEADER.split("\n")[0].count("|")


@needs_libtpu
def test_tiny_train_step_flops_match_the_analytic_count(tiny_report):
  # Analytic, per chip: P=8, G=2 (B=16), L=80, T=8, D=64, F=128, V=384,
  # 1 layer: tokens 8·80 + 16·7 = 752, logit positions 8 + 16·7 = 120,
  # pairs 752·87 = 65,424 → forward 2·36,864·752 + 2·64·384·120 +
  # 4·2·32·65,424 = 55,443,456 + 5,898,240 + 16,748,544 = 78,090,240;
  # ×3 / 4 chips = 58,567,680. XLA also counts the element-wise work
  # (norms, RoPE, softmax, AdamW), a few percent at these shapes.
  t = tiny_report.train
  assert t.analytic_flops == 58_567_680
  assert t.cost_complete
  assert t.analytic_flops <= t.flops <= 1.1 * t.analytic_flops


@needs_libtpu
def test_tiny_decode_step_cost_and_loop_collectives(tiny_report):
  r = tiny_report
  # One decode step: 16 rows / 4 chips; matmuls 2·36,864·16 + 2·64·384·16
  # + 4·2·32·16·88 = 1,179,648 + 786,432 + 360,448 = 2,326,528 → 581,632
  # per chip, a lower bound: sampling from V=384 logits (softmax, CDF)
  # adds element-wise work of the same order at this width.
  assert r.decode.analytic_flops == 581_632
  assert r.decode.analytic_flops <= r.decode.flops <= 2 * (
      r.decode.analytic_flops)
  assert r.decode.bytes_accessed >= r.decode.hbm_bytes >= (
      r.decode_ideal_bytes)
  # Weights are replicated under the sampling rules: the loop moves no
  # weight-sized array between chips.
  assert not r.weight_sized
  assert r.decode_tokens_per_second_bound > 0
  assert 0 < r.mfu_bound <= 1


@needs_libtpu
def test_decode_loop_gathers_no_weights_under_the_sampling_rules():
  # Training shards every weight over the 4 FSDP chips of v5e:2x2. The
  # sampler runs on the copy SAMPLE_RULES give (weights whole on every
  # chip, the batch split): its decode loop all-gathers nothing, and no
  # collective in it moves an array as large as the smallest matmul
  # weight (the tiny model's k kernel, 64·2·16·4 = 8,192 bytes).
  import jax  # pylint: disable=g-import-not-at-top
  from mathrl import sharding  # pylint: disable=g-import-not-at-top
  c = _tiny_config()
  c.mesh.data, c.mesh.fsdp = 1, 4
  mesh = sharding.topology_mesh("v5e:2x2", data=1, fsdp=4, tensor=1)
  graphdef, params = aot.abstract_model(c, aot.model_config(c))
  fn, args, kwargs = aot._abstract_sampler(  # pylint: disable=protected-access
      c, mesh, graphdef, params, 16)
  with jax.set_mesh(mesh), sharding.axis_rules(sharding.SAMPLE_RULES):
    text = fn.lower(*args, **kwargs).compile().as_text()
  smallest = aot.smallest_matmul_weight(args[1])
  assert smallest == 8_192
  found = hlo.loop_collectives(text)
  assert not [x for x in found if x.op.startswith("all-gather")]
  assert not [x for x in found if x.bytes >= smallest]


@needs_libtpu
def test_check_fits_says_what_to_change(tiny_report):
  small = dataclasses.replace(tiny_report, hbm_bytes=1000)
  advice = aot.check_fits(small)
  assert len(advice) == 2
  # tiny: fp32, 1 micro-batch of 8 prompts, mesh data=4: every lever.
  assert "rl.num_microbatches" in advice[0] and "mesh.fsdp" in advice[0]
  assert "bfloat16" in advice[0]
  # No remat, float32 master weights with float32 Adam moments.
  assert "model.remat=True" in advice[0]
  assert "rl.adam_mu_dtype=bfloat16" in advice[0]
  assert "--sampler_rows" in advice[1]
  assert "fits: NO" in aot.format_report(small)


def test_sampler_prompts_follow_the_samplers_prefill_choice():
  # As `sampling.generate`: rows / G prompts, each prefilled once, when
  # they split over the mesh's 8 batch shards; else a prefill per row.
  from mathrl import sharding  # pylint: disable=g-import-not-at-top
  c = _tiny_config()  # G = 2
  mesh = sharding.make_mesh(data=8)
  assert aot.sampler_prompts(c, mesh, 16) == (8, 2)
  assert aot.sampler_prompts(c, mesh, 256) == (128, 2)
  c.rl.num_generations = 8
  assert aot.sampler_prompts(c, mesh, 256) == (32, 8)
  assert aot.sampler_prompts(c, mesh, 16) == (16, 1)  # 2 prompts, 8 shards
  assert aot.sampler_prompts(c, mesh, 12) == (12, 1)  # not whole groups


def test_cli_names_a_bad_topology():
  out = subprocess.run(
      [sys.executable, "-m", "mathrl.aot", "--config=configs/tiny.py",
       "--topology=v9x:2x2"], cwd=ROOT, capture_output=True, text=True,
      timeout=300)
  assert out.returncode != 0
  assert "v9x:2x2" in out.stderr and "CHIP:AxB" in out.stderr


def test_model_config_reads_the_preset_or_the_shape_fields(
    tiny_checkpoints):
  c = _tiny_config()
  assert aot.model_config(c).hidden_size == c.model.hidden_size == 64
  assert aot.model_config(c).vocab_size == c.tokenizer.vocab_size
  c.model.preset = "qwen2.5-7b"
  assert aot.model_config(c) == presets.QWEN2_5_7B
  c.model.path = str(tiny_checkpoints["llama"])
  assert aot.model_config(c).family == "llama"


@needs_libtpu
def test_tiny_sampler_compiles_the_pallas_decode_attention():
  # model.decode_attention="pallas": the Mosaic flash-decoding kernel
  # (mathrl.models.decode_attention) is compiled for the v5e chips, once
  # per layer inside the decode loop (the tiny config has 1 layer; prefill
  # keeps XLA's attention), on each chip's 4 of the 16 rows: float32
  # output [4 rows, K=1, G=N/K=2, H=32].
  from mathrl import sharding  # pylint: disable=g-import-not-at-top
  c = _tiny_config()
  c.model.decode_attention = "pallas"
  mesh = sharding.topology_mesh("v5e:2x2", data=-1)
  graphdef, params = aot.abstract_model(c, aot.model_config(c))
  fn, args, kwargs = aot._abstract_sampler(  # pylint: disable=protected-access
      c, mesh, graphdef, params, 16)
  report, compiled = aot._compile(  # pylint: disable=protected-access
      "sampler", fn, args, kwargs, mesh, sharding.SAMPLE_RULES, 0.0)
  text = compiled.as_text()
  kernels = [line for line in text.splitlines()
             if 'custom_call_target="tpu_custom_call"' in line]
  assert len(kernels) == 1
  assert " = f32[4,1,2,32]" in kernels[0]
  assert 0 < report.peak_bytes < roofline.CHIPS["v5e"].hbm_bytes
