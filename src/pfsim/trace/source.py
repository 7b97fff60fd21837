"""Open a trace as a stream of bytes: a file or ``-`` (standard input), gzip or zstd or plain.

Compression is recognised by its magic number (gzip ``1f 8b``, zstd ``28 b5 2f fd``), not by
the file name, so a compressed stream on standard input works too. zstd needs the
``zstandard`` package (a dependency of pfsim), imported only when a zstd stream is opened.
"""

from __future__ import annotations

import gzip
import io
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pfsim.errors import TraceFormatError

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
STDIN = "-"


@dataclass
class Source:
    """An open trace: ``stream`` yields the decompressed bytes; ``raw`` is the file underneath
    (its position over ``size`` is the progress); ``head`` holds bytes already read from
    ``stream`` that come first."""

    name: str
    stream: BinaryIO
    raw: BinaryIO
    size: int | None
    compression: str | None
    path: Path | None
    head: bytes = b""
    _closers: list = field(default_factory=list)

    def position(self) -> int:
        """Bytes of the underlying file read so far (compressed bytes for a compressed file)."""
        try:
            return self.raw.tell()
        except (OSError, ValueError):
            return 0

    def read_into(self, view: memoryview) -> int:
        """Fill ``view`` from the stream (head first); returns the bytes written, 0 at the end."""
        filled = 0
        if self.head:
            filled = min(len(self.head), len(view))
            view[:filled] = self.head[:filled]
            self.head = self.head[filled:]
        return filled + self._read_stream(view[filled:])

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes (fewer only at the end): lets numpy read a ``.npy`` header."""
        data = bytearray(size)
        return bytes(data[:self.read_into(memoryview(data))])

    def peek(self, size: int) -> bytes:
        """The first ``size`` bytes of the stream (or fewer at its end), left to be read."""
        if len(self.head) < size:
            extra = bytearray(size - len(self.head))
            self.head += bytes(extra[:self._read_stream(memoryview(extra))])
        return self.head[:size]

    def _read_stream(self, view: memoryview) -> int:
        filled = 0
        while filled < len(view):
            try:
                got = self.stream.readinto(view[filled:])
            except (OSError, EOFError, ValueError) as exc:
                raise TraceFormatError(f"{self.name}: cannot read the "
                                       f"{self.compression or 'file'} data: {exc}") from None
            except Exception as exc:  # zstandard.ZstdError is not an OSError
                if type(exc).__name__ != "ZstdError":
                    raise
                raise TraceFormatError(f"{self.name}: cannot read the zstd data: {exc}") from None
            if not got:
                break
            filled += got
        return filled

    def close(self) -> None:
        for closer in reversed(self._closers):
            try:
                closer()
            except OSError:
                pass


class _Prefixed(io.RawIOBase):
    """``prefix`` then the rest of ``raw``: the magic bytes read to detect compression."""

    def __init__(self, prefix: bytes, raw: BinaryIO) -> None:
        self._prefix = prefix
        self._raw = raw
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, view) -> int:  # type: ignore[no-untyped-def]
        if self._prefix:
            got = min(len(self._prefix), len(view))
            view[:got] = self._prefix[:got]
            self._prefix = self._prefix[got:]
        else:
            got = self._raw.readinto(view) or 0
        self._offset += got
        return got

    def tell(self) -> int:
        return self._offset


def open_source(trace: str | Path) -> Source:
    """Open ``trace`` (a path, or ``-`` for standard input) and undo its compression.

    Raises:
        TraceFormatError: missing or unreadable file, or a broken compressed stream.
    """
    name = str(trace)
    closers = []
    if name == STDIN:
        raw = sys.stdin.buffer
        size, path = None, None
    else:
        path = Path(trace)
        try:
            raw = path.open("rb")
        except FileNotFoundError:
            raise TraceFormatError(f"{name}: no such file") from None
        except IsADirectoryError:
            raise TraceFormatError(f"{name}: is a directory, expected a trace file") from None
        except OSError as exc:
            raise TraceFormatError(f"{name}: cannot read: {exc.strerror or exc}") from None
        closers.append(raw.close)
        try:
            size = os.fstat(raw.fileno()).st_size
        except OSError:
            size = None
    try:
        magic = b""
        while len(magic) < 4:  # a pipe may deliver fewer bytes per read
            more = raw.read(4 - len(magic))
            if not more:
                break
            magic += more
    except OSError as exc:
        raise TraceFormatError(f"{name}: cannot read: {exc.strerror or exc}") from None
    counted = _Prefixed(magic, raw)
    buffered = io.BufferedReader(counted, buffer_size=1 << 20)
    compression = None
    stream: BinaryIO = buffered
    if magic.startswith(GZIP_MAGIC):
        compression = "gzip"
        stream = gzip.GzipFile(fileobj=buffered, mode="rb")
        closers.append(stream.close)
    elif magic.startswith(ZSTD_MAGIC):
        import zstandard  # lazy: only zstd traces need it

        compression = "zstd"
        stream = zstandard.ZstdDecompressor().stream_reader(buffered, read_across_frames=True,
                                                            closefd=False)
        closers.append(stream.close)
    return Source(name=name, stream=stream, raw=counted, size=size, compression=compression,
                  path=path, _closers=closers)
