"""modelupdate: replace a deployed classifier with a better one without regressions (ELODI)."""

__version__ = "0.1.0"
