"""A frame file read in chunks of complete lines, each parsed into frames and skipped rows (no database).

``complete_line_chunks`` cuts the bytes after a saved offset into chunks of whole lines (about
``sources.CHUNK_BYTES`` each; a last line without its newline only when it is certainly whole) and
``parse_chunk`` turns one chunk into frames, skip counts and numbered samples. ``feed`` stores each chunk
with the file's new offset in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from services.lines import sources as line_sources
from services.lines.rows import Rules, Skip, csv_header, csv_rows, json_rows
from services.lines.sources import SourceFile

_BOM = b"\xef\xbb\xbf"


@dataclass
class FileReport:
    """What reading files found so far (summed over the files of one ingest)."""

    rows: int = 0
    frames_added: int = 0
    duplicates: int = 0
    late: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)


def tail_is_whole(src: SourceFile, tail: bytes, *, is_csv: bool) -> bool:
    """A last line without its newline: consume it only when it cannot be a line still being written."""
    if src.settled:
        return True
    if is_csv:
        return False
    try:  # a JSON object cut short never parses
        return isinstance(json.loads(tail), dict)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


@dataclass(frozen=True)
class LineChunk:
    """Complete lines of a file, bytes ``start`` .. ``end``."""

    start: int  # byte offset of the first line
    end: int  # byte offset after the last line consumed (the file's offset once the chunk is stored)
    lines: list[bytes]  # the lines without their newlines (a UTF-8 BOM at the start of the file removed)
    eof: bool  # the last chunk of this pass


def complete_line_chunks(src: SourceFile, *, offset: int, is_csv: bool) -> Iterator[LineChunk]:
    """The file's complete lines from ``offset`` on, in chunks of at least ``CHUNK_BYTES`` (but the last),
    read lazily; the last chunk (``eof``) may be empty. Raises NotFound/StorageError as ``src`` reads."""
    pos = offset
    carry = b""
    blocks = iter(src.read_from(offset))
    while True:
        block = next(blocks, None)
        eof = block is None
        if not eof:
            carry += block
            if len(carry) < line_sources.CHUNK_BYTES:
                continue
        data = carry
        cut = data.rfind(b"\n") + 1
        if eof and cut < len(data) and tail_is_whole(src, data[cut:], is_csv=is_csv):
            cut = len(data)
        if cut == 0 and not eof:
            continue  # one very long line: read on
        body, carry = data[:cut], data[cut:]
        lines = body.split(b"\n")
        if body.endswith(b"\n") or not body:
            lines.pop()
        if pos == 0 and lines and lines[0].startswith(_BOM):
            lines[0] = lines[0][len(_BOM) :]
        yield LineChunk(start=pos, end=pos + cut, lines=lines, eof=eof)
        pos += cut
        if eof:
            return


@dataclass
class ReadProgress:
    """Where one pass over a file stands, from chunk to chunk."""

    offset: int  # where the pass started
    header: list[str] | None  # a CSV file's columns (None: a JSON Lines file, or not read yet)
    base_line: int | None  # lines before ``offset``: counted only when a sample needs a line number
    sample_room: int  # skipped rows that may still be kept as samples
    consumed: int = 0  # lines consumed in this pass

    @classmethod
    def start(cls, src: SourceFile, *, offset: int, is_csv: bool, sample_room: int) -> ReadProgress:
        """A pass from ``offset`` (a CSV file read on after its header reads the header first). Raises
        InvalidInput for an unusable CSV header, NotFound/StorageError as ``src`` reads."""
        header = csv_header(src.first_line()) if is_csv and offset > 0 else None
        return cls(offset=offset, header=header, base_line=0 if offset == 0 else None, sample_room=sample_room)


@dataclass(frozen=True)
class ParsedChunk:
    """A chunk's rows: the frames, skip counts per reason and the samples kept (with line numbers)."""

    frames: list[tuple[str, str, float, int, int]]
    skipped: dict[str, int]
    samples: list[dict[str, Any]]


def parse_chunk(chunk: LineChunk, *, src: SourceFile, is_csv: bool, rules: Rules, progress: ReadProgress,
                report: FileReport) -> ParsedChunk:
    """Parse one chunk's rows, advancing ``progress`` and ``report.rows``. Raises InvalidInput for an
    unusable CSV header, NotFound/StorageError when numbering a sample needs reading ``src``."""
    lines = chunk.lines
    first = 0
    if chunk.start == 0 and lines and is_csv:
        progress.header = csv_header(lines[0])
        first = 1
    frames: list[tuple[str, str, float, int, int]] = []
    skipped: dict[str, int] = {}
    samples: list[dict[str, Any]] = []
    rows = csv_rows(lines[first:], progress.header or [], rules) if is_csv else json_rows(lines[first:], rules)
    for i, res in rows:
        report.rows += 1
        if isinstance(res, Skip):
            skipped[res.reason] = skipped.get(res.reason, 0) + 1
            if len(samples) < progress.sample_room:
                if progress.base_line is None:
                    progress.base_line = src.lines_before(progress.offset)
                line = progress.base_line + progress.consumed + first + i + 1
                samples.append({"line": line, "reason": res.reason, "detail": res.detail})
        else:
            frames.append(res)
    progress.sample_room -= len(samples)
    progress.consumed += len(lines)
    return ParsedChunk(frames=frames, skipped=skipped, samples=samples)
