"""Features from any layer (``--layer``, ``--pool``, ``featx layers``): a module's output caught by a forward
hook, the rest of the forward skipped, pooled over space and time.

A layer's output is read by its number of dimensions: (views, C) as it is, (views, tokens, C) a
transformer's tokens, (views, C, H, W) a 2D map, (views, C, T, H, W) a 3D one. ``avg`` and ``max`` pool
the tokens or the map to one value per channel; ``none`` keeps each view's output whole.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from featx.errors import UserError

POOLS = ("avg", "max", "none")


class _Caught(Exception):
    """Raised by the hook to stop the forward once the tapped module has run."""

    def __init__(self, output: object) -> None:
        super().__init__()
        self.output = output


def output_of(model: nn.Module, name: str, forward: Callable[[], object]) -> object:
    """What module ``name`` of ``model`` returns while ``forward()`` runs (which stops there)."""
    def catch(module: nn.Module, args: object, output: object) -> None:
        raise _Caught(output)

    handle = find_layer(model, name).register_forward_hook(catch)
    try:
        forward()
    except _Caught as caught:
        return caught.output
    finally:
        handle.remove()
    raise UserError(f"--layer {name}: that module does not run in the model's forward")


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """Module ``name`` (``backbone.layer3``); an unknown one is the user's error, naming close ones."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        parent = name.rpartition(".")[0]
        try:
            siblings = [f"{parent}.{n}" if parent else n for n, _ in model.get_submodule(parent).named_children()]
        except AttributeError:
            siblings = [n for n, _ in model.named_children()]
        hint = f" (under {parent or 'the model'}: {', '.join(siblings[:12])})" if siblings else ""
        raise UserError(f"--layer {name}: no such module{hint}; `featx layers CONFIG` lists them") from None


def pool_output(output: object, pool: str) -> Tensor:
    """(views, D) rows of a layer's output: each tensor of a tuple pooled and concatenated, or (``none``)
    one tensor flattened per view."""
    outs = [o for o in (output if isinstance(output, (tuple, list)) else (output,)) if isinstance(o, Tensor)]
    if not outs:
        raise UserError(f"this layer returns {type(output).__name__}, not a tensor")
    if pool == "none":
        if len(outs) > 1:
            raise UserError(f"--pool none: this layer returns {len(outs)} tensors; pick one of its modules")
        return outs[0].flatten(1)
    return torch.cat([_pooled(o, pool) for o in outs], dim=1)


def _pooled(x: Tensor, pool: str) -> Tensor:
    if x.dim() == 2:
        return x
    dims = (1,) if x.dim() == 3 else tuple(range(2, x.dim()))  # tokens, or the map's time and space
    return x.mean(dims) if pool == "avg" else x.amax(dims)


def layer_shapes(model: nn.Module, example: Tensor, run: Callable[[Tensor], object]) -> list[tuple[str, str]]:
    """Each module's name and output shape(s) for ``run(example)``, as their outputs come (a module after
    the modules inside it)."""
    shapes: dict[str, str] = {}

    def record(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: object, output: object) -> None:
            outs = output if isinstance(output, (tuple, list)) else (output,)
            shapes.setdefault(name, " + ".join(str(tuple(o.shape)) for o in outs if isinstance(o, Tensor)))
        return hook

    handles = [m.register_forward_hook(record(n)) for n, m in model.named_modules() if n]
    try:
        with torch.inference_mode():
            run(example)
    finally:
        for h in handles:
            h.remove()
    return list(shapes.items())
