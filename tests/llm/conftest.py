"""Tiny random-init Hugging Face decoders saved with `save_pretrained`: Llama, GPT-2 and Mixtral, and the
families users bring (`FAMILIES`): Qwen2 (q/k/v biases), Qwen3 (q/k norms), Mistral, Phi-3 (qkv_proj and
gate_up_proj already one Linear each), Gemma 2 (tied, scaled embeddings, soft-capped logits), GPT-NeoX
(fused query_key_value) and Qwen2-MoE (num_experts, a shared expert with its own gate)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

VOCAB = 96  # the character tokenizer of the bundled tiny decoder


FAMILIES = ("qwen2", "qwen3", "mistral", "phi3", "gemma2", "gpt_neox", "qwen2_moe")


def _configs():
    from transformers import (
        Gemma2Config,
        GPT2Config,
        GPTNeoXConfig,
        LlamaConfig,
        MistralConfig,
        MixtralConfig,
        Phi3Config,
        Qwen2Config,
        Qwen2MoeConfig,
        Qwen3Config,
    )

    dec = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    return {
        "llama": LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, bos_token_id=None, eos_token_id=None),
        "gpt2": GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                           bos_token_id=0, eos_token_id=0),
        "mixtral": MixtralConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, num_local_experts=4,
                                 num_experts_per_tok=2, bos_token_id=None, eos_token_id=None),
        "qwen2": Qwen2Config(**dec),
        "qwen3": Qwen3Config(**dec, head_dim=8),
        "mistral": MistralConfig(**dec),
        "phi3": Phi3Config(**dec),
        # logits capped at 1 (Gemma 2 ships 30): random-init logits are ~0.3, which a cap of 30 leaves unchanged
        "gemma2": Gemma2Config(**dec, head_dim=8, final_logit_softcapping=1.0),
        "gpt_neox": GPTNeoXConfig(**{k: v for k, v in dec.items() if k != "num_key_value_heads"}),
        "qwen2_moe": Qwen2MoeConfig(**dec, head_dim=8, moe_intermediate_size=16, shared_expert_intermediate_size=32,
                                    num_experts=4, num_experts_per_tok=2),
    }


def tiny(kind: str, seed: int = 0):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(_configs()[kind]).eval()


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """kind -> directory holding config.json, model.safetensors and a tokenizer."""
    from mpsearch.examples.tiny_decoder import save_tokenizer

    root = tmp_path_factory.mktemp("hf")
    out = {}
    for kind in _configs():
        d = root / kind
        tiny(kind).save_pretrained(str(d), safe_serialization=True)
        save_tokenizer(d)
        out[kind] = d
    return out


def token_batch(n: int = 4, t: int = 12, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (n, t + 1), generator=g)
    return {"x": {"input_ids": ids[:, :-1]}, "y": ids[:, 1:]}


def cli_plan(checkpoint, text, tmp_path, samples: int):
    """`mpsearch plan DIR --data TEXT --budget 4.5bits` over int2/int4/int8/bf16: the saved plan, made with
    kfac (the language-model default) and within its budget."""
    from mpsearch.cli import main
    from mpsearch.plan import Plan

    out = tmp_path / "plan.json"
    assert main(["plan", str(checkpoint), "--data", str(text), "--seq-len", "16", "--samples", str(samples),
                 "--budget", "4.5bits", "--formats", "int2,int4,int8,bf16", "-o", str(out), "--no-cache"]) == 0
    plan = Plan.load(out)
    assert plan.provenance["estimator"] == "kfac"
    assert plan.totals["avg_bits"] <= 4.5 + 1e-9
    return plan
