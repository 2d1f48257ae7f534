"""Model: assembly of the multimodal LLM, the tuning-strategy table, parameter and memory accounting."""
