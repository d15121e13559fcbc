"""Feature extraction with cached features (the engine) vs the naive loop that runs the frozen base every
epoch (hand-written Keras), same data, same splits, same epochs, side by side in one run.

    python bench/feature_cache.py [--per-class 600] [--size 96] [--epochs 10]

Target: training time ratio naive / engine >= 0.8 x epochs; top-1 within 1 point.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_common import (
    CLASSES,
    EpochTimer,
    calibrated_base,
    plain_datasets,
    plain_model,
    prepare_inputs,
    run_variant,
    top1,
)

SEED = 7


def engine_variant(args: argparse.Namespace) -> dict[str, object]:
    from worker.training.data import DataSource
    from worker.training.engine import train
    from worker.training.spec import JobSpec

    marks: dict[str, float] = {}
    t0 = time.perf_counter()

    class CB:
        def on_progress(self, p: object) -> None:
            pass

        def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
            marks["last_epoch_end"] = time.perf_counter() - t0

        def should_cancel(self) -> bool:
            return False

        def log(self, message: str) -> None:
            if message.startswith("running the frozen base") or message.startswith("phase "):
                marks.setdefault("train_start", time.perf_counter() - t0)

    spec = JobSpec.model_validate(
        {
            "task": "image_classification",
            "strategy": "feature_extraction",
            "seed": SEED,
            "base": {"kind": "keras_file", "path": args.base},
            "preprocessing": "rescale_minus1_1",
            "hyperparameters": {
                "epochs": args.epochs,
                "batch_size": 32,
                "early_stopping": None,
                "learning_rate": 1e-3,
            },
        }
    )
    splits = json.loads(Path(args.splits).read_text())
    with tempfile.TemporaryDirectory() as work:
        r = train(spec, DataSource("image_folders", Path(args.data), splits=splits), CB(), Path(work))
    total = time.perf_counter() - t0
    return {
        "train_seconds": marks["last_epoch_end"] - marks["train_start"],
        "total_seconds": total,
        "top1": r.metrics["accuracy"],
    }


def naive_variant(args: argparse.Namespace) -> dict[str, object]:
    import keras
    import numpy as np

    keras.utils.set_random_seed(SEED)
    splits = json.loads(Path(args.splits).read_text())
    labels = sorted(CLASSES)
    train_ds, val_ds, test_ds = plain_datasets(Path(args.data), splits, labels, args.size, 32, SEED)
    model = plain_model(Path(args.base), len(labels), base_trainable=False)
    model.compile(keras.optimizers.Adam(1e-3), "categorical_crossentropy", metrics=["accuracy"], jit_compile=False)
    timer = EpochTimer()
    model.fit(train_ds, validation_data=val_ds, epochs=args.epochs, verbose=0, callbacks=[timer.keras_callback()])
    train_seconds = timer.ends[-1]
    probs = np.concatenate([model(x, training=False).numpy() for x, _ in test_ds])
    return {"train_seconds": train_seconds, "top1": top1(probs, splits["test"], labels)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--variant", choices=["engine", "naive", "prepare"])
    p.add_argument("--per-class", type=int, default=600)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--data")
    p.add_argument("--splits")
    p.add_argument("--base")
    args = p.parse_args()
    if args.variant == "prepare":
        calibrated_base(Path(args.base), Path(args.data), args.size)
        print(json.dumps({"base": args.base}))
        return
    if args.variant:
        fn = engine_variant if args.variant == "engine" else naive_variant
        print(json.dumps(fn(args)), flush=True)
        return

    data, splits, splits_file, base = prepare_inputs(Path(__file__), args.per_class, args.size, SEED, "splits")
    common = [
        "--per-class",
        str(args.per_class),
        "--size",
        str(args.size),
        "--epochs",
        str(args.epochs),
        "--data",
        str(data),
        "--splits",
        str(splits_file),
        "--base",
        str(base),
    ]
    print(
        f"MobileNetV2 (weights=None, BN statistics set from data) {args.size}x{args.size}, "
        f"{len(splits['train'])} train / {len(splits['val'])} val / {len(splits['test'])} test images, "
        f"{args.epochs} epochs, batch 32"
    )
    naive = run_variant(Path(__file__), "naive", *common)
    engine = run_variant(Path(__file__), "engine", *common)
    ratio = naive["train_seconds"] / engine["train_seconds"]
    print(f"naive loop (frozen base every epoch): training {naive['train_seconds']:.1f} s, top-1 {naive['top1']:.3f}")
    print(
        f"engine (base once, head on cached features): training {engine['train_seconds']:.1f} s "
        f"(whole job incl. build/eval/export {engine['total_seconds']:.1f} s), top-1 {engine['top1']:.3f}"
    )
    print(f"speed-up naive/engine: {ratio:.2f}x = {ratio / args.epochs:.2f} x epochs (target >= 0.80 x epochs)")
    print(f"top-1 difference: {100 * (engine['top1'] - naive['top1']):+.1f} points (target within 1 point)")


if __name__ == "__main__":
    main()
