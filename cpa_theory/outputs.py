"""Writing output files safely: one function every writer of the toolkit goes through.

:func:`write_output` writes ``data`` (str or bytes) to ``path``

* only onto a **regular file** (or a new name): a directory, FIFO, socket or device (``/dev/null``,
  ``/dev/full``) is refused with :class:`~cpa_theory.errors.OutputError` naming the fix;
* **through a symbolic link** to an existing regular file (the link stays, the file it points to is
  replaced: the path the user meant); a dangling link or a link to a non-regular file is refused;
  inside a run directory (``cpa_theory.rundir``) links are refused outright;
* **atomically**: a temporary file in the same folder, ``fsync``, then ``os.replace``, so a failed or
  interrupted write leaves the old file (or nothing) and no temporary file behind;
* with the **mode the user expects**: a new file gets ``0666 & ~umask`` (the kernel applies the umask
  when the temporary file is created with 0666), an overwritten file keeps its permission bits.

When ``path`` lies inside a run directory claimed by this process (:func:`cpa_theory.rundir.claim_run_dir`),
the run directory is asked first: it refuses to overwrite a file it cannot prove it wrote and records the
new file (its SHA-256) in its manifest before the file appears. Anywhere else the folder's output record
(:data:`OUTPUT_RECORD`, created by the first write there) does the same: an existing file is replaced only
when the record lists that name with the SHA-256 of its current bytes (cpa-theory wrote it and nobody has
changed it since); any other existing file is refused and left untouched.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import stat
import threading
from pathlib import Path

from .errors import OutputError

__all__ = ["write_output", "check_replaceable", "output_target", "temporary_name", "OUTPUT_RECORD", "sha256_bytes", "file_sha256"]

#: the record, in each folder cpa-theory writes into outside run directories, of the files it wrote there
OUTPUT_RECORD = ".cpa-theory-outputs.jsonl"
_RECORD_HEADER = {"format": "cpa-theory-outputs/1"}
_RECORD_MAX_BYTES = 64 << 20

#: run directories claimed by this process: resolved root → object with ``before_write(target, data) -> tmp``.
_ACTIVE: dict[str, object] = {}
_ACTIVE_LOCK = threading.Lock()


def _register(roots, run) -> None:
    """Route writes under ``roots`` (the resolved and the given absolute path of one directory) to ``run``."""
    with _ACTIVE_LOCK:
        for root in roots:
            _ACTIVE[root] = run


def _unregister(run) -> None:
    with _ACTIVE_LOCK:
        for root in [r for r, v in _ACTIVE.items() if v is run]:
            del _ACTIVE[root]


def _active_run(folder: str):
    """The innermost claimed run directory containing ``folder`` (a resolved path), or None."""
    with _ACTIVE_LOCK:
        if not _ACTIVE:
            return None
        best = None
        for root, run in _ACTIVE.items():
            if (folder == root or folder.startswith(root.rstrip(os.sep) + os.sep)) and \
                    (best is None or len(root) > len(best[0])):
                best = (root, run)
        return None if best is None else best[1]


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a regular file"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path) -> str | None:
    """SHA-256 of a regular file's bytes (no link followed); None for anything else."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        h = hashlib.sha256()
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
        return h.hexdigest()
    finally:
        os.close(fd)


def _record_lines(folder: Path) -> list[dict] | None:
    """The entries of ``folder``'s output record; [] when there is none; None when a file of that name is not
    cpa-theory's record (not a regular file, no header, unreadable)."""
    path = folder / OUTPUT_RECORD
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return []
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size > _RECORD_MAX_BYTES:
        return None
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
        if not lines or json.loads(lines[0]) != _RECORD_HEADER:
            return None
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    out = []
    for line in lines[1:]:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a torn last line: it proves nothing
        if isinstance(entry, dict) and isinstance(entry.get("file"), str) and isinstance(entry.get("sha256"), str):
            out.append(entry)
    return out


def _check_ours(target: Path, shown: str) -> None:
    """Refuse to replace ``target`` unless its folder's record proves cpa-theory wrote its current bytes."""
    entries = _record_lines(target.parent)
    digest = file_sha256(target)
    if entries and digest is not None and any(e["file"] == target.name and e["sha256"] == digest for e in entries):
        return
    raise OutputError(f"{shown!r} exists and cpa-theory cannot prove it wrote it (the record {OUTPUT_RECORD} in its "
                      "folder does not list that file with its current contents), so it is left untouched; give a "
                      "new file name, or move that file away yourself.")


def _record_write(target: Path, data: bytes) -> None:
    """Append ``target``'s name and the SHA-256 of ``data`` to its folder's record (created with its header on
    first use), before the file appears."""
    path = target.parent / OUTPUT_RECORD
    if _record_lines(target.parent) is None:
        raise OutputError(f"{str(path)!r} exists but is not cpa-theory's record of the files it wrote; rename or "
                          "remove it, or write into another folder.")
    line = (json.dumps({"file": target.name, "sha256": sha256_bytes(data)}) + "\n").encode("utf-8")
    flags = os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o666)
            line = (json.dumps(_RECORD_HEADER) + "\n").encode("utf-8") + line
        except FileExistsError:
            fd = os.open(path, flags)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise OutputError(f"cannot record the write of {str(target)!r} in {str(path)!r} ({exc.strerror}); choose "
                          "another output location.") from None


def temporary_name(name: str) -> str:
    """A hidden temporary name beside ``name`` that no person would choose (random, created with O_EXCL)."""
    return f".{name}.cpa-tmp-{secrets.token_hex(8)}"


def output_target(path, *, follow_links: bool = True) -> tuple[Path, int | None]:
    """Where a write of ``path`` lands and the permission bits to keep: ``(resolved path, mode or None)``.

    ``mode`` is None for a new file. Raises :class:`OutputError` for a target that is not a regular file,
    a missing or non-directory folder, or (``follow_links=False``) a symbolic link."""
    path = Path(path)
    shown = str(path)
    if not path.name or path.name in (".", ".."):
        raise OutputError(f"output path {shown!r} names no file; give a file name such as out/result.json.")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:  # a component of the folder is a file
        raise OutputError(f"cannot write {shown!r}: folder {str(path.parent)!r} does not exist (part of it is a "
                          "file); create the folder or choose another path.") from None
    except OSError as exc:
        raise OutputError(f"cannot inspect output path {shown!r} ({exc.strerror}); choose another path.") from None
    if st is not None and stat.S_ISLNK(st.st_mode):
        if not follow_links:
            raise OutputError(f"{shown!r} is a symbolic link inside a run directory; cpa-theory writes only regular "
                              "files it created there; remove the link or choose a new --out.")
        real = os.path.realpath(path)
        try:
            st = os.stat(real)
        except OSError:
            raise OutputError(f"{shown!r} is a symbolic link to {real!r}, which does not exist; fix or remove the "
                              "link, or give another output path.") from None
        if not stat.S_ISREG(st.st_mode):
            raise OutputError(f"{shown!r} links to {real!r}, which is {_kind(st.st_mode)}; give a path to a regular "
                              "file (e.g. partition.png).")
        return Path(real), stat.S_IMODE(st.st_mode)
    folder = os.path.realpath(path.parent if str(path.parent) else ".")
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{shown!r} is a directory; give a file name inside it, e.g. "
                              f"{os.path.join(shown, 'out.png')!r}.")
        if not stat.S_ISREG(st.st_mode):
            raise OutputError(f"{shown!r} is {_kind(st.st_mode)}, not a regular file; cpa-theory writes outputs "
                              "atomically into regular files only: give a file path such as out/partition.png.")
        return Path(folder) / path.name, stat.S_IMODE(st.st_mode)
    if not os.path.isdir(folder):
        what = "does not exist" if not os.path.exists(folder) else "is not a directory"
        raise OutputError(f"cannot write {shown!r}: folder {str(path.parent)!r} {what}; create it or choose "
                          "another path.")
    return Path(folder) / path.name, None


def check_replaceable(path) -> None:
    """Before any slow work: the checks :func:`write_output` will make of ``path`` (a regular file or a new name,
    and an existing file outside run directories only if its folder's record proves cpa-theory wrote it)."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    run = _active_run(os.path.realpath(folder)) or _active_run(os.path.abspath(folder))
    target, mode = output_target(path, follow_links=run is None)
    if run is None and mode is not None:
        _check_ours(target, str(path))


def write_output(path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` safely (see the module docstring); returns the path written.

    ``data``: ``str`` (written as UTF-8) or ``bytes``. Raises :class:`OutputError` (exit 2) for a target that
    cannot be written safely; the target is then unchanged and no temporary file remains."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    elif not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"write_output takes str or bytes, not {type(data).__name__}")
    data = bytes(data)
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    # lexically or after resolving links: a folder swapped for a link must not lead a write out of a run
    run = _active_run(os.path.realpath(folder)) or _active_run(os.path.abspath(folder))
    target, mode = output_target(path, follow_links=run is None)
    if run is not None:
        tmp_name = run.before_write(target, data)  # refuses a file it did not write; records this one first
    else:
        if target.name == OUTPUT_RECORD:
            raise OutputError(f"{str(path)!r} is the name of cpa-theory's record of its outputs; choose another name.")
        if mode is not None:  # an existing file: only one cpa-theory wrote, unchanged since
            _check_ours(target, str(path))
        _record_write(target, data)
        tmp_name = temporary_name(target.name)
    tmp = target.parent / tmp_name
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    except PermissionError:
        raise OutputError(f"cannot write {str(path)!r}: folder {str(target.parent)!r} is not writable; choose "
                          "another output location.") from None
    except OSError as exc:
        raise OutputError(f"cannot write {str(path)!r} ({exc.strerror}); choose another output location.") from None
    try:
        try:
            if mode is not None:
                os.fchmod(fd, mode)  # an overwritten file keeps its permission bits
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES,
                                                      errno.EPERM):
            raise OutputError(f"cannot write {str(path)!r} ({exc.strerror}); free space or choose another output "
                              "location.") from None
        raise
    try:  # make the rename durable; not every file system lets a directory be fsynced
        dfd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return target
