"""A minimal PNG writer (RGB, zlib) for attention heatmaps: no plotting dependency."""

from __future__ import annotations

import struct
import zlib

import numpy as np

# Anchor colours of a perceptually ordered dark-blue -> yellow scale.
_ANCHORS = np.array([[13, 8, 135], [84, 2, 163], [139, 10, 165], [185, 50, 137],
                     [219, 92, 104], [244, 136, 73], [254, 188, 43], [240, 249, 33]], dtype=np.float64)

_FUTURE = np.array([243, 244, 246], dtype=np.uint8)


def colourise(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to RGB uint8. (H, W) -> (H, W, 3)"""
    t = np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0) * (len(_ANCHORS) - 1)
    lo = np.floor(t).astype(int).clip(0, len(_ANCHORS) - 2)
    frac = (t - lo)[..., None]
    return np.round(_ANCHORS[lo] * (1 - frac) + _ANCHORS[lo + 1] * frac).astype(np.uint8)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an RGB image. rgb: (H, W, 3) uint8"""
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(height))  # filter 0 per scanline
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9)) + \
        _chunk(b"IEND", b"")


def attention_png(matrix: np.ndarray) -> bytes:
    """One (L, L) attention map as a PNG: rows normalised to their maximum, causal part only.

    Row normalisation shows where each position looks, whatever the scale of a layer.
    """
    m = np.abs(np.asarray(matrix, dtype=np.float64))  # (L, L)
    m = m / np.maximum(m.max(axis=1, keepdims=True), 1e-12)
    rgb = colourise(np.sqrt(m))  # sqrt: faint long-range weights stay visible
    rgb[np.triu_indices(m.shape[0], k=1)] = _FUTURE  # a position never reads ahead: show it blank
    return encode_png(rgb)
