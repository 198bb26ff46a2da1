"""hwaksan (확산): diffusion and flow generative models on PyTorch."""

__version__ = "0.1.0"
