"""Mask synthesis: draw masks on labelled faces (masks.py) and write such sets to disk (writer.py)."""
