"""Model: item encoders (text or id), the causal transformer, the recommender, losses."""
