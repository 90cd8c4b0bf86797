"""Reading XLA's optimized HLO text: loops, their trip counts, collectives.

  text = jax.jit(f).lower(...).compile().as_text()
  hlo.loop_collectives(text)    # collectives executed inside while loops
  hlo.loop_trip_counts(text)    # known trip counts of the while loops
  hlo.hbm_traffic(text)         # bytes the program moves to/from HBM
  hlo.hbm_traffic_by_instruction(text)  # the same, per instruction
  hlo.peak_live_buffers(dumped)  # what is live at the memory peak

Used by `mathrl.aot` to check that the sampler's decode loop moves no
weights between chips, to know when XLA's cost analysis (which counts a
loop body once) is incomplete, and to count a decode step's HBM traffic
without the on-chip (VMEM) reads XLA's cost analysis adds;
`benchmarks/memory.py --dump_to` lists the buffers live at a train step's
memory peak.
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
# A called computation, or a braced list of them: `body=%b`, `calls=%f`,
# `branch_computations={%x, %y}`.
_CALLEE = re.compile(
    r"(?:body|condition|to_apply|calls|branch_computations)="
    r"(\{[^}]*\}|%?[\w.\-]+)")


def _names(callees: str) -> list[str]:
  """`%a` or `{%a, %b}` (a `_CALLEE`/`_EXECUTED` match) → ['a', 'b']."""
  return [n.strip().lstrip("%") for n in callees.strip("{}").split(",")]


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
  bodies = []
  for lines in comps.values():
    for line in lines:
      if " while(" in line:
        bodies += re.findall(r"body=%?([\w.\-]+)", line)
  return _collectives_under(comps, bodies)


def collectives(hlo: str) -> list[Collective]:
  """Every collective of an optimized HLO module: those of its entry
  computation and of everything it calls (loops included), as
  `loop_collectives` lists them."""
  entry = _entry_name(hlo)
  if entry is None:
    raise ValueError("no ENTRY computation in the HLO text")
  return _collectives_under(_computations(hlo), [entry])


def _entry_name(hlo: str) -> str | None:
  """The name of the module's ENTRY computation (None if it has none)."""
  entry = re.search(r"^ENTRY\s+%?([\w.\-]+)", hlo, re.MULTILINE)
  return entry.group(1) if entry else None


def _collectives_under(comps: dict[str, list[str]],
                       roots: list[str]) -> list[Collective]:
  """The collectives in `roots` and the computations they call."""
  todo, seen, found = list(roots), set(), []
  while todo:
    name = todo.pop()
    if name in seen or name not in comps:
      continue
    seen.add(name)
    for line in comps[name]:
      for group in _CALLEE.findall(line):
        todo += _names(group)
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


_SKIP_OPS = frozenset((
    "parameter", "constant", "tuple", "get-tuple-element", "bitcast",
    "after-all", "partition-id", "replica-id", "while", "conditional",
    "call", "opt-barrier", "copy-done", "slice-done", "iota"))
_SLICING_OPS = frozenset(("slice", "dynamic-slice", "gather"))
_EXECUTED = re.compile(
    r"(?:body|condition|branch_computations|true_computation|"
    r"false_computation)=(\{[^}]*\}|%?[\w.\-]+)")


@dataclasses.dataclass
class Instruction:
  """One parsed HLO instruction: `name = type op(operands), attributes`."""

  name: str
  type: str
  op: str
  operands: list[str]
  attributes: str
  args: str = ""
  """The text between the op's parentheses."""


def _matching(text: str, start: int) -> int:
  """Index just past the bracket that closes the one at `text[start]`."""
  depth = 0
  for i in range(start, len(text)):
    depth += text[i] in "({"
    depth -= text[i] in ")}"
    if depth == 0:
      return i + 1
  return len(text)


def parse_instruction(line: str) -> Instruction | None:
  """Splits an instruction line of optimized HLO text (None if it is not)."""
  m = re.match(r"(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*", line)
  if not m:
    return None
  rest = line[m.end():]
  end = _matching(rest, 0) if rest.startswith("(") else rest.find(" ")
  type_, rest = rest[:end], rest[end:].lstrip()
  op = re.match(r"([a-z][\w\-]*)\(", rest)
  if not op:
    return None
  close = _matching(rest, op.end() - 1)
  args = rest[op.end():close - 1]
  operands = re.findall(r"%([\w.\-]+)", args)
  return Instruction(m.group(1), type_, op.group(1), operands,
                     rest[close:], args)


def _arrays(type_: str) -> list[tuple[int, bool]]:
  """(bytes, in HBM) of each array of a type; layouts with S(n), n > 0,
  live in another memory space (on TPU: VMEM, SMEM, ...)."""
  out = []
  for m in re.finditer(r"\b([a-z]+\d*)\[([\d,]*)\](\{[^}]*\})?", type_):
    if m.group(1) not in _DTYPE_BYTES:
      continue
    size = math.prod(int(d) for d in m.group(2).split(",") if d)
    space = re.search(r"S\((\d+)\)", m.group(3) or "")
    out.append((size * _DTYPE_BYTES[m.group(1)],
                not space or space.group(1) == "0"))
  return out


def _hbm(type_: str) -> int:
  return sum(b for b, in_hbm in _arrays(type_) if in_hbm)



def _fused_parameters(fused: list[Instruction]) -> dict[int, str]:
  """{parameter number: instruction name} of a fused computation."""
  return {int(i.args): i.name for i in fused if i.op == "parameter"}


def _in_place_update(fused: list[Instruction]) -> tuple[str, int] | None:
  """(buffer parameter, update bytes) when the fusion's root is a
  dynamic-update-slice of one of its parameters (updated in place)."""
  by_name = {i.name: i for i in fused}
  root = fused[-1] if fused else None
  if root is None or root.op != "dynamic-update-slice":
    return None
  buf = by_name.get(root.operands[0])
  while buf is not None and buf.op == "bitcast":
    buf = by_name.get(buf.operands[0])
  update = by_name.get(root.operands[1])
  if buf is None or buf.op != "parameter" or update is None:
    return None
  return buf.name, sum(b for b, _ in _arrays(update.type))


def _fusion_traffic(inst: Instruction, types: dict[str, str],
                    fused: list[Instruction]) -> int:
  """HBM bytes one fusion kernel reads and writes.

  An operand that the fusion only slices (slice, dynamic-slice or gather
  of it) costs the slices; the buffer that a root dynamic-update-slice
  updates in place costs nothing to read, and the write is the update.
  """
  params = _fused_parameters(fused)
  in_place = _in_place_update(fused)
  users: dict[str, list[Instruction]] = {}
  for i in fused:
    for o in i.operands:
      users.setdefault(o, []).append(i)
  total = 0
  for pos, operand in enumerate(inst.operands):
    full = _hbm(types.get(operand, ""))
    param = params.get(pos)
    if not full or (in_place and param == in_place[0]):
      continue
    uses = users.get(param, []) if param else []
    if uses and all(u.op in _SLICING_OPS and u.operands[0] == param
                    for u in uses):
      full = min(full, sum(_arrays(u.type)[0][0] for u in uses))
    total += full
  out = _hbm(inst.type)
  return total + (min(out, in_place[1]) if in_place and out else out)


def _async_copy_traffic(inst: Instruction) -> int:
  """copy-start (dst, src, ctx) / slice-start ((src), dst, ctx): the bytes
  moved, counted on each side that is in HBM."""
  arrays = _arrays(inst.type)
  if inst.op == "copy-start":
    (dst, dst_hbm), (_, src_hbm) = arrays[0], arrays[1]
  else:
    (_, src_hbm), (dst, dst_hbm) = arrays[0], arrays[1]
  return dst * (int(src_hbm) + int(dst_hbm))


def instruction_traffic(inst: Instruction, types: dict[str, str],
                        comps: dict[str, list[Instruction]]) -> int:
  """HBM bytes one top-level instruction of a chip's program moves."""
  if inst.op in _SKIP_OPS or inst.op.endswith("-done"):
    return 0
  if inst.op == "custom-call" and "ConcatBitcast" in inst.attributes:
    return 0  # joins the slices of a sliced prefetch: no data moves
  if inst.op in ("copy-start", "slice-start"):
    return _async_copy_traffic(inst)
  if inst.op == "fusion":
    callee = re.search(r"calls=%?([\w.\-]+)", inst.attributes)
    return _fusion_traffic(inst, types, comps.get(
        callee.group(1) if callee else "", []))
  if inst.op == "dynamic-update-slice":
    update = sum(b for b, _ in _arrays(types.get(inst.operands[1], "")))
    return update * (int(bool(_hbm(types.get(inst.operands[1], ""))))
                     + int(bool(_hbm(inst.type))))
  return sum(_hbm(types.get(o, "")) for o in inst.operands) + _hbm(
      inst.type)


def _refill_prefetches(insts: list[Instruction]) -> set[str]:
  """Names of the copy-starts that only refill a cross-program prefetch.

  XLA may prefetch a parameter into VMEM before the program starts
  (`copy-start(p), cross_program_prefetch_index=...`), free that VMEM once
  the last reader is done, and copy `p` again at the end of the program
  (a copy-start of the same parameter whose copy-done nothing reads), so
  that the next execution finds it in VMEM instead of prefetching it
  again. In a run of many executions (decode steps), each reads the
  parameter from HBM once: the refill stands in for the next run's
  prefetch and is not counted.
  """
  prefetched = {i.operands[0] for i in insts if i.op == "copy-start"
                and "cross_program_prefetch_index" in i.attributes}
  used = {o for i in insts for o in i.operands}
  return {i.operands[0] for i in insts
          if i.op == "copy-done" and i.name not in used} & {
              i.name for i in insts if i.op == "copy-start"
              and i.operands[0] in prefetched
              and "cross_program_prefetch_index" not in i.attributes}


def hbm_traffic(hlo: str) -> int:
  """Bytes one chip's optimized program moves to and from HBM, estimated.

  XLA's `cost_analysis()["bytes accessed"]` counts every operand and
  result of every instruction, whatever memory it is in. On TPU, XLA
  prefetches weights and cache blocks from HBM into on-chip VMEM (async
  `slice-start`s joined by `ConcatBitcast`, `copy-start`s), and the cost
  analysis then counts a prefetched array several times: the slices'
  source operand, the slices, the join, and every read from VMEM. This
  count keeps only HBM: each top-level instruction of the executed
  computations (the entry, while bodies and conditions, conditional
  branches; a loop body once) moves the HBM-resident (no `S(n)`, n > 0,
  in the layout) operands it reads and results it writes; an async copy
  moves its bytes once per HBM side, and the end-of-program refill of a
  cross-program prefetch is the next execution's read (see
  `_refill_prefetches`); a fusion reads only the slices it takes of an
  operand and writes only the update of a buffer it updates in place
  (see `_fusion_traffic`). Sizes are logical (elements × dtype bytes):
  the padding of an array's minor dimensions up to its layout's tile
  (e.g. `T(8,128)`) is not counted.
  """
  return sum(t.bytes for t in hbm_traffic_by_instruction(hlo))


@dataclasses.dataclass
class Traffic:
  """HBM bytes one executed top-level instruction moves (`hbm_traffic`)."""

  computation: str
  instruction: Instruction
  bytes: int


def hbm_traffic_by_instruction(hlo: str) -> list[Traffic]:
  """`hbm_traffic`'s terms: every instruction that moves HBM bytes, with
  its bytes, largest first (a loop body's instructions once).

  E.g. the copies that write a buffer XLA updated in VMEM back to HBM
  are the `copy-start`s whose first (destination) array has no `S(1)`.
  """
  comps = {name: [i for i in map(parse_instruction, lines) if i]
           for name, lines in _computations(hlo).items()}
  entry = _entry_name(hlo)
  todo = [entry] if entry else []
  seen, found = set(), []
  while todo:
    name = todo.pop()
    if name in seen or name not in comps:
      continue
    seen.add(name)
    types = {i.name: i.type for i in comps[name]}
    refills = _refill_prefetches(comps[name])
    for inst in comps[name]:
      for group in _EXECUTED.findall(inst.attributes):
        todo += _names(group)
      moved = 0 if inst.name in refills else instruction_traffic(
          inst, types, comps)
      if moved:
        found.append(Traffic(name, inst, moved))
  return sorted(found, key=lambda t: -t.bytes)


_LIVE_AT_PEAK = re.compile(r"^\s*([\w.\-]+)(\{[\d,\s]*\}): (\d+) bytes")


def peak_live_buffers(live_range: str) -> list[tuple[str, int]]:
  """The buffers live at a module's peak, largest first: (value, bytes).

  Reads the "Live ranges at N (peak):" section of XLA's live-range dump
  (`XLA_FLAGS=--xla_dump_to=DIR --xla_dump_hlo_as_text` writes it as
  `*-live-range.txt`, next to the buffer assignment): every HLO value
  live at the instruction where the module's memory peaks, arguments
  (named after the jitted function's parameters, e.g. `state_params...`)
  and temporaries (named after the instruction that writes them) alike;
  an element of a tuple-shaped value keeps its index (`while.3{7}`).
  """
  found, inside = [], False
  for line in live_range.splitlines():
    if "(peak):" in line:
      inside = True
      continue
    if inside:
      m = _LIVE_AT_PEAK.match(line)
      if not m:
        break
      name, index, size = m.groups()
      found.append((name + ("" if index == "{}" else index), int(size)))
  return sorted(found, key=lambda x: -x[1])
