"""relcomm: validate, send and confirm release communications."""

__version__ = "0.1.0"
