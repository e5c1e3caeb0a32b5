"""Config: the commented default YAML shipped with the package, merged with a user YAML and key=value overrides."""
from __future__ import annotations

import copy
import importlib.resources as ir
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    pass


FREE_MAPPINGS = ("task_weights",)  # mappings replaced whole by a user's value, not merged key by key


def _packaged(name: str):
    """The packaged config file `configs/<name>.yaml` (a Traversable; may not exist)."""
    return ir.files("maskgate") / "configs" / f"{name}.yaml"


def default_config() -> dict:
    return yaml.safe_load(_packaged("default").read_text())


def packaged_configs() -> list[str]:
    """Names of the config files shipped with the package (usable as `--config NAME`)."""
    return sorted(p.name[:-5] for p in (ir.files("maskgate") / "configs").iterdir() if p.name.endswith(".yaml"))


def config_text(path: str | Path) -> tuple[str, str]:
    """(YAML text, where it came from) for a file path or the name of a packaged config (e.g. `gpu`)."""
    p = Path(path)
    if p.is_file():
        return p.read_text(), str(p)
    if str(path) in packaged_configs():
        return _packaged(str(path)).read_text(), f"maskgate/configs/{path}.yaml"
    raise ConfigError(f"{path}: no such config file, and not a packaged config name "
                      f"(packaged: {', '.join(packaged_configs())})")


def _merge(base: dict, override: dict, where: str, prefix: str = "") -> dict:
    out = copy.deepcopy(base)
    for k, v in override.items():
        name = f"{prefix}{k}"
        if k not in base:
            raise ConfigError(f"{where}: unknown config key {name!r} (known: {', '.join(sorted(base))})")
        if isinstance(base[k], dict) and k not in FREE_MAPPINGS:
            if not isinstance(v, dict):
                raise ConfigError(f"{where}: {name!r} must be a mapping")
            out[k] = _merge(base[k], v, where, name + ".")
        else:
            out[k] = v
    return out


# Keys added after runs had been saved, each with the value that behaves as maskgate did before the key
# existed (not necessarily today's default), so that an older run resumed continues as it started.
ADDED_KEYS: dict[str, Any] = {"data.duplicate_near": 0, "train.trunk_runtime": "torch"}
TRUNK_RUNTIMES = ("auto", "torch", "onnxruntime")  # train.trunk_runtime (train/trunk_runner.py)


def complete_saved(saved: dict) -> dict:
    """A config saved in a run folder, completed with the keys it predates (ADDED_KEYS, else the default)."""
    cfg = _merge(default_config(), saved, "the saved config")  # also checks the saved keys and mappings
    for key, value in ADDED_KEYS.items():
        *parents, leaf = key.split(".")
        was, now = saved, cfg
        for p in parents:
            was, now = was.get(p, {}), now[p]
        if leaf not in was:
            now[leaf] = value
    validate(cfg)
    return cfg


def parse_override(item: str) -> dict:
    """'train.epochs=3' -> {'train': {'epochs': 3}}; values are parsed as YAML (true/false/numbers/lists)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not key=value")
    key, _, raw = item.partition("=")
    value: Any = yaml.safe_load(raw) if raw.strip() else None
    node: dict = {}
    cur = node
    parts = key.strip().split(".")
    for p in parts[:-1]:
        cur[p] = {}
        cur = cur[p]
    cur[parts[-1]] = value
    return node


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, base: dict | None = None) -> dict:
    cfg = base if base is not None else default_config()
    if path:
        text, where = config_text(path)
        user = yaml.safe_load(text) or {}
        if not isinstance(user, dict):
            raise ConfigError(f"{where}: expected a YAML mapping")
        cfg = _merge(cfg, user, where)
    for item in overrides or []:
        cfg = _merge(cfg, parse_override(item), f"override {item!r}")
    validate(cfg)
    return cfg


def validate(cfg: dict) -> None:
    t, m = cfg["train"], cfg["model"]
    checks = [
        (isinstance(t["epochs"], int) and t["epochs"] >= 1, "train.epochs must be an integer >= 1"),
        (t.get("seed") is None or isinstance(t["seed"], int), "train.seed must be an integer or null"),
        (isinstance(t["batch_size"], int) and t["batch_size"] >= 1, "train.batch_size must be an integer >= 1"),
        (isinstance(t["views"], int) and t["views"] >= 1, "train.views must be an integer >= 1"),
        (isinstance(t["cache_features"], bool), "train.cache_features must be true or false"),
        (t.get("trunk_runtime", "auto") in TRUNK_RUNTIMES,
         "train.trunk_runtime must be auto, torch or onnxruntime"),
        (isinstance(t["tune_age_bias"], bool), "train.tune_age_bias must be true or false"),
        (isinstance(m["input_size"], int) and m["input_size"] >= 32, "model.input_size must be an integer >= 32"),
        (t["age_balance"] in ("none", "sqrt", "inverse"), "train.age_balance must be none, sqrt or inverse"),
        (isinstance(t["gender_by_age"], list) and len(t["gender_by_age"]) == 3
         and all(isinstance(v, (int, float)) and v > 0 for v in t["gender_by_age"]),
         "train.gender_by_age must be three weights > 0, for the age bands <30, 30-59, >=60, e.g. [1, 1, 3]"),
        (isinstance(t["class_balance"], dict) and set(t["class_balance"]) <= {"mask", "gender"}
         and all(v in ("none", "sqrt", "inverse") for v in t["class_balance"].values()),
         "train.class_balance must map mask / gender to none, sqrt or inverse"),
        (isinstance(t["drop_ages"], list) and all(isinstance(r, list) and len(r) == 2 and r[0] <= r[1]
                                                  for r in t["drop_ages"]),
         "train.drop_ages must be a list of [low, high] age ranges, e.g. [[57, 59]]"),
        (isinstance(t["old_age_from"], int) and 30 < t["old_age_from"] <= 60,
         "train.old_age_from must be a whole age in 31..60"),
        (t["sampler"] in (None, "balanced"), "train.sampler must be null or balanced"),
        (t["mix"] in (None, "cutmix_half", "mixup"), "train.mix must be null, cutmix_half or mixup"),
        (0 <= float(t["mix_prob"]) <= 1 and 0 <= float(t["erase"]) <= 1,
         "train.mix_prob and train.erase must be probabilities (0..1)"),
        (t["mix_age_bands"] is None or (isinstance(t["mix_age_bands"], list)
                                        and set(t["mix_age_bands"]) <= {0, 1, 2}),
         "train.mix_age_bands must be null or a list of age bands 0, 1, 2"),
        (t["balance_by"] in ("class18", "age_band", "mask", "gender")
         or (isinstance(t["balance_by"], str) and t["balance_by"].startswith("group:") and len(t["balance_by"]) > 6),
         "train.balance_by must be class18, age_band, mask, gender or group:COLUMN (a person group column of the "
         "data, e.g. group:race, or group:source)"),
        (float(t["balance_power"]) >= 0 and float(t["oversample_old"]) > 0,
         "train.balance_power must be >= 0 and train.oversample_old > 0"),
        (0 < cfg["data"]["val_fraction"] < 1, "data.val_fraction must be in (0, 1)"),
        (isinstance(cfg["data"]["duplicate_near"], int) and 0 <= cfg["data"]["duplicate_near"] <= 8,
         "data.duplicate_near must be a whole number of bits in 0..8 (0 = identical photos only)"),
        (float(t["lr"]) > 0, "train.lr must be > 0"),
        (m["head"] in ("multi", "deep", "class18"), "model.head must be multi, deep or class18"),
        (isinstance(m["tta"], bool) or m["tta"] in ("off", "on", "auto"),  # YAML reads bare off / on as bools
         "model.tta must be off, on or auto"),
        (0 < float(m["tta_below"]) <= 1, "model.tta_below must be a probability in (0, 1]"),
        (m["unfreeze_at"] is None or (isinstance(m["unfreeze_at"], int) and m["unfreeze_at"] >= 1),
         "model.unfreeze_at must be null or an epoch >= 1"),
        (not m["unfreeze_at"] or (not t["cache_features"] and int(m["freeze_blocks"]) > 0),
         "model.unfreeze_at needs train.cache_features: false (cached trunk outputs cannot be trained) and "
         "model.freeze_blocks > 0"),
        (0 < float(m["unfreeze_lr_scale"]) <= 10, "model.unfreeze_lr_scale must be in (0, 10]"),
        (isinstance(t["optimizer"], str) and t["optimizer"], "train.optimizer must be a timm optimiser name, e.g. adamw"),
        (t["scheduler"] in ("onecycle", "cosine", "step", "plateau", "none"),
         "train.scheduler must be onecycle, cosine, step, plateau or none"),
        (isinstance(t["early_stop"], int) and t["early_stop"] >= 0, "train.early_stop must be a whole number >= 0"),
        (isinstance(t["swa_epochs"], int) and t["swa_epochs"] >= 0, "train.swa_epochs must be a whole number >= 0"),
        (0 < float(t["swa_lr"]) <= 10, "train.swa_lr must be in (0, 10] (a share of train.lr)"),
        (isinstance(t["swa_bn_batches"], int) and t["swa_bn_batches"] >= 1,
         "train.swa_bn_batches must be a whole number >= 1"),
        (isinstance(t["step_epochs"], int) and t["step_epochs"] >= 1, "train.step_epochs must be a whole number >= 1"),
        (0 < float(t["decay_rate"]) <= 1, "train.decay_rate must be in (0, 1]"),
    ]
    states, kinds = cfg["synth"]["states"], cfg["synth"]["incorrect_kinds"]
    checks += [
        (all(isinstance(v, int) and v >= 0 for v in states.values()) and sum(states.values()) >= 1,
         "synth.states must be whole numbers >= 0 (rows per photo in each mask class), not all 0"),
        (all(isinstance(v, (int, float)) and v >= 0 for v in kinds.values()) and sum(kinds.values()) > 0,
         "synth.incorrect_kinds must be weights >= 0, not all 0"),
        (isinstance(cfg["data"]["extra"], list), "data.extra must be a list of folders or {path: ...} entries"),
        (str(cfg["track"].get("wandb_mode") or "offline") in ("offline", "online", "disabled"),
         "track.wandb_mode must be offline (no account, no network), online or disabled"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)
    from .faces.crop import CropSettings

    try:  # the face section: checked where the settings are made (faces/crop.py), so in one place
        CropSettings.from_config(cfg["face"])
    except ValueError as e:
        raise ConfigError(str(e)) from None
    from .data.sources import SourceSpec

    try:
        specs = [SourceSpec.parse(e) for e in cfg["data"]["extra"]]
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if sum(s.share or 0 for s in specs) >= 1:
        raise ConfigError("data.extra shares add up to 1 or more: leave room for the main layout")
    names = ["main"] + [s.name for s in specs]
    if len(set(names)) < len(names):
        raise ConfigError(f"data.extra: source names must differ from each other and from 'main' (got {names}); "
                          "give entries a name: {path: DIR, name: NAME}")


def dump_config(cfg: dict, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg, sort_keys=False))
