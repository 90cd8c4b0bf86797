"""Tokenizers: loaded from a checkpoint, or a small BPE trained on a corpus.

  tok = tokenizer.load(path_or_name)   # HF folder, .gguf file or a name in
                                       # mathrl.models.checkpoints.CHECKPOINTS
  tok = tokenizer.from_gguf(path)      # the tokenizer inside a GGUF file

A GGUF file carries its tokenizer (tokens, merges, special ids, and the
chat template in `tokenizer.chat_template`); `from_gguf` rebuilds it as a
transformers fast tokenizer with transformers' own GGUF converter, so it
has the chat template and its eos id (the stop id of generation) like a
tokenizer loaded from a Hugging Face folder.

The default job has no downloaded tokenizer: it trains one on its own
synthetic problems and solutions (a few hundred merges cover that
vocabulary), saves it in Hugging Face format next to the model, and loads it
back with `transformers.AutoTokenizer` like any other.

  tok = tokenizer.train_bpe(texts, vocab_size=384, path=workdir + "/tokenizer")
"""

from collections.abc import Iterable
import os
import pathlib

import transformers

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"

# The special tokens a GGUF file names by id, as transformers' GGUF loading
# reads them: the tokenizer attribute -> the GGUF metadata key of its id
# (the GGUF spec's `tokenizer.ggml.*` names, `gguf.Keys.Tokenizer.*_ID`).
# A key the file lacks leaves that token None. The spec's other special
# ids (sep, cls, mask, eot, fim...) are not read, as transformers does not.
GGUF_SPECIAL_TOKEN_KEYS = {
    "bos_token": "tokenizer.ggml.bos_token_id",
    "eos_token": "tokenizer.ggml.eos_token_id",
    "unk_token": "tokenizer.ggml.unknown_token_id",
    "pad_token": "tokenizer.ggml.padding_token_id",
}


def train_bpe(
    texts: Iterable[str], *, vocab_size: int, path: str | None = None
) -> transformers.PreTrainedTokenizerFast:
  """Trains a byte-level BPE (Sennrich et al. 2016, arXiv:1508.07909).

  Special tokens: `<pad>` (id 0), `<eos>` (id 1), `<unk>` (id 2). Digits
  are always single tokens. The tokenizer has no chat template, so prompts
  use the plain template.

  Args:
    texts: the training corpus.
    vocab_size: target vocabulary size (including the 256 byte symbols and
      the special tokens).
    path: if given, save the tokenizer there (HF format).

  Returns:
    A `transformers.PreTrainedTokenizerFast`.
  """
  import tokenizers  # pylint: disable=g-import-not-at-top

  if vocab_size < 260:
    raise ValueError(
        f"vocab_size={vocab_size} is below the 256 byte symbols + 3 special"
        " tokens of a byte-level BPE; use at least 260."
    )
  tok = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token=UNK))
  # Digits are split one by one (as Qwen and Llama 3 do), so numbers are
  # written digit by digit and arithmetic generalises across magnitudes.
  tok.pre_tokenizer = tokenizers.pre_tokenizers.Sequence([
      tokenizers.pre_tokenizers.Digits(individual_digits=True),
      tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False),
  ])
  tok.decoder = tokenizers.decoders.ByteLevel()
  trainer = tokenizers.trainers.BpeTrainer(
      vocab_size=vocab_size,
      special_tokens=[PAD, EOS, UNK],
      initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
      show_progress=False,
  )
  tok.train_from_iterator(texts, trainer)
  fast = transformers.PreTrainedTokenizerFast(
      tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK
  )
  if path is not None:
    os.makedirs(path, exist_ok=True)
    fast.save_pretrained(path)
  return fast


def from_gguf(path: str | os.PathLike[str]):
  """The tokenizer stored in a GGUF file, with its chat template.

  Args:
    path: the .gguf file.

  Returns:
    A transformers fast tokenizer (bos/eos/pad/unk tokens from the ids
    under `GGUF_SPECIAL_TOKEN_KEYS`, None where the file has no such id;
    `chat_template` from `tokenizer.chat_template`).
  """
  # Reads the metadata with `gguf` and builds the tokenizer with
  # transformers' GGUF converter, but not through `AutoTokenizer` or
  # transformers' GGUF reader: both import PyTorch (about half a GiB of
  # resident memory), which nothing here uses.
  import gguf  # pylint: disable=g-import-not-at-top
  # pylint: disable-next=g-import-not-at-top
  from transformers.integrations.gguf import gguf_tokenizer_mapping as gtm
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"GGUF file {path} does not exist.")
  fields = gguf.GGUFReader(str(path)).fields
  meta = {key: field.contents() for key, field in fields.items()
          if key.startswith("tokenizer.")}
  group = {
      g: {name: meta[f"tokenizer.{key}"] for key, name in renames.items()
          if f"tokenizer.{key}" in meta}
      for g, renames in gtm.GGUF_TOKENIZER_MAPPING.items()}
  tok_dict, config = group["tokenizer"], group["tokenizer_config"]
  for name, key in GGUF_SPECIAL_TOKEN_KEYS.items():
    token_id = meta.get(key)
    config[name] = (tok_dict["tokens"][token_id] if token_id is not None
                    else None)
  arch = fields["general.architecture"].contents()
  backend, extra = gtm.convert_gguf_tokenizer(arch, tok_dict)
  return transformers.PreTrainedTokenizerFast(
      tokenizer_object=backend, **config, **extra)


def load(name_or_path: str | os.PathLike[str]):
  """The tokenizer of a checkpoint: HF folder, .gguf file or named model.

  Args:
    name_or_path: a tokenizer/model folder, a .gguf file, or a name in
      `mathrl.models.checkpoints.CHECKPOINTS` (a GGUF file is read from
      its converted folder in the cache: `checkpoints.gguf_folder`).

  Returns:
    A transformers tokenizer.
  """
  from mathrl.models import checkpoints  # pylint: disable=g-import-not-at-top
  path = checkpoints.checkpoint_path(name_or_path)
  if not checkpoints.is_gguf(path):
    return transformers.AutoTokenizer.from_pretrained(path)
  folder = checkpoints.gguf_folder(path)
  if folder is None:
    return from_gguf(path)
  # The class `from_gguf` builds. AutoTokenizer would first read the
  # folder's config.json through transformers' model configs, which
  # import PyTorch.
  return transformers.PreTrainedTokenizerFast.from_pretrained(folder)
