"""The bad-input figure quoted in the README, counted from the case tables, never written by hand.

Runs after the per-case tests of a full run (file order) and reuses their outcomes; run alone, it
runs every case itself: `python -m pytest tests/test_hardening_summary.py -q -rP`.
"""

from test_hardening_bad_inputs import CASES, RESULTS, check_case
from test_hardening_cli import CLI_CASES, check_cli_case


def test_bad_inputs_summary(tmp_path, monkeypatch):
    problems = {}
    for i, c in enumerate(CASES):
        if c.id not in RESULTS:
            monkeypatch.setenv("FPBENCH_CACHE", str(tmp_path / f"cache{i}"))
            RESULTS[c.id] = check_case(c, tmp_path / f"case{i}")
        if RESULTS[c.id]:
            problems[c.id] = RESULTS[c.id]
    cli = check_cli_case.results
    for i, c in enumerate(CLI_CASES):
        if c.id not in cli:
            cli[c.id] = check_cli_case(c, tmp_path / f"cli{i}")
        if cli[c.id]:
            problems[c.id] = cli[c.id]
    total = len(CASES) + len(CLI_CASES)
    entries = sorted({c.entry for c in CASES} | {c.entry for c in CLI_CASES})
    print(f"{total} bad inputs tried over {len(entries)} entry points ({', '.join(entries)}): "
          f"{total - len(problems)} refused with one clear line")
    assert total >= 30
    assert not problems, "\n".join(f"  {k}: {v}" for k, v in problems.items())
    print(f"{total} bad inputs tried, all refused with a clear message")
