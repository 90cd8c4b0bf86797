"""`benchmarks/real_model.py`'s length count and GSM8K prompt rows.

The benchmark itself (SmolLM2 against transformers.generate) runs for
minutes; these check the parts that decide what its tokens/s counts.
"""

import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)),
                                "benchmarks"))

import real_model  # noqa: E402  pylint: disable=g-import-not-at-top
from mathrl.data import prompts  # noqa: E402  pylint: disable=g-import-not-at-top


def test_lengths_count_up_to_and_including_the_first_eos():
  new_BT = np.array([[5, 6, 2, 0, 0],    # EOS (2) third: 3 tokens
                     [5, 6, 7, 8, 9],    # no EOS: all 5
                     [2, 2, 0, 0, 0]])   # EOS first: 1 token
  assert real_model._lengths(new_BT, eos=2) == [3, 5, 1]


class _Tok:
  """A whitespace tokenizer with a chat template of one user turn."""

  pad_token_id = 0
  chat_template = "user"

  def apply_chat_template(self, messages, tokenize, add_generation_prompt):
    del tokenize, add_generation_prompt
    return "<u> " + messages[-1]["content"] + " <a>"

  def __call__(self, text, add_special_tokens):
    del add_special_tokens
    return {"input_ids": [len(w) for w in text.split()]}


def test_gsm8k_prompts_are_the_first_rows_left_padded(tmp_path):
  path = tmp_path / "test.jsonl"
  path.write_text("".join(json.dumps({"question": q, "answer": "#### 1"})
                          + "\n" for q in ("a bb", "ccc", "d")))
  tokens, mask = real_model.prompt_rows(str(path), 2, _Tok(), prompts)
  # Rendered: "<u> a bb\n<instruction> <a>" and "<u> ccc\n<instruction> <a>";
  # the second has one word fewer, so one pad on the left.
  assert tokens.shape[0] == 2 and mask[1, 0] == 0 and mask[0].all()
  assert mask.sum(1).tolist() == [mask.shape[1], mask.shape[1] - 1]
  with pytest.raises(SystemExit, match="fewer than --rows 4"):
    real_model.prompt_rows(str(path), 4, _Tok(), prompts)
