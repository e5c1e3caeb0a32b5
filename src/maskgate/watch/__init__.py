"""`maskgate watch`: a camera or video, faces followed across frames, one event per person and mask state."""
