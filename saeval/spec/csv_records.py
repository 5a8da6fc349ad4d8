"""Steer-file text to numbered CSV records, and the problems found on the way.

Only a regular file of at most 16 MiB is read (a FIFO or a link to a device is refused). Bytes
must be UTF-8 text (a BOM is dropped; UTF-16 and binary data are refused with the line);
``#`` comment lines and blank lines between records are skipped; every record keeps the number
of the physical line it starts on, so each problem reads ``file:line column: message``.
"""

from __future__ import annotations

import codecs
import csv
import io
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn, TypeVar

from saeval.errors import SteerFileError

T = TypeVar("T")
MAX_STEER_BYTES = 16 * 2**20  # over 100,000 rows: far more latents than anyone steers at once
QUOTING = (
    'a field holding a comma or a quote is wrapped in double quotes, each quote inside doubled ("")'
)


def location(file: str, line: int | None, column: str | None = None) -> str:
    """``file:line column``, leaving out the parts that are not known."""
    place = file if line is None else f"{file}:{line}"
    return place if column is None else f"{place} {column}"


class Invalid(Exception):
    """One field's problem; the message names what is valid."""


class Problems:
    """Every problem found in one file, each formatted as ``file:line column: message``."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[str] = []

    def add(self, line: int | None, column: str | None, message: str) -> None:
        """Record one problem."""
        self.items.append(f"{location(self.file, line, column)}: {message}")

    def check(self, line: int, column: str, parse: Callable[[str], T], text: str) -> T | None:
        """``parse(text)``, recording its problem (and returning None) if it has one."""
        try:
            return parse(text)
        except Invalid as problem:
            self.add(line, column, str(problem))
            return None

    def error(self) -> SteerFileError:
        """The error for the problems so far: the first one, counting the rest."""
        first, more = self.items[0], len(self.items) - 1
        if more:
            first += f" (and {more} more problem{'s' if more > 1 else ''})"
        return SteerFileError(first, problems=list(self.items))

    def raise_if_any(self) -> None:
        """Raise SteerFileError listing every problem, if there are any."""
        if self.items:
            raise self.error()

    def fatal(self, line: int | None, column: str | None, message: str) -> NoReturn:
        """Record a problem that ends reading, and raise."""
        self.add(line, column, message)
        raise self.error()


def read_bytes(path: Path, problems: Problems) -> bytes:
    """The bytes of a regular file of at most ``MAX_STEER_BYTES``, or a problem saying why not.

    A FIFO would block and a device (a link to /dev/zero) never end, so neither is opened.
    """
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            problems.fatal(None, None, "is a directory; expected a steer.csv file")
        if not stat.S_ISREG(mode):
            problems.fatal(
                None, None, f"is {_file_kind(mode)}, not a regular file; expected a steer.csv file"
            )
        with path.open("rb") as file:
            data = file.read(MAX_STEER_BYTES + 1)
    except FileNotFoundError:
        problems.fatal(None, None, "file not found; expected a steer.csv file")
    except OSError as error:
        problems.fatal(None, None, f"cannot read the file: {error.strerror or error}")
    if len(data) > MAX_STEER_BYTES:
        problems.fatal(
            None,
            None,
            f"larger than {MAX_STEER_BYTES // 2**20} MiB; a steer file holds one short row per "
            "latent",
        )
    return data


def _file_kind(mode: int) -> str:
    """What a file that is not a regular file or a directory is, for messages."""
    kinds = (
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((kind for test, kind in kinds if test(mode)), "a special file")


def decode(data: bytes, problems: Problems) -> str:
    """The file's text (UTF-8, BOM removed), or a problem naming the line that is not text."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        problems.fatal(1, None, "UTF-16 text; save the file as UTF-8 (CSV UTF-8)")
    nul = data.find(b"\0")
    if nul >= 0:
        problems.fatal(
            data.count(b"\n", 0, nul) + 1,
            None,
            "binary data (a NUL byte); a steer file is UTF-8 CSV text",
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        problems.fatal(
            data.count(b"\n", 0, error.start) + 1,
            None,
            f"not UTF-8 text (byte 0x{data[error.start]:02x}); save the file as UTF-8",
        )


class _LineFeed:
    """Physical lines for csv.reader, skipping comment and blank lines between records."""

    def __init__(self, text: str) -> None:
        self._lines = io.StringIO(text, newline="")
        self._between_records = True
        self.line = 0  # number of the last line handed out
        self.record_start = 0  # number of the first line of the current record
        self.record_text = ""  # the lines of the current record

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        while True:
            text = next(self._lines)
            self.line += 1
            if not self._between_records:
                self.record_text += text
                return text
            if text.strip() and not text.lstrip().startswith("#"):
                self._between_records = False
                self.record_start = self.line
                self.record_text = text
                return text

    def record_done(self) -> None:
        """The reader returned a record: the next line starts a new one."""
        self._between_records = True


def read_records(text: str, problems: Problems) -> list[tuple[int, list[str]]]:
    """(first line number, fields) of every non-empty CSV record, up to a CSV syntax error."""
    feed = _LineFeed(text)
    # Not strict: csv's strict mode also rejects spaces after a closing quote (`"a, b" ,`).
    reader = csv.reader(feed, skipinitialspace=True)
    records: list[tuple[int, list[str]]] = []
    for fields in _guarded(reader, feed, problems):
        feed.record_done()
        if any(field.strip() for field in fields):
            records.append((feed.record_start, fields))
    last_is_current = bool(records) and records[-1][0] == feed.record_start
    if last_is_current and _ends_in_open_quote(feed.record_text):
        problems.add(
            feed.record_start,
            None,
            "a quoted field opened here is never closed (it runs to the end of the file); "
            f"{QUOTING}",
        )
        records.pop()
    return records


def _guarded(
    reader: Iterator[list[str]], feed: _LineFeed, problems: Problems
) -> Iterator[list[str]]:
    """The reader's records until it ends or reports a CSV error, which becomes a problem."""
    try:
        yield from reader
    except csv.Error as error:
        problems.add(feed.record_start, None, f"cannot parse CSV ({error}); {QUOTING}")


def _ends_in_open_quote(text: str) -> bool:
    """Whether CSV text ends inside a quoted field (csv's lenient reader accepts that at EOF)."""
    state = "start"  # start of a field | plain | quoted | quote (a quote inside a quoted field)
    for char in text:
        if state == "quoted":
            state = "quote" if char == '"' else "quoted"
        elif state == "quote" and char == '"':
            state = "quoted"
        elif char in ",\r\n":
            state = "start"
        elif state == "start" and char == '"':
            state = "quoted"
        elif not (state == "start" and char == " "):
            state = "plain"
    return state == "quoted"
