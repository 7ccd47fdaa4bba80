"""Tokenisation with loss masks, packing, the SFT/LoRA training loop, checkpoints and merge."""
