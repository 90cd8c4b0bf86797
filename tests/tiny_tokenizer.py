"""A tiny WordLevel tokenizer trained on synthetic problems (no download).

Shared by the tests that need a real `transformers` tokenizer:
  import tiny_tokenizer
  tok = tiny_tokenizer.make(chat=False)
"""

from mathrl.data import prompts
from mathrl.data import synthetic
import tokenizers
from tokenizers import models as tok_models
from tokenizers import pre_tokenizers
from tokenizers import trainers
import transformers

SPECIALS = ["<pad>", "<unk>", "<eos>", "<user>", "<assistant>", "<system>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} <eos> "
    "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
)


def make(
    chat: bool, num_problems: int = 300
) -> transformers.PreTrainedTokenizerFast:
  """The tokenizer: words of `num_problems` problems and their solutions.

  Args:
    chat: give it a (toy) chat template.
    num_problems: synthetic problems (seed 123, up to 4 ops, 3 digits) whose
      questions and solutions make the vocabulary.

  Returns:
    A `transformers.PreTrainedTokenizerFast` with <pad>, <unk>, <eos>.
  """
  tasks = synthetic.ArithmeticTasks(
      num_problems, seed=123, max_ops=4, max_digits=3
  )
  texts = [tasks[i]["question"] + " " + tasks[i]["solution"]
           for i in range(len(tasks))]
  texts.append("Question: Answer: " + prompts.BOXED_INSTRUCTION)
  tok = tokenizers.Tokenizer(tok_models.WordLevel(unk_token="<unk>"))
  tok.pre_tokenizer = pre_tokenizers.Whitespace()
  tok.train_from_iterator(
      texts, trainers.WordLevelTrainer(special_tokens=SPECIALS)
  )
  fast = transformers.PreTrainedTokenizerFast(
      tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
      eos_token="<eos>",
  )
  if chat:
    fast.chat_template = CHAT_TEMPLATE
  return fast
