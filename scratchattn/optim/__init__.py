"""Optimisers (same update rules as PyTorch's) and learning-rate schedules."""
