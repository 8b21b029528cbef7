"""Every file onnxcompress writes goes through here: plan the outputs of a run, check them before any work, stage
them under temporary names, then publish them together.

Rules (README "Command-line reference", docs/report.md):

- **Checked before any work** (:meth:`OutputPlan.check`): every output of a run is compared with every other output,
  with every input file (for an input model also each external-data file it references; for a data folder each
  file in it) and with the file names the run writes into its report folder; an output that exists must be a
  regular file (character devices, FIFOs, sockets, ``/dev/stdout`` and links to them are refused); its folder
  must exist and be writable (a report folder is created, so its nearest existing parent must be writable).
  Symbolic links to regular files are followed: the file they point to is replaced and the link stays.
- **Published together** (:class:`OutputSet`): each file is written to a temporary ``.<name>.<random>.tmp`` in its
  destination folder, flushed, given the mode ``0666 & ~umask``, and only when every file of the set is complete
  are they renamed into place, in a fixed order (external data, models, then the other files), under an
  exclusive lock on each destination folder and with SIGINT/SIGTERM deferred until the set is complete. Any
  failure before that removes every temporary file (and any report folder the set created): a failed run
  leaves the destination folders as they were, and two concurrent runs to the same outputs leave one run's
  complete set (last writer wins per set).
- **External data**: a model whose tensors reach protobuf's 2 GiB limit is written as ``<out>`` plus
  ``<out>.data`` (locations relative to the model's folder, so neither the current directory nor an existing
  data file matters); a later, smaller model written to ``<out>`` removes the ``<out>.data`` that the previous
  ``<out>`` referenced, and a ``<out>.data`` that the previous ``<out>`` did not reference belongs to another model
  and is never overwritten or removed.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError, EncodeError
from onnx.external_data_helper import set_external_data, uses_external_data

from onnxcompress.errors import Interrupted, OutputPathError
from onnxcompress.ir.external import is_lazy, materialize, model_tensors, read_chunks, tensor_nbytes

try:  # POSIX only: without it the publish step runs unlocked
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

#: Protobuf cannot serialize a message larger than 2 GiB; past this weights go to an external data file.
PROTOBUF_LIMIT = 2**31 - 1
#: Tensors of at least this many bytes go to the external data file when one is written.
EXTERNAL_THRESHOLD = 1024
#: Offsets of tensors in an external data file are multiples of this (page-aligned for memory mapping).
EXTERNAL_ALIGN = 4096
DATA_SUFFIX = ".data"


# --- tensors and external data ----------------------------------------------------------------------------------
def external_locations(model: onnx.ModelProto) -> list[str]:
    """The external-data locations the model references (as written in the model, in first-use order)."""
    seen: dict[str, None] = {}
    for t in model_tensors(model):
        if uses_external_data(t):
            for e in t.external_data:
                if e.key == "location":
                    seen.setdefault(e.value, None)
    return list(seen)


def referenced_data_files(path: str | os.PathLike) -> list[Path]:
    """External-data files a model file references (resolved); [] when the file is not a readable model."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, OSError) as e:  # not a model: the loader reports it properly
        log.debug("%s: no external data read (%s)", path, e)
        return []
    return [_resolve(path.parent / loc) for loc in external_locations(model)]


def tensor_bytes(model: onnx.ModelProto) -> int:
    """Bytes of all tensors held in the proto (raw data or typed fields; not those still on disk)."""
    total = 0
    for t in model_tensors(model):
        if t.HasField("raw_data"):
            total += len(t.raw_data)
        elif t.data_type != 0 and not uses_external_data(t):
            total += onnx.numpy_helper.to_array(t).nbytes
    return total


def needs_external_data(model: onnx.ModelProto) -> bool:
    """Would the model, with the tensors still on disk read in, reach protobuf's 2 GiB?"""
    on_disk = sum(tensor_nbytes(t) for t in model_tensors(model) if is_lazy(t))
    return tensor_bytes(model) + on_disk >= PROTOBUF_LIMIT - (1 << 24)


def model_bytes(model: onnx.ModelProto) -> int:
    """The serialized size of ``model`` (past protobuf's 2 GiB, where ByteSize fails: at least its tensor bytes)."""
    try:
        return model.ByteSize()
    except (EncodeError, ValueError):
        return tensor_bytes(model)


def fits_protobuf(model: onnx.ModelProto) -> bool:
    """Can ``model`` be serialized as one message (< 2 GiB)? (protobuf's ByteSize itself fails past the limit)."""
    try:
        return model.ByteSize() < PROTOBUF_LIMIT
    except (EncodeError, ValueError):
        return False


# --- paths --------------------------------------------------------------------------------------------------------
def _resolve(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.path.abspath(path)))


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


def _same(a: Path, b: Path) -> bool:
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _umask() -> int:
    """The process umask, read without changing it where Linux tells it (/proc), else set and restored."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


_UMASK_LOCK = threading.Lock()


def file_mode() -> int:
    """The mode new output files get: what ``open()`` would give (0666 minus the umask)."""
    return 0o666 & ~_umask()


def _os_error(path: Path, e: OSError, what: str = "write") -> OutputPathError:
    hints = {
        errno.ENOSPC: "the disk is full: free some space or write to another folder",
        errno.EDQUOT: "the disk quota is exceeded: free some space or write to another folder",
        errno.EROFS: "the file system is read-only: write to another folder",
        errno.EACCES: "permission denied: choose a folder you can write to",
        errno.EPERM: "permission denied: choose a folder you can write to",
        errno.ENAMETOOLONG: "the file name is too long: choose a shorter one",
        errno.ENOENT: "the folder disappeared or cannot hold files: choose an existing, writable folder",
    }
    return OutputPathError(f"cannot {what} {path}: {e.strerror or e}",
                           hint=hints.get(e.errno or 0, "check the output folder (space, permissions)"))


# --- the plan ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Claim:
    path: Path  # resolved
    given: str  # as the user wrote it
    role: str
    model: bool = False  # a model output: also claims <path>.data


@dataclass(frozen=True)
class _Input:
    path: Path  # resolved
    what: str


class OutputPlan:
    """The outputs of one run, checked against each other and against the run's inputs before any work.

    ``models``: input model paths (their external-data files are inputs too); ``inputs``: other input paths (data
    files or folders, recipes, weights, mappings; a ``.onnx`` file among them is read as a model); ``None`` and
    in-memory objects are ignored.
    """

    def __init__(self, models: Iterable[object] = (), inputs: Iterable[object] = ()):
        self.claims: list[_Claim] = []
        self.folders: dict[Path, str] = {}
        self._inputs: list[_Input] = []
        for m in models:
            if isinstance(m, (str, os.PathLike)):
                self._add_model_input(m)
        for src in inputs:
            if not isinstance(src, (str, os.PathLike)):
                continue
            if Path(src).is_dir():
                self._inputs += [_Input(_resolve(p), f"a file of input folder {src}") for p in sorted(Path(src).iterdir())
                                 if p.is_file()]
            elif Path(src).suffix.lower() == ".onnx":
                self._add_model_input(src)
            else:
                self._inputs.append(_Input(_resolve(src), f"input {src}"))

    def _add_model_input(self, path: str | os.PathLike) -> None:
        self._inputs.append(_Input(_resolve(path), f"input {path}"))
        self._inputs += [_Input(p, f"external data of input {path}") for p in referenced_data_files(path)]

    # --- declaring outputs ----------------------------------------------------------------------------------
    def model(self, path: str | os.PathLike | None, role: str = "output model") -> OutputPlan:
        """A model output (it may also write ``<path>.data``)."""
        if path is not None:
            self.claims.append(_Claim(_resolve(path), str(path), role, model=True))
        return self

    def file(self, path: str | os.PathLike | None, role: str = "output") -> OutputPlan:
        if path is not None:
            self.claims.append(_Claim(_resolve(path), str(path), role))
        return self

    def folder(self, path: str | os.PathLike | None, names: Iterable[str], role: str = "report folder") -> OutputPlan:
        """A folder (created when missing) that receives the files ``names``."""
        if path is not None:
            folder = _resolve(path)
            self.folders[folder] = str(path)
            for name in names:
                self.claims.append(_Claim(_resolve(folder / name), str(Path(path) / name), f"{role} file {name}"))
        return self

    def covers(self, path: str | os.PathLike) -> bool:
        p = _resolve(path)
        return any(c.path == p for c in self.claims)

    # --- checking -------------------------------------------------------------------------------------------
    def check(self) -> OutputPlan:
        """Raise :class:`OutputPathError` for the first output that cannot be written as planned."""
        for folder, given in self.folders.items():
            _check_folder(folder, given)
            for claim in self.claims:
                for path, role in ((claim.path, claim.role), (_data_path(claim.path), f"external data of {claim.role}")):
                    if (claim.model or path == claim.path) and (path == folder or path in folder.parents):
                        raise OutputPathError(f"report folder {given} is also the {role} ({path})",
                                              hint="give the report folder and each output their own names")
        seen: dict[Path, str] = {}  # path -> role
        for claim in self.claims:
            targets = [(claim.path, claim.given, claim.role)]
            if claim.model:
                targets.append((_data_path(claim.path), claim.given + DATA_SUFFIX, f"external data of {claim.role}"))
            for path, given, role in targets:
                self._check_against_inputs(path, given, role)
                other = next((r for p, r in seen.items() if _same(p, path)), None)
                if other is not None:
                    raise OutputPathError(f"{given} would be written twice in one run: as {other} and as {role}",
                                          hint="give each output its own file name")
                seen[path] = role
            _check_target(claim.path, claim.given, created=claim.path.parent in self.folders)
        return self

    def _check_against_inputs(self, path: Path, given: str, role: str) -> None:
        for src in self._inputs:
            if _same(path, src.path):
                what = "output path" if role.startswith("output") else role
                raise OutputPathError(f"{what} {given} is also an input ({src.what}); the input is never overwritten",
                                      hint="write the result to a new file, e.g. model.opt.onnx")

    def stage(self) -> OutputSet:
        """A new :class:`OutputSet` for the planned outputs (use it as a context manager)."""
        return OutputSet(self)


def _data_path(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + DATA_SUFFIX)


def _nearest_existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _check_folder(folder: Path, given: str) -> None:
    if folder.exists():
        if not folder.is_dir():
            mode = os.stat(folder).st_mode
            what = "an existing file" if stat.S_ISREG(mode) else _kind(mode)
            raise OutputPathError(f"report folder {given} is {what}, not a folder", hint="give a folder path")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise OutputPathError(f"report folder {given} is not writable", hint="choose a folder you can write to")
        return
    parent = _nearest_existing(folder)
    if not parent.is_dir():
        raise OutputPathError(f"report folder {given} cannot be created: {parent} is not a folder",
                              hint="give a folder path")
    try:  # creating a folder there is the only reliable test (root ignores permission bits; /proc refuses)
        os.rmdir(tempfile.mkdtemp(prefix=".onnxcompress-probe.", dir=parent))
    except OSError as e:
        raise OutputPathError(f"report folder {given} cannot be created in {parent}: {e.strerror or e}",
                              hint="choose a folder you can write to") from e


def _check_target(path: Path, given: str, *, created: bool = False) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise _os_error(path, e, "inspect") from e
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise OutputPathError(f"output path {given} is a directory", hint="give a file name such as out.onnx")
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise OutputPathError(f"output path {given} exists and is {_kind(st.st_mode)}; onnxcompress only replaces "
                              "regular files", hint="write to a regular file path (not a device, FIFO or socket)")
    if st is not None and not os.access(path, os.W_OK):
        raise OutputPathError(f"output file {given} exists and is read-only", hint="remove it or choose another name")
    if created:
        return
    parent = path.parent
    if not parent.is_dir():
        raise OutputPathError(f"output folder {parent} does not exist", hint=f"create it first: mkdir -p {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"output folder {parent} is not writable", hint="choose a folder you can write to")


# --- staging and publishing ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Written:
    """A staged (then published) file: where it goes, the sha256 of the exact bytes written (the model file for a
    model), and its size in bytes (model plus external data)."""

    path: Path
    sha256: str
    bytes: int


@dataclass
class _Staged:
    tmp: Path
    final: Path
    order: int  # 0 external data, 1 model, 2 anything else


class OutputSet:
    """Files staged under temporary names; :meth:`publish` renames them all into place, :meth:`discard` (or leaving
    the ``with`` block without publishing) removes them."""

    def __init__(self, plan: OutputPlan):
        self.plan = plan
        self._staged: list[_Staged] = []
        self._stale: list[Path] = []
        self._created: list[Path] = []
        self.published = False

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.published:
            self.discard()

    # --- staging --------------------------------------------------------------------------------------------
    def _target(self, path: str | os.PathLike) -> Path:
        final = _resolve(path)
        if not self.plan.covers(final):
            raise AssertionError(f"{path} was not declared in the OutputPlan (outputs must be checked before work)")
        if final.parent in self.plan.folders:
            self._make_folder(final.parent)
        return final

    def _make_folder(self, folder: Path) -> None:
        missing = []
        probe = folder
        while not probe.exists():
            missing.append(probe)
            probe = probe.parent
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:
                continue
            except OSError as e:
                raise _os_error(d, e, "create folder") from e
            self._created.append(d)

    def _write(self, final: Path, chunks: Iterable[bytes | memoryview], order: int) -> int:
        try:
            fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
        except OSError as e:
            raise _os_error(final, e) from e
        staged = _Staged(Path(name), final, order)
        self._staged.append(staged)
        size = 0
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    _write_all(f, chunk)
                    size += len(chunk)
                f.flush()
                os.fchmod(f.fileno(), file_mode())
                os.fsync(f.fileno())
        except OSError as e:
            raise _os_error(final, e) from e
        return size

    def bytes(self, path: str | os.PathLike, data: bytes) -> Written:
        final = self._target(path)
        self._write(final, [data], 2)
        return Written(final, hashlib.sha256(data).hexdigest(), len(data))

    def text(self, path: str | os.PathLike, text: str) -> Written:
        return self.bytes(path, text.encode("utf-8"))

    def model(self, path: str | os.PathLike, model: onnx.ModelProto, *, external_data: bool | None = None) -> Written:
        """Stage ``model`` (and ``<path>.data`` when it needs external data); ``model`` keeps its values (tensors
        still on disk are read into it when it is written inline)."""
        final = self._target(path)
        data_path = _data_path(final)
        previous_owned = data_path.exists() and data_path in referenced_data_files(final)
        threshold = 0 if external_data else EXTERNAL_THRESHOLD  # asked for: every tensor; needed: the large ones
        if external_data is None:
            external_data = needs_external_data(model)
        if not external_data:
            for t in model_tensors(model):  # an output never refers to an input's files: read what is still on disk
                if is_lazy(t):
                    materialize(t)
            blob = model.SerializeToString()
            self._write(final, [blob], 1)
            if data_path.exists() and previous_owned:
                self._stale.append(data_path)
            return Written(final, hashlib.sha256(blob).hexdigest(), len(blob))
        if data_path.exists() and not previous_owned:
            raise OutputPathError(f"{data_path} exists and is not the external data of {final} (another model may use "
                                  "it); it is never overwritten", hint="write the model under another name")
        copy, chunks = _externalized(model, data_path.name, threshold)
        data_bytes = self._write(data_path, chunks, 0)
        blob = copy.SerializeToString()
        self._write(final, [blob], 1)
        return Written(final, hashlib.sha256(blob).hexdigest(), len(blob) + data_bytes)

    # --- publishing -----------------------------------------------------------------------------------------
    def publish(self) -> list[Path]:
        """Rename every staged file into place (external data first, then models, then the rest)."""
        order = sorted(self._staged, key=lambda s: s.order)
        with deferred_signals(), _locked(sorted({s.final.parent for s in order})):
            for s in order:  # what was checked before the work may have changed meanwhile
                _check_target(s.final, str(s.final), created=True)
            try:
                for s in order:
                    os.replace(s.tmp, s.final)
                    self._staged.remove(s)
            except OSError as e:
                raise _os_error(s.final, e, "rename into") from e
            for stale in self._stale:
                if stale.is_file() and not stale.is_symlink():
                    os.unlink(stale)
                    log.info("removed %s: the previous model at this path used it; the new one does not", stale)
            self.published = True
        return [s.final for s in order]

    def discard(self) -> None:
        for s in self._staged:
            with contextlib.suppress(OSError):
                os.unlink(s.tmp)
        self._staged.clear()
        for d in reversed(self._created):
            with contextlib.suppress(OSError):
                d.rmdir()
        self._created.clear()


def _write_all(f, chunk: bytes | memoryview) -> None:
    """The one place bytes reach an output file (the tests simulate a full disk or a signal here)."""
    f.write(chunk)


def _externalized(model: onnx.ModelProto, location: str, threshold: int) -> tuple[onnx.ModelProto, Iterator[bytes]]:
    """A copy of ``model`` whose large tensors point into ``location`` (relative to the model's folder), and the
    bytes of that data file, produced as the copy's tensors are emptied; tensors still on disk (a model loaded
    with external data, ir/external.py) are copied from their files chunk by chunk (peak memory: the copy)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    tensors = [(t, _source(t)) for t in model_tensors(copy)
               if is_lazy(t) or (t.HasField("raw_data") and len(t.raw_data) >= max(threshold, 1))]
    offset = 0
    for t, _ in tensors:
        size = tensor_nbytes(t)
        offset += -offset % EXTERNAL_ALIGN
        del t.external_data[:]
        set_external_data(t, location, offset, size)
        offset += size

    def chunks() -> Iterator[bytes]:
        written = 0
        for t, source in tensors:
            pad = -written % EXTERNAL_ALIGN
            if pad:
                yield b"\0" * pad
            written += pad
            parts = read_chunks(source) if source is not None else [t.raw_data]
            for part in parts:
                written += len(part)
                yield part
            t.ClearField("raw_data")

    return copy, chunks()


def _source(t: onnx.TensorProto) -> onnx.TensorProto | None:
    """A copy of a tensor still on disk (where its bytes are), else None."""
    if not is_lazy(t):
        return None
    source = onnx.TensorProto()
    source.CopyFrom(t)
    return source


@contextlib.contextmanager
def _locked(folders: list[Path]) -> Iterator[None]:
    """Exclusive advisory locks on the destination folders (in sorted order), so concurrent publishes of the same
    outputs do not interleave."""
    fds: list[int] = []
    try:
        for folder in folders:
            if fcntl is None:
                break
            try:
                fd = os.open(folder, os.O_RDONLY)
            except OSError as e:
                raise _os_error(folder, e, "open folder") from e
            fds.append(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as e:  # a file system without locks: publish unlocked
                log.debug("no lock on %s: %s", folder, e)
        yield
    finally:
        for fd in fds:
            os.close(fd)


# --- signals -----------------------------------------------------------------------------------------------------
class _Deferral(threading.local):
    depth = 0
    pending: int | None = None


_DEFERRAL = _Deferral()


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """While inside, :func:`handle_signal` records SIGINT/SIGTERM instead of raising; the interrupt is raised when
    the outermost block ends (so a set of outputs is published whole or not at all)."""
    _DEFERRAL.depth += 1
    try:
        yield
    finally:
        _DEFERRAL.depth -= 1
    if _DEFERRAL.depth == 0 and _DEFERRAL.pending is not None:
        signum, _DEFERRAL.pending = _DEFERRAL.pending, None
        raise Interrupted(signum)


def handle_signal(signum: int, frame: object = None) -> None:
    """A signal handler for SIGINT and SIGTERM (the CLI installs it): raise :class:`Interrupted` (a
    KeyboardInterrupt, so every temporary file is cleaned up on the way out), or defer it while publishing."""
    if _DEFERRAL.depth:
        _DEFERRAL.pending = signum
        return
    raise Interrupted(signum)


# --- one-file conveniences -----------------------------------------------------------------------------------------
def save_model(model: onnx.ModelProto, path: str | os.PathLike, *, external_data: bool | None = None,
               models: Iterable[object] = (), inputs: Iterable[object] = ()) -> Written:
    """Check ``path`` (against ``models``/``inputs`` too) and publish ``model`` there (with ``<path>.data`` when the
    model needs external data, or when ``external_data`` is True)."""
    plan = OutputPlan(models, inputs).model(path).check()
    with plan.stage() as staged:
        written = staged.model(path, model, external_data=external_data)
        staged.publish()
    return written


def write_bytes(path: str | os.PathLike, data: bytes, *, inputs: Iterable[object] = ()) -> Written:
    plan = OutputPlan((), inputs).file(path).check()
    with plan.stage() as staged:
        written = staged.bytes(path, data)
        staged.publish()
    return written


def write_text(path: str | os.PathLike, text: str, *, inputs: Iterable[object] = ()) -> Written:
    return write_bytes(path, text.encode("utf-8"), inputs=inputs)
