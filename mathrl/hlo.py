"""Reading XLA's optimized HLO text: loops, their trip counts, collectives.

  text = jax.jit(f).lower(...).compile().as_text()
  hlo.loop_collectives(text)    # collectives executed inside while loops
  hlo.loop_trip_counts(text)    # known trip counts of the while loops

Used by `mathrl.aot` to check that the sampler's decode loop moves no
weights between chips, and to know when XLA's cost analysis (which counts a
loop body once) is incomplete.
"""

import dataclasses
import math
import re

_COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all",
                "collective-permute", "collective-broadcast")


@dataclasses.dataclass
class Collective:
  """One collective op of the optimized HLO, with its result size."""

  op: str
  shape: str
  bytes: int


_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "bf16": 2,
                "f16": 2, "s32": 4, "u32": 4, "f32": 4, "s64": 8, "u64": 8,
                "f64": 8}
_ARRAY = re.compile(r"\b([a-z]+\d*)\[([\d,]*)\]")
_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")
_CALLEE = re.compile(
    r"(?:body|condition|to_apply|calls|branch_computations)="
    r"\{?%?([\w.\-]+(?:,\s*%?[\w.\-]+)*)\}?")


def _shape_bytes(text: str) -> int:
  """Total bytes of the array shapes in an HLO result type."""
  total = 0
  for dtype, dims in _ARRAY.findall(text):
    if dtype in _DTYPE_BYTES:
      total += math.prod(int(d) for d in dims.split(",") if d) * (
          _DTYPE_BYTES[dtype])
  return total


def _computations(hlo: str) -> dict[str, list[str]]:
  """HLO module text → {computation name: its instruction lines}."""
  comps, current = {}, None
  for line in hlo.splitlines():
    m = _COMPUTATION.match(line.strip())
    if m and not line.startswith(" "):
      current = m.group(1)
      comps[current] = []
    elif current is not None and line.startswith(" "):
      comps[current].append(line.strip())
  return comps


def loop_collectives(hlo: str) -> list[Collective]:
  """Collectives executed inside any while loop of an optimized HLO module.

  Walks from every `while` op's body through the computations it calls
  (fusions, nested loops, conditionals) and lists each collective with the
  bytes of its result (per chip: the module is one chip's program).
  """
  comps = _computations(hlo)
  todo = []
  for lines in comps.values():
    for line in lines:
      if " while(" in line:
        todo += re.findall(r"body=%?([\w.\-]+)", line)
  seen, found = set(), []
  while todo:
    name = todo.pop()
    if name in seen or name not in comps:
      continue
    seen.add(name)
    for line in comps[name]:
      for group in _CALLEE.findall(line):
        todo += [n.strip().lstrip("%") for n in group.split(",")]
      lhs, _, rhs = line.partition("=")
      op = re.match(r"\s*(?:\([^=]*\)|[\w\[\]{},:\s]*?)\s*([a-z\-]+)\(",
                    rhs)
      opname = op.group(1) if op else ""
      base = opname.removesuffix("-start")
      if base in _COLLECTIVES and not opname.endswith("-done"):
        result = rhs[:op.start(1)]
        found.append(Collective(op=opname, shape=result.strip(),
                                bytes=_shape_bytes(result)))
  return found


def loop_trip_counts(hlo: str) -> list[int]:
  """Trip counts (or their upper limits) of the while loops of a module.

  XLA's cost analysis counts a loop body once, so a program whose loops
  run more than once (a layer scan, gradient accumulation, the decode
  loop) reports a fraction of its FLOPs and bytes. The count is the
  `known_trip_count` XLA annotates, else the constant N of the loop
  condition's `counter < N` (a scan's form; for a loop that may stop
  early, like the sampler's, N is its most).
  """
  comps = _computations(hlo)
  counts = []
  for lines in comps.values():
    for line in lines:
      if " while(" not in line:
        continue
      known = re.search(r'"known_trip_count":\{"n":"(\d+)"', line)
      cond = re.search(r"condition=%?([\w.\-]+)", line)
      if known:
        counts.append(int(known.group(1)))
      elif cond and cond.group(1) in comps:
        body = "\n".join(comps[cond.group(1)])
        limits = re.findall(r"= s32\[\]\S* constant\((\d+)\)", body)
        if limits and "direction=LT" in body:
          counts.append(max(int(n) for n in limits))
  return counts
