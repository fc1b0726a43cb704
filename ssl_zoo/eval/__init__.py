"""Evaluation: the common linear probe (and, with the text and speech methods, more)."""
