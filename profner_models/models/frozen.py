"""What a frozen encoder's reader needs: its states per window kept, its layers mixed.

A pretrained encoder that never trains (``freeze``) is a fixed feature extractor, as in ELMo and
Flair: its states depend on a window's pieces alone, so a fit can compute them once per window
(``StateMemo``) and learn only how to mix the layers it reads (``ScalarMix``). On disk
(``StateStore``) the states outlive the fit: every fit on the machine that reads the same
encoder (a held-out run and its refit, an ensemble's members, a sweep's trials, the next job)
shares them, and none runs the encoder over a window another already read.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

Key = tuple[int, ...]
MEMO_DIR = "~/.cache/profner-hpo/states"  # where fits keep frozen states by default


class ScalarMix(nn.Module):
    """ELMo's mix of an encoder's layers: ``scale * sum_j softmax(weights)_j * layer_j``."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(count))
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, layers: torch.Tensor) -> torch.Tensor:
        """``[..., count, hidden]`` -> ``[..., hidden]``. One scaled add per layer: on a CPU,
        einsum ran this as a batched product of tiny matrices, 2x slower forward and back."""
        shares = torch.softmax(self.weights, 0) * self.scale
        mixed = layers[..., 0, :] * shares[0]
        for index in range(1, layers.shape[-2]):
            mixed = mixed + layers[..., index, :] * shares[index]
        return mixed


def fingerprint(encoder: nn.Module, layers: Sequence[int] | None) -> str:
    """What a frozen encoder's states depend on besides the pieces: every weight (names,
    shapes, values) and the layers read. ~1 s for e5-small's 470 MB."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps(None if layers is None else list(layers)).encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class StateStore:
    """A frozen encoder's states per window in ``directory`` (one directory per
    ``fingerprint``), shared by the processes of a machine.

    Whoever computes windows appends them as a chunk: ``<name>.npy`` (float16, the windows'
    pieces one after the other), then ``<name>.json`` (each window's key and rows), both
    written under a temporary name and renamed, so a chunk is read only once complete. Chunks
    are read memory-mapped (one copy in the page cache for every process); a process looks for
    other processes' new chunks when it misses."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.where: dict[str, tuple[str, int, int]] = {}  # key -> (chunk, first row, end row)
        self.chunks: dict[str, np.ndarray | None] = {}  # chunk -> its array once opened

    @staticmethod
    def key(ids: Key) -> str:
        return hashlib.blake2b(np.asarray(ids, dtype=np.int64).tobytes(), digest_size=16).hexdigest()

    def take(self, keys: Sequence[Key]) -> list[torch.Tensor | None]:
        """Each window's states, or None where no process has stored them yet."""
        names = [self.key(k) for k in keys]
        if any(name not in self.where for name in names):
            self.refresh()
        return [self._read(name) if name in self.where else None for name in names]

    def put(self, keys: Sequence[Key], states: Sequence[torch.Tensor]) -> None:
        """Store windows (``[pieces, ...]`` each) as one chunk."""
        if not keys:
            return
        chunk = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        rows = np.concatenate([s.to(torch.float16).cpu().numpy() for s in states])
        ends = np.cumsum([len(s) for s in states]).tolist()
        index = {"keys": [self.key(k) for k in keys], "ends": ends}
        for suffix, write in ((".npy", lambda f: np.save(f, rows)),
                              (".json", lambda f: f.write(json.dumps(index).encode()))):
            temporary = self.directory / f".{chunk}{suffix}.tmp"
            with open(temporary, "wb") as handle:
                write(handle)
            os.replace(temporary, self.directory / f"{chunk}{suffix}")
        self._index(chunk, index)

    def refresh(self) -> None:
        """Read the index of every complete chunk not seen yet."""
        for path in self.directory.glob("*.json"):
            if path.stem not in self.chunks:
                self._index(path.stem, json.loads(path.read_text()))

    def _index(self, chunk: str, index: dict) -> None:
        self.chunks.setdefault(chunk, None)
        starts = [0, *index["ends"][:-1]]
        for name, start, end in zip(index["keys"], starts, index["ends"]):
            self.where.setdefault(name, (chunk, start, end))

    def _read(self, name: str) -> torch.Tensor:
        chunk, start, end = self.where[name]
        if self.chunks[chunk] is None:
            self.chunks[chunk] = np.load(self.directory / f"{chunk}.npy", mmap_mode="r")
        return torch.from_numpy(np.array(self.chunks[chunk][start:end]))


class StateMemo:
    """A frozen encoder's states per window (keyed by its piece ids), float16: in the store that
    ``open_store`` opens when there is one, else in memory up to ``limit`` bytes (windows beyond
    it are computed each time). The store is opened at first use, so it is fingerprinted with
    the weights the encoder has then (a loaded model's, not its untrained start)."""

    def __init__(self, limit: int, open_store: Callable[[], StateStore] | None = None) -> None:
        self.limit, self.used = limit, 0
        self.rows: dict[Key, torch.Tensor] = {}
        self.open_store = open_store
        self.store: StateStore | None = None

    def clear(self) -> None:
        """Forget every state (the encoder's weights changed): the memory's, and the open store,
        which the next use opens again under the new weights' fingerprint."""
        self.rows.clear()
        self.used = 0
        self.store = None

    def states(self, ids: torch.Tensor, mask: torch.Tensor,
               run: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``run(ids, mask)``'s output for these rows, the windows met before read back."""
        lengths = mask.sum(-1).tolist()
        keys = [tuple(row[:n]) for row, n in zip(ids.tolist(), lengths)]
        if self.store is None and self.open_store is not None:
            self.store = self.open_store()
        found = (self.store.take(keys) if self.store is not None
                 else [self.rows.get(key) for key in keys])
        missing = [i for i, state in enumerate(found) if state is None]
        if missing:
            width = max(lengths[i] for i in missing)
            pick = torch.tensor(missing, device=ids.device)
            # normal tensors (not inference ones): an entry made while scoring dev is read in
            # training too
            with torch.inference_mode(False), torch.no_grad():
                computed = run(ids[pick, :width], mask[pick, :width]).to(torch.float16)
                for j, i in enumerate(missing):
                    found[i] = computed[j, : lengths[i]].clone()
            self._keep([keys[i] for i in missing], [found[i] for i in missing])
        out = torch.zeros((len(keys), ids.shape[1], *found[0].shape[1:]), device=ids.device)
        for i, state in enumerate(found):
            out[i, : len(state)] = state.to(ids.device)
        return out

    def _keep(self, keys: list[Key], states: list[torch.Tensor]) -> None:
        if self.store is not None:
            self.store.put(keys, states)
            return
        for key, state in zip(keys, states):
            size = state.numel() * state.element_size()
            if self.used + size <= self.limit:
                self.rows[key], self.used = state, self.used + size


class FrozenReader:
    """How a backbone that reads a frozen encoder keys and keeps its states (a mixin of
    ``transformer.TransformerBackbone``, which sets ``encoder``, ``layers``, ``freeze``, ``memo``
    and ``memo_dir``, and calls ``_weights_changed`` when its weights are loaded)."""

    encoder: nn.Module
    layers: list[int] | None
    freeze: bool
    memo: StateMemo | None
    memo_dir: str | Path | None
    _states_key: str | None = None

    @property
    def states_key(self) -> str:
        """What the states depend on besides the pieces (``fingerprint``: the encoder's weights
        and the layers read), computed once per weights."""
        if self._states_key is None:
            self._states_key = fingerprint(self.encoder, self.layers)
        return self._states_key

    def _weights_changed(self) -> None:
        self._states_key = None
        if self.memo is not None:
            self.memo.clear()

    def _open_store(self) -> StateStore:
        """The store of the current weights and layers under ``memo_dir``."""
        return StateStore(Path(self.memo_dir or MEMO_DIR).expanduser() / self.states_key)


@contextmanager
def shared_states(modules: Iterable[nn.Module], memo_gib: float = 2.0) -> Iterator[None]:
    """Inside the block, frozen readers among ``modules`` that read the same encoder (weights
    and layers) and keep no memo of their own share one memo in memory (up to ``memo_gib``):
    an ensemble's members run the encoder once per window between them, not once each. The
    memo is dropped after the block (a server's texts are mostly new: it would only grow)."""
    readers = [m for m in modules if isinstance(m, FrozenReader) and m.freeze and m.memo is None]
    groups: dict[str, list[FrozenReader]] = {}
    for reader in readers:
        groups.setdefault(reader.states_key, []).append(reader)
    shared = [group for group in groups.values() if len(group) > 1]
    for group in shared:
        memo = StateMemo(int(memo_gib * 2**30))
        for reader in group:
            reader.memo = memo
    try:
        yield
    finally:
        for reader in (r for group in shared for r in group):
            reader.memo = None
