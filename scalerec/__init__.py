"""scalerec: measure, fit and use scaling laws for transformer sequential recommenders."""

__version__ = "0.2.0"
