"""Training: the stages (`stages.train_and_evaluate`), step, losses, optimizer, checkpoints."""

# The stages in the order `stage=all` runs them; each writes `workdir/<stage>/DONE.json`.
STAGE_ORDER = ("recognizer", "pseudo_labels", "sampler", "eval")
