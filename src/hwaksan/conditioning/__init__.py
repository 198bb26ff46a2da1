"""Conditions for networks that are not class labels: text embeddings."""
