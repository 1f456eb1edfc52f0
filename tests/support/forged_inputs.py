"""Hostile inputs the bounded-input tests share: an alias bomb and files whose headers lie."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

#: "Billion laughs": nine levels of nine-fold aliases in one flow sequence of a few hundred
#: bytes, 9**9 (387 million) strings were they expanded.
LAUGHS = (
    "[&a [lol, lol, lol, lol, lol, lol, lol, lol, lol], "
    + ", ".join(
        f"&{name} [{', '.join([f'*{previous}'] * 9)}]"
        for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + "]"
)


def npy_bytes(array: np.ndarray, shape: tuple[int, ...] | None = None) -> bytes:
    """``array`` as ``.npy`` bytes, its header claiming ``shape`` (default: its own)."""
    buffer = io.BytesIO()
    header = np.lib.format.header_data_from_array_1_0(array)
    if shape is not None:
        header["shape"] = shape
    np.lib.format.write_array_header_2_0(buffer, header)  # magic string included
    buffer.write(array.tobytes())
    return buffer.getvalue()


def forged_png_bytes(width: int, height: int) -> bytes:
    """A real 8x8 PNG whose IHDR claims ``width`` x ``height`` (CRC fixed, so PIL trusts it)."""
    buffer = io.BytesIO()
    Image.new("L", (8, 8), 100).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)
