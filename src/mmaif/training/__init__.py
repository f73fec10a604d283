"""Training: regression and flow matching, one process or many under torchrun."""
