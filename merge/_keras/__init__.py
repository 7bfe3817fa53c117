"""Keras pieces of merge/: the merged slide graph (Keras and TensorFlow are imported here only)."""
