"""physgen: physics-informed deep generative modeling of scientific fields."""

__all__ = ["__version__"]

__version__ = "0.1.0"
