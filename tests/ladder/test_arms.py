"""Arms by name end to end, one packing per ladder, and a ladder directory free of absolute paths."""

from __future__ import annotations

import dataclasses
import io
import json
import os
from pathlib import Path

import pytest

from looplab.errors import LooplabError
from looplab.ladder import PRESETS, LadderPreset, run_ladder
from looplab.ladder.runner import check_packing, select_variants
from looplab.models import MODELS
from looplab.train.launch import packing_for
from looplab.train.trainer import resolve_packing

ONE_BLOCK = {"preset": "custom", "n_unique": 1, "n_loops": 3, "pos_encoding": "nope"}
ARMS = {"loop_len_nope": ("shared_loop", {**ONE_BLOCK, "loops_per_length": 1.0, "loops_cap": 6}),
        "loop3_nope": ("shared_loop", ONE_BLOCK)}
TWO_ARMS = LadderPreset(
    name="two_arms", note="test preset: two arms of one variant", size="tiny",
    train=dict(alg_tasks=("successor",), alg_tokens=1024, total_tokens=1024, seq_len=24, batch_size=8,
               warmup_tokens=256, eval_every_tokens=1024, eval_samples=4),
    evaluation=dict(suite="algorithmic", samples=4, exits=("convergence", "confidence")),
    n_loops=(1, 2), threads=1, arms=ARMS, variants=tuple(ARMS),
)
MACHINE = ("/tmp", "/root", "/work")  # what an absolute path written on this machine starts with


def text_files(root: Path) -> dict[Path, str]:
    out = {}
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if b"\0" not in data:
                try:
                    out[path] = data.decode()
                except UnicodeDecodeError:
                    pass
    return out


@pytest.fixture(scope="module")
def two_arms(tmp_path_factory) -> tuple[Path, list[list[str]]]:
    """The ladder, and every legend of the report's figures (savefig is watched)."""
    from matplotlib.figure import Figure

    out, legends, save = tmp_path_factory.mktemp("arms"), [], Figure.savefig

    def watched(fig, path, *args, **kw):
        if Path(path).parent.name == "report":
            legends.extend([t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes if ax.get_legend())
        return save(fig, path, *args, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Figure, "savefig", watched)
        run_ladder(TWO_ARMS, out=str(out), match="config", stream=io.StringIO())
    return out, legends


def test_report_plots_and_records_name_the_arms(two_arms):
    out, legends = two_arms
    md = (out / "report" / "REPORT.md").read_text()
    arm_table = md.split("| arm | variant |", 1)[1].split("\n\n", 1)[0]
    assert md.index("| arm | variant |") < md.index("## Comparison")  # the report opens with it
    assert ("| `loop_len_nope` | `shared_loop` | loops_cap=6, loops_per_length=1.0, n_loops=3, n_unique=1, "
            "pos_encoding=nope, preset=custom | isolated | 1 |") in arm_table
    assert "| `loop3_nope` | `shared_loop` | n_loops=3, n_unique=1, pos_encoding=nope, preset=custom | isolated |" \
        in arm_table
    assert "shared_loop(" not in md  # nowhere the variant-plus-options label
    for arm in ARMS:
        assert f"| `{arm}` | " in md.split("## Comparison", 1)[1].split("## Verdicts")[0]
        assert f"| `{arm}` | convergence | successor |" in md.split("## Exit criteria", 1)[1]
        assert f"- `runs/{arm}_s0`: {arm}, seed 0" in md
        assert (out / "report" / f"heatmap_{arm}.png").stat().st_size > 1000
        config = json.loads((out / "runs" / f"{arm}_s0" / "config.json").read_text())
        assert config["train"]["arm"] == arm and config["train"]["packing"] == "isolated"
        assert config["train"]["output_dir"] == "."
    assert {p.name for p in (out / "report").glob("*.png")} >= {"exits.png", "loops.png", "length.png", "loss.png"}
    assert not [p for p in (out / "report").iterdir() if "shared_loop" in p.name]
    names = {t.split(" ")[0] for legend in legends for t in legend if t != "chance floor"}
    assert legends and names == set(ARMS), names
    doc = json.loads((out / "ladder.json").read_text())
    assert {k: (r["arm"], r["variant"], r["dir"]) for k, r in doc["runs"].items()} == {
        f"{arm} s0": (arm, "shared_loop", f"runs/{arm}_s0") for arm in ARMS}
    argv = doc["runs"]["loop3_nope s0"]["argv"]
    assert argv[argv.index("--arm") + 1] == "loop3_nope" and argv[argv.index("--output_dir") + 1] == "runs/loop3_nope_s0"


def test_no_file_under_the_ladder_holds_an_absolute_path(two_arms):
    out, _ = two_arms
    files = text_files(out)
    assert any(p.name == "REPORT.md" for p in files) and any(p.name == "results_algorithmic.json" for p in files)
    for path, text in files.items():
        for needle in (str(out), str(out.resolve()), *MACHINE):
            assert needle not in text, (path.relative_to(out), needle)


def test_a_ladder_that_would_mix_packings_writes_nothing(tmp_path, monkeypatch):
    out = tmp_path / "mixed"
    monkeypatch.setitem(MODELS, "ssm", dataclasses.replace(MODELS["ssm"], isolates=False))  # one that cannot isolate
    preset = dataclasses.replace(TWO_ARMS, variants=("baseline", "ssm"), arms={}, train={**TWO_ARMS.train})
    with pytest.raises(LooplabError) as err:  # auto resolves per variant: isolated rows for one, single for the other
        run_ladder(preset, out=str(out), stream=io.StringIO())
    assert str(err.value) == ("preset two_arms: packing auto would train baseline on isolated rows; ssm on single "
                              "rows; set one packing in the preset's train settings (single works for every variant)")
    assert not out.exists()
    mixed = dataclasses.replace(preset, variants=("baseline", "ssm"), arms={}, train={**preset.train, "packing": "isolated"})
    with pytest.raises(LooplabError, match="ssm: --packing isolated"):  # one that cannot be met: named, nothing written
        run_ladder(mixed, out=str(out), stream=io.StringIO())
    assert not out.exists()


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_trains_on_one_packing(name):
    p = PRESETS[name]
    names = select_variants(p.variants or None, tuple(p.arms))
    packing = check_packing(p, names)
    assert packing in ("single", "isolated", "packed")
    assert {packing_for(p.variant_of(n), p.base.packing) for n in names} == {packing}


@pytest.mark.parametrize("variant", [v for v, spec in MODELS.items() if spec.generic])
@pytest.mark.parametrize("packing", ["auto", "single", "isolated"])
def test_packing_from_the_registry_is_what_the_trainer_resolves(variant, packing):
    """Every generic variant keeps packed examples apart, so auto means isolated for all of them; a variant
    that could not is refused isolated rows by the trainer and by packing_for alike."""
    assert packing_for(variant, packing) == resolve_packing(variant, packing) == (
        "isolated" if packing == "auto" else packing)


def test_a_variant_that_cannot_isolate_gets_single_rows_or_a_one_line_refusal(monkeypatch):
    monkeypatch.setitem(MODELS, "ssm", dataclasses.replace(MODELS["ssm"], isolates=False))
    assert packing_for("ssm", "auto") == resolve_packing("ssm", "auto") == "single"
    assert packing_for("ssm", "packed") == "packed"
    with pytest.raises(LooplabError, match="variant 'ssm' cannot .*allowed: baseline"):
        resolve_packing("ssm", "isolated")
    assert packing_for("rlf", "isolated") is None  # its own pointer-chain rows


def test_a_compiling_ladder_shares_one_compile_cache_in_its_directory(tmp_path, monkeypatch):
    """The runs of a ladder that compiles read and write torch.compile's cache under the ladder, so a
    variant's later seeds reuse its compiled graphs (torch itself sets the variable to its default in
    /tmp once it has compiled anything, so the ladder sets it for its runs)."""
    import looplab.ladder.runner as runner

    seen = []
    monkeypatch.setattr(runner, "_run", lambda *a, **k: seen.append(os.environ.get("TORCHINDUCTOR_CACHE_DIR")))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    compiling = dataclasses.replace(TWO_ARMS, train={**TWO_ARMS.train, "compile": True})
    run_ladder(compiling, out=str(tmp_path / "c"), stream=io.StringIO())
    assert seen == [str((tmp_path / "c" / runner.COMPILE_CACHE).resolve())]
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    run_ladder(TWO_ARMS, out=str(tmp_path / "d"), stream=io.StringIO())  # eager runs: nothing set
    assert seen[-1] is None


@pytest.mark.parametrize("name", ["repro_grazzi", "repro_fan", "repro_coupling"])
def test_a_reproduction_s_gpu_version_is_its_cpu_preset_at_the_paper_s_budget(name):
    from looplab.data.packing import AlgoStream
    from looplab.data.tokenizer import ByteTokenizer

    cpu, gpu = PRESETS[name], PRESETS[f"{name}_gpu"]
    assert (gpu.arms, gpu.variants, gpu.seeds, gpu.evaluation) == (cpu.arms, cpu.variants, cpu.seeds, cpu.evaluation)
    assert gpu.base.total_tokens >= 25 * cpu.base.total_tokens and gpu.base.max_minutes == 0 and gpu.jobs == 1
    assert gpu.note.startswith(cpu.note) and "GPU version" in gpu.note
    b = gpu.base  # its rows hold its longest training examples
    stream = AlgoStream(ByteTokenizer(), b.alg_tasks, seq_len=b.seq_len, batch_size=b.batch_size, seed=0,
                        loss_on=b.loss_on, packing=packing_for(gpu.variant_of(gpu.variants[0]), b.packing))
    assert stream.next_batch().tokens.shape == (b.batch_size, b.seq_len)
    assert gpu.sweep_tokens * cpu.base.total_tokens == pytest.approx(cpu.sweep_tokens * gpu.base.total_tokens, rel=1e-6)


def test_axes_crosses_the_calibrated_recipes_with_matched_partners_and_halting_tests_the_guards():
    """The axes preset carries Fan et al.'s loop beside its same-positions baseline and coupled / abacus ids
    for the baseline and the loop, 5 seeds, loop sweeps on a subset; the halting preset runs act alone and
    with each guard beside latent at the cpu preset's budget."""
    from looplab.ladder import PRESETS
    from looplab.ladder.presets import COUPLING_LRS

    axes, cpu, halting = PRESETS["axes"], PRESETS["cpu"], PRESETS["halting"]
    for pair in (("loop_fan", "baseline_slots"), ("loop_coupled", "baseline_coupled"), ("loop_abacus", "baseline_abacus")):
        loop, base = (axes.options_of(a) for a in pair)
        assert {k: v for k, v in loop.items() if k in ("pos_encoding", "position_ids", "answer_at_once")} == \
               {k: v for k, v in base.items() if k in ("pos_encoding", "position_ids", "answer_at_once")}, pair
        assert set(pair) <= set(axes.variants)
    assert axes.seeds >= 5 and "ssm_neg" in axes.variants and axes.evaluation["loop_samples"] == 100
    assert {a: axes.lrs[a] for a in COUPLING_LRS} == COUPLING_LRS
    assert axes.eval_config(True).loop_samples == 100 and axes.eval_config(True).ood_count >= 1000
    guards = {"halt_init", "ponder_warmup", "min_steps_explore"}
    used = {k for a in halting.variants if a in halting.arms for k in halting.options_of(a)}
    assert guards <= used and "latent" in halting.variants and halting.seeds >= 5
    assert halting.base.total_tokens == cpu.base.total_tokens and halting.base.packing == cpu.base.packing
    assert halting.reference == "latent" and axes.reference == "baseline"  # adaptive K judged against fixed K
    with pytest.raises(LooplabError, match="reference arm 'ssm' is not among its variants; allowed: act_cap8"):
        dataclasses.replace(halting, reference="ssm")
    succ = PRESETS["axes_succ"]  # the axes preset with successor in its mix, and nothing else changed
    assert succ.base.alg_tasks == (*axes.base.alg_tasks, "successor")
    assert dataclasses.replace(succ, name="axes", note=axes.note, train=axes.train) == axes
    assert "successor" in succ.note and "successor" not in axes.note


@pytest.mark.parametrize("name", ["axes", "halting"])
def test_every_arm_of_the_widened_presets_matches_the_baseline_s_realised_flops(name, tmp_path):
    """Planning builds every arm at a shape within the matching tolerance (a refused arm would stop the
    ladder before its first run): the looped-per-length arms at their given shape, the rest by the walk."""
    from looplab.ladder.match import TOLERANCES
    from looplab.ladder.runner import make_plan

    p = PRESETS[name]
    pl, names = make_plan(p, None, 1, p.match, tmp_path, 1)
    assert names == list(p.variants)
    for arm in names:
        assert abs(pl.shapes[arm].ratio - 1) <= TOLERANCES[p.match], arm
