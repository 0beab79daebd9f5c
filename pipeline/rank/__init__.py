"""The learned ranker: features, model, online re-ranking, explanations and offline training."""
