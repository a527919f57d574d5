"""Training and distillation (one loop, an optional teacher)."""
