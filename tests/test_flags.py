"""Flags generated from the config fields: every setting has one, configs survive the round trip
through the command line, and choices come from the registries."""

from __future__ import annotations

import dataclasses

import pytest

from looplab.cli import Parser, add_eval_args, add_train_args
from looplab.config import EvalConfig, LaunchConfig, TrainConfig
from looplab.data.curriculum import CURRICULA
from looplab.errors import LooplabError
from looplab.flags import read_flags, to_argv
from looplab.models import MODELS
from looplab.train.trackers import TRACKERS


def parser(add) -> Parser:
    p = Parser()
    add(p)
    return p


@pytest.mark.parametrize("cls", [TrainConfig, LaunchConfig, EvalConfig])
def test_every_field_is_a_setting_with_help(cls):
    for f in dataclasses.fields(cls):
        assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text"


def test_train_configs_round_trip_through_the_flags():
    launch = LaunchConfig(variant="prc", model_size="micro", options={"n_loops": 3, "preset": "iso_flop"},
                          tokenizer="bytes", overwrite=True)
    train = TrainConfig(output_dir="runs/x", alg_tokens=40_960, total_tokens=81_920, lang_data="a.txt",
                        alg_tasks=("copy", "parity"), lr=2e-3, packing="single", progress=False, compile=True,
                        task_files=("a.jsonl", "b.jsonl"), log_to="tensorboard", competence=0.95, beta2=0.99)
    args = parser(add_train_args).parse_args(to_argv(launch) + to_argv(train))
    assert LaunchConfig(**read_flags(LaunchConfig, args)) == launch
    assert TrainConfig(**read_flags(TrainConfig, args)) == train


def test_defaults_and_total_tokens_following_alg_tokens():
    args = parser(add_train_args).parse_args(["--alg_tokens", "50000"])
    cfg = TrainConfig(**read_flags(TrainConfig, args))
    assert cfg == TrainConfig(alg_tokens=50_000, total_tokens=50_000)
    assert to_argv(cfg) == ["--alg_tokens", "50000"]
    assert LaunchConfig(**read_flags(LaunchConfig, args)) == LaunchConfig()


def test_eval_config_round_trips_with_aliases_and_negation():
    cfg = EvalConfig(checkpoint="m.pt", suite="longctx", samples=7, use_cache=False, n_loops=(1, 2, 4),
                     needle_depths=(0.0, 0.25), data=("t.jsonl",))
    args = parser(add_eval_args).parse_args(to_argv(cfg))
    assert EvalConfig(**read_flags(EvalConfig, args)) == cfg
    alias = parser(add_eval_args).parse_args(["--checkpoint", "m.pt", "--eval_samples", "7", "--no_cache"])
    assert EvalConfig(**read_flags(EvalConfig, alias)) == EvalConfig(checkpoint="m.pt", samples=7, use_cache=False)


def test_choices_come_from_the_registries():
    actions = {a.dest: a for a in parser(add_train_args)._actions}
    assert actions["variant"].choices == list(MODELS)
    assert actions["log_to"].choices == list(TRACKERS)
    assert actions["task_curriculum_strategy"].choices == list(CURRICULA)


def test_bad_values_are_one_line_errors():
    p = parser(add_train_args)
    with pytest.raises(LooplabError, match="--model_opt expects KEY=VALUE"):
        read_flags(LaunchConfig, p.parse_args(["--model_opt", "n_loops"]))
    e = parser(add_eval_args)
    with pytest.raises(LooplabError, match="--needle_lengths expects numbers"):
        read_flags(EvalConfig, e.parse_args(["--checkpoint", "m.pt", "--needle_lengths", "1k"]))
