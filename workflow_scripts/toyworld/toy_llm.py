"""Toy base LLM: a BPE tokenizer and a small ``LlamaForCausalLM`` pretrained on the world's text only
(captions and chats, never an image), saved with ``save_pretrained`` so it loads like Vicuna does.

Entry: ``python -m workflow_scripts.toyworld.toy_llm --train T --val V --spec JSON --out DIR --metrics M``.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaTokenizer,
    get_cosine_schedule_with_warmup,
)

from workflow_scripts.io import atomic_dir, write_json

SPECIAL = ["<unk>", "<s>", "</s>"]  # ids 0, 1, 2 as in LLaMA


BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]  # LLaMA's byte fallback: no character is ever lost
ALPHABET = [chr(c) for c in range(32, 127)] + ["\n"]


def train_tokenizer(texts: list[str], vocab_size: int) -> LlamaTokenizer:
    """Train BPE pieces on ``texts`` (SentencePiece-style '▁' word starts) and wrap them as a LlamaTokenizer
    laid out like LLaMA's: <unk> <s> </s>, the 256 byte-fallback tokens, then the learned pieces."""
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    trainer = trainers.BpeTrainer(vocab_size=max(vocab_size - len(BYTE_TOKENS), 128), special_tokens=SPECIAL,
                                  initial_alphabet=ALPHABET, show_progress=False)
    bpe.train_from_iterator([t.replace("</s>", " ") for t in texts], trainer)
    model = json.loads(bpe.to_str())["model"]
    pieces = sorted((t for t in model["vocab"] if t not in SPECIAL), key=model["vocab"].get)
    vocab = {t: i for i, t in enumerate(SPECIAL + BYTE_TOKENS + pieces)}
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    # LLaMA has no pad token; like LLaVA we pad with <unk>.
    return LlamaTokenizer(vocab=vocab, merges=merges, add_bos_token=True, pad_token="<unk>")


def encode(tokenizer, texts: list[str], max_length: int) -> list[torch.Tensor]:
    return [torch.tensor(tokenizer(t, truncation=True, max_length=max_length)["input_ids"]) for t in texts]


def collate(seqs: list[torch.Tensor], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; padded positions get label -100 and attention 0."""
    length = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), length), pad_id)
    mask = torch.zeros((len(seqs), length), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)], mask[i, : len(s)] = s, 1
    return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}


class PackedStream:
    """All training documents joined end to end (each ends with </s>); a batch is ``batch_size`` windows of
    ``length`` tokens, as GPT-style pretraining reads text: no padding, so every position is a real token."""

    def __init__(self, seqs: list[torch.Tensor], eos_id: int, length: int):
        ends = [s if s[-1] == eos_id else torch.cat([s, torch.tensor([eos_id])]) for s in seqs]
        self.tokens, self.length = torch.cat(ends), length
        if len(self.tokens) <= length:
            raise ValueError(f"packed training needs more than max_length={length} tokens; the corpus has "
                             f"{len(self.tokens)}")

    def batch(self, batch_size: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        starts = torch.randint(len(self.tokens) - self.length, (batch_size,), generator=gen).tolist()
        ids = torch.stack([self.tokens[s: s + self.length] for s in starts])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}


@torch.no_grad()
def perplexity(model, seqs: list[torch.Tensor], pad_id: int, batch_size: int = 64) -> float:
    """exp(mean next-token NLL) over all tokens of ``seqs``."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(seqs), batch_size):
        batch = collate(seqs[i: i + batch_size], pad_id)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        labels = batch["labels"][:, 1:]
        nll = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels.flatten(), ignore_index=-100,
                                                reduction="sum")
        total, count = total + nll.item(), count + int((labels != -100).sum())
    model.train()
    return math.exp(total / count)


def build_model(spec: dict, tokenizer) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=spec["hidden_size"], intermediate_size=spec["intermediate_size"],
        num_hidden_layers=spec["layers"], num_attention_heads=spec["heads"], num_key_value_heads=spec["heads"],
        max_position_embeddings=2048, rms_norm_eps=1e-6, tie_word_embeddings=False,  # Vicuna/LLaMA are untied
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return LlamaForCausalLM(config)


def train(train_texts: list[str], val_texts: list[str], spec: dict, seed: int, log=print):
    """Train tokenizer and model; returns (model, tokenizer, metrics)."""
    torch.manual_seed(seed)
    start = time.time()
    tokenizer = train_tokenizer(train_texts, spec["vocab_size"])
    train_seqs = encode(tokenizer, train_texts, spec["max_length"])
    val_seqs = encode(tokenizer, val_texts, spec["max_length"])
    model = build_model(spec, tokenizer)
    pad = tokenizer.pad_token_id
    ppl_before = perplexity(model, val_seqs, pad)
    log(f"vocab {len(tokenizer)}, params {sum(p.numel() for p in model.parameters()):,}, "
        f"val perplexity before training {ppl_before:.1f}")
    opt = torch.optim.AdamW(model.parameters(), lr=spec["lr"], weight_decay=0.0)
    sched = get_cosine_schedule_with_warmup(opt, max(1, spec["steps"] // 20), spec["steps"])
    gen = torch.Generator().manual_seed(seed)
    packed = PackedStream(train_seqs, tokenizer.eos_token_id, spec["max_length"]) if spec.get("packed") else None
    losses = []
    for step in range(1, spec["steps"] + 1):
        if packed is not None:
            batch = packed.batch(spec["batch_size"], gen)
        else:
            idx = torch.randint(len(train_seqs), (spec["batch_size"],), generator=gen)
            batch = collate([train_seqs[i] for i in idx], pad)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(), sched.step(), opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 50 == 0 or step == spec["steps"]:
            log(f"step {step}/{spec['steps']} loss {sum(losses[-50:]) / len(losses[-50:]):.3f}")
    ppl_after = perplexity(model, val_seqs, pad)
    log(f"val perplexity after training {ppl_after:.2f} (uniform guess: {len(tokenizer)})")
    metrics = {"vocab_size": len(tokenizer), "parameters": sum(p.numel() for p in model.parameters()),
               "train_sequences": len(train_seqs), "packed": bool(packed),
               "train_tokens": sum(len(s) for s in train_seqs), "val_sequences": len(val_seqs), "steps": spec["steps"],
               "val_perplexity_before": ppl_before, "val_perplexity_after": ppl_after,
               "uniform_perplexity": len(tokenizer), "first_loss": losses[0], "last_loss": losses[-1],
               "seconds": round(time.time() - start, 1)}
    return model, tokenizer, metrics


def read_texts(path: str) -> list[str]:
    with open(path) as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--train", required=True)
    ap.add_argument("--val", required=True)
    ap.add_argument("--spec", required=True, help="JSON of config.toy_world.llm")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True, help="model folder (written whole, atomically)")
    ap.add_argument("--metrics", required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, tokenizer, metrics = train(read_texts(args.train), read_texts(args.val), json.loads(args.spec), args.seed)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    with atomic_dir(args.out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    write_json(args.metrics, metrics)


if __name__ == "__main__":
    main()
