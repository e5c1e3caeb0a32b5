"""Models: backbone registry with offline packaged weights, heads, and the saved classifier bundle."""
