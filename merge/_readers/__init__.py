"""One private module per checkpoint format; :mod:`slidescope.merge.reading` picks one by content."""
