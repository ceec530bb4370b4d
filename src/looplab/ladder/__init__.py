"""The unified ablation ladder: every registered variant on one data stream, evaluated and reported.

`looplab ladder --preset NAME [--variants ...] [--seeds N] [--match {params,flops,config}] [--out DIR]`;
presets are data (`presets.PRESETS`), shape matching is `match.py`, the run loop is `runner.py`.
"""

from looplab.ladder.match import MATCH_MODES
from looplab.ladder.presets import PRESETS, LadderPreset
from looplab.ladder.runner import run_ladder

__all__ = ["MATCH_MODES", "PRESETS", "LadderPreset", "run_ladder"]
