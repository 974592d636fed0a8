"""Training: the loop on one or many processes, the input pipeline, losses, checkpoints and launchers."""
