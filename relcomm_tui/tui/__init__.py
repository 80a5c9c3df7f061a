"""The Textual application. Only modules under this package import Textual or Rich."""
