"""Evaluation: task-aware metrics and the harness that compares base, fine-tuned and LLM answers."""
