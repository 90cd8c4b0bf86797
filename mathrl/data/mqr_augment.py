"""The MQR run: rewrite training questions, filter, check answers, write.

  python -m mathrl.main --mode=augment --config=configs/mathforge_mqr.py \\
      --workdir=DIR [--config.augment.num_questions=100 ...]

For every source question (the config's training data) and aspect, one
generator request; each reply is parsed and screened (`mqr.screen`); the
survivors are optionally solved k times by a solver and kept when the
majority answer equals the gold (`mqr.majority_preserves`). Writes to the
output folder:

  mqr.jsonl           kept rewrites (read by `mqr.load` / `data.mqr.path`)
  mqr_rejected.jsonl  every rejected rewrite with its verdict and reply
  mqr_stats.json      per-aspect verdict counts, requests and tokens
  mqr_report.md       original vs rewrite, a few per aspect, for reading
  mqr_cache.jsonl     finished requests: a rerun sends only the rest
"""

from collections.abc import Callable, Mapping, Sequence
import json
import os
from typing import Any

from mathrl.data import mqr
from mathrl.data import mqr_backends


def select_sources(source, num_questions: int, stats: mqr.Stats,
                   equal: Callable[[str, str], bool]) -> list[dict[str, Any]]:
  """The first `num_questions` records (0: all) with a usable gold answer.

  A gold answer that is empty or not equal to itself under `equal` could
  never reward a rollout (every group would be all-wrong); such questions
  are skipped and counted in `stats.skipped_sources`.
  """
  count = len(source) if num_questions <= 0 else min(num_questions,
                                                     len(source))
  out = []
  for i in range(count):
    record = source[i]
    gold = str(record.get("answer", "")).strip()
    if not gold:
      stats.skipped_sources["empty_gold"] += 1
    elif not equal(gold, gold):
      stats.skipped_sources["unverifiable_gold"] += 1
    else:
      out.append(record)
  return out


def _solve_messages(question: str) -> list[dict[str, str]]:
  from mathrl.data import prompts  # pylint: disable=g-import-not-at-top
  return [{"role": "user",
           "content": question + "\n" + prompts.BOXED_INSTRUCTION}]


def _generate(sources, aspects, template, generator, stats, filters):
  """One generator request per (source, aspect); screened candidates."""
  items = [(s, a) for s in sources for a in aspects]
  replies = generator.complete(
      [template.messages(str(s["question"]), str(s["answer"]), a)
       for s, a in items])
  out = []
  for (source, aspect), reply in zip(items, replies):
    stats.add(aspect, "requested")
    stats.add(aspect, "gen_sent", 0 if reply.cached else 1)
    stats.add(aspect, "gen_prompt_tokens", reply.prompt_tokens)
    stats.add(aspect, "gen_completion_tokens", reply.completion_tokens)
    if reply.error:
      rewrite, verdict = None, reply.error
    else:
      rewrite, verdict = mqr.screen(
          str(source["question"]), str(source["answer"]), reply.texts[0],
          truncated=reply.was_truncated(0),
          prompt_text=template.fixed_text(aspect), **filters)
    out.append({"source": source, "aspect": aspect, "rewrite": rewrite,
                "verdict": verdict, "reply": reply.detail or (
                    reply.texts[0] if reply.texts else "")})
  return out


def _check_answers(candidates, solver, k, stats, equal):
  """Solves each kept rewrite k times; not_preserved unless the vote agrees."""
  kept = [c for c in candidates if c["verdict"] == "kept"]
  replies = solver.complete(
      [_solve_messages(c["rewrite"]) for c in kept], n=k)
  for c, reply in zip(kept, replies):
    aspect = c["aspect"]
    stats.add(aspect, "solved")
    stats.add(aspect, "solve_sent", 0 if reply.cached else 1)
    stats.add(aspect, "solve_prompt_tokens", reply.prompt_tokens)
    stats.add(aspect, "solve_completion_tokens", reply.completion_tokens)
    if reply.error:
      c["verdict"] = "failed"
      c["solver_detail"] = reply.detail
      continue
    c["solver_answers"] = [_answer(t) for t in reply.texts]
    if not mqr.majority_preserves(reply.texts, str(c["source"]["answer"]),
                                  equal):
      c["verdict"] = "not_preserved"


def _answer(text: str) -> str | None:
  from mathrl import rewards  # pylint: disable=g-import-not-at-top
  return rewards.extract_answer(text)


def augment(source, *, generator, template: mqr.Template,
            aspects: Sequence[str], out_dir: str, num_questions: int = 0,
            solver=None, solver_k: int = 0,
            filters: Mapping[str, Any] | None = None,
            equal: Callable[[str, str], bool] | None = None,
            report_per_aspect: int = 3) -> mqr.Stats:
  """Rewrites, screens, optionally answer-checks, and writes the outputs.

  Args:
    source: random-access records with question, answer, id.
    generator: a back end (`mqr_backends.OpenAIBackend` / `LocalBackend`).
    template: the reformulation prompt.
    aspects: aspects to rewrite along (each a name in `mqr.ASPECTS`).
    out_dir: output folder (see the module docstring).
    num_questions: rewrite the first this many records (0: all).
    solver: a back end for the answer check; None skips it.
    solver_k: solutions per rewrite (>= 1 when `solver` is given).
    filters: `mqr.screen` keyword arguments (max_length_ratio,
      copy_threshold, require_tags).
    equal: answer equivalence (default `rewards.math_equal`).
    report_per_aspect: rewrites per aspect in mqr_report.md.

  Returns:
    The `mqr.Stats` (also written to mqr_stats.json).
  """
  if equal is None:
    from mathrl import rewards  # pylint: disable=g-import-not-at-top
    equal = rewards.math_equal
  if solver is not None and solver_k < 1:
    raise ValueError(f"the answer check needs solver k >= 1, got {solver_k}")
  aspects = mqr.check_aspects(aspects)
  filters = dict(filters or {"max_length_ratio": 6.0,
                             "copy_threshold": 0.95})
  stats = mqr.Stats(aspects)
  sources = select_sources(source, num_questions, stats, equal)
  candidates = _generate(sources, aspects, template, generator, stats,
                         filters)
  if solver is not None:
    _check_answers(candidates, solver, solver_k, stats, equal)
  records = _write(candidates, out_dir, generator.name, template.version,
                   stats, report_per_aspect)
  summary = {
      "template_version": template.version, "generator": generator.name,
      "solver": solver.name if solver is not None else None,
      "solver_k": solver_k if solver is not None else 0,
      "source_questions": len(sources), "kept": len(records),
      "per_aspect": stats.as_dict(),
      "per_question": cost_per_question(stats, len(sources)),
      "generator_counts": dict(generator.counts),
      "solver_counts": dict(solver.counts) if solver is not None else {},
  }
  _dump_json(summary, os.path.join(out_dir, "mqr_stats.json"))
  return stats


def cost_per_question(stats: mqr.Stats, num_sources: int) -> dict[str, float]:
  """Mean requests and tokens per source question, over all aspects.

  Requests count every reply, cached or not (what a fresh run pays).
  """
  names = ("requested", "gen_prompt_tokens", "gen_completion_tokens",
           "solved", "solve_prompt_tokens", "solve_completion_tokens")
  totals = {k: sum(c[k] for c in stats.counts.values()) for k in names}
  totals["gen_requests"] = totals.pop("requested")
  totals["solve_requests"] = totals.pop("solved")
  n = max(num_sources, 1)
  return {k: v / n for k, v in totals.items()}


def _write(candidates, out_dir, generator_name, version, stats,
           report_per_aspect) -> list[dict[str, Any]]:
  kept, rejected = [], []
  for c in candidates:
    stats.add(c["aspect"], c["verdict"])
    extra = {k: c[k] for k in ("solver_answers", "solver_detail") if k in c}
    record = mqr.make_record(
        c["source"], c["aspect"], c["rewrite"] or "",
        generator=generator_name, template_version=version,
        verdict=c["verdict"], **extra)
    if c["verdict"] == "kept":
      kept.append(record)
    else:
      rejected.append({**record, "reply": c["reply"]})
  os.makedirs(out_dir, exist_ok=True)
  _dump_jsonl(kept, os.path.join(out_dir, "mqr.jsonl"))
  _dump_jsonl(rejected, os.path.join(out_dir, "mqr_rejected.jsonl"))
  text = mqr.report(kept, report_per_aspect)
  if rejected:
    text += "\n" + mqr.report(rejected, report_per_aspect).replace(
        "# MQR rewrites", "# Rejected MQR rewrites", 1)
  with open(os.path.join(out_dir, "mqr_report.md"), "w",
            encoding="utf-8") as f:
    f.write(text)
  return kept


def _dump_jsonl(rows, path: str) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    for row in rows:
      f.write(json.dumps(row, ensure_ascii=False) + "\n")
  os.replace(tmp, path)


def _dump_json(obj, path: str) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=2)
  os.replace(tmp, path)


# --- from a config ------------------------------------------------------------


def make_backend(section, cache: mqr_backends.Cache, *, seed: int,
                 models: dict[str, Any] | None = None, log=None):
  """A back end from an `augment.generator` / `augment.solver` section.

  Args:
    section: the ConfigDict (fields documented in configlib).
    cache: the run's request cache.
    seed: the run's seed (local sampling).
    models: loaded local models by path, shared between generator and
      solver (filled in here).
    log: progress printer.
  """
  if section.backend == "openai":
    base_url = section.base_url or os.environ.get("OPENAI_BASE_URL", "")
    return mqr_backends.OpenAIBackend(
        base_url=base_url, model=section.model,
        api_key=os.environ.get(section.api_key_env, "")
        if section.api_key_env else "",
        max_tokens=section.max_new_tokens, temperature=section.temperature,
        top_p=section.top_p, batch_size=section.batch_size,
        concurrency=section.concurrency, max_retries=section.max_retries,
        timeout_s=section.timeout_s, backoff_s=section.backoff_s,
        cache=cache, log=log)
  if section.backend != "local":
    raise ValueError(f"augment backend {section.backend!r}: use 'local' or "
                     "'openai'")
  from mathrl import sampling  # pylint: disable=g-import-not-at-top
  models = {} if models is None else models
  key = (section.model, section.tokenizer)
  if key not in models:
    models[key] = mqr_backends.load_local(
        section.model, tokenizer_path=section.tokenizer)
  model, tokenizer = models[key]
  method = (sampling.Greedy() if section.temperature == 0 else
            sampling.TopP(section.top_p, section.temperature))
  return mqr_backends.LocalBackend(
      model, tokenizer, name=section.model,
      max_new_tokens=section.max_new_tokens, method=method,
      batch_size=section.batch_size, buckets=tuple(section.buckets),
      seed=seed, cache=cache, log=log)


def run(config, workdir: str, log=print) -> mqr.Stats:
  """`--mode=augment`: rewrites the config's training questions."""
  from mathrl import builders  # pylint: disable=g-import-not-at-top
  a = config.augment
  out_dir = a.output_dir or workdir
  cache = mqr_backends.Cache(a.cache or os.path.join(out_dir,
                                                     "mqr_cache.jsonl"))
  if cache.torn_lines:
    log(f"mqr: {cache.torn_lines} unreadable cache line(s) ignored (a kill "
        "mid-write); those requests are sent again")
  models = {}
  generator = make_backend(a.generator, cache, seed=config.seed,
                           models=models, log=log)
  solver = (make_backend(a.solver, cache, seed=config.seed, models=models,
                         log=log) if a.solver.k > 0 else None)
  template = mqr.make_template(a.template.system, a.template.user,
                               dict(a.template.instructions))
  source = builders.make_train_source(config, workdir)
  stats = augment(
      source, generator=generator, template=template,
      aspects=tuple(a.aspects), out_dir=out_dir,
      num_questions=a.num_questions, solver=solver, solver_k=a.solver.k,
      filters={"max_length_ratio": a.filters.max_length_ratio,
               "copy_threshold": a.filters.copy_threshold,
               "require_tags": a.filters.require_tags},
      report_per_aspect=a.report_per_aspect)
  log(stats.table())
  log(f"mqr: wrote {os.path.join(out_dir, 'mqr.jsonl')} (report: "
      f"{os.path.join(out_dir, 'mqr_report.md')})")
  return stats
