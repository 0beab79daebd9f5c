"""The dense branch: encoders, passages, the embedding cache and faiss ANN indexes."""
