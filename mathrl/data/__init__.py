"""Datasets and the prompt input pipeline.

Submodules (imported on first use, so `import mathrl.data` stays cheap):
  records        reading JSON Lines with file/line/field errors
  benchmarks     the benchmarks' sources, checksums and record normalisers
  tfds_builders  TFDS builders (array_record, no TensorFlow needed), load()
  synthetic      seeded arithmetic word problems with worked solutions
  prompts        prompt templates, tokenisation, left-padding to buckets
  pipeline       grain pipeline: shuffle, shard, batch, ×G, resumable iterator
  mqr            MQR question reformulation: templates, filters, records
  mqr_backends   MQR generators: OpenAI-compatible endpoint, local sampler
  mqr_augment    the MQR run (--mode=augment)
  tokenizer      tokenizers of checkpoints (folders, GGUF files, names), BPE
  splits         training sources without an evaluation set's problems
  vade           VADE's prompt selection by online difficulty estimates
"""

from mathrl import lazy_modules

_SUBMODULES = (
    "benchmarks",
    "mqr",
    "mqr_augment",
    "mqr_backends",
    "pipeline",
    "prompts",
    "records",
    "splits",
    "synthetic",
    "tfds_builders",
    "tokenizer",
    "vade",
)

__getattr__, __dir__ = lazy_modules.attributes(
    __name__, _SUBMODULES, globals())
