"""plantimager: run rigs of networked cameras for photogrammetry and plant imaging."""

__version__ = "0.1.0"
