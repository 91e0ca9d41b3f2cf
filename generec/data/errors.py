"""Errors raised by the data layer.

They carry enough context (file, line, field, where we looked) that a user can fix the problem
without reading the loader's source.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike


class DataFormatError(ValueError):
    """A data file does not have the expected layout.

    ``line`` is 1-based, or None for whole-file problems (empty file, missing header field).
    """

    def __init__(
        self,
        path: str | PathLike[str],
        line: int | None,
        field: str | None,
        expected: str,
        got: object | None = None,
    ) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.expected = expected
        self.got = got
        super().__init__(self._format())

    def _format(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        what = f" field '{self.field}':" if self.field else ""
        msg = f"{where}:{what} expected {self.expected}"
        if self.got is not None:
            got = repr(self.got[:80]) if isinstance(self.got, str) else str(self.got)
            msg += f", got {got}"
        return msg

    def __reduce__(self):  # keeps the error picklable (multiprocess data loading)
        return (type(self), (self.path, self.line, self.field, self.expected, self.got))


class DatasetNotFoundError(FileNotFoundError):
    """No local copy of a dataset and no way to fetch one; lists every place that was tried."""

    def __init__(self, name: str, looked: Sequence[str], reason: str | None = None) -> None:
        self.name = name
        self.looked = list(looked)
        self.reason = reason
        lines = [f"dataset '{name}' not found. Looked in:"]
        lines += [f"  - {p}" for p in self.looked] or ["  (nowhere: no location configured)"]
        if reason:
            lines.append(f"Download failed: {reason}")
        lines.append(
            "Point generec at the files with `data.path=/path/to/file_or_folder` "
            "or `GENEREC_DATA_DIR=/path/to/datasets` (holding one folder per dataset), "
            "or set GENEREC_DATA_MIRROR to a reachable mirror."
        )
        super().__init__("\n".join(lines))

    def __reduce__(self):
        return (type(self), (self.name, self.looked, self.reason))


class ChecksumError(OSError):
    """A downloaded file's sha256 does not match the registry (corrupt or changed upstream)."""

    def __init__(self, url: str, expected: str, got: str) -> None:
        self.url, self.expected, self.got = url, expected, got
        super().__init__(
            f"sha256 mismatch for {url}: expected {expected}, got {got}. "
            "The partial download was deleted; retry, or check the mirror."
        )

    def __reduce__(self):
        return (type(self), (self.url, self.expected, self.got))


class DownloadError(OSError):
    """Network-level failure while fetching a file (offline, DNS, HTTP error)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url, self.reason = url, reason
        super().__init__(f"could not download {url}: {reason}")

    def __reduce__(self):
        return (type(self), (self.url, self.reason))
