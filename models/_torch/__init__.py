"""The PyTorch adapter (private): imported by :mod:`slidescope.models.registry` on first use only."""
