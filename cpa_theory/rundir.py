"""Run directories the toolkit owns: a manifest of what it wrote, and a lock while a run writes.

``reproduce --out DIR`` and ``sweep --out DIR`` write many files into one directory and resume from them.
The rule: **cpa-theory deletes or overwrites only files it can prove it wrote.**

* **Manifest** ``DIR/.cpa-theory-run.jsonl`` (created by the toolkit with ``O_EXCL`` in an empty or new
  directory). Line 1: ``{"format": "cpa-theory-run/1", "kind": "sweep" | "reproduce" | "count", "config_hash": …}``.
  Every later line is appended (and fsynced) *before* the file it describes appears:
  ``{"file": "chunks/000003.json", "sha256": …, "tmp": ".000003.json.cpa-tmp-…"}`` (a file and the random
  temporary name it is written through), ``{"dir": "claims"}`` (a folder it created) or
  ``{"run": "phase"}`` (a nested run directory it created). A torn last line (a kill mid-append) is ignored.
* **Proof of authorship**: a file is the toolkit's iff its path is in the manifest and its current bytes
  hash to a SHA-256 recorded for that path. A listed file that a person replaced or edited no longer
  matches: it is treated as the person's file — never deleted or overwritten, and a run that would have
  to is refused (naming the file) *before* anything is removed.
* **Claiming**: a new or empty directory is claimed (manifest created). A non-empty directory without a
  valid manifest is refused, with or without ``fresh`` — choose a new or empty ``--out``. A directory with
  a manifest of another kind is refused. Same configuration: resumed. Another configuration: refused,
  suggesting ``--fresh``, which removes exactly the manifest's files (hash-checked), the temporary files
  it recorded, its nested run directories (by their own manifests) and the folders it created if they
  are then empty; a person's extra files stay where they are, byte for byte.
* **Lock** ``DIR/.cpa-theory-run.lock``: held with ``flock`` (released by the kernel if the process dies,
  so a killed run never leaves a stale lock) and holding ``{"pid", "host"}`` for the message a second run
  gets. The lock file is removed when the run ends.
* **Failed first attempt**: if the run that claimed a new or empty directory fails before writing any
  result (only the files named in ``meta``, no nested run left), its files and manifest are removed again
  (and the folder, if the run created it), so a corrected rerun starts clean.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import threading
import time
from pathlib import Path

from . import outputs
from .errors import OutputError

__all__ = ["MANIFEST", "LOCK", "FORMAT", "RunDir", "claim_run_dir", "read_manifest"]

MANIFEST = ".cpa-theory-run.jsonl"
LOCK = ".cpa-theory-run.lock"
FORMAT = "cpa-theory-run/1"


_sha256 = outputs.sha256_bytes
_file_sha256 = outputs.file_sha256


def _safe_rel(rel) -> str:
    """A manifest path must stay inside its directory (no absolute paths, no '..')."""
    if not isinstance(rel, str) or not rel or rel.startswith("/") or ".." in rel.split("/"):
        raise ValueError(f"bad path {rel!r}")
    return rel


def read_manifest(root) -> dict | None:
    """Parse ``root``'s manifest: ``{"header", "files": {rel: set(sha)}, "tmps", "dirs", "runs"}``;
    None when there is none. Raises :class:`OutputError` for a corrupt one."""
    path = Path(root) / MANIFEST
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    bad = f"{str(path)!r} is not a valid cpa-theory run manifest"
    if not stat.S_ISREG(st.st_mode) or st.st_size > 256 << 20:
        raise OutputError(f"{bad}; cpa-theory cannot prove it owns {str(root)!r}: choose a new --out.")
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    if not raw.endswith(b"\n"):
        lines = lines[:-1]  # a torn last line: the append was killed before its file could appear
    lines = [line for line in lines if line]
    out = {"header": None, "files": {}, "tmps": set(), "dirs": set(), "runs": set()}
    try:
        header = json.loads(lines[0])
        if not isinstance(header, dict) or header.get("format") != FORMAT or not isinstance(header.get("kind"), str):
            raise ValueError("bad header")
        out["header"] = header
        for line in lines[1:]:
            rec = json.loads(line)
            if "file" in rec:
                out["files"].setdefault(_safe_rel(rec["file"]), set()).add(str(rec["sha256"]))
                if rec.get("tmp"):
                    out["tmps"].add(_safe_rel(rec["tmp"]))
            elif "dir" in rec:
                out["dirs"].add(_safe_rel(rec["dir"]))
            elif "run" in rec:
                out["runs"].add(_safe_rel(rec["run"]))
            else:
                raise ValueError("unknown record")
    except (IndexError, ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise OutputError(f"{bad} (corrupt or truncated); cpa-theory cannot prove which files it wrote in "
                          f"{str(root)!r}: choose a new --out (move the old directory's results by hand).") from None
    return out


def _flock(fd) -> bool:
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise


def _pid_alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError, OverflowError):
        return True
    return True


def _lock(root: Path) -> int:
    """Take ``root``'s lock (non-blocking); returns the fd. A held lock raises OutputError naming it."""
    path = root / LOCK
    for _ in range(20):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0),
                         0o644)
        except OSError as exc:
            raise OutputError(f"cannot create the lock file {str(path)!r} ({exc.strerror}); choose another "
                              "--out.") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OutputError(f"{str(path)!r} is not a regular file; remove it or choose another --out.")
        if not _flock(fd):
            try:
                info = json.loads(os.read(fd, 4096) or b"{}")
            except ValueError:
                info = {}
            os.close(fd)
            who = f"pid {info.get('pid', '?')} on {info.get('host', '?')}"
            hint = "wait for it to finish, or choose another --out"
            if info.get("host") == socket.gethostname() and "pid" in info and not _pid_alive(info["pid"]):
                hint = (f"pid {info['pid']} is no longer running, but a process it started still holds the lock "
                        f"(see `fuser {path}`); stop that process, or choose another --out")
            raise OutputError(f"{str(root)!r} is locked by another cpa-theory run ({who}; lock file {str(path)!r}): "
                              f"{hint}.")
        try:  # the file we locked must still be the one at `path` (a finishing run unlinks it)
            same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode() + b"\n")
        return fd
    raise OutputError(f"could not take the lock {str(path)!r} (it keeps changing); retry, or choose another --out.")


def _entries(root: Path) -> list[str]:
    return [n for n in os.listdir(root) if n != LOCK]


class RunDir:
    """A claimed run directory (use :func:`claim_run_dir`). Writes inside it go through
    :func:`cpa_theory.outputs.write_output`, which consults :meth:`before_write`."""

    def __init__(self, root: Path, kind: str, config_hash: str, lock_fd: int, created: bool, meta=()):
        self.root, self.kind, self.config_hash = root, kind, config_hash
        self.created, self.meta = created, set(meta)  # created: this claim made the folder
        self.new_manifest = False  # this claim made the manifest (a new or empty folder)
        self._lock_fd = lock_fd
        self._mutex = threading.Lock()
        self._manifest_fd = None
        self._written: set[str] = set()
        m = read_manifest(root)
        self._files = m["files"] if m else {}
        self._dirs = m["dirs"] if m else set()
        self._runs = m["runs"] if m else set()

    # -- ownership ------------------------------------------------------------------------------
    def rel(self, path) -> str:
        """``path`` relative to the run root (posix), refusing paths outside it."""
        p = Path(os.path.realpath(Path(path).parent)) / Path(path).name
        try:
            return p.relative_to(self.root).as_posix()
        except ValueError:
            raise OutputError(f"{str(path)!r} is outside the run directory {str(self.root)!r}.") from None

    def _inside(self, rel: str) -> bool:
        """``rel``'s folder really is inside the root (not reached through a link someone put there)."""
        return os.path.realpath((self.root / rel).parent) == str((self.root / rel).parent)

    def owns(self, path) -> bool:
        """True iff ``path`` is a regular file whose bytes the manifest records for its path."""
        rel = self.rel(path)
        return rel in self._files and self._inside(rel) and _file_sha256(self.root / rel) in self._files[rel]

    def check_writable(self, path) -> None:
        """Refuse (OutputError) if ``path`` exists and the toolkit cannot prove it wrote it."""
        rel = self.rel(path)
        p = self.root / rel
        if not os.path.lexists(p) or self.owns(p):
            return
        raise OutputError(f"{str(p)!r} exists and was not written by this cpa-theory run (it is not in "
                          f"{MANIFEST}, or was changed since); it is left alone: move it out of {str(self.root)!r}, "
                          "or choose a new --out.")

    def read_owned(self, path) -> bytes | None:
        """The bytes of a file the toolkit wrote here; None if it does not exist; OutputError if it is not ours."""
        p = self.root / self.rel(path)
        if not os.path.lexists(p):
            return None
        self.check_writable(p)
        return p.read_bytes()

    # -- recording --------------------------------------------------------------------------------
    def _append(self, rec: dict) -> None:
        line = json.dumps(rec, sort_keys=True).encode() + b"\n"
        with self._mutex:
            if self._manifest_fd is None:
                self._manifest_fd = os.open(self.root / MANIFEST, os.O_WRONLY | os.O_APPEND |
                                            getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
            os.write(self._manifest_fd, line)
            os.fsync(self._manifest_fd)

    def before_write(self, target: Path, data: bytes) -> str:
        """Called by ``write_output``: refuse foreign files, record this write; returns the temporary name."""
        self.check_writable(target)
        rel = self.rel(target)
        tmp = outputs.temporary_name(target.name)
        tmp_rel = (Path(rel).parent / tmp).as_posix()
        digest = _sha256(data)
        self._append({"file": rel, "sha256": digest, "tmp": tmp_rel})
        self._files.setdefault(rel, set()).add(digest)
        self._written.add(rel)
        return tmp

    def mkdir(self, rel: str) -> Path:
        """Create folder ``rel`` (recorded, so ``fresh`` may remove it when empty); an existing one is reused."""
        p = self.root / _safe_rel(rel)
        if os.path.islink(p) or (os.path.lexists(p) and not os.path.isdir(p)):
            raise OutputError(f"{str(p)!r} exists and is not a folder cpa-theory made; move it out of "
                              f"{str(self.root)!r}, or choose a new --out.")
        if not p.exists():
            self._append({"dir": rel})
            self._dirs.add(rel)
            p.mkdir(parents=True)
        return p

    def add_run(self, rel: str) -> None:
        self._append({"run": _safe_rel(rel)})
        self._runs.add(rel)

    # -- removal ----------------------------------------------------------------------------------
    def _foreign(self) -> list[str]:
        """Listed files that exist but no longer hold bytes the toolkit wrote (a person's now)."""
        bad = []
        for rel, hashes in self._files.items():
            p = self.root / rel
            if os.path.lexists(p) and not (self._inside(rel) and _file_sha256(p) in hashes):
                bad.append(str(p))
        return bad

    def remove_owned(self) -> None:
        """Remove what this run directory's manifest proves the toolkit wrote (see the module docstring).

        All files are checked before the first is removed: one changed file refuses the whole removal."""
        nested = []
        for rel in sorted(self._runs):
            child = self.root / rel
            if (child / MANIFEST).is_file() and not os.path.islink(child):
                nested.append(RunDir._open_existing(child))
        try:
            changed = self._foreign() + [f for c in nested for f in c._foreign()]
            if changed:
                raise OutputError(f"{changed[0]!r}" + (f" (and {len(changed) - 1} more)" if len(changed) > 1 else "")
                                  + " was changed after cpa-theory wrote it, so it is treated as your file and "
                                  "nothing was removed: move it out of the run directory, or choose a new --out.")
            for child in nested:
                child.remove_owned()
                os.unlink(child.root / MANIFEST)
        finally:
            for child in nested:
                child.release()  # unlinks the child's lock file; the folder goes below if it is empty
        for rel in list(self._files) + sorted(self._tmps_recorded()):
            p = self.root / rel
            if not os.path.lexists(p) or not self._inside(rel):
                continue
            if rel in self._files or _file_sha256(p) is not None:  # tmps: created by us with O_EXCL
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass
        for rel in sorted(self._dirs | self._runs, key=lambda r: r.count("/"), reverse=True):
            try:
                os.rmdir(self.root / rel)  # only if empty: a person's file inside keeps its folder
            except OSError:
                pass
        self._files, self._dirs, self._runs = {}, set(), set()

    def _tmps_recorded(self) -> set[str]:
        m = read_manifest(self.root)
        return m["tmps"] if m else set()

    def remove_stale_temporaries(self) -> None:
        """Temporary files of a killed write (recorded names, created with O_EXCL by the toolkit)."""
        for rel in self._tmps_recorded():
            p = self.root / rel
            if os.path.lexists(p) and not os.path.islink(p) and self._inside(rel):
                os.unlink(p)

    def _remove_manifest(self) -> None:
        try:
            os.unlink(self.root / MANIFEST)
        except FileNotFoundError:
            pass

    def _write_header(self, fresh_manifest: bool) -> None:
        """Create (O_EXCL) or, after ``remove_owned``, replace the manifest with a new header line."""
        header = {"format": FORMAT, "kind": self.kind, "config_hash": self.config_hash,
                  "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        data = json.dumps(header, sort_keys=True).encode() + b"\n"
        path = self.root / MANIFEST
        if fresh_manifest:
            tmp = self.root / outputs.temporary_name(MANIFEST)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        else:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if fresh_manifest:
            os.replace(tmp, path)
        if self._manifest_fd is not None:
            os.close(self._manifest_fd)
            self._manifest_fd = None

    # -- lifetime ---------------------------------------------------------------------------------
    @classmethod
    def _open_existing(cls, root: Path) -> "RunDir":
        m = read_manifest(root)
        fd = _lock(root)
        return cls(Path(os.path.realpath(root)), m["header"]["kind"], m["header"].get("config_hash"), fd, False)

    def release(self, failed: bool = False) -> None:
        """End the run: on a failed first attempt that wrote only ``meta`` files, remove the directory."""
        outputs._unregister(self)
        # a first attempt that failed before any result (and before any nested run kept results) is undone,
        # so that the corrected rerun, usually with another configuration, is not refused
        if failed and self.new_manifest and self._written <= self.meta and \
                not any(os.path.lexists(self.root / r) for r in self._runs):
            try:
                self.remove_owned()
                self._remove_manifest()
            except OutputError:
                pass
        with self._mutex:
            if self._manifest_fd is not None:
                os.close(self._manifest_fd)
                self._manifest_fd = None
        if self._lock_fd is not None:
            try:
                os.unlink(self.root / LOCK)  # unlinked while held: a waiting run re-checks the inode
            except FileNotFoundError:
                pass
            os.close(self._lock_fd)
            self._lock_fd = None
        if failed and self.created and not os.path.lexists(self.root / MANIFEST):
            try:
                os.rmdir(self.root)
            except OSError:
                pass

    def __enter__(self) -> "RunDir":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.release(failed=exc_type is not None)


def claim_run_dir(path, kind: str, config_hash: str, fresh: bool = False, *, meta=("header.json",)) -> RunDir:
    """Claim run directory ``path`` for a run of ``kind`` with configuration ``config_hash`` (see the module
    docstring); returns a locked :class:`RunDir` (a context manager: leaving it releases the lock).

    ``fresh``: discard an earlier run of another (or the same) configuration in a directory the toolkit owns,
    removing only the files it wrote. ``meta``: files that are not results (a failed first attempt that wrote
    only these is undone). Raises :class:`OutputError` (exit 2) when the directory is not the
    toolkit's, belongs to a run of another kind or configuration (without ``fresh``), or is locked."""
    path = Path(path)
    shown = str(path)
    folder = path.parent if str(path.parent) else Path(".")
    parent_run = outputs._active_run(os.path.realpath(folder)) or outputs._active_run(os.path.abspath(folder))
    if os.path.islink(path):
        raise OutputError(f"{shown!r} is a symbolic link; give a real directory as --out.")
    if os.path.lexists(path) and not os.path.isdir(path):
        raise OutputError(f"{shown!r} exists and is not a directory; choose a new --out.")
    foreign = (f"{shown!r} is not empty and was not made by cpa-theory (no {MANIFEST}; runs of versions before "
               "run manifests have none either); it is left untouched: choose a new or empty --out")
    if os.path.isdir(path):
        m = read_manifest(path)  # a corrupt manifest is refused here, before anything is created
        if m is None and _entries(path):
            raise OutputError(foreign + ".")
    created = False
    if not path.exists():
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the run directory {shown!r} ({exc.strerror}); choose another "
                              "--out.") from None
        created = True
    root = Path(os.path.realpath(path))
    fd = _lock(root)
    try:
        m = read_manifest(root)  # again, under the lock: another run may have claimed it meanwhile
        if m is None:
            if _entries(root):
                raise OutputError(foreign + ".")
            run = RunDir(root, kind, config_hash, fd, created, meta)
            run._write_header(fresh_manifest=False)
            run.new_manifest = True
            if parent_run is not None and created:
                try:
                    parent_run.add_run(root.relative_to(parent_run.root).as_posix())
                except ValueError:  # a link led outside the parent: not the parent's to remove
                    pass
        else:
            old = m["header"]
            if old["kind"] != kind:
                raise OutputError(f"{shown!r} holds a cpa-theory {old['kind']} run, not a {kind} run; choose a new "
                                  "--out.")
            run = RunDir(root, kind, config_hash, fd, created, meta)
            if old.get("config_hash") != config_hash:
                if not fresh:
                    raise OutputError(f"{shown!r} holds a {kind} run with another configuration; add "
                                      "--fresh to replace it (removes only the files cpa-theory wrote there), or "
                                      "choose a new --out.")
                run.remove_owned()
                run._write_header(fresh_manifest=True)
            elif fresh:
                run.remove_owned()
                run._write_header(fresh_manifest=True)
            else:
                changed = run._foreign()
                if changed:
                    raise OutputError(f"{changed[0]!r} was changed after cpa-theory wrote it; it is left alone: move "
                                      "it out of the run directory, or choose a new --out.")
                run.remove_stale_temporaries()
    except BaseException:
        os.unlink(root / LOCK) if os.path.lexists(root / LOCK) else None
        os.close(fd)
        if created:
            try:
                os.rmdir(root)
            except OSError:
                pass
        raise
    outputs._register((str(root), os.path.abspath(path)), run)
    return run
