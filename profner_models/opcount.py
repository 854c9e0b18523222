"""What a step costs the hardware: the aten ops it dispatches.

On a GPU a small model's step costs its kernel launches (about 5-17 us each once Python is
counted), not its arithmetic, and nearly every aten op that computes is one launch. ``OpCounter``
counts them on any device, CPU included, with a ``TorchDispatchMode``:

    with OpCounter() as ops:
        trainer.step(features, targets)
    ops.total, ops.kernels, ops.by_name.most_common(10), ops.by_module

``total`` counts every op dispatched; ``kernels`` leaves out the ones that only make a view or
read metadata (no launch on a GPU). ``by_module`` attributes the forward's ops to the innermost
module running (``""`` outside any: the loss, backward, the optimiser).

On the CPU PyTorch dispatches a GRU (and a packed LSTM) one time step at a time: it has no fused
CPU kernel for them, where cuDNN runs each call as one op forward and one backward (and oneDNN
runs an unpacked LSTM so on the CPU, and the models' GRUs in training run their recurrence as
one op each way in C: ``models.recurrent``). ``fused_rnn_total()`` is the count with every
packed call as those two ops: each recorded call of an ``nn.RNNBase`` module is replayed
alone, forward and backward, its ops taken out and two put in.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# ops that make a view or read metadata: no kernel launch on a GPU
NO_KERNEL = frozenset({
    "view", "_unsafe_view", "reshape", "expand", "t", "transpose", "permute", "select", "slice",
    "unsqueeze", "squeeze", "as_strided", "alias", "detach", "split", "split_with_sizes",
    "chunk", "unbind", "narrow", "diagonal", "unfold", "lift_fresh", "sym_size", "sym_stride",
    "sym_numel", "is_same_size", "_reshape_alias", "view_as", "expand_as", "numpy_T",
    "_has_compatible_shallow_copy_type", "dim", "size", "stride", "is_contiguous",
    "_local_scalar_dense",  # a device -> host read (a sync, not a launch)
})


class OpCounter(TorchDispatchMode):
    """Counts aten ops dispatched while active (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.by_name: Counter[str] = Counter()
        self.by_module: Counter[str] = Counter()
        self._modules: list[str] = []
        self._rnn_calls: list[tuple[torch.nn.Module, tuple]] = []
        self._hooks: list[Any] = []

    @property
    def total(self) -> int:
        return sum(self.by_name.values())

    @property
    def kernels(self) -> int:
        return sum(n for name, n in self.by_name.items() if name not in NO_KERNEL)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.by_name[func.overloadpacket.__name__] += 1
        self.by_module[self._modules[-1] if self._modules else ""] += 1
        return func(*args, **(kwargs or {}))

    def __enter__(self) -> "OpCounter":
        register = torch.nn.modules.module
        self._hooks = [register.register_module_forward_pre_hook(self._enter_module),
                       register.register_module_forward_hook(self._leave_module)]
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        super().__exit__(*exc)

    def _enter_module(self, module: torch.nn.Module, inputs: Any) -> None:
        self._modules.append(type(module).__name__)
        if isinstance(module, torch.nn.RNNBase) and module.training:
            self._rnn_calls.append((module, inputs))

    def _leave_module(self, module: torch.nn.Module, inputs: Any, output: Any) -> None:
        self._modules.pop()

    def fused_rnn_total(self) -> int:
        """``total`` with each recorded recurrent call (training mode) as two ops."""
        replayed = 0
        for module, inputs in self._rnn_calls:
            with OpCounter() as alone:
                _forward_backward(module, inputs)
            replayed += alone.total
        return self.total - replayed + 2 * len(self._rnn_calls)

    def summary(self, top: int = 12) -> dict[str, Any]:
        return {"total": self.total, "kernels": self.kernels,
                "fused_rnn_total": self.fused_rnn_total(), "rnn_calls": len(self._rnn_calls),
                "by_name": dict(self.by_name.most_common(top)),
                "by_module": dict(self.by_module.most_common(top))}


def _forward_backward(module: torch.nn.Module, inputs: tuple) -> None:
    """The module's forward on copies of ``inputs`` and the backward to them and to its
    weights, as a training step runs it (no gradient is left on the module)."""
    first, *rest = inputs
    packed = isinstance(first, torch.nn.utils.rnn.PackedSequence)
    data = (first.data if packed else first).detach().requires_grad_(True)
    copy = first._replace(data=data) if packed else data
    output, _ = module(copy, *rest)
    values = output.data if packed else output
    torch.autograd.grad(values.sum(), [data, *module.parameters()], allow_unused=True)
