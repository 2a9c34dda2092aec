"""Scaling-law analysis of a run store. Never imports torch: fit-laws and predict run where torch is absent."""
