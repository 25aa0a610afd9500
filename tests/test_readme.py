"""Every code block of README.md runs as pasted.

Python blocks run in order in one fresh interpreter (later blocks may use names of earlier ones, as a reader
pasting them would), in a temporary directory holding a copy of ``examples/``. Bash blocks: every
``cpa-theory`` line must parse with the real argument parser and name files that exist; the cheap ones run;
the expensive ones are listed below, each with its reason.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(python|bash)\n(.*?)```", README, flags=re.S)

# Bash lines not run here, with the reason (a new expensive line must be added on purpose, or the test fails):
NOT_RUN = {
    "pip install": "installs packages (CI's .ci/run does this)",
    "python -m pytest": "is the test suite itself",
    "cpa-theory reproduce": "minutes: CI runs the quick start's `cpa-theory reproduce`",
    "cpa-theory sweep": "tens of seconds to minutes of JAX sweeps; tests/test_sweep.py covers the command",
    "cpa-theory prove": "about 7 s of sympy; tests/test_cli.py and test_proofs.py cover it",
    "python -c 'import jax": "only meaningful on a GPU machine",
    "python examples/torch_moons_bn.py": "run with small arguments (MOONS_SMALL) after the README's python blocks",
    "printf": "writes the centres file of the Dask line below it",
    "cat": "writes the two-process JAX script (a here-document); tests/test_multiprocess_jax.py runs that recipe",
    "JAX_PLATFORMS=cpu python multi_sweep.py": "two JAX processes; tests/test_multiprocess_jax.py runs that recipe",
    "cpa-theory count examples/bn_relu_2d.json --center centres.txt": "starts a local Dask cluster; "
                                                                      "tests/test_distributed.py runs this command",
}


def _bash_lines():
    """Each shell command of the README's bash blocks, comments removed, as one normalised string."""
    for kind, body in BLOCKS:
        if kind != "bash":
            continue
        heredoc = None  # the end word of a here-document whose body (not shell commands) is being skipped
        for raw in body.splitlines():
            if heredoc is not None:
                heredoc = None if raw.strip() == heredoc else heredoc
                continue
            m = re.search(r"<<-?\s*['\"]?(\w+)", raw)
            if m:
                heredoc = m.group(1)
            tokens = shlex.split(raw, comments=True)
            while tokens:
                cut = tokens.index("&&") if "&&" in tokens else len(tokens)
                if tokens[:cut]:
                    yield shlex.join(tokens[:cut])
                tokens = tokens[cut + 1:]


def _python_source() -> tuple[str, list[str]]:
    parts, skipped = [], []
    for kind, body in BLOCKS:
        if kind != "python":
            continue
        if "flax" in body:
            try:
                import flax  # noqa: F401
            except ImportError:  # the flax extra is optional: its block needs it
                skipped.append("flax block (flax not installed)")
                continue
        parts.append(body)
    return "\n".join(parts), skipped


def test_readme_has_the_blocks_this_test_expects():
    kinds = [k for k, _ in BLOCKS]
    assert kinds.count("python") >= 4 and kinds.count("bash") >= 5


# the moons example runs with small arguments in the same interpreter, after the README blocks (one torch and
# matplotlib import instead of two: most of this test's time is imports)
MOONS_SMALL = ["--epochs", "3", "--points", "3", "--width", "8", "--plot-radius", "0.3", "--out", "moons.png"]


def test_readme_python_blocks_and_the_moons_example_run(tmp_path):
    source, skipped = _python_source()
    every_block = "\n".join(body for kind, body in BLOCKS if kind == "python")
    for name in ("X_batch", "variables", "net64", "x0"):  # names the blocks used to leave undefined
        assert re.search(rf"^\s*{name}\s*=", every_block, flags=re.M), name
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    (tmp_path / "readme_blocks.py").write_text(source)
    driver = ("import runpy, sys\n"
              "runpy.run_path('readme_blocks.py', run_name='__main__')\n"
              "print('=== moons example ===')\n"
              f"sys.argv = ['torch_moons_bn.py', *{MOONS_SMALL!r}]\n"
              "runpy.run_path('examples/torch_moons_bn.py', run_name='__main__')\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    res = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", driver], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode in (0, None), res.stderr[-3000:]
    assert "=== moons example ===" in res.stdout, res.stderr[-3000:]
    assert (tmp_path / "my_net.json").exists() and (tmp_path / "net.json").exists()
    moons = res.stdout.split("=== moons example ===")[1]
    for mode in ("train-mode BN", "eval-mode BN", "BN removed"):
        assert mode in moons
    assert "95 % CI (t)" in moons
    assert (tmp_path / "moons.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_cpa_theory_line_parses_and_names_existing_files():
    from cpa_theory.cli import build_parser

    lines = [line for line in _bash_lines() if line.startswith("cpa-theory")]
    assert len(lines) >= 8
    for line in lines:
        argv = shlex.split(line)[1:]
        args = build_parser().parse_args(argv)  # exits 2 on an unknown option
        for word in argv:
            if word.startswith("examples/"):
                assert (ROOT / word).exists(), (line, word)
        assert args.command


def test_every_bash_line_is_run_or_listed_as_expensive():
    cheap = [line for line in _bash_lines() if not any(line.startswith(k) for k in NOT_RUN)]
    assert all(line.startswith("cpa-theory") for line in cheap), cheap


def test_cheap_cli_lines_run(tmp_path, monkeypatch, capsys):
    from cpa_theory import cli

    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    ran = 0
    for line in _bash_lines():
        if any(line.startswith(k) for k in NOT_RUN):
            continue
        code = cli.main(shlex.split(line)[1:])
        out, err = capsys.readouterr()
        assert code == 0, (line, err)
        ran += 1
    assert ran >= 4 and (tmp_path / "partition.png").exists()
