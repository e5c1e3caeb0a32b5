"""Command line: thin entry points over the library (train / predict / evaluate / demo)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import __version__


def _add_detection_flags(p: argparse.ArgumentParser, save: bool = False) -> None:
    """--det-size, --weak-score, ... from faces/options.py's DETECTION_OPTIONS (one table for predict, export,
    serve and watch). save: export writes the value into the bundle instead of using it for one run."""
    from .faces.options import DETECTION_OPTIONS

    g = p.add_argument_group("where faces are looked for (never how a found face is cut)")
    for o in DETECTION_OPTIONS:
        what = (f"save as the model's own face.{o.field}: {o.help}" if save
                else f"{o.help} [default: the model's face.{o.field}]")
        g.add_argument(o.flag, type=o.kind, metavar=o.metavar, help=what)


def _add_tta_flag(p: argparse.ArgumentParser) -> None:
    """--tta for predict, serve and watch: the mirror image too (default: the model's own setting)."""
    p.add_argument("--tta", nargs="?", const="on", choices=("off", "on", "auto"),
                   help="the mirror image too, its class distribution averaged in: on (every face, 2x the "
                        "network's time), auto (only faces whose top class probability is under the model's "
                        "tta_below), off; --tta alone = on [default: the model's own; the shipped model: auto]")


def _detection_args(a) -> dict:
    """The detection flags given (None = the model's own), as `Predictor` / `with_detection` keywords."""
    from .faces.options import DETECTION_OPTIONS

    return {o.name: getattr(a, o.name, None) for o in DETECTION_OPTIONS}


def _train(a) -> int:
    from .config import load_config
    from .train.recipe import run_training

    cfg = load_config(a.config, a.overrides)
    if a.extra:  # --extra DIR (repeatable) adds to the config's data.extra
        cfg = load_config(overrides=[f"data.extra={json.dumps(list(cfg['data']['extra']) + a.extra)}"], base=cfg)
    summary = run_training(a.data_dir, a.out, cfg, resume=a.resume)
    if summary:
        v = summary["val_with_age_bias"]
        print(json.dumps({"run": str(a.out), "val_macro_f1": round(v["macro_f1"], 4),
                          "seconds": summary["seconds"]}))
    return 0


def _kfold(a) -> int:
    from .config import load_config
    from .train.kfold import run_kfold

    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    res = run_kfold(a.data_dir, a.out, load_config(a.config, a.overrides), a.folds, log=log)
    summary = {"out": str(a.out), "mean_macro_f1": round(res["mean_macro_f1"], 4),
               "std_macro_f1": round(res["std_macro_f1"], 4), "oof_macro_f1": round(res["oof"]["macro_f1"], 4)}
    if a.soup:  # the folds as one network (a soft vote needs them all: `predict --model OUT`)
        from .models.soup import soup_models

        folders = a.calibrate or [a.data_dir]
        log(f"soup of {a.folds} folds, REPAIR on photos of {', '.join(map(str, folders))}")
        summary["soup"] = soup_models([Path(a.out) / f"fold{k}" for k in range(a.folds)], Path(a.out) / "soup.pt",
                                      calibrate=folders, log=log)["out"]
    print(json.dumps(summary))
    return 0


def _seeds(a) -> int:
    from .config import load_config
    from .train.seeds import run_seeds, seed_list

    cfg = load_config(a.config, a.overrides)
    res = run_seeds(a.data_dir, a.out, cfg, seed_list(a.seeds, cfg), a.calibrate or None,
                    log=lambda m: print(m, file=sys.stderr), val_scores=not a.no_val_scores)
    print(json.dumps({"out": str(a.out), "soup": res["soup"]["out"], "mean_macro_f1": round(res["mean_macro_f1"], 4),
                      "std_macro_f1": round(res["std_macro_f1"], 4), "seconds": res["seconds_this_call"]}))
    return 0


def _inspect(a) -> int:
    from .inspect_data import inspect_layout

    summary = inspect_layout(a.data_dir, a.out, near=a.near, workers=a.workers)
    print(json.dumps(summary, indent=2))
    print(f"report: {Path(a.out) / 'index.html'}", file=sys.stderr)
    return 0


def _noise(a) -> int:
    from .label_noise import noise_report

    summary = noise_report(a.oof, a.out, top=a.top)
    print(json.dumps(summary, indent=2))
    print(f"report: {Path(a.out) / 'index.html'}", file=sys.stderr)
    return 0


def _predict(a) -> int:
    from tqdm import tqdm

    from .batch import Journal
    from .data.images import read_image_sized
    from .data.layout import gather_inputs, looks_like_eval, read_eval
    from .predict import Predictor, annotate, rescale_boxes

    out = Path(a.out)
    eval_mode = a.data_dir is not None and looks_like_eval(Path(a.data_dir))
    table = None
    if eval_mode:
        table = read_eval(a.data_dir, verify_images=False)
        paths = [Path(p) for p in table["path"]]
    else:
        inputs = ([a.data_dir] if a.data_dir else []) + a.inputs
        if not inputs:
            raise FileNotFoundError("nothing to predict: give --data-dir and/or image files or folders")
        paths = gather_inputs(inputs)
    all_faces = a.all_faces if a.all_faces is not None else not eval_mode
    # what decides the answers: a resumed job must be the same job (batch.Journal checks it), and the shards of
    # one job must be of the same job (shards.merge_shards checks it)
    job = {"models": [str(Path(m).resolve()) for m in a.model] if a.model else ["the shipped default"],
           "tta": a.tta, "vote": a.vote, "all_faces": all_faces, "output": "eval" if eval_mode else "rows",
           **{k: v for k, v in _detection_args(a).items() if v is not None}}
    all_paths, shard, merge_into = paths, None, None
    if a.shard:  # this process classifies photos k, k+n, ... of the job (`maskgate merge` joins the parts)
        from .shards import parse_shard, part_path, shard_from_env, shard_indices

        if a.shard == "auto":  # the launcher says which: each writes OUT.shardKofN.csv; under torchrun shard 0 merges
            k, n, launcher = shard_from_env()
            shard, merge_into, out = (k, n), (out if launcher == "torchrun" and k == 0 else None), part_path(out, k, n)
        else:
            shard = parse_shard(a.shard)
        idx = shard_indices(len(paths), *shard)
        paths = [paths[i] for i in idx]
        table = table.iloc[list(idx)] if table is not None else None
    journal = Journal.open(out, job | ({"shard": "%d/%d" % shard} if shard else {}), resume=a.resume)
    todo = journal.todo(paths)
    if len(todo) < len(paths):
        print(f"resuming: {len(paths) - len(todo)} of {len(paths)} image(s) done by the interrupted run "
              f"({journal.rows_path})", file=sys.stderr)
    t0 = time.time()  # inputs are checked first: a typo fails fast, before the model loads
    pred = Predictor(a.model, device=a.device, batch_size=a.batch_size, workers=a.workers, tta=a.tta, vote=a.vote,
                     **_detection_args(a))
    print(f"model loaded in {time.time() - t0:.1f}s; {len(todo)} image(s)", file=sys.stderr)
    ann_dir = Path(a.annotate) if a.annotate else None
    if ann_dir:
        ann_dir.mkdir(parents=True, exist_ok=True)
    t1 = time.time()
    try:
        for p, results, err in tqdm(journal.record(pred.predict_files(todo, all_faces=all_faces)), total=len(todo),
                                    desc="predict", unit="img", mininterval=2, disable=False):
            if err:
                print(f"maskgate: skipped {err}", file=sys.stderr)
                continue
            if ann_dir:
                import cv2
                img, full = read_image_sized(p)  # boxes are in the photo's own pixels; a big JPEG reads smaller
                img = annotate(img, rescale_boxes(results, full, img.shape[:2]))
                cv2.imwrite(str(ann_dir / (p.stem + ".jpg")), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    except KeyboardInterrupt:
        print(f"maskgate: interrupted; {len(journal.done)} of {len(paths)} image(s) done are kept in "
              f"{journal.rows_path}: the same command with --resume goes on from them", file=sys.stderr)
        raise
    rate = len(todo) / max(time.time() - t1, 1e-9)
    n_ok, n_err = journal.finish(paths, table)
    from .shards import record_path, write_record

    if shard:  # written last: a part with its record is whole
        rows = {str(Path(p)): journal.done.get(str(Path(p)), []) for p in paths}  # kept in memory after finish
        errors = [p for p, rs in rows.items() if any(r.get("error") for r in rs)]
        filled = [p for p, rs in rows.items() if not any(str(r.get("face")) == "0" and not r.get("error") for r in rs)]
        rec = write_record(out, job, *shard, all_paths, paths, errors,
                           list(table["ImageID"]) if table is not None else None, filled)
        print(f"shard {shard[0]}/{shard[1]}: {len(paths)} of {len(all_paths)} image(s); {rec} says which "
              f"(`maskgate merge --out ALL.csv` with every part joins them)", file=sys.stderr)
    else:
        record_path(out).unlink(missing_ok=True)  # a part's record left from an earlier sharded run
    if n_err:
        print(f"maskgate: {n_err} unreadable image(s)" + (" got the most frequent class" if eval_mode else "") +
              f"; listed in {out.with_suffix('.errors.csv')}", file=sys.stderr)
    print(f"wrote {out} ({n_ok} image(s), {n_err} error(s), {rate:.1f} img/s)", file=sys.stderr)
    if merge_into is not None:  # shard 0 of a torchrun job: the whole job's output, once every part is done
        from .shards import wait_and_merge

        res = wait_and_merge(merge_into, out, shard[1], log=lambda m: print(m, file=sys.stderr))
        print(f"merged {res['shards']} shards into {merge_into} ({res['photos']} image(s))", file=sys.stderr)
    return 1 if n_err and n_err == len(paths) else 0


def _merge(a) -> int:
    from .shards import merge_shards

    res = merge_shards(a.parts, a.out)
    print(json.dumps(res))
    return 0


def _evaluate(a) -> int:
    from .evaluate import evaluate_files

    from .groups import file_stem, format_report

    if a.min_group < 1:
        raise ValueError("--min-group must be >= 1")
    res = evaluate_files(a.pred, a.truth, a.report, a.groups, a.min_group)
    for name, rep in res.get("groups", {}).items():
        print(format_report(name, rep), file=sys.stderr)
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in res.items() if k != "groups"} |
                     ({"groups": res["groups"]} if "groups" in res else {}), indent=2))
    if a.report:
        extra = "".join(f", {a.report}/groups_{file_stem(n)}.csv/.png" for n in res.get("groups", {}))
        print(f"report: {a.report}/per_class.csv, {a.report}/confusion.png{extra}", file=sys.stderr)
    return 0


def _soup(a) -> int:
    from .models.soup import soup_models

    res = soup_models(a.model, a.out, a.weight or None, a.calibrate, a.calibrate_images, a.workers,
                      log=lambda m: print(m, file=sys.stderr))
    print(json.dumps(res))
    return 0


def _export(a) -> int:
    import numpy as np

    from .models.classifier import MaskClassifier

    if a.format == "onnx" and a.graph_only:
        raise ValueError("--graph-only is for --format torchscript (an ONNX file is always graph only)")

    model = MaskClassifier.load(a.model, eager=True)
    crop = model.preprocess.crop
    new = crop.with_detection(**_detection_args(a))
    if new != crop:  # where faces are looked for, saved as the bundle's own default; the crop is unchanged
        changed = {k: v for k, v in new.detection().items() if crop.detection()[k] != v}
        before = model.info.get("detection_changed_at_export", {})
        model.info = {**model.info, "detection_changed_at_export": {**before, **changed}}
        model.preprocess.crop = new
        print(f"detection settings now {new.detection()}", file=sys.stderr)
    if a.tta is not None or a.tta_below is not None:  # how predict runs the network, saved the same way
        import dataclasses

        pre = model.preprocess = dataclasses.replace(  # Preprocess checks the values
            model.preprocess, **{k: v for k, v in (("tta", a.tta), ("tta_below", a.tta_below)) if v is not None})
        model.info = {**model.info, "tta_changed_at_export": {"tta": pre.tta, "tta_below": pre.tta_below}}
        print(f"mirror-image setting now tta={pre.tta} (tta_below {pre.tta_below})", file=sys.stderr)
    if a.format == "onnx":
        from .models.onnx_export import export_checked

        extra = None
        if a.check_images:  # the user's own photos too
            from .data.images import read_image
            from .data.layout import gather_inputs
            from .faces.crop import FaceCropper

            cropper = FaceCropper(model.preprocess.crop)
            extra = np.stack([cropper.crop_face(im, f).image for im in map(read_image, gather_inputs(a.check_images))
                              for f in cropper.faces(im, True)])
        # against what predict runs with PyTorch
        check = export_checked(model, a.out, reference=MaskClassifier.load(a.model), extra_crops=extra)
        print(f"wrote {a.out} ({Path(a.out).stat().st_size / 1e6:.1f} MB); onnxruntime vs PyTorch on "
              f"{check['crops']} real face crops: largest probability difference {check['max_prob_diff']:.2e}, "
              f"same class {check['class_agreement']:.1%}", file=sys.stderr)
        return 0
    model.save(a.out, script=True, weights=not a.graph_only)
    print(f"wrote {a.out} ({Path(a.out).stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    return 0


def _serve(a) -> int:
    from .faces.crop import CropSettings
    from .serve.app import ServeSettings, serve

    detection = {k: v for k, v in _detection_args(a).items() if v is not None}
    CropSettings.check_options(**detection)  # a bad flag fails here, not in the model-loading thread
    settings = ServeSettings(max_bytes=a.max_bytes, max_pixels=a.max_pixels, threads=a.threads,
                             max_queue=a.max_queue, timeout_s=a.timeout, detection=detection, tta=a.tta)
    model = None if not a.model else (a.model[0] if len(a.model) == 1 else a.model)
    serve(model, a.host, a.port, a.workers, settings)
    return 0


def _watch(a) -> int:
    from .predict import Predictor
    from .watch.loop import WatchOptions, named_sources, parse_zone, split_source, watch, watch_many

    opt = WatchOptions(realtime=not a.all_frames, settle=a.settle, min_frames=a.min_frames, max_gap_s=a.max_gap,
                       max_seconds=a.max_seconds, reconnect_s=a.reconnect,
                       zone=parse_zone(a.zone) if a.zone else None, min_face=a.min_face)
    if a.settle < 1 or a.min_frames < 1 or a.max_gap <= 0 or a.reconnect < 0:
        raise ValueError("--settle and --min-frames must be >= 1, --max-gap > 0, --reconnect >= 0")
    if a.post_snapshot and not a.post:
        raise ValueError("--post-snapshot sends the face with each --post event: give --post URL too")
    if len(a.source) > 1:  # names checked before the model loads
        named_sources(a.source)
    pred = Predictor(a.model or None, device=a.device, workers=1, tta=a.tta, **_detection_args(a))
    if len(a.source) == 1:
        name, source = split_source(a.source[0])
        summary = watch(source, pred, opt, a.out, a.events, post=a.post, post_snapshot=a.post_snapshot, name=name)
        print(json.dumps(summary, indent=2))
        return 0
    summary = watch_many(a.source, pred, opt, a.out, a.events, post=a.post, post_snapshot=a.post_snapshot)
    print(json.dumps(summary, indent=2))
    return 1 if summary["errors"] == len(a.source) else 0


def _synth(a) -> int:
    from .synth.writer import synthesize

    res = synthesize(a.src, a.out, layout=a.layout, per_person=a.per_person, seed=a.seed, workers=a.workers,
                     limit=a.limit, resume=a.resume)
    print(json.dumps(res))
    if res["skipped"]:
        print(f"maskgate: {res['skipped']} photo(s) skipped, listed in {Path(a.out) / 'synth_problems.csv'}",
              file=sys.stderr)
    return 0 if res["people"] else 1


def _adapt(a) -> int:
    from .adapt import run_adapt

    res = run_adapt(a.model, a.data, a.out, a.objective, a.draw_masks, a.folds, a.tta, a.seed, a.sure)
    print(json.dumps(res))
    return 0


def _demo(a) -> int:
    from .demo import run_demo

    run_demo(Path(a.out), a.model)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .config import packaged_configs

    p = argparse.ArgumentParser(prog="maskgate", description=__doc__)
    p.add_argument("--version", action="version", version=f"maskgate {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="train on the competition train/ layout")
    t.add_argument("--data-dir", required=True, help="train/ folder (train.csv + images/)")
    t.add_argument("--out", required=True, help="run folder to create (or to continue with --resume)")
    named = ", ".join(n for n in packaged_configs() if n != "default")  # listed from the package: never stale
    t.add_argument("--config", help=f"YAML with any subset of the default config's keys, or a packaged config's name ({named})")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    t.add_argument("--extra", action="append", default=[], metavar="DIR",
                   help="an extra labelled face source (folder with labels.csv: path,age,gender[,groups]) of "
                        "unmasked photos; masks are drawn on them (config: data.extra, synth); repeatable")
    t.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. train.epochs=3 model.input_size=192")
    t.set_defaults(fn=_train)

    kf = sub.add_parser("kfold", help="train every person-level fold; out-of-fold predictions, mean +- std F1")
    kf.add_argument("--data-dir", required=True, help="train/ folder (train.csv + images/)")
    kf.add_argument("--out", required=True, help="folder for fold0..fold{K-1}, oof.csv, kfold.json (rerun: resumes)")
    kf.add_argument("--folds", type=int, default=5)
    kf.add_argument("--config", help="YAML or packaged config name, as train's")
    kf.add_argument("--soup", action="store_true",
                    help="also average the folds' weights into one network, OUT/soup.pt (REPAIR on --calibrate)")
    kf.add_argument("--calibrate", action="append", default=[], metavar="DIR",
                    help="training photo folder for the soup's REPAIR (repeatable; default: --data-dir)")
    kf.add_argument("overrides", nargs="*", metavar="key=value", help="as train's")
    kf.set_defaults(fn=_kfold)

    sd = sub.add_parser("seeds", help="train one config with several loop seeds and average them into one network")
    sd.add_argument("--data-dir", required=True, help="train/ folder (train.csv + images/)")
    sd.add_argument("--out", required=True, help="folder for seed<S>/ runs, soup.pt, seeds.json (rerun: resumes)")
    sd.add_argument("--seeds", default="3", help="a count (3: the config's seed and the next two) or a list (42,2,3)")
    sd.add_argument("--config", help="YAML or packaged config name, as train's (the 60-minute CPU recipe: best_fast)")
    sd.add_argument("--calibrate", action="append", default=[], metavar="DIR",
                    help="training photo folder for the soup's REPAIR (repeatable; default: --data-dir); "
                         "the validation people's photos are never drawn")
    sd.add_argument("--no-val-scores", action="store_true",
                    help="skip scoring every member and the soup on the validation photos (~40 s per model and "
                         "5,000 photos on 2 cores)")
    sd.add_argument("overrides", nargs="*", metavar="key=value", help="as train's")
    sd.set_defaults(fn=_seeds)

    ins = sub.add_parser("inspect", help="data report of a train layout (classes, ages, sizes, duplicates) as HTML")
    ins.add_argument("--data-dir", required=True, help="train/ folder (train.csv + images/)")
    ins.add_argument("--out", required=True, help="folder for index.html, the plots and duplicates.csv")
    ins.add_argument("--near", type=int, default=2, help="Hamming distance (of 64 bits) that counts as a near duplicate")
    ins.add_argument("--workers", type=int, default=2)
    ins.set_defaults(fn=_inspect)

    no = sub.add_parser("noise", help="training labels the out-of-fold predictions disagree with (cleanlab), as HTML")
    no.add_argument("--oof", required=True, help="a `maskgate kfold` folder (or its oof.csv)")
    no.add_argument("--out", required=True, help="folder for index.html, people.csv, photos.csv")
    no.add_argument("--top", type=int, default=60, help="rows shown per table in the page (the csvs have all)")
    no.set_defaults(fn=_noise)

    pr = sub.add_parser("predict", help="classify the eval/ layout, image files or folders")
    pr.add_argument("--data-dir", help="eval/ folder (info.csv + images/) or a plain folder of images")
    pr.add_argument("inputs", nargs="*", help="more image files or folders")
    pr.add_argument("--out", required=True, help="csv to write (ImageID,ans for the eval layout)")
    pr.add_argument("--model", action="append",
                    help="run folder, .pt or .onnx bundle (default: the model shipped with maskgate); give it more than "
                         "once, or a `maskgate kfold` folder (its folds), for a soft-vote ensemble (the models must use the same face detector settings)")
    pr.add_argument("--annotate", metavar="DIR", help="also write annotated copies of the images here")
    faces = pr.add_mutually_exclusive_group()
    faces.add_argument("--all-faces", dest="all_faces", action="store_true", default=None,
                       help="one row per detected face (default for plain images)")
    faces.add_argument("--main-face", dest="all_faces", action="store_false",
                       help="only the largest face (default for the eval layout)")
    _add_tta_flag(pr)
    pr.add_argument("--vote", choices=("soft", "hard"), default="soft",
                    help="several --model: soft (average of distributions) or hard (majority class) vote")
    _add_detection_flags(pr)
    pr.add_argument("--device", default="auto")
    pr.add_argument("--batch-size", type=int, default=0, help="0 = 8 on CPU, 64 on GPU")
    pr.add_argument("--workers", type=int, default=2, help="threads decoding and detecting faces")
    pr.add_argument("--resume", action="store_true",
                    help="go on from the photos an interrupted run of the same command finished (its <out>.partial.csv)")
    pr.add_argument("--shard", metavar="K/N",
                    help="classify only shard K of N of the photos (K = 0..N-1: photos K, K+N, ...), for one job "
                         "split over N processes or machines; `maskgate merge` joins the N csvs. auto: K and N "
                         "from torchrun (RANK, WORLD_SIZE; shard 0 then merges the parts into --out) or a Slurm "
                         "array, each part written as OUT.shardKofN.csv")
    pr.set_defaults(fn=_predict)

    mg = sub.add_parser("merge", help="join the csvs of `maskgate predict --shard K/N` into the one csv of the job")
    mg.add_argument("parts", nargs="+", help="every shard's csv (each with its .shard.json beside it)")
    mg.add_argument("--out", required=True, help="the csv one unsharded run writes (ImageID,ans for the eval layout)")
    mg.set_defaults(fn=_merge)

    e = sub.add_parser("evaluate", help="score a submission csv against the answers (18-class macro F1)")
    e.add_argument("--pred", required=True, help="ImageID,ans csv, or maskgate predict's csv of plain files")
    e.add_argument("--truth", required=True, help="ImageID,ans csv (eval answers), or a labels.csv (path,age,gender)")
    e.add_argument("--report", metavar="DIR", help="write per_class.csv, confusion.png, scores.json here")
    e.add_argument("--groups", action="append", default=[], metavar="[FILE:]COLUMN",
                   help="scores per group of COLUMN (of the truth csv, or mask / gender / age_band from the true "
                        "class) or of FILE's COLUMN (keyed by ImageID or path), with the best-worst gap; "
                        "repeatable; A+B crosses groups (race+gender+age_band). The truth may be an answers csv or "
                        "a source's labels.csv")
    e.add_argument("--min-group", type=int, default=1, metavar="N",
                   help="best-worst gaps only between groups of at least N images (all are in the tables)")
    e.set_defaults(fn=_evaluate)

    x = sub.add_parser("export", help="write a model bundle with a TorchScript graph (fast CPU predict) or as ONNX")
    x.add_argument("--model", required=True, help="run folder or .pt bundle")
    x.add_argument("--out", required=True, help=".pt file to write (.onnx with --format onnx)")
    x.add_argument("--format", choices=("torchscript", "onnx"), default="torchscript",
                   help="onnx: the classifier after the face crop for onnxruntime (predict / serve / watch without "
                        "PyTorch), checked against PyTorch on real face crops")
    x.add_argument("--check-images", nargs="*", default=[], metavar="PATH",
                   help="with --format onnx: photos or folders whose faces are added to the parity check")
    x.add_argument("--graph-only", action="store_true", help="drop the fp16 weights, keep only the graph (smallest)")
    x.add_argument("--tta", choices=("off", "on", "auto"),
                   help="save as the model's own mirror-image setting (what predict, serve and watch use unless "
                        "told otherwise): off, on, or auto (the mirror only for doubtful faces)")
    x.add_argument("--tta-below", type=float, metavar="P",
                   help="save as the model's own tta_below: with tta auto, the mirror image is used where the top "
                        "class probability is under this (default 0.8)")
    _add_detection_flags(x, save=True)
    x.set_defaults(fn=_export)

    so = sub.add_parser("soup", help="average the weights of models fine-tuned from one start into one network")
    so.add_argument("--model", action="append", required=True, help="run folder or .pt bundle; repeat (2 or more)")
    so.add_argument("--weight", action="append", type=float, default=[],
                    help="each model's share, in --model order (default: equal)")
    so.add_argument("--out", required=True, help=".pt bundle to write (graph only, as shipped)")
    so.add_argument("--calibrate", action="append", default=[], metavar="DIR",
                    help="photo folder (searched recursively; repeat to mix sources): rescale the soup's "
                         "normalised channels to its members' average statistics on these faces (REPAIR); "
                         "use training photos, never the ones you score on")
    so.add_argument("--calibrate-images", type=int, default=512, metavar="N",
                    help="photos drawn for --calibrate, spread evenly over its folders (default 512)")
    so.add_argument("--workers", type=int, default=2, help="threads cutting the calibration faces")
    so.set_defaults(fn=_soup)

    sv = sub.add_parser("serve", help="HTTP service + web page (camera or upload): POST /v1/predict, /metrics")
    sv.add_argument("--model", action="append", default=[],
                    help="run folder, .pt or .onnx bundle (default: the shipped model); repeat for a soft vote")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--workers", type=int, default=1, help="server processes, each with its own model")
    sv.add_argument("--threads", type=int, default=2, help="predictions run side by side in each process")
    sv.add_argument("--max-queue", type=int, default=32, help="predictions that may wait; beyond: 503 + Retry-After")
    sv.add_argument("--max-bytes", type=int, default=20 * 1024 * 1024, help="largest upload (bytes)")
    sv.add_argument("--max-pixels", type=int, default=50_000_000,
                    help="largest photo decoded (width x height); a JPEG over it is decoded at 1/2, 1/4 or 1/8 "
                         "of its size")
    sv.add_argument("--timeout", type=float, default=30.0, help="seconds before a prediction answers 503")
    _add_tta_flag(sv)
    _add_detection_flags(sv)
    sv.set_defaults(fn=_serve)

    wa = sub.add_parser("watch", help="a video file, camera or stream: follow faces, one event per person and mask state")
    wa.add_argument("--source", required=True, action="append",
                    help="video file, camera index (0) or stream URL (rtsp://...), optionally named: door1=rtsp://...; "
                         "repeat to watch several at once with one model (each gets its own _NAME files)")
    wa.add_argument("--out", help="annotated video to write (.mp4; several sources: out_NAME.mp4)")
    wa.add_argument("--events", help="events csv to write (snapshots go to a folder beside it; several sources: "
                                     "events_NAME.csv)")
    wa.add_argument("--model", action="append", default=[], help="run folder, .pt or .onnx bundle (repeat: soft vote)")
    wa.add_argument("--device", default="auto")
    wa.add_argument("--all-frames", action="store_true",
                    help="a file: classify every frame, however long it takes (default: skip to keep real time)")
    wa.add_argument("--settle", type=int, default=3, help="frames in a row a new mask state needs")
    wa.add_argument("--min-frames", type=int, default=2, help="fewer classified frames make no event")
    wa.add_argument("--max-gap", type=float, default=1.0, help="seconds unseen before a person has left")
    wa.add_argument("--max-seconds", type=float, help="stop a camera or stream after this long")
    wa.add_argument("--post", metavar="URL",
                    help="also POST each event as JSON to this URL: when a person's state holds (kind started) and "
                         "when it ends (kind closed) (a door controller, an alarm, a log)")
    wa.add_argument("--post-snapshot", action="store_true",
                    help="with --post: the face as a base64 JPEG in each event (snapshot_jpeg)")
    wa.add_argument("--zone", metavar="X1,Y1,X2,Y2",
                    help="count only faces whose centre is in this part of the frame (fractions: 0.25,0,0.75,1 = "
                         "the middle half, the doorway); others are drawn grey, not tracked or reported")
    wa.add_argument("--min-face", type=float, default=0.0, metavar="PX",
                    help="count only faces at least this many pixels high (near the door, not far behind it)")
    wa.add_argument("--reconnect", type=float, default=30.0, metavar="S",
                    help="a camera or stream that stops sending: keep reopening it for this long (0: stop at once)")
    _add_tta_flag(wa)
    _add_detection_flags(wa)
    wa.set_defaults(fn=_watch)

    sy = sub.add_parser("synth", help="draw masks on a labelled source of unmasked faces -> competition layout")
    sy.add_argument("--src", required=True, help="folder with labels.csv (path,age,gender[,group columns])")
    sy.add_argument("--out", required=True, help="new folder for the set")
    sy.add_argument("--layout", choices=["train", "eval"], default="train",
                    help="train: images/{id}_{gender}_{race}_{age}/mask1..normal + train.csv; eval: images/ + "
                         "info.csv + answers.csv with the source's group columns (default: train)")
    sy.add_argument("--per-person", type=int, choices=[7, 3], default=7,
                    help="7: as the competition (5 worn, 1 incorrect, 1 none); 3: one of each")
    sy.add_argument("--seed", type=int, default=0)
    sy.add_argument("--limit", type=int, default=0, help="only the first N people (0 = all)")
    sy.add_argument("--workers", type=int, default=2)
    sy.add_argument("--resume", action="store_true",
                    help="finish a killed job in --out (its synth.partial.jsonl): people done are kept")
    sy.set_defaults(fn=_synth)

    ad = sub.add_parser("adapt", help="re-fit a model's age-band offsets on your own labelled people (no training)")
    ad.add_argument("--data", action="append", required=True, metavar="PATH",
                    help="labelled photos: an eval layout (folder with answers.csv and images/) or a labelled "
                         "source (folder with labels.csv: path,age,gender[,mask][,person]); repeatable")
    ad.add_argument("--out", required=True, help="the adapted model: a .pt bundle, or .onnx for onnxruntime")
    ad.add_argument("--model", help="run folder or .pt bundle (default: the shipped model)")
    ad.add_argument("--objective", choices=["accuracy", "age_acc", "macro_f1"], default="accuracy",
                    help="what the offsets are chosen for: 18-class accuracy over your people (default: how often the "
                         "checker is right at your door), age-band accuracy, or macro F1 over the classes present "
                         "(weighs every class alike, so it barely answers to a site's age mix)")
    ad.add_argument("--draw-masks", type=int, choices=[0, 3, 7], default=0, metavar="N",
                    help="on a labels.csv source of unmasked people, draw masks first (maskgate synth, N photos a "
                         "person: 3 = one per state) into <OUT>_photos/ beside OUT, so all three mask states count "
                         "(default 0)")
    ad.add_argument("--folds", type=int, default=5,
                    help="person-level folds for the held-out check; offsets that do not gain there are not kept")
    ad.add_argument("--sure", type=float, default=0.95, metavar="P",
                    help="keep the new offsets only if their held-out gain is positive in this share of bootstrap "
                         "resamples of the people (default 0.95; 0: keep whatever the fit found)")
    ad.add_argument("--tta", choices=("off", "on", "auto"),
                    help="fit on the probabilities predict will use with this mirror-image setting [default: the "
                         "model's own, which the adapted model keeps]")
    ad.add_argument("--seed", type=int, default=0, help="folds and drawn masks")
    ad.set_defaults(fn=_adapt)

    d = sub.add_parser("demo", help="run the shipped model on sample photos it makes; annotated images + csv")
    d.add_argument("--out", default="demo_out")
    d.add_argument("--model", help="run folder, .pt or .onnx bundle (default: the shipped model)")
    d.set_defaults(fn=_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .config import ConfigError
    from .data.images import ImageError
    from .data.layout import LayoutError

    try:
        return args.fn(args)
    except (LayoutError, ImageError, ConfigError, FileNotFoundError, FileExistsError, ValueError) as e:
        # (train's RunExistsError is a FileExistsError; nothing here imports PyTorch: the slim install)
        print(f"maskgate: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("maskgate: interrupted", file=sys.stderr)
        return 130
