"""gram-ray: train and serve generative reward models that reason (GRAM, GRAM-R2) on Ray."""

__version__ = "0.1.0"
