"""The OnnxCompressError tree.

Every error a user can cause derives from :class:`UserError` (CLI exit code 3) and carries a ``hint`` that says
what to change. Anything else that escapes is a bug (:class:`InternalError`, exit code 4).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2
EXIT_USER_ERROR = 3
EXIT_INTERNAL = 4


class OnnxCompressError(Exception):
    """Base of every error raised on purpose by onnxcompress."""

    exit_code = EXIT_INTERNAL

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class UserError(OnnxCompressError):
    """Bad model, recipe, data or path: the user can fix it."""

    exit_code = EXIT_USER_ERROR


class InternalError(OnnxCompressError):
    """A bug in onnxcompress."""


# --- models -----------------------------------------------------------------------------------------------------
class ModelError(UserError):
    """The model file cannot be used."""


class ModelNotFoundError(ModelError):
    pass


class ModelFormatError(ModelError):
    """Not ONNX, corrupt or truncated."""


class ExternalDataError(ModelError):
    pass


class UnsupportedModelError(ModelError):
    """IR version or opset that onnxcompress cannot handle."""


class UnsupportedOpError(ModelError):
    pass


class ModelRunError(ModelError):
    """onnxruntime loaded the model but could not run it on the given inputs."""


# --- data -------------------------------------------------------------------------------------------------------
class DataError(UserError):
    """Calibration or evaluation data does not fit the model."""


class InputMismatchError(DataError):
    pass


class NonFiniteDataError(DataError):
    pass


class EmptyDataError(DataError):
    pass


# --- configuration, runtime, output -----------------------------------------------------------------------------
class RecipeError(UserError):
    """An invalid recipe or option value."""


class ProviderError(UserError):
    """An execution provider that was asked for is not available."""


class OutputPathError(UserError):
    """An output path that cannot be written."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived (raised by the CLI's signal handler, so temporary files are cleaned up on the way
    out as for Ctrl-C); the CLI exits with 128 + the signal number."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class PassError(OnnxCompressError):
    """A pass failed; names the pass and the passes that ran before it."""

    def __init__(self, pass_name: str, ran_before: list[str], cause: BaseException):
        before = ", ".join(ran_before) if ran_before else "none"
        super().__init__(f"pass {pass_name} failed (after: {before}): {cause}")
        self.pass_name = pass_name
        self.ran_before = list(ran_before)
        self.cause = cause
        # a user error inside a pass stays a user error
        self.exit_code = getattr(cause, "exit_code", EXIT_INTERNAL)
        self.hint = getattr(cause, "hint", None)
