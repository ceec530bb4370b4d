"""Data-parallel (DDP) and fully sharded (FSDP2 `fully_shard`) training under `torchrun`.

One process is world size 1 and every function here is then a no-op, so the trainer has one code
path. Under `torchrun` each rank draws the same global batch from identically seeded streams and
keeps its own slice, cut into `grad_accum` micro-batches: the global batch (`--batch_size`), the
data order and the data-stream state are the same whatever the number of processes, which is what
makes a 2-process run follow the 1-process loss curve and lets any run resume under another world
size. Micro-batch losses are weighted by their share of the global batch's target tokens, so the
gradient is that of the global token-mean loss (the answer-only loss leaves micro-batches with
different token counts).

Rank 0 alone writes artefacts, evaluates and steers the curriculum; other ranks wait at a barrier
and receive its decisions by broadcast. Under FSDP2 the full weights are gathered (a collective all
ranks join) into rank 0's CPU memory for checkpoints and evaluation.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from looplab.errors import LooplabError

FSDP_FROM_PARAMS = 250_000_000  # auto shards models of at least this many parameters (the 300M presets up)
T = TypeVar("T")


@dataclass(frozen=True)
class World:
    rank: int = 0  # this process's rank
    size: int = 1  # number of processes
    local_rank: int = 0  # rank on this node (its GPU index)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init_world() -> World:
    """The torchrun world (RANK / WORLD_SIZE / LOCAL_RANK), or world size 1 outside torchrun."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
    return World(rank=dist.get_rank(), size=dist.get_world_size(), local_rank=local)


def close_world(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def resolve_mode(name: str, world: World, n_params: int) -> str:
    """'none' for one process; otherwise ddp or fsdp (auto picks by model size)."""
    if not world.distributed:
        return "none"
    if name == "auto":
        return "fsdp" if n_params >= FSDP_FROM_PARAMS else "ddp"
    return name


def check_batch(batch_size: int, world: World, accum: int) -> None:
    if accum < 1 or batch_size % (world.size * accum):
        raise LooplabError(f"--batch_size {batch_size} must be a multiple of processes x --grad_accum "
                           f"({world.size} x {accum}); allowed: --grad_accum >= 1 dividing batch_size / processes")


def micro_rows(n_rows: int, world: World, accum: int) -> list[slice]:
    """The rows of each of this rank's micro-batches in a global batch of n_rows (as Tensor.chunk cuts)."""
    per_rank = n_rows // world.size
    first = world.rank * per_rank
    size = -(-per_rank // accum)
    return [slice(first + i, min(first + i + size, first + per_rank)) for i in range(0, per_rank, size)]


def wrap(model: nn.Module, mode: str, world: World) -> nn.Module:
    """The module the training step calls: the model itself, a DDP wrapper, or the model sharded in place."""
    if mode == "ddp":
        ids = [world.local_rank] if torch.cuda.is_available() else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if mode == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for module in list(model.modules()):  # every block of every layer stack is a unit, then the root
            if isinstance(module, nn.ModuleList):
                for block in module:
                    if any(p.requires_grad for p in block.parameters()):
                        fully_shard(block)
        fully_shard(model)
    return model


@contextlib.contextmanager
def grad_sync(step_model: nn.Module, mode: str, sync: bool) -> Iterator[None]:
    """Skip the gradient all-reduce on every micro-batch but the last of a step."""
    if mode == "ddp" and not sync:
        with step_model.no_sync():
            yield
        return
    if mode == "fsdp":
        step_model.set_requires_gradient_sync(sync)
    yield


def all_sum(t: torch.Tensor, world: World) -> torch.Tensor:
    if world.distributed:
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_min(t: torch.Tensor, world: World) -> torch.Tensor:
    if world.distributed:
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return t


def from_main(world: World, fn: Callable[[], T]) -> T:
    """Run `fn` on rank 0 and hand its result (or its LooplabError) to every rank."""
    if not world.distributed:
        return fn()
    box: list[Any] = [None]
    if world.main:
        try:
            box[0] = ("ok", fn())
        except LooplabError as e:
            box[0] = ("error", str(e))
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise LooplabError(value)
    return value


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def full_weights(model: nn.Module, mode: str) -> dict[str, torch.Tensor]:
    """The unsharded weights on the CPU (every rank must call this under fsdp; rank 0 gets them)."""
    if mode == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def load_weights(model: nn.Module, mode: str, weights: dict[str, torch.Tensor]) -> None:
    if mode == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True))
    else:
        model.load_state_dict(weights)


def optimizer_state(model: nn.Module, opt: torch.optim.Optimizer, mode: str) -> dict[str, Any]:
    """The optimiser state keyed by parameter name, the same whatever the mode or world size."""
    if mode == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(model, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    names = {id(p): n for n, p in model.named_parameters()}
    order = [names[id(p)] for g in opt.param_groups for p in g["params"]]
    sd = opt.state_dict()
    return {"state": {order[i]: s for i, s in sd["state"].items()},
            "param_groups": [{**g, "params": [order[i] for i in g["params"]]} for g in sd["param_groups"]]}


def load_optimizer_state(model: nn.Module, opt: torch.optim.Optimizer, mode: str, state: dict[str, Any]) -> None:
    if mode == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(model, opt, state, options=StateDictOptions(full_state_dict=True))
        return
    names = {id(p): n for n, p in model.named_parameters()}
    index = {names[id(p)]: i for i, p in enumerate(p for g in opt.param_groups for p in g["params"])}
    if not all(isinstance(k, str) for k in state["state"]):  # saved by opt.state_dict() (index keys)
        opt.load_state_dict(state)
        return
    missing = sorted(set(state["state"]) - set(index))
    if missing:
        raise LooplabError(f"optimiser state names parameters this model does not train: {', '.join(missing[:3])}")
    opt.load_state_dict({"state": {index[n]: s for n, s in state["state"].items()},
                         "param_groups": [{**g, "params": [index[n] for n in g["params"]]}
                                          for g in state["param_groups"]]})
