"""benchmarks/gpu_check.py runs, on the CPU, every check that needs no GPU, and says which passed."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers import ROOT


def test_gpu_check_without_cuda_passes_its_cpu_checks(tmp_path) -> None:
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--skip-cuda", "--out", str(out),
                           "--cases", "tsn_clip,tsm_r50_video", "--videos", "1", "--seconds", "1", "--sizes", "64x48",
                           "--clips", "3"],
                          env=dict(os.environ, OMP_NUM_THREADS="2"), capture_output=True, text=True, timeout=900,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["ok"] and report["device"] == "cpu"
    assert set(report["parity"]["max_rel_error"]) == {"tsn_clip", "tsm_r50_video"}
    assert all(e <= 1e-4 for e in report["parity"]["max_rel_error"].values())
    assert report["precision"]["min_cosine"]["bf16"] >= 0.999
    assert set(report["speed"]["figures"]["64x48"]) == {"baseline", "default"} and report["speed"]["clips"] == 3
    assert "torchrun" not in report and "out_of_memory" not in report
