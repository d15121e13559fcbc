"""Training throughput of the engine vs a plain hand-written Keras script doing the same fine-tune
(MobileNetV2 at 96x96, all layers trainable, Adam, batch 32, validation every epoch), side by side in one run.
Each side runs in its own process, alternating, best of ``--repeats``; the first epoch (tracing) is left
out of images/s. Both sides must end with the same loss: they do the same computation.

    python bench/engine_throughput.py [--per-class 100] [--size 96] [--epochs 4] [--repeats 2]

Target: engine images/s >= 0.95 x the plain script's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
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
)

SEED = 11
LR = 1e-4


def _rates(n_train: int, timer: EpochTimer) -> dict[str, float]:
    """Images per wall-clock second and per CPU second, from the end of epoch 1 (tracing) to the last."""
    n = n_train * (len(timer.ends) - 1)
    return {
        "images_per_s": n / (timer.ends[-1] - timer.ends[0]),
        "images_per_cpu_s": n / (timer.cpu_ends[-1] - timer.cpu_ends[0]),
    }


def engine_variant(args: argparse.Namespace) -> dict[str, object]:
    from worker.training.data import DataSource
    from worker.training.engine import train
    from worker.training.spec import JobSpec

    timer = EpochTimer()

    class CB:
        def on_progress(self, p: object) -> None:
            pass

        def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
            timer.mark()

        def should_cancel(self) -> bool:
            return False

        def log(self, message: str) -> None:
            pass

    spec = JobSpec.model_validate(
        {
            "task": "image_classification",
            "strategy": "fine_tune",
            "seed": SEED,
            "base": {"kind": "keras_file", "path": args.base},
            "preprocessing": "rescale_minus1_1",
            "hyperparameters": {
                "epochs": args.epochs,
                "batch_size": 32,
                "early_stopping": None,
                "learning_rate": LR,
            },
        }
    )
    splits = json.loads(Path(args.splits).read_text())
    with tempfile.TemporaryDirectory() as work:
        r = train(spec, DataSource("image_folders", Path(args.data), splits=splits), CB(), Path(work))
    n = len(splits["train"])
    return {**_rates(n, timer), "epoch_ends": timer.ends, "final_loss": r.history[-1]["loss"]}


def plain_variant(args: argparse.Namespace) -> dict[str, object]:
    import keras

    keras.utils.set_random_seed(SEED)
    splits = json.loads(Path(args.splits).read_text())
    labels = sorted(CLASSES)
    train_ds, val_ds, _ = plain_datasets(Path(args.data), splits, labels, args.size, 32, SEED)
    model = plain_model(Path(args.base), len(labels), base_trainable=True)
    model.compile(keras.optimizers.Adam(LR), "categorical_crossentropy", metrics=["accuracy"], jit_compile=False)
    timer = EpochTimer()
    hist = model.fit(
        train_ds, validation_data=val_ds, epochs=args.epochs, verbose=0, callbacks=[timer.keras_callback()]
    )
    n = len(splits["train"])
    return {**_rates(n, timer), "epoch_ends": timer.ends, "final_loss": hist.history["loss"][-1]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--variant", choices=["engine", "plain", "prepare"])
    p.add_argument("--per-class", type=int, default=100)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--data")
    p.add_argument("--splits")
    p.add_argument("--base")
    args = p.parse_args()
    if args.variant == "prepare":
        calibrated_base(Path(args.base), Path(args.data), args.size)
        print(json.dumps({"base": args.base}))
        return
    if args.variant:
        fn = engine_variant if args.variant == "engine" else plain_variant
        print(json.dumps(fn(args)), flush=True)
        return

    data, splits, splits_file, base = prepare_inputs(Path(__file__), args.per_class, args.size, SEED, "splits_ft")
    common = [
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
        f"fine-tune MobileNetV2 (weights=None, BN statistics set from data) {args.size}x{args.size}, "
        f"{len(splits['train'])} train / {len(splits['val'])} val images, {args.epochs} epochs, batch 32"
    )
    runs: dict[str, list[dict[str, object]]] = {"plain": [], "engine": []}
    for i in range(args.repeats):  # alternate, so that load from other processes hits both sides alike
        for variant in ("plain", "engine"):
            r = run_variant(Path(__file__), variant, *common)
            runs[variant].append(r)
            print(
                f"  run {i + 1} {variant:6s}: {r['images_per_s']:.1f} images/s, "
                f"{r['images_per_cpu_s']:.2f} images/CPU-s, loss {r['final_loss']:.4f}"
            )
    for key, unit in (("images_per_s", "images/s (wall)"), ("images_per_cpu_s", "images/CPU-second")):
        best = {k: max(float(r[key]) for r in v) for k, v in runs.items()}  # type: ignore[arg-type]
        print(
            f"{unit}, best of {args.repeats}: plain {best['plain']:.2f}, engine {best['engine']:.2f}, "
            f"ratio engine/plain {best['engine'] / best['plain']:.3f} (target >= 0.95)"
        )


if __name__ == "__main__":
    main()
