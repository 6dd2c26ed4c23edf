"""Fuzzing the checkpoint loader with mutated fixture checkpoints (hypothesis drives the mutations).

Every input goes through `load_generator` end to end (read, rebuild, strict load). The contract per
input: it loads, or it is refused with the loader's own one-line `CheckpointError`; nothing in it
runs (an audit hook watches for process, exec and import events, hostile payloads target a marker
file); it finishes within `TIME_LIMIT_S` and the process' peak memory stays within
`MEMORY_BUDGET_MB` of where the run started (an address-space limit keeps a runaway input from
hurting the machine). The default run tries 60 inputs; `pytest -m slow` 5,000.
"""

from __future__ import annotations

import contextlib
import pickletools
import resource
import signal
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fpbench.errors import CheckpointError
from fpbench.generators import load_generator

TIME_LIMIT_S = 20.0          # per input; a genuine fixture loads in ~0.1 s
MEMORY_BUDGET_MB = 1024      # peak-RSS growth over the whole run
ADDRESS_SPACE_SLACK = 6 << 30
FIXTURES = ("sg2_a.pkl", "sg3_t.pkl", "sg2_a.safetensors", "sg3_t.pt")
HOSTILE_GLOBALS = [("os", "system"), ("posix", "system"), ("builtins", "eval"), ("builtins", "exec"),
                   ("subprocess", "check_output"), ("builtins", "__import__"), ("builtins", "getattr"),
                   ("torch", "load"), ("numpy", "load"), ("pickle", "loads"), ("runpy", "run_path"),
                   ("torch_utils.persistence", "import_hook"), ("dnnlib.util", "call_func_by_name")]
WATCHED_EVENTS = ("os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "subprocess.Popen",
                  "exec", "ctypes.dlopen", "socket.connect", "pickle.find_class", "builtins.input")


# ---------------------------------------------------------------------------------------------
# Code-execution watch: an audit hook (hooks cannot be removed, so it is gated by a flag)

class _Watch:
    active = False
    events: list = []


def _audit(event, args):
    if _Watch.active and (event in WATCHED_EVENTS or (event == "import" and args and args[0] in
                                                      ("os", "subprocess", "runpy", "ctypes", "socket"))):
        _Watch.events.append((event, repr(args)[:120]))


sys.addaudithook(_audit)


class _TooSlow(BaseException):
    """Raised by the timer; a BaseException so no `except Exception` in the loader swallows it."""


def _alarm(signum, frame):
    raise _TooSlow()


# ---------------------------------------------------------------------------------------------
# Mutations

@dataclass
class Source:
    data: bytes
    suffix: str
    sidecar: bytes | None
    ops: list = field(default_factory=list)   # (name, arg, raw) for pickles, FRAMEs dropped


def _load_sources(fixtures_dir: Path, tmp: Path) -> dict[str, Source]:
    out = {}
    for name in FIXTURES:
        stem = name.split(".")[0]
        sidecar = (fixtures_dir / f"{stem}.json").read_bytes()
        if name.endswith(".pt"):   # a state-dict .pt made from the safetensors fixture
            from safetensors.torch import load_file
            path = tmp / name
            torch.save(load_file(fixtures_dir / f"{stem}.safetensors"), path)
            data = path.read_bytes()
        else:
            data = (fixtures_dir / name).read_bytes()
        src = Source(data, "." + name.split(".")[1], sidecar if not name.endswith(".pkl") else None)
        if name.endswith(".pkl"):
            ops = list(pickletools.genops(data))
            for i, (op, arg, pos) in enumerate(ops):
                end = ops[i + 1][2] if i + 1 < len(ops) else len(data)
                if op.name != "FRAME":
                    src.ops.append((op.name, arg, data[pos:end]))
        out[name] = src
    return out


def _str_op(s: str) -> bytes:
    b = s.encode()
    return (b"\x8c" + bytes([len(b)]) + b) if len(b) < 256 else (b"X" + struct.pack("<I", len(b)) + b)


def _int_op(v: int) -> bytes:
    if -(2**31) <= v < 2**31:
        return b"J" + struct.pack("<i", v)
    raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


INT_OPS = ("BININT", "BININT1", "BININT2", "LONG1")
STR_OPS = ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE")
EXTREME_INTS = [0, -1, 1, 2, 3, 255, 256, 2**16, 2**24 + 1, 2**31 - 1, -(2**31), 2**40, 2**63 - 1]


def mutate(src: Source, recipe: list[tuple], marker: Path) -> bytes:
    """Apply the recipe's mutations in order; op-level ones rewrite a pickle opcode by opcode."""
    data = src.data
    ops = list(src.ops)
    op_level = [m for m in recipe if m[0] in ("int", "string", "global", "payload")]
    if op_level and ops:
        for kind, frac, value in op_level:
            if kind == "int":
                idx = [i for i, o in enumerate(ops) if o[0] in INT_OPS]
                i = idx[int(frac * len(idx)) % len(idx)]
                ops[i] = (ops[i][0], value, _int_op(value))
            elif kind == "string":
                idx = [i for i, o in enumerate(ops) if o[0] in STR_OPS]
                i = idx[int(frac * len(idx)) % len(idx)]
                ops[i] = (ops[i][0], value, _str_op(value))
            else:   # global / payload: retarget a global written as STR MEMOIZE STR MEMOIZE STACK_GLOBAL
                idx = [i for i in range(4, len(ops)) if ops[i][0] == "STACK_GLOBAL" and ops[i - 1][0] == "MEMOIZE"
                       and ops[i - 2][0] in STR_OPS and ops[i - 3][0] == "MEMOIZE" and ops[i - 4][0] in STR_OPS]
                i = idx[int(frac * len(idx)) % len(idx)]
                module, name = value
                ops[i - 4] = (ops[i - 4][0], module, _str_op(module))
                ops[i - 2] = (ops[i - 2][0], name, _str_op(name))
                if kind == "payload":   # call it at once: module.name("touch MARKER")
                    ops[i] = ("STACK_GLOBAL", None, b"\x93" + _str_op(f"touch {marker}") + b"\x85R")
        data = b"".join(o[2] for o in ops)
    for m in recipe:
        kind = m[0]
        n = len(data)
        if n == 0:
            break
        pos = int(m[1] * n) % n
        if kind == "flip":
            data = data[:pos] + bytes([data[pos] ^ m[2]]) + data[pos + 1:]
        elif kind == "truncate":
            data = data[:pos]
        elif kind == "delete":
            data = data[:pos] + data[pos + m[2]:]
        elif kind == "insert":
            data = data[:pos] + m[2] + data[pos:]
        elif kind == "dup":
            data = data[:pos] + data[pos:pos + m[2]] + data[pos:]
    return data


FRAC = st.floats(0, 1, exclude_max=True, allow_nan=False)
BYTE_MUTATION = st.one_of(
    st.tuples(st.just("flip"), FRAC, st.integers(1, 255)),
    st.tuples(st.just("truncate"), FRAC),
    st.tuples(st.just("delete"), FRAC, st.integers(1, 64)),
    st.tuples(st.just("insert"), FRAC, st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("dup"), FRAC, st.integers(1, 64)),
)
OP_MUTATION = st.one_of(
    st.tuples(st.just("int"), FRAC, st.sampled_from(EXTREME_INTS)),
    st.tuples(st.just("string"), FRAC, st.sampled_from(["", "G", "G_ema", "Generator", "SynthesisInput",
                                                        "_parameters", "_modules", "x" * 300, "\u00e9"])),
    st.tuples(st.just("global"), FRAC, st.sampled_from(HOSTILE_GLOBALS)),
    st.tuples(st.just("payload"), FRAC, st.sampled_from(HOSTILE_GLOBALS[:6])),
)
RECIPES = st.tuples(st.sampled_from(FIXTURES),
                    st.lists(st.one_of(BYTE_MUTATION, OP_MUTATION), min_size=1, max_size=4))


# ---------------------------------------------------------------------------------------------
# The run

@dataclass
class Tally:
    tried: int = 0
    loaded: int = 0
    refused: int = 0
    worst_s: float = 0.0
    failures: list = field(default_factory=list)

    def line(self, rss_growth_mb: float) -> str:
        return (f"{self.tried} mutated checkpoints tried: {self.loaded} loaded, {self.refused} refused with "
                f"CheckpointError, {len(self.failures)} other outcomes; slowest {self.worst_s:.2f} s, "
                f"peak memory +{rss_growth_mb:.0f} MB")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextlib.contextmanager
def _guarded():
    """Address-space cap (a runaway allocation fails instead of swapping the machine), a timer,
    the audit watch and one torch thread (the loader's work is small)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    vm = int(Path("/proc/self/status").read_text().split("VmSize:")[1].split()[0]) * 1024
    cap = vm + ADDRESS_SPACE_SLACK
    if hard == resource.RLIM_INFINITY or cap < hard:
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    old_handler = signal.signal(signal.SIGALRM, _alarm)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def try_one(data: bytes, src: Source, work: Path, marker: Path, tally: Tally, label) -> None:
    path = work / f"fuzz{src.suffix}"
    path.write_bytes(data)
    sidecar = path.with_suffix(".json")
    if src.sidecar is not None:
        sidecar.write_bytes(src.sidecar)
    elif sidecar.exists():
        sidecar.unlink()
    tally.tried += 1
    _Watch.events = []
    tic = time.perf_counter()
    outcome = None
    signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT_S)
    _Watch.active = True
    try:
        G = load_generator(path)
        assert isinstance(G, torch.nn.Module)
        tally.loaded += 1
    except CheckpointError as err:
        msg = str(err)
        if "\n" in msg or not msg.strip():
            outcome = f"CheckpointError message not one line: {msg[:200]!r}"
        elif "allocate" in msg.lower():
            outcome = f"memory exhausted while loading: {msg[:200]}"
        else:
            tally.refused += 1
    except _TooSlow:
        outcome = f"took more than {TIME_LIMIT_S} s"
    except Exception as err:  # noqa: BLE001 - anything else is what we are looking for
        outcome = f"{type(err).__name__}: {str(err)[:200]}"
    finally:
        _Watch.active = False
        signal.setitimer(signal.ITIMER_REAL, 0)
    tally.worst_s = max(tally.worst_s, time.perf_counter() - tic)
    if _Watch.events:
        outcome = f"code execution events {_Watch.events[:3]}"
    if marker.exists():
        outcome = "a payload ran (marker file created)"
        marker.unlink()
    if outcome:
        tally.failures.append((label, outcome))


def run_campaign(fixtures_dir: Path, tmp: Path, max_examples: int) -> tuple[Tally, float]:
    sources = _load_sources(fixtures_dir, tmp)
    marker = tmp / "PWNED"
    tally = Tally()
    start_rss = _rss_mb()

    @settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(RECIPES)
    def campaign(recipe):
        name, muts = recipe
        src = sources[name]
        try_one(mutate(src, muts, marker), src, tmp, marker, tally, (name, muts))

    with _guarded():
        campaign()
    return tally, _rss_mb() - start_rss


def _check(tally: Tally, growth: float, minimum: int) -> str:
    line = tally.line(growth)
    print(line)
    assert tally.tried >= minimum
    assert not tally.failures, f"{line}\n" + "\n".join(f"  {lbl}: {why}" for lbl, why in tally.failures[:20])
    assert tally.loaded + tally.refused == tally.tried
    assert growth <= MEMORY_BUDGET_MB, line
    return line


def test_fuzz_loader_quick(fixtures_dir, tmp_path):
    tally, growth = run_campaign(fixtures_dir, tmp_path, max_examples=60)
    _check(tally, growth, minimum=60)
    assert tally.refused > 0   # the mutations do hit the loader's checks


@pytest.mark.slow
def test_fuzz_loader_long(fixtures_dir, tmp_path):
    tally, growth = run_campaign(fixtures_dir, tmp_path, max_examples=5000)
    _check(tally, growth, minimum=5000)


# ---------------------------------------------------------------------------------------------
# Inputs the random search is unlikely to assemble, built on purpose

def _rewrite_first_tensor(src: Source, size: tuple, stride: tuple) -> bytes:
    """The first tensor of a genuine snapshot with another size and stride (geometry ops rewritten)."""
    ops = list(src.ops)
    start = next(i for i, o in enumerate(ops) if o[0] in STR_OPS and o[1] == "_rebuild_tensor_v2")
    # after the storage's REDUCE, MEMOIZE and the offset: size ints, TUPLEn, MEMOIZE, stride ints, TUPLEn
    first = next(i for i in range(start, len(ops)) if ops[i][0] == "REDUCE") + 3
    tup1 = next(i for i in range(first, len(ops)) if ops[i][0].startswith("TUPLE"))
    tup2 = next(i for i in range(tup1 + 2, len(ops)) if ops[i][0].startswith("TUPLE"))
    assert tup1 - first == len(size) and tup2 - tup1 - 2 == len(stride)
    new = [("", None, b"".join(_int_op(v) for v in size))] + ops[tup1:tup1 + 2] + \
          [("", None, b"".join(_int_op(v) for v in stride))]
    return b"".join(o[2] for o in ops[:first] + new + ops[tup2:])


def test_expanded_tensor_view_is_refused_before_allocating(fixtures_dir, tmp_path):
    """A 512-element storage viewed with stride 0 as 8192 x 8192 x 4 (1 GiB once copied) is refused
    while reading, not materialised: memory stays bounded by the file's size."""
    src = _load_sources(fixtures_dir, tmp_path)["sg2_a.pkl"]
    data = _rewrite_first_tensor(src, (8192, 8192, 4), (0, 0, 1))
    path = tmp_path / "expanded.pkl"
    path.write_bytes(data)
    before = _rss_mb()
    with _guarded(), pytest.raises(CheckpointError, match=r"^cannot read expanded.pkl: .*storage"):
        load_generator(path)
    assert _rss_mb() - before < 256


def test_oversized_init_kwargs_are_a_checkpoint_error(fixtures_dir, tmp_path):
    """init kwargs asking for a network far larger than the weights (z_dim = 2**40) are refused with
    the loader's error, not an allocator traceback."""
    src = _load_sources(fixtures_dir, tmp_path)["sg2_a.pkl"]
    ops = list(src.ops)
    i = next(i for i, o in enumerate(ops) if o[0] in STR_OPS and o[1] == "z_dim")
    memo = sum(o[0] == "MEMOIZE" for o in ops[:i + 1])     # the key's memo slot; later uses are BINGETs
    for j in range(len(ops) - 1):                         # every value stored under 'z_dim' -> 2**40
        if ((j == i or (ops[j][0] in ("BINGET", "LONG_BINGET") and ops[j][1] == memo))
                and ops[j + 1 + (j == i)][0] in INT_OPS):
            k = j + 1 + (j == i)
            ops[k] = ("LONG1", 2**40, _int_op(2**40))
    path = tmp_path / "huge.pkl"
    path.write_bytes(b"".join(o[2] for o in ops))
    with _guarded(), pytest.raises(CheckpointError, match=r"^cannot build a stylegan2 generator for huge.pkl"):
        load_generator(path)


# Inputs the long campaign once found crashing the loader, kept as regressions.
REGRESSIONS = [
    ("sg2_a.pkl", [("string", 0.48351315432911607, "_modules"), ("int", 0.9374332079639883, 0),
                   ("flip", 0.665787616479073, 255), ("string", 0.5225959554579889, "_modules")]),  # _modules = 0
]


def test_fuzz_regressions(fixtures_dir, tmp_path):
    sources = _load_sources(fixtures_dir, tmp_path)
    tally = Tally()
    with _guarded():
        for name, recipe in REGRESSIONS:
            try_one(mutate(sources[name], recipe, tmp_path / "PWNED"), sources[name], tmp_path,
                    tmp_path / "PWNED", tally, (name, recipe))
    assert not tally.failures and tally.refused == len(REGRESSIONS), tally.failures
