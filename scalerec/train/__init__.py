"""Training: the trainer loop, FLOP counting, evaluation."""
