"""A `baseline` checkpoint as a Hugging Face Llama model directory.

The weights come from `eval.hf_twin.llama_state` (the one mapping of baseline names to Llama
names); config.json is written by hand, so exporting needs only `safetensors` and `tokenizers`,
not transformers. `rope_theta` is written both flat (transformers 4.x) and inside
`rope_parameters` (5.x). bos/eos/pad are the tokenizer's ids, so `generate` stops where looplab's
greedy decoding stops.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from looplab.checkpoint import Checkpoint
from looplab.errors import LooplabError
from looplab.eval.hf_twin import llama_state
from looplab.interop.hf_tokenizer import write_hf_tokenizer
from looplab.interop.safetensors_io import write_tensors
from looplab.io import write_json

HF_VARIANTS = ("baseline",)  # variants whose function a transformers architecture reproduces exactly


def llama_config(cfg: Any, tokenizer: Any) -> dict[str, Any]:
    """config.json of the LlamaForCausalLM equal to a baseline with ModelConfig `cfg`."""
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model, "intermediate_size": cfg.ff_dim,
        "num_hidden_layers": cfg.n_layer, "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.n_kv_head, "head_dim": cfg.head_dim, "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len, "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_base, "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_base},
        "tie_word_embeddings": cfg.tie_embeddings, "attention_bias": False, "mlp_bias": False,
        "attention_dropout": 0.0, "initializer_range": 0.02, "use_cache": True, "torch_dtype": "float32",
        "bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id, "pad_token_id": tokenizer.pad_id,
        "looplab": {"model_config": cfg.to_dict(), "tokenizer": tokenizer.name,
                    "tokenizer_fingerprint": tokenizer.fingerprint},
    }


def export_hf(ckpt: Checkpoint, out: Path) -> list[str]:
    """Write config.json, model.safetensors and tokenizer files; returns the file names written."""
    cfg = ckpt.config
    if cfg.variant not in HF_VARIANTS:
        raise LooplabError(f"variant '{cfg.variant}' has no transformers equivalent; --to hf allows "
                           f"{', '.join(HF_VARIANTS)} (use --to safetensors)")
    state = {k: v.float() for k, v in llama_state(ckpt.model).items()}
    if cfg.tie_embeddings:
        state.pop("lm_head.weight")  # transformers ties it to model.embed_tokens.weight
    write_tensors(out / "model.safetensors", state)
    write_json(out / "config.json", llama_config(cfg, ckpt.tokenizer))
    write_json(out / "generation_config.json", {"bos_token_id": ckpt.tokenizer.bos_id,
                                                "eos_token_id": ckpt.tokenizer.eos_id,
                                                "pad_token_id": ckpt.tokenizer.pad_id})
    tok_files = write_hf_tokenizer(ckpt.tokenizer, out, max_len=cfg.max_seq_len)
    return ["config.json", "generation_config.json", "model.safetensors", *tok_files]
