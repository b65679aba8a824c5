"""Training and evaluation of the FV2ES model."""
