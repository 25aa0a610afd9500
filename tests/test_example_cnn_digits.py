"""The runnable CNN-on-digits slice example (examples/cnn_digits_slice.py) runs end to end (slow: trains)."""

import json
import runpy
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")


@pytest.mark.slow
def test_cnn_digits_slice_example(tmp_path, capsys, monkeypatch):
    script = Path(__file__).resolve().parents[1] / "examples" / "cnn_digits_slice.py"
    out = tmp_path / "fig.png"
    monkeypatch.setattr(sys, "argv", [str(script), "--out", str(out), "--epochs", "1", "--margin", "0.0"])
    runpy.run_path(str(script), run_name="__main__")
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out.stat().st_size > 0
    for mode in ("train-mode BN", "eval mode", "BN removed"):
        assert res[mode]["certified"] and res[mode]["regions"] > 1
