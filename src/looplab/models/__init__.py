"""The model registry: variant name -> builder, and `create_model`.

A new variant joins the lab by adding one `ModelSpec` to `MODELS`: training, evaluation, the ladder
and the report read the registry, nothing else needs to change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from looplab.config import ModelConfig, model_config
from looplab.errors import LooplabError
from looplab.flags import flag_names
from looplab.models.absolute import AbsoluteOptions, build_absolute
from looplab.models.base import LanguageModel, ModelOutput
from looplab.models.depth_recurrent import PRC, PRCOptions
from looplab.models.latent import Act, ActOptions, Latent, LatentOptions
from looplab.models.rlf import RLFOptions, build_rlf
from looplab.models.rlf_base import prepare_base
from looplab.models.rlf_chains import training_data
from looplab.models.ssm import SSMMemOptions, SSMOptions, build_ssm, build_ssm_mem
from looplab.models.transformer import BaselineOptions, SharedLoop, SharedLoopOptions, Transformer


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    build: Callable[[ModelConfig, Any], LanguageModel]  # (resolved config, parsed options) -> the module
    options: type  # frozen dataclass of the variant's own settings, parsed once by build_model
    looped: bool = False  # accepts a loop count at evaluation (test-time compute sweep)
    description: str = ""  # one line for tables and --help
    isolates: bool = False  # keeps packed examples apart (--packing isolated): attention, positions, state per example
    generic: bool = True  # a next-token LM on (B, T) that the generic per-variant tests, ladder and suites run
    train_data: Callable[..., Any] | None = None  # (model, tokenizer, TrainConfig) -> the variant's own stream
    # built on a trained base (train.py --base PATH): (path, --tokenizer) -> (the base's tokenizer, options recording it)
    prepare_base: Callable[[str, str | None], tuple[Any, dict[str, Any]]] | None = None
    scored_by_probe: bool = False  # scored by `looplab probe`, not by the eval suites (not a next-token model)


MODELS: dict[str, ModelSpec] = {
    "baseline": ModelSpec(build=Transformer, options=BaselineOptions, isolates=True,
                          description="pre-norm decoder transformer with RoPE (the control)"),
    "shared_loop": ModelSpec(build=SharedLoop, options=SharedLoopOptions, looped=True, isolates=True,
                             description="a few unique blocks applied n_loops times (presets iso_param, iso_flop)"),
    "latent": ModelSpec(build=Latent, options=LatentOptions, looped=True, isolates=True,
                        description="per-position thought tokens refined by a looped causal thought core"),
    "act": ModelSpec(build=Act, options=ActOptions, looped=True, isolates=True,
                     description="latent with per-position adaptive halting and a ponder cost (arXiv 1603.08983)"),
    "absolute": ModelSpec(build=build_absolute, options=AbsoluteOptions, isolates=True,
                          description="baseline with learned absolute positions, no RoPE (nano_baseline.py)"),
    "ssm": ModelSpec(build=build_ssm, options=SSMOptions, isolates=True,
                     description="Mamba-2 (SSD) layers with SwiGLU MLPs, no attention (arXiv 2405.21060)"),
    "ssm_mem": ModelSpec(build=build_ssm_mem, options=SSMMemOptions, isolates=True,
                         description="hybrid: Mamba-2 layers, learned memory tokens, every 3rd layer attention"),
    "prc": ModelSpec(build=PRC, options=PRCOptions, looped=True, isolates=True,
                     description="recurrent depth: prelude, core run r times (sampled in training), coda (arXiv 2502.05171)"),
    # not generic: it needs a trained base (--base), predicts one token per loop at the query, not per position
    "rlf": ModelSpec(build=lambda cfg, opts: build_rlf(cfg, opts, build_model), options=RLFOptions, generic=False, train_data=training_data,
                     prepare_base=prepare_base, scored_by_probe=True,
                     description="recursive latent forcing: frozen base, looped core with prompt lifeline, HALT"),
}


def variant_options(cfg: ModelConfig) -> Any:
    """The variant's options dataclass built from cfg.options: the one place options are parsed. Unknown
    names are an error naming the variants that have them; each value is checked against its declaration
    (type, choices, range: `flags.check_settings` in the dataclass's __post_init__)."""
    spec = get_spec(cfg.variant)
    allowed = {f.name for f in dataclasses.fields(spec.options)}
    unknown = sorted(set(cfg.options) - allowed)
    if unknown:
        owners = {name: [v for v, s in MODELS.items() if name in {f.name for f in dataclasses.fields(s.options)}]
                  for name in unknown}
        where = "; ".join(f"{n} is an option of {', '.join(vs)}" for n, vs in owners.items() if vs)
        raise LooplabError(
            f"unknown option(s) {', '.join(unknown)} for variant '{cfg.variant}'{f' ({where})' if where else ''}; "
            f"allowed: {', '.join(sorted(flag_names(spec.options))) or 'none'} "
            f"(and for every variant: {', '.join(flag_names(ModelConfig))})"
        )
    return spec.options(**cfg.options)


def get_spec(variant: str) -> ModelSpec:
    if variant not in MODELS:
        raise LooplabError(f"unknown variant '{variant}'; allowed: {', '.join(MODELS)}")
    return MODELS[variant]


def build_model(cfg: ModelConfig) -> LanguageModel:
    """The variant's module; its options are validated and parsed here, once, and handed to its builder.
    What the registry declares about the variant's inputs (`isolates`) is set on the module here."""
    spec = get_spec(cfg.variant)
    model = spec.build(cfg, variant_options(cfg))
    model.isolates_examples = spec.isolates
    return model


def create_model(variant: str, size: str, vocab_size: int, **overrides: Any) -> LanguageModel:
    """Build `variant` at size preset `size`; overrides set ModelConfig fields or variant options."""
    get_spec(variant)
    return build_model(model_config(size, vocab_size, variant, **overrides))


__all__ = ["MODELS", "ModelOutput", "ModelSpec", "build_model", "create_model", "get_spec", "variant_options"]
