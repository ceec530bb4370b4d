"""Model options declared once: each ModelConfig field and variant option is a `setting` whose help,
type, choices and range give train.py's flags, the value checks and the error messages.

The wrong-value cases are generated from the declarations, so a new option is covered by being declared.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import typing
from collections.abc import Mapping
from typing import Any

import pytest

from looplab.cli import Parser, add_train_args
from looplab.config import POS_ENCODINGS, LaunchConfig, ModelConfig, TrainConfig, model_config
from looplab.errors import LooplabError
from looplab.flags import bounds, flag_names, read_flags
from looplab.ladder.presets import PER_RUN
from looplab.models import MODELS, variant_options
from looplab.train.launch import check_names
from looplab.train.resume import RESUME_FREE
from tests.test_cli import REPO, assert_one_line_error, run

V = 260
KIND_WORDS = {bool: "a bool", int: "an int", float: "a float", str: "a str", Mapping: "a mapping"}


def parser() -> Parser:
    p = Parser(prog="train.py")
    add_train_args(p)
    return p


def settings(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def kind(cls: type, name: str) -> type:
    hint = typing.get_type_hints(cls)[name]
    return Mapping if typing.get_origin(hint) in (Mapping, dict) else hint


def wrong_values(cls: type, f: dataclasses.Field) -> list[tuple[Any, str]]:
    """(value, what the error must say) pairs that the declaration of `f` refuses: another type (a bool
    where a number is due), a name outside its choices, a number just outside each finite end of its range."""
    k = kind(cls, f.name)
    out = [(3.5 if k is str else "maybe", KIND_WORDS[k])]
    if k in (int, float):
        out.append((True, KIND_WORDS[k]))
    if "choices" in f.metadata:
        out.append(("no_such_choice", ", ".join(f.metadata["choices"])))
    if "range" in f.metadata:
        low, low_in, high, high_in = bounds(f.metadata["range"])
        outside = [low - 1 if low_in else low] + ([high + 1 if high_in else high] if high != math.inf else [])
        out += [(k(v), f.metadata["range"]) for v in outside]  # an excluded bound, or one step past an included one
    return out


def build(owner: str, name: str, value: Any) -> Any:
    """The owner's options with `name` set to `value`, through the path every run takes."""
    if owner == "model":
        return ModelConfig(**{name: value})
    base = {"base": "base.pt"} if owner == "rlf" and name != "base" else {}
    return variant_options(model_config("tiny", V, owner, **base, **{name: value}))


OWNERS = {"model": ModelConfig, **{v: spec.options for v, spec in MODELS.items()}}
CASES = [(owner, f.name, value, words) for owner, cls in OWNERS.items() for f in settings(cls)
         for value, words in wrong_values(cls, f)]


def test_the_cases_cover_every_option_of_every_variant():
    covered = {(owner, name) for owner, name, _, _ in CASES}
    for owner, cls in OWNERS.items():
        assert {(owner, f.name) for f in dataclasses.fields(cls)} - {("model", n) for n in ("variant", "size", "options")} \
            <= covered, owner
    assert ("ssm", "negative_eigenvalues", "maybe", "a bool") in CASES
    assert ("act", "halt_eps", 1.0, "(0, 1)") in CASES and ("ssm_mem", "attn_every", 1, ">= 2") in CASES


@pytest.mark.parametrize("owner, name, value, words", CASES,
                         ids=[f"{o}-{n}-{v!r}" for o, n, v, _ in CASES])
def test_every_wrong_value_is_a_one_line_error_naming_option_type_and_value(owner, name, value, words):
    with pytest.raises(LooplabError) as e:
        build(owner, name, value)
    message = str(e.value)
    assert len(message.splitlines()) == 1
    assert message.startswith(f"{name} must be "), message
    assert KIND_WORDS[kind(OWNERS[owner], name)] in message and words in message, message
    assert message.endswith(f"got {value!r}"), message


def test_defaults_pass_their_own_checks():
    for variant in MODELS:
        variant_options(model_config("tiny", V, variant, **({"base": "base.pt"} if variant == "rlf" else {})))


def test_help_lists_model_fields_and_each_variants_options():
    text = parser().format_help()
    assert "--pos_encoding {" + ",".join(POS_ENCODINGS) + "}" in text
    sections = {block.splitlines()[0]: block for block in text.split("\n\n") if block.strip()}
    titled = {tuple(t[: -len(" options:")].split(", ")): body for t, body in sections.items()
              if t.endswith(" options:")}
    assert "--negative_eigenvalues {true,false}" in titled[("ssm", "ssm_mem")]
    assert "--pos_encoding" in sections["model options (every variant):"]
    for variant, spec in MODELS.items():
        for name in flag_names(spec.options):
            assert any(variant in owners and re.search(rf"^  --{name}\b", body, re.M)
                       for owners, body in titled.items()), (variant, name)
    assert "--base_sha256" not in text and "--pad_id" not in text  # filled in from --base, not given by hand


def options_of(argv: list[str]) -> tuple[LaunchConfig, Any]:
    lc = LaunchConfig(**read_flags(LaunchConfig, parser().parse_args(argv)))
    return lc, variant_options(model_config("tiny", V, lc.variant, **lc.options))


def test_flags_are_aliases_of_model_opt():
    flags, opts = options_of(["--variant", "shared_loop", "--preset", "iso_flop", "--n_loops", "3", "--reinject",
                              "false", "--pos_encoding", "nope"])
    pairs, same = options_of(["--variant", "shared_loop", "--model_opt", "preset=iso_flop", "--model_opt", "n_loops=3",
                              "--model_opt", "reinject=false", "--model_opt", "pos_encoding=nope"])
    assert flags == pairs and opts == same
    assert (opts.preset, opts.n_loops, opts.reinject) == ("iso_flop", 3, False)
    assert flags.options == {"preset": "iso_flop", "n_loops": 3, "reinject": False, "pos_encoding": "nope"}
    assert options_of(["--variant", "shared_loop", "--model_opt", "preset=iso_flop"])[1].preset == "iso_flop"


@pytest.mark.parametrize("argv", [["--variant", "ssm", "--negative_eigenvalues", "maybe"],
                                  ["--variant", "ssm", "--model_opt", "negative_eigenvalues=maybe"]])
def test_negative_eigenvalues_maybe_is_refused(argv):
    with pytest.raises(LooplabError, match="negative_eigenvalues must be a bool \\(true or false\\), got 'maybe'"):
        options_of(argv)


def test_a_flag_of_another_variant_names_who_has_it_and_what_is_allowed():
    with pytest.raises(LooplabError) as e:
        options_of(["--variant", "baseline", "--negative_eigenvalues", "true"])
    message = str(e.value)
    assert len(message.splitlines()) == 1
    assert "unknown option(s) negative_eigenvalues for variant 'baseline'" in message
    assert "an option of ssm, ssm_mem" in message and "allowed: none" in message and "pos_encoding" in message
    with pytest.raises(LooplabError, match="allowed: attn_every, chunk, d_conv"):
        options_of(["--variant", "ssm_mem", "--halt_eps", "0.1"])


def test_the_issue_command_fails_before_writing(tmp_path):
    out = tmp_path / "never"
    proc = run("train.py", "--variant", "ssm", "--model_opt", "negative_eigenvalues=maybe", "--output_dir", str(out))
    assert_one_line_error(proc, "negative_eigenvalues must be a bool (true or false), got 'maybe'")
    assert not out.exists()


def recorded_argv() -> list[list[str]]:
    """The train flags of every run the ladders recorded in docs/results."""
    return [r["settings"]["train"] for path in sorted((REPO / "docs" / "results").glob("*/ladder.json"))
            for r in json.loads(path.read_text())["runs"].values()]


def readme_options() -> list[tuple[str, str]]:
    return re.findall(r"--model_opt\s+([a-z_]+)=([^\s`]+)", (REPO / "README.md").read_text())


def test_readme_options_and_recorded_runs_still_parse_and_reload():
    """The README's --model_opt examples are accepted by a variant that has them; every recorded ladder run's
    flags still give valid options, also after the config.json round trip (options stored as a dict)."""
    assert len(readme_options()) >= 5
    for key, value in readme_options():
        owners = [v for v in MODELS if key in flag_names(MODELS[v].options)] or ["baseline"]
        options_of(["--variant", owners[0], "--model_opt", f"{key}={value}"])
    runs = recorded_argv()
    assert any("--model_opt" in argv for argv in runs)
    for argv in runs:
        if "rlf" in argv:
            continue  # its options record a base read from disk
        lc, opts = options_of([a.replace("<runs>", "runs") for a in argv])
        cfg = model_config("tiny", V, lc.variant, **lc.options)
        stored = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
        assert stored == cfg and variant_options(stored) == opts


def test_old_config_options_load():
    """Options as older config.json files hold them: ints where floats are declared, JSON booleans."""
    for variant, options in [("ssm", {"negative_eigenvalues": True, "ssm_impl": "chunked"}),
                             ("prc", {"train_recur_mean": 4, "loops_per_length": 1, "prelude": 1}),
                             ("act", {"lambda_ponder": 0, "halt_init": 0.047, "ponder_warmup": 1000}),
                             ("shared_loop", {"preset": "iso_flop", "n_loops": 3})]:
        data = json.loads(json.dumps(model_config("tiny", V, variant, pos_range=0, **options).to_dict()))
        opts = variant_options(ModelConfig.from_dict(data))
        assert all(getattr(opts, k) == v for k, v in options.items())


def test_resume_free_and_per_run_come_from_the_declarations():
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    assert PER_RUN == ("output_dir", "arm", "seed", "threads", "progress")
    assert RESUME_FREE == {"output_dir", "arm", "threads", "device", "progress", "log_to", "max_minutes", "save_every_steps",
                           "eval_every_tokens", "eval_samples", "screen_samples", "eval_max_new_tokens", "log_every", "grad_accum",
                           "parallel", "max_skipped_steps", "lang_cache_dir", "allow_network"}
    assert set(PER_RUN) <= names


def test_rlf_capabilities_are_spec_fields():
    assert [v for v, s in MODELS.items() if s.prepare_base is not None] == ["rlf"]
    assert [v for v, s in MODELS.items() if s.scored_by_probe] == ["rlf"]
    with pytest.raises(LooplabError, match="--base applies to --variant rlf only, not 'baseline'"):
        check_names(LaunchConfig(variant="baseline", base="b.pt"), TrainConfig())

