"""Raw bytes -> numbered lines, exactly.

A JSONL file is read in large chunks; each chunk is cut at its last newline and its line
offsets found with one vectorised scan, so that line numbers are exact and blank lines are
lines. The lines can be handed to DuckDB as an Arrow binary array without copying (each value
keeps its trailing newline, which JSON parsers ignore); UTF-8 is checked there, in parallel.
Gzip is decompressed here with zlib so that a truncated stream yields every complete line
before it and is reported, not raised.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import pyarrow as pa

from curation.schema import RAW_TEXT_LIMIT

READ_BYTES = 1 << 20  # compressed bytes read at a time: a block overshoots CHUNK_BYTES by one
CHUNK_BYTES = 16 << 20  # decompressed bytes handed on per block (about); see bench/ingest.py
SALVAGE_BYTES = 16 << 10  # compressed bytes re-inflated at a time before a damaged spot
NEWLINE = 10
SCAN_BYTES = 1 << 20  # the newline scan goes through a block in pieces of this size


@dataclass
class LineBlock:
    """Consecutive lines of one file: the bytes and where each line starts and ends."""

    first_line: int  # 1-based number of the first line
    data: bytes
    offsets: np.ndarray  # int32, len = lines + 1; line i is data[offsets[i]:offsets[i+1]]

    @property
    def count(self) -> int:
        return len(self.offsets) - 1

    def line_numbers(self) -> np.ndarray:
        return np.arange(self.first_line, self.first_line + self.count, dtype=np.int64)

    def as_binary(self) -> pa.Array:
        """The lines as an Arrow binary array, without copying (newlines included)."""
        return pa.BinaryArray.from_buffers(
            pa.binary(), self.count, [None, pa.py_buffer(self.offsets), pa.py_buffer(self.data)]
        )

    def raw(self, index: int) -> bytes:
        return self.data[self.offsets[index] : self.offsets[index + 1]]

    def replaced(self, indices: list[int], filler: bytes) -> list[bytes | memoryview]:
        """The block, in pieces, with the given lines replaced by ``filler`` (newline kept)."""
        if not indices:
            return [self.data]
        data = memoryview(self.data)  # slices of it are views, not copies of the block
        parts: list[bytes | memoryview] = []
        previous = 0
        for i in sorted(indices):
            parts.append(data[self.offsets[previous] : self.offsets[i]])
            parts.append(filler + (b"\n" if self.raw(i).endswith(b"\n") else b""))
            previous = i + 1
        parts.append(data[self.offsets[previous] :])
        return parts


@dataclass
class FrameStats:
    lines: int = 0
    bytes_in: int = 0  # bytes read from the source (compressed bytes for gzip)
    truncated_gzip: bool = False


class _GzipStream:
    """Decompresses gzip (multi-member too) and notes, instead of raising, a truncated end.

    A stream that stops making sense (a corrupt block, a member that is not gzip) raises
    zlib.error, but only on the read after the one that returns what came before it: the
    lines before the damage are kept, not dropped with the read that met it.
    """

    def __init__(self, raw: BinaryIO, stats: FrameStats) -> None:
        self._raw, self._stats = raw, stats
        self._inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        self._done = False
        self._error: zlib.error | None = None

    def read(self, size: int) -> bytes:
        if self._error is not None:
            raise self._error
        out: list[bytes] = []
        produced = 0
        try:
            while produced < size and not self._done:
                compressed = self._raw.read(READ_BYTES)
                self._stats.bytes_in += len(compressed)
                if not compressed:
                    tail = self._inflate.flush()
                    if tail:
                        out.append(tail)
                    if not self._inflate.eof:
                        self._stats.truncated_gzip = True
                    self._done = True
                    break
                data = self._decompress(compressed, out)
                produced += len(data)
                # A new gzip member may follow the end of the previous one.
                while self._inflate.eof and self._inflate.unused_data:
                    rest = self._inflate.unused_data
                    self._inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                    produced += len(self._decompress(rest, out))
        except zlib.error as exc:
            if not any(out):
                raise
            self._error = exc
        return b"".join(out)

    def _decompress(self, compressed: bytes, out: list[bytes]) -> bytes:
        """Inflate and append to ``out``; where ``compressed`` is damaged, first append what
        its pieces before the damage inflate to (one read is megabytes of lines)."""
        before = self._inflate.copy()
        try:
            data = self._inflate.decompress(compressed)
        except zlib.error:
            for start in range(0, len(compressed), SALVAGE_BYTES):
                try:
                    out.append(before.decompress(compressed[start:start + SALVAGE_BYTES]))
                except zlib.error:
                    break
            raise
        out.append(data)
        return data


class _PlainStream:
    def __init__(self, raw: BinaryIO, stats: FrameStats) -> None:
        self._raw, self._stats = raw, stats

    def read(self, size: int) -> bytes:
        data = self._raw.read(size)
        self._stats.bytes_in += len(data)
        return data


def is_gzip(name: str, head: bytes) -> bool:
    return name.endswith(".gz") or head[:2] == b"\x1f\x8b"


def shown_text(raw: bytes) -> str:
    """A bad line as it is kept in quarantine: undecodable bytes escaped, length capped."""
    return raw.rstrip(b"\r\n").decode("utf-8", errors="backslashreplace")[:RAW_TEXT_LIMIT]


UTF8_BOM = b"\xef\xbb\xbf"


def iter_line_blocks(
    raw: BinaryIO, name: str, stats: FrameStats, chunk_bytes: int | None = None
) -> Iterator[LineBlock]:
    """Yield the lines of ``raw`` in blocks of about ``chunk_bytes`` (``CHUNK_BYTES``),
    numbering them from 1."""
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    head = raw.read(2)
    stream: _GzipStream | _PlainStream
    if is_gzip(name, head):
        # The two bytes read to sniff the format go back in front of the compressed stream.
        stream = _GzipStream(_Prefixed(head, raw), stats)
        pending = b""
    else:
        stats.bytes_in += len(head)
        stream = _PlainStream(raw, stats)
        pending = head
    next_line = 1
    first = True
    while True:
        data = stream.read(chunk_bytes)
        at_end = not data
        if at_end:
            lines, pending = pending, b""
        else:
            cut = data.rfind(b"\n") + 1
            if cut == 0:  # one very long line so far: keep reading
                pending += data
                continue
            # The block is copied once: what was pending, then the read up to its last line
            with memoryview(data) as view:
                lines = b"".join((pending, view[:cut]))
            pending = data[cut:]
        del data  # not held while the block is out
        if first:
            # a byte-order mark (some editors write one) is not part of the first line
            lines, first = lines.removeprefix(UTF8_BOM), False
        if not lines:
            break
        block = frame_block(lines, next_line)
        next_line += block.count
        stats.lines = next_line - 1
        yield block
        if at_end:
            break


class _Prefixed:
    def __init__(self, prefix: bytes, raw: BinaryIO) -> None:
        self._prefix, self._raw = prefix, raw

    def read(self, size: int) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix, b""
            return data + self._raw.read(max(0, size - len(data)))
        return self._raw.read(size)


def frame_block(block: bytes, first_line: int) -> LineBlock:
    """Lines of a block that ends at a newline (or at the end of the file)."""
    view = np.frombuffer(block, dtype=np.uint8)
    # In pieces: a mask the size of the block would be fresh pages on every block
    ends = np.concatenate(
        [np.flatnonzero(view[at : at + SCAN_BYTES] == NEWLINE) + (at + 1)
         for at in range(0, len(view), SCAN_BYTES)] or [np.zeros(0, np.int64)]
    )
    if len(ends) == 0 or ends[-1] != len(block):
        ends = np.append(ends, len(block))
    offsets = np.concatenate(([0], ends)).astype(np.int32)
    return LineBlock(first_line, block, offsets)
