"""Safe reading and checking of what users hand the toolkit: files, JSON, numbers, radii, options.

Every refusal is a typed :class:`~cpa_theory.errors.CPAInputError` whose one-line message names the fix,
is short (values are summarised, never dumped) and never quotes a file's contents.

Files: only regular files are read (a FIFO would block forever, ``/dev/zero`` never ends), at most
:data:`max_input_bytes` bytes (``CPA_THEORY_MAX_INPUT_MB`` raises the cap), decoded as UTF-8.
JSON: nesting depth at most :data:`MAX_JSON_DEPTH`, integer literals of at most :data:`MAX_INT_DIGITS`
digits, no ``NaN``/``Infinity`` literals, no number that overflows float64.
Numbers: ``"1.0"`` (a string) and ``true`` (a boolean) are refused where a number belongs.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import numpy as np

from .errors import CPAInputError, InputFileError, OutputError, WindowError
from .tolerances import WINDOW_RADIUS_RELATIVE_RANGE

__all__ = [
    "MAX_JSON_DEPTH", "MAX_INT_DIGITS", "max_input_bytes", "short", "read_user_bytes", "read_user_text",
    "parse_json", "read_json", "check_numbers", "as_float_array", "check_number", "check_radius",
    "check_positive_int", "check_output_path", "check_sweep_doc",
]

#: The deepest nesting any toolkit file needs is ~6 (network → layers → layer → weight → row → number).
MAX_JSON_DEPTH = 64
#: int64 has 19 digits; a longer integer literal is a mistake (and 10^400 overflows float64).
MAX_INT_DIGITS = 19
_DEFAULT_MAX_MB = 256


def max_input_bytes() -> int:
    """The size cap for user files (default 256 MiB; environment variable ``CPA_THEORY_MAX_INPUT_MB``)."""
    try:
        mb = float(os.environ.get("CPA_THEORY_MAX_INPUT_MB", _DEFAULT_MAX_MB))
    except ValueError:
        mb = _DEFAULT_MAX_MB
    return int(mb * 2**20)


def short(value, limit: int = 60) -> str:
    """A short description of a user value for an error message (never its full contents)."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} ({value.dtype})"
    if isinstance(value, (list, tuple)) and len(value) > 8:
        return f"a {type(value).__name__} of {len(value)} items"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _display(path) -> str:
    return short(str(path), 120)


# -- files -----------------------------------------------------------------
def read_user_bytes(path, what: str = "input file", error=InputFileError) -> bytes:
    """The bytes of a user file: a regular file of at most :func:`max_input_bytes` bytes.

    Raises ``error`` (an InputFileError by default) naming the fix for a missing path, a directory, a FIFO,
    socket or device, an unreadable or oversized file.
    """
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise error(f"{what}: expected a file path (str or pathlib.Path); got {type(path).__name__}.")
    shown = _display(path)
    try:
        st = os.stat(path)  # stat never blocks, even on a FIFO
    except FileNotFoundError:
        raise error(f"{what} {shown} does not exist; check the path.") from None
    except NotADirectoryError:
        raise error(f"{what} {shown}: a parent of it is not a folder; check the path.") from None
    except PermissionError:
        raise error(f"{what} {shown} cannot be accessed (permission denied); check its permissions.") from None
    except (OSError, ValueError) as exc:
        raise error(f"{what} {shown} cannot be read ({type(exc).__name__}); check the path.") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{what} {shown} is a directory; give a file.")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what} {shown} is not a regular file (a pipe, socket or device); save the data to a "
                    "regular file and pass that.")
    cap = max_input_bytes()
    if st.st_size > cap:
        raise error(f"{what} {shown} has {st.st_size / 2**20:.1f} MiB, more than the {cap / 2**20:.0f} MiB cap; "
                    "give a smaller file or raise the cap with CPA_THEORY_MAX_INPUT_MB.")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except PermissionError:
        raise error(f"{what} {shown} is not readable (permission denied); check its permissions.") from None
    except OSError as exc:
        raise error(f"{what} {shown} cannot be opened ({exc.strerror}); check the path.") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced between stat and open
            raise error(f"{what} {shown} is not a regular file; pass a regular file.")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > cap:  # the file grew after stat
                raise error(f"{what} {shown} is larger than the {cap / 2**20:.0f} MiB cap; give a smaller file "
                            "or raise the cap with CPA_THEORY_MAX_INPUT_MB.")
            chunks.append(chunk)
    except OSError as exc:
        raise error(f"{what} {shown} cannot be read ({exc.strerror}); check the file.") from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def read_user_text(path, what: str = "input file", error=InputFileError) -> str:
    """:func:`read_user_bytes` decoded as UTF-8 (a leading byte-order mark is dropped)."""
    data = read_user_bytes(path, what, error)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{what} {_display(path)} is not UTF-8 text (undecodable byte at offset {exc.start}); save it "
                    "as UTF-8 text.") from None


# -- JSON ------------------------------------------------------------------
class _Refused(Exception):
    pass


def _parse_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise _Refused(f"an integer literal of {digits} digits (at most {MAX_INT_DIGITS}); numbers must fit in "
                       "float64 — write ordinary-sized numbers")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {short(text, 30)}, which overflows float64; give finite numbers of ordinary size")
    return value


def _parse_constant(text: str):
    raise _Refused(f"a {text} literal (not JSON); give finite numbers")


def _unique_keys(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        twice = next(k for i, k in enumerate(keys) if k in keys[:i])
        raise _Refused(f"the key {str(twice)[:40]!r} twice in one object (JSON readers disagree on which one "
                       "counts); keep one")
    return dict(pairs)


def _check_depth(doc, limit: int) -> None:
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            raise _Refused(f"nesting deeper than {limit} levels")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, (list, dict)))


def parse_json(text: str, where: str, error=InputFileError, max_depth: int = MAX_JSON_DEPTH):
    """Parse JSON strictly (see the module docstring); ``where`` names the source in messages."""
    try:
        doc = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant,
                         object_pairs_hook=_unique_keys)
    except _Refused as exc:
        raise error(f"{where} holds {exc}.") from None
    except RecursionError:
        raise error(f"{where} is nested deeper than {max_depth} levels; no toolkit file needs that — check the "
                    "file.") from None
    except json.JSONDecodeError as exc:
        raise error(f"{where} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); the file may be "
                    "truncated or corrupt — re-create it.") from None
    except ValueError as exc:  # e.g. Python's own limit on integer digits
        raise error(f"{where} cannot be parsed as JSON ({short(str(exc), 80)}); re-create it.") from None
    try:
        _check_depth(doc, max_depth)
    except _Refused as exc:
        raise error(f"{where} is {exc}; no toolkit file needs that — check the file.") from None
    return doc


def read_json(path, what: str = "input file", error=InputFileError, fix: str | None = None):
    """Read a user JSON file safely (:func:`read_user_text` + :func:`parse_json`).

    ``fix`` replaces the generic advice for a corrupt file (e.g. "delete it to recompute it").
    """
    text = read_user_text(path, what, error)
    try:
        return parse_json(text, f"{what} {_display(path)}", error)
    except CPAInputError as exc:
        if fix is None:
            raise
        msg = str(exc).split("; ")[0] if "; " in str(exc) else str(exc).rstrip(".")
        raise type(exc)(f"{msg}; {fix}") from None


# -- numbers ---------------------------------------------------------------
def check_numbers(x, what: str, error=CPAInputError) -> None:
    """Refuse strings, booleans, None and objects inside a (nested) list meant to hold numbers."""
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "iuf":
            raise error(f"{what} must hold numbers; got an array of dtype {x.dtype}. Convert it to float.")
        return
    stack = [x]
    while stack:
        node = stack.pop()
        if isinstance(node, (list, tuple)):
            stack.extend(node)
        elif isinstance(node, np.ndarray):
            check_numbers(node, what, error)
        elif isinstance(node, (bool, np.bool_)) or not isinstance(node, (int, float, np.integer, np.floating)):
            # the kind only, never the value: it may come from a file the user did not mean to show
            kind = ("a boolean" if isinstance(node, (bool, np.bool_)) else "a string" if isinstance(node, str)
                    else f"a {type(node).__name__}")
            raise error(f"{what} must hold numbers; it contains {kind}. Write plain numbers such as 1.0 "
                        "(not \"1.0\", not true).")


def as_float_array(x, what: str, error=CPAInputError) -> np.ndarray:
    """``x`` as a float64 array after :func:`check_numbers` (lists of numbers, numeric arrays, tensors)."""
    if isinstance(x, (list, tuple, np.ndarray)) or isinstance(x, (bool, str, bytes, type(None), dict)):
        check_numbers(x if isinstance(x, (list, tuple, np.ndarray)) else [x], what, error)
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise error(f"{what} must be a rectangular array of numbers; got {short(x)}.") from None


def check_number(x, what: str, error=CPAInputError, *, integer: bool = False, minimum=None) -> float | int:
    """A single real number (not a string or boolean), optionally an integer ``>= minimum``."""
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise error(f"{what} must be a number; got {short(x, 30)}. Write a plain number (not \"1.0\", not true).")
    if integer and not (isinstance(x, (int, np.integer)) or (math.isfinite(x) and float(x).is_integer())):
        raise error(f"{what} must be a whole number; got {short(x, 30)}.")
    if not math.isfinite(float(x)):
        raise error(f"{what} must be finite; got {x!r}.")
    if minimum is not None and x < minimum:
        raise error(f"{what} must be >= {minimum}; got {short(x, 30)}.")
    return int(x) if integer else float(x)


def check_radius(radius, center=None, dim: int | None = None) -> float:
    """A window radius the toolkit can compute with: a finite number with
    ``lo·s <= r <= hi·s``, ``s = max(1, ‖center‖∞)`` and ``(lo, hi)`` from the tolerance table, and (given
    ``dim``) a window volume ``(2r)^dim`` that float64 represents (its inverse too)."""
    if isinstance(radius, (bool, np.bool_)) or not isinstance(radius, (int, float, np.integer, np.floating)):
        check_number(radius, "radius", WindowError)  # raises: not a number
    r = float(radius)
    if not (math.isfinite(r) and r > 0):
        raise WindowError(f"radius must be a finite number > 0; got {radius!r}.")
    scale = 1.0
    if center is not None:
        c = np.abs(np.asarray(center, dtype=np.float64))
        if c.size and np.all(np.isfinite(c)):
            scale = max(1.0, float(c.max()))
    lo, hi = WINDOW_RADIUS_RELATIVE_RANGE
    if r < lo * scale:
        raise WindowError(f"radius {r:g} is below {lo * scale:.3g} = {lo:g}·max(1, |centre|), where float64 cannot "
                          "resolve the window around its centre; use a larger radius.")
    if r > hi * scale:
        raise WindowError(f"radius {r:g} is above {hi * scale:.3g} = {hi:g}·max(1, |centre|), beyond what float64 "
                          "window arithmetic resolves; use a smaller radius (or rescale the inputs).")
    if dim is not None:
        log2_volume = dim * math.log2(2.0 * r)
        if not -1020 < log2_volume < 1020:
            raise WindowError(f"radius {r:g} in dimension {dim} gives a window volume (2r)^d = 2^{log2_volume:.0f}, "
                              "outside float64; use a radius nearer 0.5.")
    return r


def check_positive_int(value, what: str, error=CPAInputError) -> int:
    return int(check_number(value, what, error, integer=True, minimum=1))


def check_output_path(path, what: str = "output file", suffix: str = "") -> Path:
    """An output path that can be written: not a directory, in an existing folder."""
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise OutputError(f"{what}: expected a file path; got {type(path).__name__}.")
    p = Path(path)
    if str(path).endswith(os.sep) or p.is_dir():
        raise OutputError(f"{what} {_display(path)} is a directory; give a file name, e.g. "
                          f"{_display(p / ('out' + (suffix or p.suffix or '.png')))}.")
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"cannot write {_display(path)}: folder {_display(folder)} does not exist; create it.")
    from .outputs import check_replaceable

    check_replaceable(p)  # a device, FIFO or a file cpa-theory did not write: refused before any work
    return p


# -- sweep configurations ------------------------------------------------
_LIST_FIELDS = {"batch_sizes": True, "bias_scales": False, "radii": False, "distances": False, "widths": True}
_INT_FIELDS = ("seed", "d", "networks", "batch_clusters", "heldout", "grid_size", "count_networks", "width")
_FLOAT_FIELDS = ("weight_scale", "eps", "batch_offset", "batch_separation")
_STR_FIELDS = ("dtype", "batch_source", "windows")


def check_sweep_doc(doc) -> None:
    """Types of a sweep configuration: lists where lists belong (non-empty, of numbers), numbers (not strings
    or booleans) where numbers belong. Values are checked by ``SweepConfig.from_dict``."""
    from .errors import ConfigError

    if not isinstance(doc, dict):
        raise ConfigError("a sweep configuration is a JSON object of settings (see examples/sweeps/small.json).")
    for key, integer in _LIST_FIELDS.items():
        if key not in doc:
            continue
        v = doc[key]
        if not isinstance(v, list):
            raise ConfigError(f"sweep setting {key!r} must be a list of numbers, e.g. [{'16' if integer else '0.1'}]; "
                              f"got {short(v, 30)}.")
        if not v:
            raise ConfigError(f"sweep setting {key!r} is an empty list; give at least one value.")
        for item in v:
            check_number(item, f"sweep setting {key!r}", ConfigError, integer=integer)
    for key in _INT_FIELDS:
        if key in doc:
            check_number(doc[key], f"sweep setting {key!r}", ConfigError, integer=True,
                         minimum=0 if key in ("seed", "count_networks", "batch_clusters", "heldout") else 1)
    for key in _FLOAT_FIELDS:
        if key in doc:
            check_number(doc[key], f"sweep setting {key!r}", ConfigError)
    for key in _STR_FIELDS:
        if key in doc and not isinstance(doc[key], str):
            raise ConfigError(f"sweep setting {key!r} must be a string; got {short(doc[key], 30)}.")
    for key in ("gamma", "beta"):
        if key in doc and not isinstance(doc[key], dict):
            check_number(doc[key], f"sweep setting {key!r}", ConfigError)
    if "activation" in doc and not isinstance(doc["activation"], (str, dict)):
        raise ConfigError(f"sweep setting 'activation' must be a name or an object; got {short(doc['activation'], 30)}.")


# -- arguments of the public counting API ------------------------------------
def check_network(net, fn: str, conditioned_ok: bool = True):
    """``net`` must be a :class:`Network` (or a ConditionedNetwork where ``conditioned_ok``)."""
    from .errors import ArgumentTypeError
    from .network import ConditionedNetwork, Network

    ok = (Network, ConditionedNetwork) if conditioned_ok else (Network,)
    if not isinstance(net, ok):
        raise ArgumentTypeError(f"{fn} needs a cpa_theory Network{' or ConditionedNetwork' if conditioned_ok else ''}; "
                                f"got {short(net, 40)}. Build one with cpa.Network(...) or cpa.load(path).")
    return net


def check_count_args(net, center, radius, fn: str = "count_regions", *, max_regions=None):
    """Arguments of ``count_regions`` / ``count_regions_lp``: a network, a radius in the accepted range
    (:func:`check_radius`), and ``max_regions`` a positive integer. The centre itself is checked by the counter."""
    from .errors import ConfigError

    check_network(net, fn)
    if max_regions is not None:
        check_positive_int(max_regions, f"{fn}: max_regions", ConfigError)
    if radius is None:
        raise WindowError(f"{fn}: give a radius r > 0.")
    try:
        c = np.asarray(center, dtype=np.float64) if center is not None else None
    except (TypeError, ValueError):
        c = None
    return check_radius(radius, c)
