"""Training: dataset loading and validation, the LoRA hook, dry-run and real trainers."""
