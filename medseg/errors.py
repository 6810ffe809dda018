"""User-facing errors.

Every problem a user can cause or fix (a bad path, a corrupt file, an
ambiguous DICOM folder, mismatched geometry, a bad config) is raised as a
:class:`MedsegError` subclass. The CLI prints such an error as one line on
stderr and exits with the class's ``exit_code``; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

#: Exit statuses of commands that finish but report a partial failure; no error class
#: uses them (``docs/troubleshooting.md`` documents every code).
EXIT_CONVERT_PARTIAL = 12
EXIT_MANIFEST_PROBLEMS = 13
EXIT_SOME_FAILED = 14


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) if "\n" in str(text) or "\r" in str(text) else str(text)


class MedsegError(Exception):
    """Base class of every error a user can act on.

    Args:
        message: What went wrong, naming the file or value concerned.
        hint: How to fix it, in one short sentence (optional).

    Both are kept on one line: line breaks (e.g. in a library's message quoted here) become
    spaces, so the CLI's error is always one line.
    """

    exit_code: int = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        message = _one_line(message)
        super().__init__(message)
        self.message = message
        self.hint = _one_line(hint) if hint else hint

    def __reduce__(self) -> tuple[type, tuple[str, str | None]]:
        """Pickle with the hint (errors cross process boundaries, e.g. from the reader worker)."""
        return (type(self), (self.message, self.hint))

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}; {self.hint}"
        return self.message


class InputNotFoundError(MedsegError):
    """A path given by the user does not exist."""

    exit_code = 3


class UnsupportedFormatError(MedsegError):
    """A file whose format medseg cannot read or write."""

    exit_code = 4


class CorruptFileError(MedsegError):
    """A file that claims a supported format but cannot be decoded."""

    exit_code = 5


class NoImageDataError(MedsegError):
    """A folder or file that holds no readable image."""

    exit_code = 6


class AmbiguousSeriesError(MedsegError):
    """A DICOM folder holds several series and none was selected."""

    exit_code = 7


class SeriesGeometryError(MedsegError):
    """A DICOM series whose slices do not form a regular grid (tilt, uneven spacing,
    missing slices, inconsistent 4D layout) and was not allowed to be resampled."""

    exit_code = 8


class GeometryMismatchError(MedsegError):
    """Two images that must share a grid (image and label, prediction and reference) do not."""

    exit_code = 9


class ConfigError(MedsegError):
    """A configuration file or option that fails validation."""

    exit_code = 10


class MissingDependencyError(MedsegError):
    """An optional dependency is needed for the requested feature."""

    exit_code = 11


class ReaderCrashedError(MedsegError):
    """A native reader (SimpleITK, nibabel, pydicom's decoders) died on an input, e.g. with
    a segmentation fault, in the worker process that reads each case of a batch."""

    exit_code = 17
