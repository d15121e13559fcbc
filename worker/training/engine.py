"""Public entry point: ``train(spec, data, callbacks, workdir) -> TrainResult``.

TensorFlow is imported inside ``train`` only; importing this module stays cheap.
"""

from __future__ import annotations

from pathlib import Path

from worker.training.callbacks import NullCallbacks, TrainingCallbacks
from worker.training.data import DataSource, Examples, load_examples, make_splits
from worker.training.errors import InvalidSpecError, TrainingCancelled, TrainingError
from worker.training.result import ArtifactInfo, TrainResult
from worker.training.spec import JobSpec

__all__ = [
    "ArtifactInfo",
    "DataSource",
    "InvalidSpecError",
    "TrainResult",
    "TrainingCancelled",
    "TrainingError",
    "train",
    "resolve_labels_and_splits",
]


def resolve_labels_and_splits(
    spec: JobSpec, data: DataSource, examples: Examples
) -> tuple[list[str], dict[str, list[str]]]:
    """The label set and the item ids per split (train/val/test) the job will use."""
    if spec.is_text != (data.kind == "text_file"):
        want = "a text file" if spec.is_text else "image class folders"
        raise InvalidSpecError(f"{spec.task} needs {want}, got data of kind {data.kind!r}")
    data_labels = examples.label_names()
    hp = spec.hyperparameters
    if spec.strategy == "zero_shot":
        labels = sorted(spec.class_descriptions) if spec.class_descriptions else data_labels
        if len(labels) < 2:
            raise InvalidSpecError("zero_shot needs at least two classes: give class_descriptions or labels")
        labelled = [i for i, lab in zip(examples.ids, examples.labels, strict=True) if lab in labels]
        splits = data.splits or {"train": [], "val": [], "test": labelled}
        return labels, {s: list(splits.get(s, [])) for s in ("train", "val", "test")}
    if len(data_labels) < 2:
        raise InvalidSpecError(f"need at least two classes, found {len(data_labels)}: {data_labels}")
    splits = make_splits(examples, hp.validation_split, hp.test_split, spec.seed, data.splits)
    if not splits["train"]:
        raise InvalidSpecError("the training split is empty")
    return data_labels, splits


def train(spec: JobSpec, data: DataSource, callbacks: TrainingCallbacks | None, workdir: Path) -> TrainResult:
    """Train, evaluate and export one job. Resumes from ``workdir/checkpoints`` when they belong to the
    same job (same spec, labels and splits). Raises InvalidSpecError for user-input problems and
    TrainingCancelled when ``callbacks.should_cancel()`` turns true."""
    cb: TrainingCallbacks = callbacks or NullCallbacks()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    examples = load_examples(data)
    labels, splits = resolve_labels_and_splits(spec, data, examples)
    cb.log(
        f"{spec.task} / {spec.strategy}: {len(labels)} classes, "
        + ", ".join(f"{k} {len(v)}" for k, v in splits.items())
    )

    import tensorflow as tf

    from worker.training.trainer import JobRun

    batch_size = spec.hyperparameters.batch_size
    notes: list[str] = []
    for attempt in range(2):
        try:
            return JobRun(spec, examples, labels, splits, cb, workdir, batch_size, notes).run()
        except tf.errors.ResourceExhaustedError:
            if attempt == 1 or batch_size == 1:
                raise
            batch_size = max(1, batch_size // 2)
            notes.append(f"out of memory: retried once with batch size {batch_size}")
            cb.log(notes[-1])
            import keras

            keras.backend.clear_session()
    raise TrainingError("unreachable")
