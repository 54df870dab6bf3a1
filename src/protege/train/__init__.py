"""Specialists: LoRA distillation of a task's logged calls into a small model, and its artifact folder."""
