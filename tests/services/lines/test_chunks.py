"""Reading a frame file in chunks of complete lines (services.lines.chunks), without a database."""

from __future__ import annotations

import json
from collections.abc import Iterable

from services.lines import sources as line_sources
from services.lines.chunks import FileReport, ReadProgress, complete_line_chunks, parse_chunk
from services.lines.rows import Rules
from services.lines.sources import SourceFile

T0 = 1_704_092_400.0
RULES = Rules(min_confidence=0.5, now_ts=T0 + 3600, known_lines=None)


class MemoryFile(SourceFile):
    """A source file held in memory, read in blocks of ``block`` bytes."""

    def __init__(self, data: bytes, *, settled: bool = False, block: int = 7) -> None:
        super().__init__("mem://frames.jsonl")
        self.data, self.settled, self.block = data, settled, block

    def read_from(self, offset: int) -> Iterable[bytes]:
        self.size_read = len(self.data)
        for start in range(offset, len(self.data), self.block):
            yield self.data[start : start + self.block]

    def byte_at(self, pos: int) -> bytes:
        return self.data[pos : pos + 1]

    def first_line(self) -> bytes:
        return self.data.split(b"\n", 1)[0]

    def lines_before(self, offset: int) -> int:
        return self.data.count(b"\n", 0, offset)


def row(ts: float, count: int = 3) -> bytes:
    return json.dumps({"line_id": "L1", "ts": ts, "count": count}).encode()


def test_chunks_hold_whole_lines_and_leave_a_cut_tail_for_later(monkeypatch):
    monkeypatch.setattr(line_sources, "CHUNK_BYTES", 40)
    data = b"\xef\xbb\xbf" + b"\n".join(row(T0 + i) for i in range(5)) + b"\n" + row(T0 + 5)[:10]
    chunks = list(complete_line_chunks(MemoryFile(data), offset=0, is_csv=False))
    assert chunks[-1].eof and all(not c.eof for c in chunks[:-1])
    assert [c.start for c in chunks[1:]] == [c.end for c in chunks[:-1]]
    assert chunks[-1].end == data.rindex(b"\n") + 1  # the half-written last line is not consumed
    lines = [line for c in chunks for line in c.lines]
    assert lines == [row(T0 + i) for i in range(5)]  # the BOM is gone, every line whole
    whole = list(complete_line_chunks(MemoryFile(data, settled=True), offset=0, is_csv=False))
    assert whole[-1].end == len(data) and whole[-1].lines[-1] == row(T0 + 5)[:10]


def test_a_complete_json_tail_is_consumed_and_a_resumed_read_keeps_the_bom_rule():
    data = row(T0) + b"\n" + row(T0 + 1)
    chunks = list(complete_line_chunks(MemoryFile(data), offset=0, is_csv=False))
    assert chunks[-1].end == len(data)
    resumed = list(complete_line_chunks(MemoryFile(b"\xef\xbb\xbf" + data), offset=3, is_csv=False))
    assert [c.start for c in resumed] == [3] and resumed[0].lines == [row(T0), row(T0 + 1)]


def test_parsed_chunks_number_samples_from_the_start_of_the_file():
    lines = [row(T0), b"{broken", b"", row(T0 + 1, count=-1), row(T0 + 2)]
    data = b"\n".join([row(T0 - 2), row(T0 - 1), *lines]) + b"\n"
    src = MemoryFile(data)
    offset = len(row(T0 - 2)) + len(row(T0 - 1)) + 2  # two lines were read before
    progress = ReadProgress.start(src, offset=offset, is_csv=False, sample_room=1)
    report = FileReport()
    [chunk] = list(complete_line_chunks(src, offset=offset, is_csv=False))
    parsed = parse_chunk(chunk, src=src, is_csv=False, rules=RULES, progress=progress, report=report)
    assert [f[2] for f in parsed.frames] == [T0, T0 + 2]
    assert parsed.skipped == {"malformed": 1, "negative_count": 1}
    assert [(s["line"], s["reason"]) for s in parsed.samples] == [(4, "malformed")]  # only one sample of room
    assert report.rows == 4 and progress.sample_room == 0 and progress.consumed == 5 and progress.base_line == 2
