"""Training: the stages (`stages.train_and_evaluate`), step, losses, optimizer, checkpoints."""
