"""`looplab report` on fake run directories: table, floors, intervals, withheld verdicts, plots, bad input."""

from __future__ import annotations

import json

import pytest

from looplab.cli import main
from looplab.errors import LooplabError
from looplab.eval.report import write_report


def _grid(iid: float, ood: float, parity_iid: float | None = None) -> dict:
    par = iid if parity_iid is None else parity_iid
    tasks = {"parity": {"lengths": {"8": {"acc": par, "n": 100, "split": "iid", "floor": 0.5},
                                    "32": {"acc": ood, "n": 100, "split": "ood", "floor": 0.5}},
                        "iid_acc": par, "ood_acc": ood},
             "copy": {"lengths": {"4": {"acc": iid, "n": 100, "split": "iid", "floor": 0.0},
                                  "16": {"acc": ood, "n": 100, "split": "ood", "floor": 0.0}},
                      "iid_acc": iid, "ood_acc": ood}}
    return {"tasks": tasks, "iid_acc": (iid + par) / 2, "ood_acc": ood}


def fake_run(root, variant: str, seed: int, iid: float, ood: float, seconds: float = 60.0, *,
             flops: float = 3e6, competent_at: int | None = 500_000, parity_iid: float | None = None,
             loops: bool = False, eval_results: bool = True):
    d = root / f"{variant}_s{seed}"
    (d / "eval_results").mkdir(parents=True)
    options = {"n_loops": 2} if variant == "shared_loop" else {}
    (d / "config.json").write_text(json.dumps({"model": {"variant": variant, "options": options},
                                               "train": {"seed": seed}}))
    competence = {"threshold": 0.95, "reached": competent_at is not None, "tokens": competent_at,
                  "step": None if competent_at is None else competent_at // 1000}
    (d / "summary.json").write_text(json.dumps({
        "variant": variant, "tokens": 1_000_000, "train_seconds": seconds, "final_eval": _grid(iid, ood, parity_iid),
        "cost": {"params": 500_000, "flops_per_token": flops}, "competence": competence,
        "best_eval_mean_acc": iid}))
    (d / "metrics.json").write_text(json.dumps([{"step": s, "tokens": 1000 * s, "phase": "algorithmic",
                                                 "loss": 3.0 / s + seed * 0.01} for s in range(1, 20)]))
    if eval_results:
        res = {"algorithmic": _grid(iid, ood, parity_iid), "skipped": {}, "suite_seconds": {}}
        if loops:
            res["algorithmic"]["loops"] = {str(n): _grid(min(1.0, iid * n / 2), ood) for n in (1, 2, 4)}
        (d / "eval_results" / "results_all.json").write_text(json.dumps({"suite": "all", "results": res}))
    return d


def section(md: str, title: str) -> str:
    return md.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


@pytest.fixture
def runs(tmp_path):
    base = [fake_run(tmp_path, "baseline", s, 0.95, 0.10 + 0.01 * s, 60.0 + s) for s in range(3)]
    loop = [fake_run(tmp_path, "shared_loop", s, 0.96, 0.60 + 0.01 * s, 110.0 + s, loops=True,
                     competent_at=300_000 + 10_000 * s) for s in range(3)]
    return base + loop


def test_report_writes_table_floors_verdicts_and_plots(runs, tmp_path):
    out = tmp_path / "report"
    md = write_report([str(r) for r in runs], str(out)).read_text()
    table = section(md, "Comparison")
    # runs without a recorded arm (older ones) are named by their variant
    assert "| `baseline` | 3 (0,1,2) | 3/3 |" in table and "| `shared_loop` | 3 (0,1,2) | 3/3 |" in table
    assert "| `shared_loop` | `shared_loop` | n_loops=2 | n/a | 3 |" in md.split("## Comparison")[0]
    # parity 8 bits at 0.95 is (0.95 - 0.5) / 0.5 = 0.9 normalised; copy 0.95 stays 0.95: mean 92.5%
    assert "| 92.5% [" in table.split("| `baseline` |")[1].splitlines()[0]
    assert "1.82x" in table  # train time per token relative to the baseline: 111 / 61
    verdicts = section(md, "Verdicts")
    assert "`shared_loop`: IID: **no difference at this budget**" in verdicts
    assert "OOD: **helps**" in verdicts and "tokens to competence: **helps**" in verdicts
    parity = md.split("### parity", 1)[1].split("###", 1)[0]
    assert "| chance floor | 50.0% | 50.0% |" in parity  # the floor beside every length
    for name in ("heatmap_baseline.png", "heatmap_shared_loop.png", "loops.png", "loss.png"):
        assert (out / name).stat().st_size > 1000, name
        assert f"({name})" in md


def test_unmatched_flops_withhold_the_verdict(tmp_path):
    runs = [fake_run(tmp_path, "baseline", s, 0.5, 0.1) for s in range(3)]
    runs += [fake_run(tmp_path, "prc", s, 0.9, 0.5, flops=6.6e6) for s in range(3)]
    md = write_report([str(r) for r in runs], str(tmp_path / "r")).read_text()
    assert "`prc`: **withheld**: realised training FLOPs per token is 2.20x `baseline`'s" in md
    assert "**helps**" not in section(md, "Verdicts")
    md = write_report([str(r) for r in runs], str(tmp_path / "r2"), match="params").read_text()
    assert "`prc`: IID: **helps**" in md  # same parameters: compared


def test_a_reference_arm_takes_the_baselines_place(tmp_path, capsys):
    """The halting ladder compares adaptive K with fixed K: `latent` is the reference of every verdict and
    ratio, listed first; a reference no run has is a one-line error naming the arms."""
    runs = [fake_run(tmp_path, "latent", s, 0.97, 0.1, 100.0) for s in range(3)]
    runs += [fake_run(tmp_path, "act", s, 0.5, 0.1, 150.0) for s in range(3)]
    md = write_report([str(r) for r in runs], str(tmp_path / "r"), reference="latent").read_text()
    table = section(md, "Comparison")
    assert "(x latent)" in table and table.index("| `latent` |") < table.index("| `act` |")
    assert "| 1.50x |" in table.split("| `act` |")[1].splitlines()[0]  # 150 s against latent's 100 s
    verdicts = section(md, "Verdicts")
    assert "Against `latent`" in verdicts and "`act`: IID: **hurts**" in verdicts
    assert "no `baseline` runs given" in write_report([str(r) for r in runs], str(tmp_path / "b")).read_text()
    with pytest.raises(LooplabError, match="unknown --reference 'lat'.*allowed: act, latent"):
        write_report([str(r) for r in runs], str(tmp_path / "x"), reference="lat")
    assert not (tmp_path / "x").exists()  # refused before anything is written
    assert main(["report", *map(str, runs), "--out", str(tmp_path / "o"), "--reference", "nope"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_ood_compares_competent_runs_only(tmp_path):
    """Two of three variant seeds did not reach competence: OOD is withheld, and the table says n=1."""
    runs = [fake_run(tmp_path, "baseline", s, 0.97, 0.1) for s in range(3)]
    runs += [fake_run(tmp_path, "act", s, 0.6, 0.9, competent_at=None if s else 400_000) for s in range(3)]
    md = write_report([str(r) for r in runs], str(tmp_path / "r")).read_text()
    assert "OOD: withheld: 1 vs 3 competent seeds (need >= 3 each)" in md
    assert "(n=1)" in section(md, "Comparison")
    assert "| `act` seed 1 | 95% | **no** | n/a |" in section(md, "Competence per run")


def test_too_few_seeds_and_missing_suites(tmp_path):
    runs = [fake_run(tmp_path, "baseline", 0, 0.5, 0.1, eval_results=False),
            fake_run(tmp_path, "act", 0, 0.9, 0.5, eval_results=False)]
    md = write_report([str(r) for r in runs], str(tmp_path / "r")).read_text()
    assert "IID: withheld: 1 vs 1 seeds (need >= 3 each)" in md
    assert "no loop-count plot" in md and (tmp_path / "r" / "loss.png").exists()


def test_below_floor_is_negative(tmp_path):
    """A model that always answers parity wrong scores below chance: a negative normalised figure."""
    runs = [fake_run(tmp_path, "baseline", s, 0.0, 0.0, parity_iid=0.25) for s in range(3)]
    md = write_report([str(r) for r in runs], str(tmp_path / "r")).read_text()
    assert "| -25.0% [" in section(md, "Comparison")  # mean of parity (-0.5) and copy (0.0)


def test_bad_input_is_one_line_error(tmp_path, capsys):
    with pytest.raises(LooplabError, match="no run directories"):
        write_report([], str(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(LooplabError, match="has no summary.json"):
        write_report([str(tmp_path / "empty")], str(tmp_path / "out"))
    with pytest.raises(LooplabError, match="allowed: flops, params, config"):
        write_report([str(tmp_path / "empty")], str(tmp_path / "out"), match="area")
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not exist" in err


def test_time_capped_runs_are_flagged(tmp_path):
    """A run stopped by the time cap short of its token budget says so in the competence table and the verdict."""
    runs = [fake_run(tmp_path, "baseline", s, 0.97, 0.1) for s in range(3)]
    runs += [fake_run(tmp_path, "act", s, 0.6, 0.2, competent_at=None) for s in range(3)]
    for r in runs[3:]:
        config = json.loads((r / "config.json").read_text())
        config["train"].update(total_tokens=4_500_000, seq_len=24, batch_size=16)
        (r / "config.json").write_text(json.dumps(config))
    md = write_report([str(r) for r in runs], str(tmp_path / "r")).read_text()
    assert "| `act` seed 0 | 95% | **no** | n/a | 1,000,000 | time cap |" in md
    assert "3 of 3 runs stopped at the time cap after 1.00M-1.00M tokens" in section(md, "Verdicts")
    assert "| `baseline` seed 0 | 95% | yes | 500,000 | 1,000,000 | competence |" in md


def test_a_position_encoding_names_its_own_group(tmp_path):
    """The same variant under another position encoding is another row, not a fourth seed of it."""
    from looplab.eval.report_data import group_runs, load_run

    plain = fake_run(tmp_path, "baseline", 0, 0.9, 0.1)
    nope = fake_run(tmp_path / "nope", "baseline", 0, 0.9, 0.1)
    cfg = json.loads((nope / "config.json").read_text())
    cfg["model"]["pos_encoding"] = "nope"
    (nope / "config.json").write_text(json.dumps(cfg))
    assert list(group_runs([load_run(plain), load_run(nope)])) == ["baseline", "baseline(pos_encoding=nope)"]


def test_runs_are_named_by_their_recorded_arm(tmp_path):
    """config.json's train.arm names the group in every table and plot file; the report opens with each
    arm's variant, settings and packing."""
    runs = []
    for arm, pos in (("base_nope", "nope"), ("base_rope", "rope")):
        d = fake_run(tmp_path / arm, "baseline", 0, 0.9, 0.1)
        cfg = json.loads((d / "config.json").read_text())
        cfg["model"]["pos_encoding"] = pos
        cfg["train"].update(arm=arm, packing="single")
        (d / "config.json").write_text(json.dumps(cfg))
        runs.append(d)
    out = tmp_path / "r"
    md = write_report([str(r) for r in runs], str(out), root=tmp_path).read_text()
    assert md.split("## Comparison")[0].count("| `base_") == 2
    assert "| `base_nope` | `baseline` | pos_encoding=nope | single | 1 |" in md
    assert "| `base_rope` | `baseline` | defaults | single | 1 |" in md
    assert "baseline(" not in md and (out / "heatmap_base_nope.png").exists()
    assert "- `base_nope/baseline_s0`: base_nope, seed 0" in md and str(tmp_path) not in md


def test_length_and_compute_plots(tmp_path, runs):
    from looplab.eval.report_data import group_runs, load_run
    from looplab.eval.report_plots import plot_compute_by_length, plot_length_curves

    groups = group_runs([load_run(r) for r in runs])
    assert plot_length_curves(groups, tmp_path).name == "length.png"
    assert plot_compute_by_length(groups, tmp_path) is None  # no run ran a length policy or halting
    res = json.loads((runs[0] / "eval_results" / "results_all.json").read_text())
    res["results"]["algorithmic"]["tasks"]["parity"]["lengths"]["32"]["loops"] = 32
    (runs[0] / "eval_results" / "results_all.json").write_text(json.dumps(res))
    groups = group_runs([load_run(r) for r in runs])
    assert (tmp_path / plot_compute_by_length(groups, tmp_path).name).stat().st_size > 1000


def outcome_run(root, variant: str, seed: int, iid_right: int, ood_right: int, n: int = 200):
    """A fake run whose grid kept per-problem outcomes: the first `*_right` problems of each cell right."""
    d = fake_run(root, variant, seed, iid_right / n, ood_right / n)

    def bits(k: int) -> str:
        return "1" * k + "0" * (n - k)

    for path in (d / "summary.json", d / "eval_results" / "results_all.json"):
        doc = json.loads(path.read_text())
        grid = doc["final_eval"] if "final_eval" in doc else doc["results"]["algorithmic"]
        for entry in grid["tasks"].values():
            for cell in entry["lengths"].values():
                k = iid_right if cell["split"] == "iid" else ood_right
                cell.update(n=n, outcomes=bits(k), well_formed=0.75)
        path.write_text(json.dumps(doc))
    return d


def test_report_reads_per_problem_outcomes_paired_and_per_seed(tmp_path):
    """Runs that kept outcomes: paired, Holm-adjusted verdicts, per-seed counts, no zero-width cell."""
    base = [outcome_run(tmp_path, "baseline", s, 200, 20 + s) for s in range(3)]
    loop = [outcome_run(tmp_path, "shared_loop", s, 200, (200, 200, 100)[s]) for s in range(3)]
    md = write_report([str(r) for r in base + loop], str(tmp_path / "report")).read_text()
    verdicts = section(md, "Verdicts")
    assert "paired, p = " in verdicts and "before Holm" in verdicts
    assert "IID: **no difference at this budget**" in verdicts and "OOD: **helps**" in verdicts
    seeds = section(md, "Per seed")  # copy @16 and parity @32, the longest cells
    assert seeds.count("2/3 ≥ 90%: s0 100%, s1 100%, s2 50%; scaled median 1.00, best 1.00") == 2
    assert seeds.count("0/3 ≥ 90%") == 2
    assert "s2 11%; scaled median -0.79, best -0.78" in seeds  # parity @32 below chance: (0.105 - 0.5) / 0.5
    assert "| 75.0% |" in section(md, "Comparison")  # well-formed beside the accuracies
    copy = md.split("### copy", 1)[1].split("###", 1)[0]
    perfect = copy.split("| `baseline` |")[1].split("|")[0]  # copy @4: every problem right in every seed
    assert perfect.startswith(" 100.0% [") and float(perfect.split("[")[1].split(",")[0]) < 100.0


def test_realised_flops_and_the_recorded_stop_are_what_the_report_reads(tmp_path):
    """A looped arm costed like the baseline but executing twice its loops is withheld on its realised
    FLOPs; the stop reason comes from summary.json, not from a guess."""
    runs = [fake_run(tmp_path, "baseline", s, 0.5, 0.1) for s in range(3)]
    runs += [fake_run(tmp_path, "shared_loop", s, 0.9, 0.5) for s in range(3)]
    for d in runs[3:]:
        doc = json.loads((d / "summary.json").read_text())
        doc.update(realised_flops_per_token=6e6, realised_flops=6e12, stopped_by="time_cap")
        (d / "summary.json").write_text(json.dumps(doc))
    md = write_report([str(r) for r in runs], str(tmp_path / "r")).read_text()
    assert "`shared_loop`: **withheld**: realised training FLOPs per token is 2.00x `baseline`'s" in md
    per_run = section(md, "Competence per run")
    assert per_run.count("| time cap |") == 3 and "| 6.00M, 6e+12 |" in per_run


def test_the_report_states_the_test_set_and_refuses_to_hide_a_mismatch(tmp_path):
    runs = [fake_run(tmp_path, "baseline", s, 0.9, 0.1) for s in range(3)]
    for i, d in enumerate(runs):
        path = d / "eval_results" / "results_all.json"
        doc = json.loads(path.read_text())
        doc["metadata"] = {"test_set": {"digest": "ab" * 32 if i < 2 else "cd" * 32, "samples": 500, "ood_samples": 1000}}
        path.write_text(json.dumps(doc))
    md = write_report([str(r) for r in runs[:2]], str(tmp_path / "same")).read_text()
    assert f"one test set for every run, digest `{'ab' * 8}`, 500 problems per IID cell and 1000 per OOD cell" in md
    md = write_report([str(r) for r in runs], str(tmp_path / "mixed")).read_text()
    assert "**2 different test sets**" in md


def test_learning_curves_and_the_scored_checkpoint(tmp_path):
    """Accuracy against tokens and seconds per arm (seed bands) from the periodic evaluations; the
    competence table names the checkpoint that was scored."""
    runs = [fake_run(tmp_path, v, s, 0.9, 0.1) for v in ("baseline", "shared_loop") for s in range(2)]
    for k, d in enumerate(runs):
        rows = json.loads((d / "metrics.json").read_text())
        rows += [{"step": s, "tokens": 1000 * s, "train_seconds": (1 + k) * s, "eval_mean_acc": min(1.0, s / 10)}
                 for s in (2, 5, 10)]
        (d / "metrics.json").write_text(json.dumps(rows))
        doc = json.loads((d / "summary.json").read_text())
        doc["scored"] = {"step": 500, "tokens": 500_000, "why": "first competent"}
        (d / "summary.json").write_text(json.dumps(doc))
    out = tmp_path / "report"
    md = write_report([str(r) for r in runs], str(out)).read_text()
    assert "(learning.png)" in md and (out / "learning.png").stat().st_size > 1000
    assert section(md, "Competence per run").count("| step 500 (first competent) |") == 4


def test_halting_section_shows_each_seed_and_says_when_every_seed_collapsed(tmp_path):
    from looplab.eval.report_data import Run
    from looplab.eval.report_halting import halting_section

    def run(seed: int, depth: dict) -> Run:
        return Run(path=tmp_path, variant="act", seed=seed, summary={},
                   results={"algorithmic": {"halting_by_length": depth}})

    flat = {"parity": {"4": 1.0, "8": 1.02, "32": 1.0}}
    growing = {"parity": {"4": 1.2, "8": 2.0, "32": 3.5}}
    md = "\n".join(halting_section({"act_a": [run(0, flat), run(1, flat)], "act_b": [run(0, flat), run(1, growing)],
                                    "baseline": [Run(path=tmp_path, variant="baseline", seed=0, summary={})]}))
    assert "`act_a`: **every seed collapsed**: all 2" in md
    assert "`act_b`: 1 of 2 seeds collapsed" in md and "1 of 2 use at least 0.5 loops more" in md
    assert "| 1 | 1.20 | 2.00 | 3.50 |" in md and "| seed | 4 | 8 | 32 |" in md  # lengths in numeric order
    assert "baseline" not in md
    assert halting_section({"baseline": [Run(path=tmp_path, variant="baseline", seed=0, summary={})]}) == []


def test_research_goal_counts_the_seeds_that_reach_it_and_skips_arms_trained_longer(tmp_path):
    """parity @32 trained on <= 8 bits: the seeds at 95% counted, each seed shown (non-competent marked);
    an arm whose parity training reached 16 bits is not scored against the goal."""
    from looplab.eval.report_data import group_runs, load_run
    from looplab.eval.report_goal import goal_section

    dirs = [fake_run(tmp_path / "a", "shared_loop", s, 0.99, ood, competent_at=None if s == 1 else 400_000)
            for s, ood in enumerate((0.97, 0.50, 0.96))]
    longer = fake_run(tmp_path / "b", "baseline", 0, 0.99, 0.99)
    res = json.loads((longer / "eval_results" / "results_all.json").read_text())
    res["results"]["algorithmic"]["tasks"]["parity"]["lengths"]["16"] = {"acc": 0.99, "n": 100, "split": "iid",
                                                                          "floor": 0.5}
    (longer / "eval_results" / "results_all.json").write_text(json.dumps(res))
    md = "\n".join(goal_section(group_runs([load_run(d) for d in (*dirs, longer)])))
    row = next(line for line in md.splitlines() if line.startswith("| `shared_loop`"))
    assert "| parity @32 | 2 of 3 |" in row and "| 2 of 3 | s0 97%, s1 50%†, s2 96% |" in row
    assert "`baseline`" not in md  # trained on 16 bits: outside the goal
    assert "### parity @32" in md and "### addition" not in md  # no run was scored on addition
    assert goal_section(group_runs([load_run(longer)])) == []
