"""Probes of an rlf checkpoint (`looplab probe CHECKPOINT --out DIR`).

Figures, written to probe.json with every sample count (plots: probe_plots.py):
- accuracy per hop count, in distribution (1-5) and out of it (6, 8, 10, 12), on evaluation-split
  chains: `acc` (the last prediction before the first HALT is the value; compare it with
  `digit_guess_chance`, the accuracy of naming one of the prompt's bound digits at random),
  `trace_acc` (every pointer right and HALT at exactly loop hops + 1), `halt_exact` (HALT first at
  loop hops + 1, the halting precision), `halt_at_1` (HALT first at loop 1), `no_halt` (no HALT within the cap);
- hidden states: the query state after every loop of the hops-5 chains; variance explained by the
  first two principal components, and whether states cluster by loop index (reasoning step):
  nearest-centroid accuracy on held-out chains (chance 1 / loops) and the silhouette;
- the lifeline gate: share of dimensions that amplify the prompt (gate above its init by > 10%),
  suppress it (below by > 10%), and turn it negative;
- strict ablation at inference: the lifeline zeroed, replaced by Gaussian noise of the prompt's
  per-dimension std, or taken from another chain of the batch (shuffled). Per-loop top-1 agreement
  with the intact model over a fixed hops + 1 loops, and accuracy (with halting) under each mode;
- the trajectory: the hops-5 chains' states over 10 loops in the intact model's PCA plane, lifeline
  on and zeroed.

Letters: N chains, L loops, C base width, K clusters (loop indices).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from looplab.data.pointer_chains import IID_HOPS, OOD_HOPS, ChainCodec, Chains, digit_guess_chance, eval_set
from looplab.errors import LooplabError
from looplab.models import MODELS, get_spec
from looplab.models.rlf_chains import average, cap, run, score

ABLATIONS = ("zero", "noise", "shuffle")
STATE_HOPS = 5  # hop count whose per-loop states the hidden-state probe reads
TRAJECTORY_LOOPS = 10


# --- hidden states -------------------------------------------------------------------------------------
def pca(x: torch.Tensor, k: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean (C,), top-k directions (k, C) and the share of variance each principal component explains."""
    mean = x.mean(0)
    _, s, vh = torch.linalg.svd(x - mean, full_matrices=False)
    var = s**2
    return mean, vh[:k], var / var.sum()


def silhouette(x: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean silhouette of points x (N, C) with integer labels (N,), Euclidean distances."""
    d = torch.cdist(x, x)  # (N, N)
    onehot = torch.nn.functional.one_hot(labels).double()  # (N, K)
    sums, counts = d.double() @ onehot, onehot.sum(0)  # (N, K), (K,)
    own = sums.gather(1, labels[:, None])[:, 0] / (counts[labels] - 1).clamp(min=1)
    other = (sums / counts).scatter(1, labels[:, None], float("inf")).min(1).values
    return float(((other - own) / torch.maximum(own, other)).mean())


def nearest_centroid(x: torch.Tensor, labels: torch.Tensor, train: torch.Tensor) -> float:
    """Accuracy of nearest-centroid classification of the rows outside `train` (a bool mask)."""
    K = int(labels.max()) + 1
    centroids = torch.stack([x[train & (labels == k)].mean(0) for k in range(K)])  # (K, C)
    pred = torch.cdist(x[~train], centroids).argmin(1)
    return float((pred == labels[~train]).float().mean())


def state_probe(model: Any, codec: ChainCodec, ch: Chains, seed: int) -> tuple[dict[str, Any], torch.Tensor]:
    h = ch.hops
    tr = run(model, codec.inputs(ch), h + 1, stop_on_halt=False, seed=seed)
    n, L, C = tr.states.shape
    x = tr.states.reshape(n * L, C).float()  # (N L, C) row-major: chain, then loop
    labels = torch.arange(L).repeat(n)
    train = (torch.arange(n) < n // 2).repeat_interleave(L)  # first half of the chains fits the centroids
    mean, dirs, ratio = pca(x)
    xy = (x - mean) @ dirs.T
    figures = {"hops": h, "chains": n, "points": n * L, "loops": L,
               "pca_var_explained_2": float(ratio[:2].sum()), "pca_var_explained": [float(r) for r in ratio[:5]],
               "nearest_centroid_acc": nearest_centroid(x, labels, train), "nearest_centroid_chance": 1 / L,
               "nearest_centroid_acc_pca2": nearest_centroid(xy, labels, train),
               "silhouette": silhouette(x, labels), "silhouette_pca2": silhouette(xy, labels)}
    return figures, torch.cat([xy, labels[:, None].float()], 1)


def gate_figures(model: Any, margin: float = 0.1) -> dict[str, Any]:
    g, g0 = model.gate.detach().float().cpu(), model.opts.gate_init
    return {"dims": len(g), "init": g0, "amplify_share": float((g > g0 + margin * abs(g0)).float().mean()),
            "suppress_share": float((g < g0 - margin * abs(g0)).float().mean()),
            "negative_share": float((g < 0).float().mean()), "mean": float(g.mean()), "std": float(g.std()),
            "min": float(g.min()), "max": float(g.max()), "margin": margin}


# --- ablation ---------------------------------------------------------------------------------------------
def ablation(model: Any, codec: ChainCodec, sets: dict[int, Chains], seed: int) -> dict[str, Any]:
    """Per mode: top-1 agreement with the intact model per loop index (over hops + 1 fixed loops of
    every hop count) and overall, and hop accuracy with halting."""
    intact = {h: run(model, codec.inputs(ch), h + 1, stop_on_halt=False, seed=seed) for h, ch in sets.items()}
    out: dict[str, Any] = {}
    for mode in ABLATIONS:
        same: dict[int, list[int]] = {}
        for h, ch in sets.items():
            tr = run(model, codec.inputs(ch), h + 1, lifeline=mode, stop_on_halt=False, seed=seed)
            agree = tr.logits.argmax(-1) == intact[h].logits.argmax(-1)  # (N, h + 1)
            for loop in range(h + 1):
                s = same.setdefault(loop + 1, [0, 0])
                s[0] += int(agree[:, loop].sum())
                s[1] += agree.shape[0]
        acc = {h: score(run(model, codec.inputs(ch), cap(model, h), lifeline=mode, seed=seed), codec.targets(ch), h)
               for h, ch in sets.items()}
        total = [sum(v[0] for v in same.values()), sum(v[1] for v in same.values())]
        out[mode] = {"agreement": total[0] / total[1], "agreement_n": total[1],
                     "agreement_per_loop": {str(k): {"share": v[0] / v[1], "n": v[1]} for k, v in sorted(same.items())},
                     "acc": {str(h): r["acc"] for h, r in acc.items()},
                     "iid_acc": average([acc[h]["acc"] for h in IID_HOPS if h in acc]),
                     "ood_acc": average([acc[h]["acc"] for h in OOD_HOPS if h in acc])}
    return out


def trajectory(model: Any, codec: ChainCodec, ch: Chains, seed: int, chains: int = 3) -> dict[str, Any]:
    """Per-loop states of a few chains over TRAJECTORY_LOOPS loops, lifeline on and zeroed, in the
    PCA plane of the intact states; plus each loop's top-1 prediction in both runs."""
    idx = codec.inputs(ch)[:chains]
    runs = {m: run(model, idx, TRAJECTORY_LOOPS, lifeline=m, stop_on_halt=False, seed=seed) for m in ("intact", "zero")}
    x = runs["intact"].states.flatten(0, 1).float()
    mean, dirs, _ = pca(x)
    tok = codec.tok

    def name(i: int) -> str:
        return "HALT" if i == model.halt_id else tok.decode([i])

    return {m: {"xy": ((r.states.float() - mean) @ dirs.T).tolist(),
                "top1": [[name(int(i)) for i in row] for row in r.logits.argmax(-1)]} for m, r in runs.items()}


# --- the command -------------------------------------------------------------------------------------------
def probe(checkpoint: str, out: str, *, samples: int = 200, seed: int = 0, device: str = "cpu") -> dict[str, Any]:
    from looplab.checkpoint import load_checkpoint
    from looplab.eval.probe_plots import write_plots

    if samples < 1:
        raise LooplabError(f"--samples must be >= 1, got {samples}")
    ckpt = load_checkpoint(checkpoint, map_location=device)
    model = ckpt.model
    if not get_spec(ckpt.config.variant).scored_by_probe:
        probed = ", ".join(v for v, s in MODELS.items() if s.scored_by_probe)
        raise LooplabError(f"probe reads {probed} checkpoints; '{checkpoint}' holds variant '{ckpt.config.variant}'")
    codec = ChainCodec(ckpt.tokenizer, model.halt_id, model.uses_specials)
    sets = {h: eval_set(h, samples, seed) for h in IID_HOPS + OOD_HOPS}
    acc = {h: score(run(model, codec.inputs(ch), cap(model, h), seed=seed), codec.targets(ch), h)
           | {"digit_guess_chance": digit_guess_chance(ch)} for h, ch in sets.items()}
    states, points = state_probe(model, codec, sets[STATE_HOPS], seed)
    result = {
        "checkpoint": str(checkpoint), "seed": seed, "samples_per_hop": samples, "max_loops": model.opts.max_loops,
        "core": model.opts.core, "adapt_top_layers": model.opts.adapt_top_layers, "meta": ckpt.meta,
        "accuracy": {str(h): r for h, r in acc.items()},
        "iid_acc": average([acc[h]["acc"] for h in IID_HOPS]), "ood_acc": average([acc[h]["acc"] for h in OOD_HOPS]),
        "halt_exact_iid": average([acc[h]["halt_exact"] for h in IID_HOPS]),
        "halt_at_1_share": average([acc[h]["halt_at_1"] for h in acc]),
        "hidden_states": states, "gate": gate_figures(model), "ablation": ablation(model, codec, sets, seed),
        "trajectory": trajectory(model, codec, sets[STATE_HOPS], seed),
    }
    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LooplabError(f"--out {out} is not writable ({e.strerror})") from None
    (path / "probe.json").write_text(json.dumps(result, indent=2) + "\n")
    write_plots(result, points, model.gate.detach().float().cpu(), path)
    return result
