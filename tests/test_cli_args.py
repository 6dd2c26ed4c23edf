"""Command-line spellings: `+sweep=table1` (as the paper-reproduction docs write it) and `sweep=table1`."""

import pytest

from fpbench.__main__ import preflight, rewrite_group_appends


def test_plus_group_is_read_as_a_group_choice():
    argv = ["+sweep=table1", "+size=smoke", "+foo=1", "treatment.t=3", "+metrics=fast"]
    assert rewrite_group_appends(argv) == ["sweep=table1", "size=smoke", "+foo=1", "treatment.t=3", "metrics=fast"]


@pytest.mark.parametrize("spelling", ["+sweep=table3", "sweep=table3"])
def test_both_sweep_spellings_compose_and_validate(spelling):
    preflight(rewrite_group_appends([spelling, "size=smoke", "logger=none"]))
