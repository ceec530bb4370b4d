"""A `transformers` LlamaForCausalLM holding a `baseline` model's weights (benchmarks and tests).

The baseline is a Llama-shaped decoder (pre-norm RMSNorm, rotary on the two halves of each head,
SwiGLU, optional tied head), so the mapping is a renaming plus two splits: the fused `qkv`
projection into q/k/v, and the fused `gate_up` into gate and up. Needs the optional `transformers`
dependency (the `dev` extra).
"""

from __future__ import annotations

from typing import Any

import torch

from looplab.errors import LooplabError


def llama_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The baseline's weights under transformers' Llama names."""
    cfg = model.cfg
    H, G, D = cfg.n_head, cfg.n_kv_head, cfg.head_dim
    out = {"model.embed_tokens.weight": model.embed.weight, "model.norm.weight": model.norm.weight,
           "lm_head.weight": model.head.weight}
    for i, block in enumerate(model.blocks):
        pre = f"model.layers.{i}."
        q, k, v = block.attn.qkv.weight.split((H * D, G * D, G * D), dim=0)
        gate, up = block.mlp.gate_up.weight.chunk(2, dim=0)
        out |= {pre + "self_attn.q_proj.weight": q, pre + "self_attn.k_proj.weight": k,
                pre + "self_attn.v_proj.weight": v, pre + "self_attn.o_proj.weight": block.attn.proj.weight,
                pre + "mlp.gate_proj.weight": gate, pre + "mlp.up_proj.weight": up,
                pre + "mlp.down_proj.weight": block.mlp.down.weight,
                pre + "input_layernorm.weight": block.norm1.weight,
                pre + "post_attention_layernorm.weight": block.norm2.weight}
    return {k: v.detach().clone() for k, v in out.items()}


def llama_twin(model: torch.nn.Module) -> Any:
    """LlamaForCausalLM with the same shape and weights as `model` (a `baseline`), in eval mode."""
    if model.cfg.variant != "baseline":
        raise LooplabError(f"a Llama twin exists only for variant 'baseline', got '{model.cfg.variant}'")
    try:
        from transformers import LlamaConfig, LlamaForCausalLM
    except ImportError:
        raise LooplabError("the Llama twin needs transformers: pip install -e '.[dev]'") from None
    cfg = model.cfg
    hf = LlamaConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.ff_dim,
                     num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head, num_key_value_heads=cfg.n_kv_head,
                     head_dim=cfg.head_dim, max_position_embeddings=cfg.max_seq_len, rms_norm_eps=cfg.norm_eps,
                     rope_theta=cfg.rope_base, tie_word_embeddings=cfg.tie_embeddings, attention_bias=False,
                     mlp_bias=False, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    twin = LlamaForCausalLM(hf)
    state = llama_state(model)
    if cfg.tie_embeddings:
        state.pop("lm_head.weight")
    missing, unexpected = twin.load_state_dict(state, strict=False)
    if unexpected or [m for m in missing if m != "lm_head.weight"]:
        raise LooplabError(f"Llama weight mapping is incomplete: missing {missing}, unexpected {unexpected}")
    return twin.to(next(model.parameters()).device).eval()
