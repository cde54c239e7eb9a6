"""Training: the stages (`stages`; `nsnet_jax.pipeline_run` runs them), step, losses, optimizer,
checkpoints."""

# The stages in the order `stage=all` runs them; each writes `workdir/<stage>/DONE.json`.
# `pretrain` runs only where config.pretrain.stills_variant names a variant.
STAGE_ORDER = ("pretrain", "recognizer", "pseudo_labels", "sampler", "eval")
