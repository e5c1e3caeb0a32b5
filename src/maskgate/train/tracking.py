"""Experiment tracking of a run (config `track`): TensorBoard logs in the run folder, and pictures.

Per epoch: the training loss, learning rate and every validation score (macro F1, per-task accuracy and
F1, per source). At the end: the validation confusion matrix and a grid of the validation images the
model got most wrong (lowest probability of the true class), each with its true and predicted class;
both also as PNGs in the run folder (confusion_val.png, most_wrong_val.png). `tensorboard --logdir RUN/tb`.

MLflow (`track.mlflow: true`), offline by default: the same scores per epoch, the resolved config as
parameters, the pictures, summary.json and best.pt as artifacts, in a file store in the run folder
(RUN/mlruns; `mlflow ui --backend-store-uri RUN/mlruns`), or at `track.mlflow_uri` (sqlite:///..., a
server). A resumed run goes on in the same MLflow run (its id is kept in RUN/mlflow_run_id).

Weights & Biases (`track.wandb: true`), offline by default (no account, no network): the config, every
epoch's scores, the confusion matrix and the most-wrong grid as images, in RUN/wandb/offline-run-*
(`wandb sync RUN/wandb/offline-run-*` uploads it later; `track.wandb_mode: online` logs live). A resumed run
goes on under the same W&B run id (kept in RUN/wandb_run_id), each session in its own offline folder.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ..labels import AGE_NAMES, AgeBand, decode

_MASK_SHORT, _GENDER_SHORT = ("mask", "wrong", "none"), ("M", "F")


def short_name(cls: int) -> str:
    """'mask F 30-59': a class in a tile's width."""
    m, g, a = decode(int(cls))
    return f"{_MASK_SHORT[m]} {_GENDER_SHORT[g]} {AGE_NAMES[AgeBand(a)]}"


def flat_params(cfg: dict, prefix: str = "") -> dict[str, str]:
    """{'train.lr': '0.002', ...}: a nested config as MLflow parameters."""
    out = {}
    for k, v in cfg.items():
        if isinstance(v, dict) and k != "task_weights":
            out.update(flat_params(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = str(v)[:500]
    return out


class MlflowLog:
    """One MLflow run through an explicit client (no process-wide active run)."""

    def __init__(self, out: Path, uri: str | None, experiment: str, params: dict[str, str]):
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        if not uri:
            uri = (out / "mlruns").resolve().as_uri()
            # MLflow 3 keeps its file store in maintenance mode behind this switch; it is what works offline
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=uri)
        exp = self.client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
        id_file = out / "mlflow_run_id"
        if id_file.is_file():  # resumed: the same MLflow run goes on
            self.run_id = id_file.read_text().strip()
        else:
            self.run_id = self.client.create_run(exp_id, run_name=out.name).info.run_id
            id_file.write_text(self.run_id)
            items = [Param(k, v) for k, v in params.items()]
            for i in range(0, len(items), 100):
                self.client.log_batch(self.run_id, params=items[i:i + 100])
        self.uri = uri

    def metrics(self, values: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, ts, step) for k, v in values.items()])

    def artifacts(self, paths: list[Path]) -> None:
        for p in paths:
            if p.is_file():
                self.client.log_artifact(self.run_id, str(p))

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class WandbLog:
    """One W&B run, used through its run object (wandb itself also keeps it as `wandb.run`)."""

    def __init__(self, out: Path, project: str, mode: str, config: dict):
        import uuid

        import wandb

        id_file = out / "wandb_run_id"
        run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:8]
        self.run = wandb.init(project=project, name=out.name, id=run_id, resume="allow", dir=str(out), mode=mode,
                              config=config, settings=wandb.Settings(silent=True))
        id_file.write_text(run_id)
        self.run_id, self.dir = run_id, Path(self.run.dir).parent

    def metrics(self, values: dict, step: int) -> None:
        self.run.log(values, step=step)

    def images(self, paths: dict[str, Path], step: int) -> None:
        import wandb

        self.run.log({k: wandb.Image(str(p)) for k, p in paths.items() if p.is_file()}, step=step)

    def close(self) -> None:
        self.run.finish()


class RunTracker:
    def __init__(self, out: Path, enabled: bool = True, log: Callable[[str], None] = print, track: dict | None = None,
                 config: dict | None = None):
        self.out, self.writer, self.mlflow, self.wandb = Path(out), None, None, None
        track = track or {}
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log("tensorboard is not installed: no TensorBoard logs (pip install tensorboard)")
            else:
                self.writer = SummaryWriter(str(self.out / "tb"))
        if track.get("mlflow"):
            import importlib.util

            if importlib.util.find_spec("mlflow") is None:
                raise ValueError("track.mlflow: mlflow is not installed (pip install mlflow-skinny)")
            self.mlflow = MlflowLog(self.out, track.get("mlflow_uri"), str(track.get("mlflow_experiment", "maskgate")),
                                    flat_params(config or {}))
            log(f"MLflow run {self.mlflow.run_id} at {self.mlflow.uri}")
        if track.get("wandb"):
            import importlib.util

            if importlib.util.find_spec("wandb") is None:
                raise ValueError("track.wandb: wandb is not installed (pip install wandb)")
            mode = str(track.get("wandb_mode") or "offline")
            self.wandb = WandbLog(self.out, str(track.get("wandb_project") or "maskgate"), mode, config or {})
            log(f"W&B run {self.wandb.run_id} ({mode}) in {self.wandb.dir}")

    def epoch(self, metrics: dict) -> None:
        step = int(metrics["epoch"])
        scalars = {("val/" + k[4:] if k.startswith("val_") else "train/" + k): float(v) for k, v in metrics.items()
                   if k not in ("epoch", "seconds") and isinstance(v, (int, float))}
        if self.mlflow is not None:
            self.mlflow.metrics({k.replace("/", "_"): v for k, v in scalars.items()}, step)
        if self.wandb is not None:
            self.wandb.metrics(scalars, step)
        if self.writer is None:
            return
        for tag, v in scalars.items():
            self.writer.add_scalar(tag, v, step)
        self.writer.flush()

    def finish(self, y_true: np.ndarray, y_pred: np.ndarray, wrong_grid: np.ndarray | None, step: int) -> None:
        from ..evaluate import plot_confusion

        plot_confusion(y_true, y_pred, self.out / "confusion_val.png", "validation (after age-band offsets)")
        if wrong_grid is not None:
            cv2.imwrite(str(self.out / "most_wrong_val.png"), wrong_grid[..., ::-1])
        if self.wandb is not None:
            self.wandb.images({"val/confusion": self.out / "confusion_val.png",
                               "val/most_wrong": self.out / "most_wrong_val.png"}, step)
        if self.writer is not None:
            cm = cv2.imread(str(self.out / "confusion_val.png"))[..., ::-1]
            self.writer.add_image("val/confusion", np.ascontiguousarray(cm), step, dataformats="HWC")
            if wrong_grid is not None:
                self.writer.add_image("val/most_wrong", wrong_grid, step, dataformats="HWC")
            self.writer.flush()

    def close(self) -> None:
        """End of the run: MLflow gets the pictures, summary.json and the model as artifacts."""
        if self.writer is not None:
            self.writer.close()
        if self.mlflow is not None:
            self.mlflow.artifacts([self.out / n for n in ("metrics.png", "confusion_val.png", "most_wrong_val.png",
                                                          "summary.json", "config.yaml", "best.pt")])
            self.mlflow.close()
        if self.wandb is not None:
            self.wandb.close()


def most_wrong(probs: np.ndarray, true: np.ndarray, k: int = 16) -> np.ndarray:
    """Rows with the lowest probability of their true class, worst first."""
    return np.argsort(probs[np.arange(len(true)), true], kind="stable")[:k]


def label_grid(images: list[np.ndarray], true: list[int], pred: list[int], p_true: list[float],
               cols: int = 4, tile: int = 200) -> np.ndarray:
    """Tiles with 'true ...' / 'pred ... (p)' under each image; RGB uint8."""
    band = 34
    rows = -(-len(images) // cols)
    grid = np.full((rows * (tile + band), cols * tile, 3), 255, np.uint8)
    for i, (im, t, p_, pt) in enumerate(zip(images, true, pred, p_true)):
        r, c = divmod(i, cols)
        y, x = r * (tile + band), c * tile
        grid[y:y + tile, x:x + tile] = cv2.resize(im, (tile, tile), interpolation=cv2.INTER_AREA)
        cv2.putText(grid, f"true {short_name(t)} p={pt:.2f}", (x + 3, y + tile + 13), cv2.FONT_HERSHEY_SIMPLEX,
                    0.38, (20, 120, 20), 1, cv2.LINE_AA)
        cv2.putText(grid, f"pred {short_name(p_)}", (x + 3, y + tile + 28), cv2.FONT_HERSHEY_SIMPLEX, 0.38,
                    (200, 30, 30), 1, cv2.LINE_AA)
    return grid
