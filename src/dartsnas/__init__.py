"""dartsnas: differentiable architecture search (DARTS and descendants) with PyTorch."""
__version__ = "0.1.0"
