"""Faces: detect (5 landmarks), align and crop, identically at train and predict time; cache crops."""
