"""The Keras 3 (TensorFlow backend) adapter (private): imported by :mod:`slidescope.models.registry` on first use only."""
