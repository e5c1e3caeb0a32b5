"""Where-to-look options: the detection settings a user may change after training, in one table.

Each entry makes a keyword of `CropSettings.with_detection` and `Predictor`, and a flag of `maskgate
predict`, `export` (saved into the bundle), `serve` and `watch`. They decide where faces are found and which
is a photo's subject, never how a found face is cut, so changing them cannot make the crops drift from
training. Kept free of heavy imports: the command line builds its flags from it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DetectionOption:
    """A where-to-look setting that may change after training: one entry makes the keyword of
    `CropSettings.with_detection` and `Predictor`, and the flag of predict / export / serve / watch."""

    name: str  # keyword, and the flag with "-" for "_"
    field: str  # the CropSettings field (face.<field> in the config)
    kind: type
    metavar: str
    zero_off: bool  # 0 turns the option off (None in the settings)
    help: str  # what it does; the CLI adds the default or "save as the model's own"

    @property
    def flag(self) -> str:
        """The command-line flag: --det-size for det_size."""
        return "--" + self.name.replace("_", "-")


DETECTION_OPTIONS: tuple[DetectionOption, ...] = (
    DetectionOption("det_size", "det_max_side", int, "PX", False,
                    "detect faces on a copy this large (longer side; the shipped model: 256). Larger finds small "
                    "faces in big photos or camera frames, more slowly; crops are unchanged"),
    DetectionOption("weak_score", "weak_score", float, "S", True,
                    "when no face reaches the detection threshold, take the best one scoring at least S (small "
                    "and masked faces score low) instead of the centre-square fallback (the shipped model: 0.2); "
                    "0 = off"),
    DetectionOption("det_retry", "det_retry_side", int, "PX", True,
                    "when no face reaches the detection threshold on the detection copy of a larger photo, or "
                    "that look is doubtful (--det-retry-below), look again on a copy up to this large (the "
                    "shipped model: 1280); 0 = off"),
    DetectionOption("det_retry_below", "det_retry_below", float, "S", True,
                    "also look again closer when the first look's best face scores under S, it found several "
                    "faces, or its one face is at a side (the shipped model: 0.9); 0 = only when no face was "
                    "found"),
    DetectionOption("subject_centre", "subject_centre", float, "W", True,
                    "how much being central counts in choosing a photo's subject (the first face, and the "
                    "answer in the eval layout): the face scoring highest on sqrt(area / largest area) - W x "
                    "offset from the centre (the shipped model: 0.5); 0 = the largest face"),
    DetectionOption("subject_confidence", "subject_confidence", float, "C", False,
                    "in choosing the subject, subtract C x (best detection score - the face's), so a large "
                    "doubtful detection does not outrank a clear face (the shipped model: 3); 0 = off"),
)
