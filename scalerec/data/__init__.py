"""Data: canonical tables, the built-in synthetic generator, leave-one-out split, item text, training batches."""
