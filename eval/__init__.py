"""Evaluation backends (hf, vllm, openai-compatible), scoring, the LOCO runner and reports."""
