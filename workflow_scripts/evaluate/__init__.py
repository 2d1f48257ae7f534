"""Evaluation: batched generation and one module per benchmark (build prompts, parse an answer, score)."""
