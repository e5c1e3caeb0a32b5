"""Training: augmentation presets, losses, feature caches, the loop, and the recipe that wires them."""
