"""`deterministic=true`: the torch switches for repeatable GPU runs (process-wide, so checked in a child)."""

import json
import subprocess
import sys

from fpbench.__main__ import preflight

_PROBE = """
import json, os, torch
from fpbench.determinism import enable_deterministic
before = torch.are_deterministic_algorithms_enabled()
enable_deterministic()
print(json.dumps({"before": before, "algos": torch.are_deterministic_algorithms_enabled(),
                  "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
                  "benchmark": torch.backends.cudnn.benchmark, "tf32": torch.backends.cuda.matmul.allow_tf32,
                  "cudnn_tf32": torch.backends.cudnn.allow_tf32,
                  "cublas": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}))
"""


def test_enable_deterministic_sets_every_switch():
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True).stdout
    flags = json.loads(out.strip().splitlines()[-1])
    assert flags == {"before": False, "algos": True, "warn_only": True, "benchmark": False, "tf32": False,
                     "cudnn_tf32": False, "cublas": ":4096:8"}


def test_deterministic_is_a_validated_config_key():
    preflight(["sweep=main", "deterministic=true", "logger=none"])
