"""``--data-loader-script FILE[:FUNCTION]``: a Python file whose function returns the data (as Polygraphy's).

The file is run once with :func:`runpy.run_path` in a fresh module namespace (never ``exec`` of a string); its
``FUNCTION`` (default ``load_data``) is called with no arguments each time the data is iterated and returns an
iterable of feed dicts ``{input_name: array}`` (extra keys such as ``labels`` are kept for metrics), or a dict of
arrays, or an onnxruntime CalibrationDataReader. A generator is fine: it is created anew for every pass. Any
exception raised by the script becomes a DataError naming the script and the line.
"""

from __future__ import annotations

import runpy
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from onnxcompress.data.inputs import InputData
from onnxcompress.errors import DataError

DEFAULT_FUNCTION = "load_data"


def split_spec(spec: str) -> tuple[Path, str]:
    """``path/to/file.py[:function]`` -> (path, function); a Windows drive colon is not a separator."""
    head, sep, tail = spec.rpartition(":")
    if sep and head and tail and not tail.startswith(("\\", "/")) and tail.isidentifier():
        return Path(head), tail
    return Path(spec), DEFAULT_FUNCTION


def is_script_spec(source: Any) -> bool:
    return isinstance(source, str | Path) and split_spec(str(source))[0].suffix == ".py"


def _where(error: BaseException, script: Path) -> str:
    """'script.py, line N' of the deepest frame in the script (else the innermost frame)."""
    frames = traceback.extract_tb(error.__traceback__)
    mine = [f for f in frames if Path(f.filename).resolve() == script.resolve()]
    frame = (mine or frames or [None])[-1]
    if frame is None:
        return str(script)
    return f"{script}, line {frame.lineno}" if mine else f"{frame.filename}, line {frame.lineno} (called from {script})"


def _script_error(error: BaseException, script: Path, when: str) -> DataError:
    if isinstance(error, DataError):
        return error
    return DataError(f"the data loader script failed {when}: {type(error).__name__}: {error} ({_where(error, script)})",
                     hint=f"fix {script.name} (run it with python to debug)")


def load_script(spec: str | Path) -> InputData:
    """The data that ``FILE[:FUNCTION]`` returns, re-iterable (the function is called once per pass)."""
    path, function = split_spec(str(spec))
    if not path.is_file():
        raise DataError(f"data loader script not found: {path}", hint="give FILE.py or FILE.py:FUNCTION")
    try:
        namespace = runpy.run_path(str(path), run_name="__onnxcompress_data_loader__")
    except SystemExit as e:
        raise DataError(f"the data loader script {path} called exit({e.code})", hint="define a function instead") from e
    except Exception as e:  # deliberate: any error in the user's script becomes a DataError naming its line
        raise _script_error(e, path, "while loading") from e
    fn = namespace.get(function)
    if not callable(fn):
        found = sorted(k for k, v in namespace.items() if callable(v) and not k.startswith("_"))
        raise DataError(f"{path} has no function '{function}'", hint=f"define {function}() or name one of {found} "
                                                                    f"as {path.name}:FUNCTION")
    source = f"{path}:{function}"

    def chunks() -> Iterator[Mapping[str, Any]]:
        try:
            result = fn()
            yield from _items(result, source)
        except DataError:
            raise
        except Exception as e:  # deliberate: see load_script
            raise _script_error(e, path, f"in {function}()") from e

    return InputData(chunks, source=source)


def _items(result: Any, source: str) -> Iterator[Mapping[str, Any]]:
    from onnxcompress.data.readers import is_reader

    if result is None:
        raise DataError(f"{source} returned None", hint="return a list (or generator) of feed dicts")
    if isinstance(result, Mapping):
        yield result
    elif is_reader(result):
        while (item := result.get_next()) is not None:
            yield item
    else:
        yield from result
