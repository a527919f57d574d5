"""Compression passes: structured pruning (torch-pruning) and distillation (edgekit.train.loop)."""
