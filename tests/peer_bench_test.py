"""The peer GRPO-step comparison's workload and its same-run summary.

benchmarks/peers/ runs mathrl, TRL and Tunix on one workload; these check
the parts every system shares (prompts, reward rule) and the driver's
ratio arithmetic, without running any system.
"""

import os
import random
import sys

import pytest

PEERS = os.path.join(os.path.dirname(os.path.dirname(__file__)),
                     "benchmarks", "peers")
sys.path.insert(0, PEERS)

import compare  # noqa: E402  pylint: disable=g-import-not-at-top
import workload  # noqa: E402  pylint: disable=g-import-not-at-top


def test_rows_are_the_seeded_sums():
  rows = workload.addition_rows()
  assert len(rows) == 512
  # Same draws as random.seed(0); randint(0, 999) twice per row.
  rnd = random.Random(0)
  x, y = rnd.randint(0, 999), rnd.randint(0, 999)
  assert rows[0] == (f"What is {x} + {y}?", str(x + y))
  assert workload.addition_rows() == rows  # deterministic
  assert workload.prompt_text("What is 1 + 2?") == (
      "Question: What is 1 + 2? Answer:")


@pytest.mark.parametrize("completion,answer,expected", [
    (" 579 apples", "579", 1.0),
    (" 57 then 579", "579", 0.0),  # only the first integer counts
    (" -3", "-3", 1.0),
    (" no digits", "3", 0.0),
    ("5790", "579", 0.0),  # whole integers, not prefixes
])
def test_first_integer_reward(completion, answer, expected):
  assert workload.first_integer_correct(completion, answer) == expected


def test_summary_ratios_are_same_round():
  runs = {
      "mathrl": [{"median_step_s": 1.0, "median_update_s": 0.7},
                 {"median_step_s": 2.0, "median_update_s": 1.5},
                 {"median_step_s": 1.5, "median_update_s": 1.0}],
      "trl": [{"median_step_s": 2.0}, {"median_step_s": 3.0},
              {"median_step_s": 3.3}],
  }
  out = compare.summarise(runs)
  assert out["mathrl"]["median_step_s"] == 1.5  # median of 1.0, 2.0, 1.5
  assert out["mathrl"]["median_update_s"] == 1.0  # of 0.7, 1.5, 1.0
  assert out["trl"]["median_step_s"] == 3.0
  # Round ratios 2.0/1.0 = 2.0, 3.0/2.0 = 1.5, 3.3/1.5 = 2.2; median 2.0
  # (the ratio of the medians would be 3.0 / 1.5 = 2.0 by coincidence).
  assert out["trl"]["ratio_rounds"] == [2.0, 1.5, 2.2]
  assert out["trl"]["ratio_to_mathrl"] == 2.0


def test_summary_generation_ratio_is_same_round_where_reported():
  runs = {
      "mathrl": [{"median_step_s": 1.0, "median_generate_s": 0.4},
                 {"median_step_s": 1.2, "median_generate_s": 0.5}],
      "trl": [{"median_step_s": 2.0, "median_generate_s": 0.8},
              {"median_step_s": 2.4, "median_generate_s": 1.5}],
      "tunix": [{"median_step_s": 2.0}, {"median_step_s": 2.2}],
  }
  out = compare.summarise(runs)
  # Medians of two: (0.8 + 1.5) / 2 = 1.15 and (0.4 + 0.5) / 2 = 0.45.
  assert out["trl"]["median_generate_s"] == 1.15
  assert out["mathrl"]["median_generate_s"] == 0.45
  # Round ratios 0.8 / 0.4 = 2.0 and 1.5 / 0.5 = 3.0; median 2.5.
  assert out["trl"]["generate_ratio_to_mathrl"] == 2.5
  assert "generate_ratio_to_mathrl" not in out["tunix"]  # not reported


def test_commands_skip_peers_without_a_python():
  args = compare.argparse.Namespace(
      model="/tmp/m", steps=4, prompts=2, G=2, max_new=8, stop_ids=1,
      mathrl_args=[], gsm8k=None,
      trl_python=None, tunix_python="/venv/bin/python", torch_threads=1)
  argv = compare.commands(args)
  assert sorted(argv) == ["mathrl", "tunix"]
  assert argv["tunix"][0] == "/venv/bin/python"
  assert argv["tunix"][2:] == ["/tmp/m", "--steps", "4", "--prompts", "2",
                               "--G", "2", "--max_new", "8",
                               "--stop_ids", "1"]
  assert argv["mathrl"][1].endswith(os.path.join("benchmarks",
                                                 "grpo_step.py"))


def test_gsm8k_commands_pass_the_file_and_refuse_tunix(tmp_path):
  args = compare.argparse.Namespace(
      model="/tmp/m", steps=4, prompts=2, G=2, max_new=8, stop_ids=0,
      mathrl_args=[], gsm8k=str(tmp_path / "train.jsonl"),
      trl_python="/trl/bin/python", tunix_python=None, torch_threads=1)
  argv = compare.commands(args)
  for name in ("mathrl", "trl"):
    assert argv[name][-2:] == ["--gsm8k", str(tmp_path / "train.jsonl")]
  args.tunix_python = "/venv/bin/python"
  with pytest.raises(SystemExit, match="drop --tunix_python"):
    compare.commands(args)


def test_gsm8k_rows_take_the_number_after_the_marker(tmp_path):
  path = tmp_path / "train.jsonl"
  path.write_text(
      '{"question": "Q1?", "answer": "3 + 4 = 7\\n#### 7"}\n'
      '{"question": "Q2?", "answer": "so\\n#### 1,200"}\n'
      '{"question": "Q3?", "answer": "#### 5"}\n')
  assert workload.gsm8k_rows(str(path), num=2) == [("Q1?", "7"),
                                                   ("Q2?", "1200")]
  assert workload.chat_user_text("Q1?") == (
      "Q1?\nPlease reason step by step, and put your final answer within"
      " \\boxed{}.")
  bad = tmp_path / "bad.jsonl"
  bad.write_text('{"question": "Q?", "answer": "7"}\n')
  with pytest.raises(ValueError, match=r"line 1: no '####'"):
    workload.gsm8k_rows(str(bad))


def test_gsm8k_rows_read_as_the_library_reads_gsm8k(tmp_path):
  # The peers cannot import mathrl, so workload.py parses GSM8K itself;
  # it must give the library's questions and answers.
  from mathrl.data import benchmarks  # pylint: disable=g-import-not-at-top
  path = tmp_path / "train.jsonl"
  path.write_text(
      '{"question": "Q1?", "answer": "3 + 4 = 7\\n#### 7"}\n'
      '{"question": "Q2?", "answer": "so\\n#### 1,200"}\n')
  assert workload.gsm8k_rows(str(path)) == [
      (r["question"], r["answer"]) for r in benchmarks.read("gsm8k", path)]


def test_gsm8k_instruction_is_the_library_default():
  # The peers cannot import mathrl; the text must stay the library's.
  from mathrl.data import prompts  # pylint: disable=g-import-not-at-top
  assert workload.BOXED_INSTRUCTION == prompts.BOXED_INSTRUCTION


@pytest.mark.parametrize("completion,answer,expected", [
    ("so \\boxed{1,200}.", "1200", 1.0),
    ("\\boxed{72.0}", "72", 1.0),
    ("\\boxed{3} then \\boxed{4}", "3", 0.0),  # the last box counts
    ("the answer is 72", "72", 0.0),  # no box
])
def test_boxed_correct(completion, answer, expected):
  assert workload.boxed_correct(completion, answer) == expected


def test_stop_ids_spread_over_the_vocabulary():
  # step (512 - 3) // 3 = 169: ids 3 + 169 - 1 = 171 and 3 + 338 - 1 = 340.
  assert workload.stop_ids(512, 2, eos_id=1) == [1, 171, 340]
  assert workload.stop_ids(512, 0, eos_id=1) == [1]
  with pytest.raises(ValueError, match="--stop_ids"):
    workload.stop_ids(512, 510, eos_id=1)


def test_summary_mean_completion_tokens():
  runs = {"mathrl": [{"median_step_s": 1.0, "mean_completion_tokens": 100.0},
                     {"median_step_s": 1.0, "mean_completion_tokens": 110.0}],
          "tunix": [{"median_step_s": 2.0}, {"median_step_s": 2.0}]}
  out = compare.summarise(runs)
  assert out["mathrl"]["mean_completion_tokens"] == 105.0  # (100 + 110) / 2
  assert "mean_completion_tokens" not in out["tunix"]
