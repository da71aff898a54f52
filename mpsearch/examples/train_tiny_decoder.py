"""Train the bundled character-level decoder deterministically and write its Hugging Face checkpoint.

    python -m mpsearch.examples.train_tiny_decoder [--out DIR] [--steps N]

A LlamaForCausalLM (4 layers, hidden 128, GQA 4/2 heads, SwiGLU 384; 0.81M parameters) on the
sources of `TRAIN_MODULES`, AdamW with cosine decay, one CPU thread, fixed seeds. Prints the
held-out perplexity (sources of `HELDOUT_MODULES`) at the end.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .tiny_decoder import (
    ALPHABET,
    HELDOUT_MODULES,
    HERE,
    N_TEST,
    SEQ_LEN,
    TRAIN_MODULES,
    encode,
    module_text,
    save_tokenizer,
)

SEED = 0


def config():
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=len(ALPHABET), hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=SEQ_LEN,
                       rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=None, eos_token_id=None,
                       pad_token_id=None)


def held_out_perplexity(model, ids: torch.Tensor) -> float:
    from .tiny_decoder import sequences

    d = sequences(ids, SEQ_LEN, N_TEST)
    with torch.no_grad():
        logits = model(input_ids=d["x"]["input_ids"]).logits
    return math.exp(float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), d["y"].reshape(-1))))


def main(argv: list[str] | None = None) -> None:
    from transformers import LlamaForCausalLM

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args(argv)

    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    train = encode(module_text(TRAIN_MODULES))
    held = encode(module_text(HELDOUT_MODULES))
    model = LlamaForCausalLM(config()).float()
    model.config._attn_implementation = "eager"
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.01)
    gen = torch.Generator().manual_seed(SEED)
    t0 = time.time()
    for step in range(args.steps):
        lr = 3e-3 * 0.5 * (1 + math.cos(math.pi * step / args.steps)) * min(1.0, (step + 1) / 30)
        for g in opt.param_groups:
            g["lr"] = lr
        start = torch.randint(0, train.numel() - SEQ_LEN - 1, (args.batch,), generator=gen)
        w = torch.stack([train[s : s + SEQ_LEN + 1] for s in start.tolist()])
        logits = model(input_ids=w[:, :-1]).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step:4d}  loss {loss.item():.4f}  lr {lr:.2e}  {time.time() - t0:.0f}s", flush=True)
    model.eval()
    print(f"held-out perplexity: {held_out_perplexity(model, held):.3f} "
          f"({held.numel()} held-out characters, {train.numel()} training characters)")
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(args.out), safe_serialization=True)
    save_tokenizer(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
