"""PyTorch pieces of merge/: the merged slide graph (torch is imported here only)."""
