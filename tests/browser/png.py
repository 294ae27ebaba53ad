"""Just enough PNG decoding to look at a browser screenshot's pixels (8-bit RGB/RGBA, not interlaced).

No imaging library is a dependency of the project; Chromium's screenshots are plain 8-bit PNGs.
"""

from __future__ import annotations

import struct
import zlib
from collections import Counter


def decode(png: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and the rows of RGB pixels (3 bytes each) of a PNG."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, width, height, ctype = 8, b"", 0, 0, 0
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind = png[pos + 4 : pos + 8]
        data = png[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", data)
            if depth != 8 or ctype not in (2, 6) or interlace:
                raise ValueError(f"unsupported PNG: depth {depth}, colour type {ctype}, interlace {interlace}")
        elif kind == b"IDAT":
            idat += data
        elif kind == b"IEND":
            break
    bpp = 4 if ctype == 6 else 3
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        prev = line
        if bpp == 4:
            rows.append(bytes(v for j in range(0, stride, 4) for v in line[j : j + 3]))
        else:
            rows.append(bytes(line))
    return width, height, rows


def colour_stats(png: bytes, *, step: int = 3) -> tuple[int, float, Counter[tuple[int, int, int]]]:
    """(distinct colours, share of non-white pixels, colour counts) over every ``step``-th pixel."""
    width, height, rows = decode(png)
    counts: Counter[tuple[int, int, int]] = Counter()
    for y in range(0, height, step):
        row = rows[y]
        for x in range(0, width, step):
            counts[(row[3 * x], row[3 * x + 1], row[3 * x + 2])] += 1
    total = sum(counts.values()) or 1
    near_white = sum(n for (r, g, b), n in counts.items() if min(r, g, b) >= 245)
    return len(counts), 1 - near_white / total, counts
