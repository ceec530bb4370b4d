"""Non-finite losses: stop the run naming the step, or skip that step's update (--on_nonfinite).

`stop` costs nothing per step: the first step whose loss or gradient norm is NaN or infinite is
noted on the device and read (`check`) at the next log step and before anything is saved, so a
poisoned model never reaches a checkpoint and the best model is never overwritten. `skip` has to
decide before the optimiser steps, so it reads the values every step (one host sync; under torchrun
the ranks agree through an all-reduce) and stops after more than `max_skips` skipped steps in a row.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from looplab.errors import LooplabError
from looplab.train import parallel as par
from looplab.train.parallel import World


class NonFiniteGuard:
    def __init__(self, policy: str, max_skips: int, world: World, device: torch.device,
                 last_good: Callable[[], str]) -> None:
        self.policy, self.max_skips, self.world, self.last_good = policy, max_skips, world, last_good
        self.first_bad = torch.full((), math.inf, device=device)  # first 1-based step with a non-finite value
        self.skipped = 0  # updates dropped so far (restored on resume)
        self.streak = 0  # of them, the latest consecutive ones

    def observe(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor | None) -> bool:
        """Look at step `step` (1-based); True when its update must be dropped."""
        values = torch.stack([loss.float(), grad_norm.float() if grad_norm is not None else torch.zeros_like(loss)])
        if self.policy == "stop":
            at = torch.full_like(self.first_bad, step)
            self.first_bad = torch.where(torch.isfinite(values).all(), self.first_bad, torch.minimum(self.first_bad, at))
            return False
        if torch.isfinite(par.all_sum(values, self.world)).all():
            self.streak = 0
            return False
        self.skipped += 1
        self.streak += 1
        if self.streak > self.max_skips:
            raise LooplabError(f"the loss was not finite for {self.streak} steps in a row (last: step {step}, more "
                               f"than --max_skipped_steps {self.max_skips}); stopped. {self.last_good()}")
        return True

    def check(self) -> None:
        """Stop every rank when a step since the last check was not finite; nothing has been saved since."""
        bad = float(par.all_min(self.first_bad, self.world))
        if math.isfinite(bad):
            raise LooplabError(f"the loss became NaN or infinite at step {int(bad)}; stopped without saving. "
                               f"{self.last_good()}")
