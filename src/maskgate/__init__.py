"""maskgate: is a mask worn correctly, incorrectly or not at all, and the wearer's gender and age band.

Pipeline (one sub-package per step):
    data/   read and check the competition layouts, decode images, split by person
    faces/  detect, align and crop the face the same way at train and predict time, cache crops
    models/ backbone registry (offline packaged weights), heads, the saved classifier bundle
    train/  losses, feature caches and the training loop (no paths, no CLI inside)
    predict.py   the prediction core used by the CLI (and later an API, video loop, batch job)
    evaluate.py  macro F1, per-task scores, per-class tables, confusion-matrix pictures
"""

__version__ = "0.1.0"
