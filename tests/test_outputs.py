"""Output safety (#11 items 1–6): the toolkit never deletes or overwrites a file it cannot prove it wrote,
writes only regular files (atomically, with the umask's mode), locks run directories, validates sweep
configs before creating anything, refuses several centres where one is taken, and accepts negative
coordinates in the documented ``--center X1,X2`` form."""

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from cpa_theory.cli import main
from cpa_theory.errors import OutputError, ShapeError
from cpa_theory.fileformat import load_network, save_network
from cpa_theory.outputs import OUTPUT_RECORD, write_output
from cpa_theory.rundir import LOCK, MANIFEST, claim_run_dir

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "bn_relu_2d.json"
SMALL_SWEEP = {"networks": 4, "widths": [3], "batch_sizes": [4], "bias_scales": [1.0], "radii": [0.2],
               "distances": [0.0, 1.0]}


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` with its bytes and mtime (the user's files must keep both)."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def user_files(folder: Path) -> dict:
    files = {"claims/mydata.csv": b"x,y\n1,2\n", "phase/important.txt": b"do not lose\n", "figure1.png": b"\x89PNG",
             "report.md": b"# my notes\n", "results.json": b"[1, 2, 3]\n", "header.json": b"{\"mine\": true}\n"}
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return snapshot(folder)


# -- item 1: reproduce --out and --fresh ------------------------------------------------------------
@pytest.mark.parametrize("fresh", [False, True])
def test_reproduce_refuses_a_users_directory_and_touches_nothing(tmp_path, capsys, fresh):
    before = user_files(tmp_path)
    argv = ["reproduce", "--claims", "C1", "--out", str(tmp_path), "--json"] + (["--fresh"] if fresh else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "not made by cpa-theory" in err and "--fresh" not in err  # never suggest --fresh for a foreign dir
    assert snapshot(tmp_path) == before  # byte-identical, same mtimes, nothing added


def test_reproduce_refuses_a_directory_holding_only_a_users_report(tmp_path, capsys):
    (tmp_path / "report.md").write_text("# mine\n")
    (tmp_path / "results.json").write_text("[]\n")
    before = snapshot(tmp_path)
    assert main(["reproduce", "--claims", "C1", "--out", str(tmp_path), "--json"]) == 2
    assert snapshot(tmp_path) == before


def test_fresh_on_an_owned_directory_removes_only_manifest_files(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["reproduce", "--claims", "C1", "--out", str(out), "--json"]) == 0
    assert (out / MANIFEST).is_file() and (out / "claims" / "C1.json").is_file()
    (out / "claims" / "mydata.csv").write_text("mine\n")
    (out / "notes.txt").write_text("mine too\n")
    (out / "phase").mkdir()
    (out / "phase" / "important.txt").write_text("keep\n")
    mine = {k: v for k, v in snapshot(out).items() if k in ("claims/mydata.csv", "notes.txt", "phase/important.txt")}
    # another configuration without --fresh: refused, nothing changed; the message offers --fresh (we own it)
    before = snapshot(out)
    assert main(["reproduce", "--claims", "C1", "--out", str(out), "--seed", "3", "--json"]) == 2
    assert "--fresh" in capsys.readouterr().err and snapshot(out) == before
    assert main(["reproduce", "--claims", "C1", "--out", str(out), "--seed", "3", "--fresh", "--json"]) == 0
    after = snapshot(out)
    assert {k: after[k] for k in mine} == mine
    assert json.loads((out / "header.json").read_text())["config"]["seed"] == 3
    # a manifest file the user edited is theirs now: --fresh refuses and removes nothing
    (out / "report.md").write_text("# my edits\n")
    before = snapshot(out)
    assert main(["reproduce", "--claims", "C1", "--out", str(out), "--fresh", "--json"]) == 2
    assert "report.md" in capsys.readouterr().err and snapshot(out) == before


def test_corrupt_manifest_is_a_clear_error(tmp_path, capsys):
    (tmp_path / MANIFEST).write_text("not json\n")
    assert main(["reproduce", "--claims", "C1", "--out", str(tmp_path), "--fresh", "--json"]) == 2
    assert "not a valid cpa-theory run manifest" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == [MANIFEST]


def test_failed_first_run_leaves_no_directory_behind(tmp_path, monkeypatch):
    import cpa_theory.reproduce as rep

    def boom(*a, **k):
        raise RuntimeError("simulated failure before any result")

    monkeypatch.setattr(rep, "Context", boom)  # fails after the directory was claimed, before any claim ran
    with pytest.raises(RuntimeError):
        rep.reproduce(tmp_path / "r", claims=["C1"], log=lambda m: None)
    assert not (tmp_path / "r").exists()
    (tmp_path / "empty").mkdir()  # a folder the user made: it stays, empty
    with pytest.raises(RuntimeError):
        rep.reproduce(tmp_path / "empty", claims=["C1"], log=lambda m: None)
    assert list((tmp_path / "empty").iterdir()) == []


def test_failed_sweep_leaves_nothing_that_refuses_the_corrected_rerun(tmp_path, monkeypatch):
    import numerics.sweep as sweep

    def boom(*a, **k):
        raise RuntimeError("simulated failure in the first grid point")

    out = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(sweep, "run_point", boom)
        with pytest.raises(RuntimeError):
            sweep.run_sweep(sweep.SweepConfig.from_dict({**SMALL_SWEEP, "seed": 7}), out)
    assert not out.exists()
    assert len(sweep.run_sweep(sweep.SweepConfig.from_dict(SMALL_SWEEP), out)) == 2


# -- item 2: output files ---------------------------------------------------------------------------
def plot(out, *extra):
    return main(["plot", str(EXAMPLE), "--center", "0.92,-0.43", "--radius", "0.5", "--out", str(out), *extra])


@pytest.mark.parametrize("target", ["/dev/null", "/dev/full"])
def test_plot_refuses_device_targets(target, capsys, monkeypatch):
    if not os.path.exists(target):
        pytest.skip(f"{target} does not exist here")
    real_replace = os.replace

    def guarded(src, dst, *a, **k):  # a regressed writer must fail this test, not replace the machine's device
        if os.path.realpath(dst) == target:
            raise AssertionError(f"tried to replace {target}")
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", guarded)
    assert plot(target) == 2
    assert "not a regular file" in capsys.readouterr().err
    assert stat.S_ISCHR(os.stat(target).st_mode)  # still the device, not replaced by a PNG


def test_plot_refuses_a_fifo_and_a_directory(tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert plot(fifo) == 2 and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert plot(tmp_path) == 2 and "is a directory" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]  # no temporary file left


def test_plot_writes_through_a_symlink_and_refuses_a_dangling_one(tmp_path):
    real = tmp_path / "figs" / "partition.png"
    real.parent.mkdir()
    write_output(real, b"old")  # a file cpa-theory wrote (its folder's record proves it)
    link = tmp_path / "paper.png"
    link.symlink_to(real)
    assert plot(link) == 0
    assert link.is_symlink() and os.readlink(link) == str(real)  # the link stays a link
    assert real.read_bytes()[:4] == b"\x89PNG"  # the file it points to got the picture
    mine = tmp_path / "figs" / "mine.png"
    mine.write_bytes(b"a person's figure")
    mine_link = tmp_path / "mine-link.png"
    mine_link.symlink_to(mine)
    assert plot(mine_link) == 2 and mine.read_bytes() == b"a person's figure"  # through a link: refused too
    dangling = tmp_path / "dangling.png"
    dangling.symlink_to(tmp_path / "nowhere" / "x.png")
    assert plot(dangling) == 2 and dangling.is_symlink()


def test_new_files_follow_the_umask_and_overwritten_files_keep_their_mode(tmp_path):
    old = os.umask(0o027)
    try:
        write_output(tmp_path / "new.txt", "a")
        assert stat.S_IMODE(os.stat(tmp_path / "new.txt").st_mode) == 0o640
        kept = tmp_path / "kept.txt"
        write_output(kept, "old")
        os.chmod(kept, 0o644)
        os.umask(0o077)
        write_output(kept, b"new")
        assert stat.S_IMODE(os.stat(kept).st_mode) == 0o644 and kept.read_bytes() == b"new"
    finally:
        os.umask(old)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "keep.json"
    write_output(target, "old\n")

    def fail(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OutputError, match="No space left"):
        write_output(target, "new\n")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [OUTPUT_RECORD, "keep.json"]


def test_an_existing_file_is_replaced_only_when_the_folder_record_proves_cpa_theory_wrote_it(tmp_path, capsys):
    """Referee's case: plot --out over a person's notes.txt (or a .png cpa-theory did not write) replaced it with a
    PNG. Outside run directories each folder's record lists the SHA-256 of what cpa-theory wrote there: a file not
    listed, or changed since, is refused (exit 2) and left byte for byte as it was; one it wrote is replaced."""
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    assert plot(notes) == 2 and notes.read_text() == "my notes\n"
    assert "cannot prove it wrote it" in capsys.readouterr().err
    fig = tmp_path / "fig.png"
    assert plot(fig) == 0 and plot(fig) == 0  # its own file: replaced
    first = fig.read_bytes()
    fig.write_bytes(first + b"edited")  # a person changed it since
    assert plot(fig) == 2 and fig.read_bytes() == first + b"edited"
    net = tmp_path / "net.json"
    net.write_text("{}")
    with pytest.raises(OutputError, match="cannot prove"):
        save_network(load_network(EXAMPLE), net)
    assert net.read_text() == "{}"
    # a file named like the record that is not one is neither trusted nor appended to
    other = tmp_path / "other"
    other.mkdir()
    (other / OUTPUT_RECORD).write_text('{"file": "x.png", "sha256": "0"}\n')
    with pytest.raises(OutputError, match="not cpa-theory's record"):
        write_output(other / "new.png", b"x")
    assert (other / OUTPUT_RECORD).read_text() == '{"file": "x.png", "sha256": "0"}\n'
    assert sorted(p.name for p in other.iterdir()) == [OUTPUT_RECORD]


def test_prove_markdown_refuses_a_directory(tmp_path, capsys):
    assert main(["prove", "--claim", "C1", "--markdown", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_run_directory_refuses_links_and_foreign_files(tmp_path):
    out = tmp_path / "run"
    with claim_run_dir(out, "sweep", "abc") as run:
        write_output(out / "a.json", "1")
        write_output(out / "a.json", "2")  # its own file: may be overwritten
        (out / "user.txt").write_text("mine")
        with pytest.raises(OutputError, match="not written by this cpa-theory run"):
            write_output(out / "user.txt", "x")
        (out / "link.json").symlink_to(tmp_path / "elsewhere.json")
        with pytest.raises(OutputError, match="symbolic link"):
            write_output(out / "link.json", "x")
        assert run.owns(out / "a.json") and not run.owns(out / "user.txt")
    assert (out / "user.txt").read_text() == "mine" and not (tmp_path / "elsewhere.json").exists()
    assert not (out / LOCK).exists()


def test_fresh_never_follows_a_folder_swapped_for_a_link(tmp_path):
    out, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    with claim_run_dir(out, "sweep", "h1") as run:
        run.mkdir("chunks")
        write_output(out / "chunks" / "a.json", "same bytes")
    elsewhere.mkdir()
    (elsewhere / "a.json").write_text("same bytes")  # identical bytes, but the user's file in another folder
    os.rename(out / "chunks", tmp_path / "moved")
    (out / "chunks").symlink_to(elsewhere)
    with pytest.raises(OutputError, match="changed after cpa-theory wrote it"):
        claim_run_dir(out, "sweep", "h2", fresh=True)
    assert (elsewhere / "a.json").read_text() == "same bytes" and (out / "chunks").is_symlink()


# -- item 3: sweeps: configuration hash per chunk, lock ----------------------------------------------
def sweep_cli(tmp_path, cfg: dict, out: Path, *extra):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg))
    return main(["sweep", str(path), "--out", str(out), "--json", *extra])


def rows_of(out: Path) -> list[dict]:
    def strict(c):
        raise ValueError(f"bare {c} in results.jsonl")

    return [json.loads(line, parse_constant=strict) for line in (out / "results.jsonl").read_text().splitlines()]


def test_sweep_with_header_removed_and_another_seed_never_reuses_old_chunks(tmp_path, capsys):
    out = tmp_path / "run"
    assert sweep_cli(tmp_path, {**SMALL_SWEEP, "seed": 1}, out) == 0
    (out / "header.json").unlink()
    before = snapshot(out)
    assert sweep_cli(tmp_path, {**SMALL_SWEEP, "seed": 2}, out) == 2  # old chunks are not this config's
    assert "another configuration" in capsys.readouterr().err and snapshot(out) == before
    assert sweep_cli(tmp_path, {**SMALL_SWEEP, "seed": 2}, out, "--fresh") == 0
    rows = rows_of(out)
    assert len(rows) == 2 and all(r["seed"] == 2 for r in rows)
    assert all(json.loads(p.read_text())["seed"] == 2 for p in (out / "chunks").glob("*.json"))


def test_sweep_recomputes_a_chunk_of_another_configuration(tmp_path):
    from numerics.sweep import SweepConfig, run_sweep

    cfg = SweepConfig.from_dict({**SMALL_SWEEP, "seed": 4})
    out = tmp_path / "run"
    with claim_run_dir(out, "sweep", cfg.digest()) as run:  # a chunk the toolkit wrote for another config
        run.mkdir("chunks")
        write_output(out / "chunks" / "000000.json", json.dumps({"config_hash": "0000", "seed": 99}) + "\n")
    rows = run_sweep(cfg, out)
    assert [r["seed"] for r in rows] == [4, 4] and rows[0]["config_hash"] == cfg.digest()


def test_a_second_sweep_on_a_locked_directory_is_refused_naming_the_lock(tmp_path, capsys):
    import socket
    import subprocess
    import sys

    from numerics.sweep import SweepConfig

    out = tmp_path / "run"
    digest = SweepConfig.from_dict(SMALL_SWEEP).digest()
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / LOCK).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    with claim_run_dir(out, "sweep", digest):  # a killed run's lock file does not block (flock died with it)
        pass
    assert not (out / LOCK).exists()
    with claim_run_dir(out, "sweep", digest):  # the first run, still writing
        assert sweep_cli(tmp_path, SMALL_SWEEP, out) == 2
        err = capsys.readouterr().err
        assert "locked by another cpa-theory run" in err and LOCK in err and f"pid {os.getpid()}" in err
        assert not (out / "results.jsonl").exists()
    assert sweep_cli(tmp_path, SMALL_SWEEP, out) == 0  # lock released: the run goes ahead


# -- item 4: sweep configs validated before any directory --------------------------------------------
@pytest.mark.parametrize("bad", [{"eps": -1.0}, {"eps": float("nan")}, {"distances": [float("nan")]},
                                 {"radii": []}, {"radii": [0.0]}, {"radii": 0.1}, {"distances": "0.5"},
                                 {"bias_scales": [-1.0]}, {"batch_sizes": [1]}, {"batch_sizes": [4.5]},
                                 {"widths": "8"}, {"distances": [True]}, {"seed": -1}, {"networks": "4"}])
def test_bad_sweep_configs_are_refused_before_any_directory(tmp_path, capsys, bad):
    out = tmp_path / "run"
    assert sweep_cli(tmp_path, {**SMALL_SWEEP, **bad}, out) == 2
    err = capsys.readouterr().err  # a NaN literal is refused already by the strict JSON reader
    assert "sweep setting" in err or "NaN literal" in err or bad.get("batch_sizes") == [1], err
    assert not out.exists()


def test_corrected_sweep_config_then_runs(tmp_path):
    out = tmp_path / "run"
    assert sweep_cli(tmp_path, {**SMALL_SWEEP, "eps": -1.0}, out) == 2 and not out.exists()
    assert sweep_cli(tmp_path, SMALL_SWEEP, out) == 0
    assert len(rows_of(out)) == 2


# -- item 5: one centre where one centre is taken -----------------------------------------------------
def test_single_window_functions_refuse_several_centres(capsys, tmp_path):
    from cpa_theory.regions import count_regions

    net = load_network(EXAMPLE)
    with pytest.raises(ShapeError, match="count_many"):
        count_regions(net, [[0.3, 0.3], [5, 5]], 0.5)
    assert count_regions(net, [[0.3, 0.3]], 0.5).regions == count_regions(net, [0.3, 0.3], 0.5).regions
    with pytest.raises(ShapeError):
        net.condition().affine_map(np.array([[0.3, 0.3], [5, 5]]), 1)
    assert main(["plot", str(EXAMPLE), "--center", "0,0", "--center", "5,5", "--radius", "1",
                 "--out", str(tmp_path / "p.png")]) == 2
    assert "one --center" in capsys.readouterr().err


# -- item 6: negative coordinates in the documented form ----------------------------------------------
def test_negative_coordinates_in_every_point_taking_command(tmp_path, capsys):
    assert main(["count", str(EXAMPLE), "--center", "-1.8,-2.3", "--radius", "0.3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["center"] == [-1.8, -2.3]
    assert main(["hits", str(EXAMPLE), "--center", "-1.8,-2.3", "--center", "-.5,1e-3", "--radius", "0.3",
                 "--json"]) == 0
    assert [r["center"] for r in json.loads(capsys.readouterr().out)] == [[-1.8, -2.3], [-0.5, 0.001]]
    assert main(["plot", str(EXAMPLE), "--center", "-0.2,-0.1", "--radius", "0.3", "--out",
                 str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["count", str(EXAMPLE), "--center", "-1.8,-2.3", "--radius", "-1e-3"]) == 2  # our message
    assert "radius must be a finite number > 0" in capsys.readouterr().err


def test_a_file_cpa_theory_did_not_write_is_refused_before_any_counting(tmp_path, monkeypatch, capsys):
    """slice --out over a person's file was refused only after the whole count; the record is now consulted with
    the other output checks, before any work."""
    import cpa_theory.slices as slices

    def no_count(*a, **k):
        raise AssertionError("counted before refusing the output file")

    monkeypatch.setattr(slices, "count_on_slice", no_count)
    mine = tmp_path / "mine.png"
    mine.write_bytes(b"a person's picture")
    examples = ROOT / "examples"
    code = main(["slice", str(examples / "tiny_cnn.json"), "--through", "0,1,2", "--data",
                 str(examples / "tiny_cnn_points.npy"), "--out", str(mine)])
    assert code == 2 and "cannot prove it wrote it" in capsys.readouterr().err
    assert mine.read_bytes() == b"a person's picture"
