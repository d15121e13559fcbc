"""One training run of a job (TensorFlow side): build, train phase by phase with checkpoints, evaluate,
export. ``engine.train`` is the public entry point and wraps this with the OOM retry."""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from worker.training import pipelines
from worker.training.callbacks import TrainingCallbacks
from worker.training.checkpoints import Checkpointer
from worker.training.data import Examples
from worker.training.evaluation import classification_metrics
from worker.training.export import export_all
from worker.training.models import BuiltModel, assemble, param_counts, set_trainable
from worker.training.optim import build_optimizer, current_learning_rate, default_learning_rate
from worker.training.progress import EngineCallback, ProgressTracker
from worker.training.prototypes import choose_scale, class_means, prototype_head
from worker.training.result import TrainResult
from worker.training.runtime import configure_devices, reset_policy, seed_everything
from worker.training.spec import JobSpec


@dataclass
class Phase:
    name: str  # "head" (base frozen) | "train" | "finetune" (two_phase step 2)
    epochs: int
    cached: bool  # the head trains on cached base features
    strategy_phase: int
    lr: float


@dataclass
class SplitData:
    ids: list[str]
    values: list[str]
    y: list[int]


def fingerprint(spec: JobSpec, labels: list[str], splits: dict[str, list[str]]) -> str:
    payload = spec.model_dump(mode="json", exclude={"export_formats"})
    blob = json.dumps({"spec": payload, "labels": labels, "splits": splits}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def plan_phases(spec: JobSpec, is_text: bool) -> list[Phase]:
    hp = spec.hyperparameters
    cacheable = spec.augmentation is None
    s = spec.strategy
    lr = hp.learning_rate
    if s == "feature_extraction":
        return [Phase("head", hp.epochs, cacheable, 1, lr or default_learning_rate(s, is_text))]
    if s == "two_phase":
        first = hp.head_epochs or max(1, hp.epochs // 2)
        first = min(first, hp.epochs)
        head_lr = lr or default_learning_rate(s, is_text, 1)
        phases = [Phase("head", first, cacheable, 1, head_lr)]
        if hp.epochs - first > 0:
            phases.append(Phase("finetune", hp.epochs - first, False, 2, head_lr * hp.fine_tune_lr_factor))
        return phases
    return [Phase("train", hp.epochs, False, 1, lr or default_learning_rate(s, is_text))]


HEAD_STEPS_PER_EXECUTION = 32


def forward_fn(model: Any) -> Any:
    """The model's inference forward pass as one ``tf.function`` traced once for any batch size (the last,
    smaller batch of a split must not trigger a second trace: tracing a big base costs seconds)."""
    spec = model.inputs[0]
    dtype = tf.string if "string" in str(spec.dtype) else tf.as_dtype(str(spec.dtype))
    signature = [tf.TensorSpec([None, *spec.shape[1:]], dtype)]
    return tf.function(lambda x: model(x, training=False), input_signature=signature)


class JobRun:
    def __init__(
        self,
        spec: JobSpec,
        examples: Examples,
        labels: list[str],
        splits: dict[str, list[str]],
        callbacks: TrainingCallbacks,
        workdir: Path,
        batch_size: int,
        notes: list[str],
    ) -> None:
        self.spec = spec
        self.labels = labels
        self.splits = splits
        self.cb = callbacks
        self.workdir = Path(workdir)
        self.batch_size = batch_size
        self.notes = notes
        self.is_text = spec.is_text
        index = {item_id: i for i, item_id in enumerate(examples.ids)}
        label_index = {name: i for i, name in enumerate(labels)}
        self.data: dict[str, SplitData] = {}
        for split, ids in splits.items():
            rows = [index[i] for i in ids]
            ys = [label_index.get(examples.labels[r] or "", -1) for r in rows]
            keep = [k for k, yv in enumerate(ys) if yv >= 0]
            self.data[split] = SplitData(
                [ids[k] for k in keep], [examples.values[rows[k]] for k in keep], [ys[k] for k in keep]
            )
        self.ckpt = Checkpointer(self.workdir)
        self._feature_fn: Any = None
        self.fp = fingerprint(spec, labels, splits)

    # -- datasets -----------------------------------------------------------------------------------
    def dataset(self, split: str, shuffle: bool, with_labels: bool = True) -> tf.data.Dataset:
        d = self.data[split]
        y = d.y if with_labels else None
        if self.is_text:
            return pipelines.text_dataset(
                d.values, y, len(self.labels), self.batch_size, shuffle=shuffle, seed=self.spec.seed
            )
        assert self.hw is not None
        return pipelines.image_dataset(
            d.values, y, len(self.labels), self.hw, self.batch_size, shuffle=shuffle, seed=self.spec.seed
        )

    def batches(self, split: str) -> int:
        return pipelines.num_batches(len(self.data[split].ids), self.batch_size)

    def _run_batches(self, fn: Any, split: str, epoch: int, phase: str) -> np.ndarray:
        outs: list[np.ndarray] = []
        total = self.batches(split)
        for i, x in enumerate(self.dataset(split, shuffle=False, with_labels=False)):
            outs.append(np.asarray(fn(x)))
            self.tracker.step(epoch, i + 1, total, phase)
        if not outs:
            return np.zeros((0, 0), dtype="float32")
        return np.concatenate(outs, axis=0)

    def raw_inputs(self, split: str) -> Any:
        if self.is_text:
            return list(self.data[split].values)
        chunks = [np.asarray(x) for x in self.dataset(split, shuffle=False, with_labels=False)]
        return np.concatenate(chunks, axis=0) if chunks else np.zeros((0, *self.hw, 3), "uint8")  # type: ignore

    # -- main ---------------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        spec = self.spec
        seed_everything(spec.seed, spec.hyperparameters.deterministic_ops)
        strategy, device_notes = configure_devices(spec.hyperparameters.mixed_precision)
        self.notes.extend(n for n in device_notes if n not in self.notes)
        try:
            with strategy.scope():
                return self._run()
        finally:
            reset_policy()

    def _run(self) -> TrainResult:
        from worker.training.bases import build_base

        spec = self.spec
        parts = build_base(spec)
        self.hw = parts.input_hw
        built = assemble(spec, parts, len(self.labels), self.labels)
        self.built = built
        gradient_free = spec.strategy in ("few_shot", "zero_shot")
        phases = [] if gradient_free else plan_phases(spec, self.is_text)
        state = self.ckpt.load_state(self.fp) or {
            "fingerprint": self.fp,
            "phase_index": 0,
            "phase_epochs_done": 0,
            "phase_done": False,
            "history": [],
            "es": {},
            "weights": None,
            "notes": [],
        }
        resumed_from = sum(1 for _ in state["history"]) or None
        for n in state.get("notes", []):
            if n not in self.notes:
                self.notes.append(n)
        total_epochs = sum(p.epochs for p in phases)
        train_b, val_b, test_b = self.batches("train"), self.batches("val"), self.batches("test")
        feature_units = (train_b + val_b) if any(p.cached for p in phases) or gradient_free else 0
        units = feature_units + sum(p.epochs * train_b for p in phases) + test_b
        self.tracker = ProgressTracker(self.cb, units, total_epochs)
        if resumed_from:
            self.tracker.skip(resumed_from * train_b)
            self.cb.log(f"resuming after epoch {resumed_from}")

        source_before = self._source_accuracy(parts)
        if gradient_free:
            model = self._prototype_model(built)
            trainable = 0
        else:
            trainable = self._train_phases(built, phases, state)
            model = built.model
        self.cb.log("evaluating on the test split")
        export_model = keras.Model(model.inputs, model.outputs, name="transferlab_model")
        predict = forward_fn(export_model)
        test = self.data["test"]
        probs = self._run_batches(predict, "test", total_epochs, "evaluate") if test.ids else None
        metrics: dict[str, Any] = {}
        if probs is not None and len(probs):
            metrics = classification_metrics(
                probs, np.asarray(test.y), self.labels, test.ids, top_k=spec.hyperparameters.top_k
            )
        self.cb.log("exporting " + ", ".join(spec.export_formats))
        test_inputs = self.raw_inputs("test") if test.ids else None
        artifacts, export_notes = export_all(
            export_model,
            list(spec.export_formats),
            self.workdir / "export",
            self.labels,
            test_inputs,
            probs,
            self.cb.log,
        )
        self.notes.extend(export_notes)
        _, total = param_counts(export_model)
        if self.is_text:
            signature: dict[str, Any] = {"type": "text", "dtype": "string"}
        else:
            assert self.hw is not None
            signature = {
                "type": "image",
                "height": self.hw[0],
                "width": self.hw[1],
                "channels": 3,
                "dtype": "uint8",
            }
        history = list(state["history"])
        return TrainResult(
            labels=list(self.labels),
            metrics=metrics,
            history=history,
            artifacts=artifacts,
            trainable_params=trainable,
            total_params=total,
            input_signature=signature,
            splits={k: list(v.ids) for k, v in self.data.items()},
            epochs_completed=len(history),
            resumed_from_epoch=resumed_from,
            notes=list(self.notes),
            source_accuracy_before=source_before,
            target_accuracy_after=metrics.get("accuracy") if source_before is not None else None,
            strategy=spec.strategy,
            base=dict(parts.describe),
        )

    # -- domain adaptation --------------------------------------------------------------------------
    def _source_accuracy(self, parts: Any) -> float | None:
        src, src_labels = parts.source_model, parts.source_labels
        test = self.data["test"]
        if src is None or not src_labels or set(src_labels) != set(self.labels) or not test.ids:
            return None
        fn = forward_fn(src)
        probs = np.concatenate([np.asarray(fn(x)) for x in self.dataset("test", False, False)], axis=0)
        predicted = [src_labels[i] for i in probs.argmax(axis=1)]
        truth = [self.labels[i] for i in test.y]
        acc = float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)]))
        self.cb.log(f"source model accuracy on the target test split before adaptation: {acc:.4f}")
        return acc

    # -- gradient-free strategies ---------------------------------------------------------------------
    def _features(self, built: BuiltModel, split: str, phase: str) -> np.ndarray:
        fn = self._feature_fn or forward_fn(built.feature_model)
        self._feature_fn = fn
        return self._run_batches(fn, split, 0, phase)

    def _prototype_model(self, built: BuiltModel) -> keras.Model:
        n = len(self.labels)
        if self.spec.strategy == "zero_shot":
            desc = self.spec.class_descriptions or {}
            texts = [desc.get(name, name) for name in self.labels]
            fn = forward_fn(built.feature_model)
            protos = class_means(np.asarray(fn(tf.constant(texts))), np.arange(n), n)
            scale = choose_scale(protos, None, None)
        else:
            train = self.data["train"]
            if not train.ids:
                from worker.training.errors import InvalidSpecError

                raise InvalidSpecError("few_shot needs at least one labelled example per class")
            feats = self._features(built, "train", "features")
            protos = class_means(feats, np.asarray(train.y), n)
            val = self.data["val"]
            val_feats = self._features(built, "val", "features") if val.ids else None
            scale = choose_scale(protos, val_feats, np.asarray(val.y) if val.ids else None)
        self.cb.log(f"{self.spec.strategy}: {n} class prototypes, temperature scale {scale}")
        head = prototype_head(protos, scale)
        feature_model = built.feature_model
        return keras.Model(feature_model.inputs, head(feature_model.outputs[0]), name="transferlab_model")

    # -- gradient training ----------------------------------------------------------------------------
    def _class_weight(self) -> dict[int, float] | None:
        if self.spec.hyperparameters.class_weights != "balanced":
            return None
        y = np.asarray(self.data["train"].y)
        counts = np.bincount(y, minlength=len(self.labels))
        return {i: float(len(y) / (len(self.labels) * c)) if c else 0.0 for i, c in enumerate(counts)}

    def _cached_features(self, built: BuiltModel) -> dict[str, np.ndarray]:
        cached = self.ckpt.load_arrays("features")
        if cached is not None:
            self.tracker.skip(self.batches("train") + self.batches("val"))
            return cached
        self.cb.log("running the frozen base once to cache features")
        arrays = {"train": self._features(built, "train", "features")}
        if self.data["val"].ids:
            arrays["val"] = self._features(built, "val", "features")
        self.ckpt.save_arrays("features", **arrays)
        return arrays

    def _train_phases(self, built: BuiltModel, phases: list[Phase], state: dict[str, Any]) -> int:
        spec, hp = self.spec, self.spec.hyperparameters
        es_config = hp.early_stopping if self.data["val"].ids else None
        if hp.early_stopping is not None and es_config is None:
            self._note("no validation split: early stopping disabled")
        trainable = 0
        epoch_offset = 0
        features: dict[str, np.ndarray] | None = None
        class_weight = self._class_weight()
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=hp.label_smoothing)
        jit = False if not tf.config.list_physical_devices("GPU") else "auto"
        for index, phase in enumerate(phases):
            set_trainable(built, spec.strategy, spec, phase.strategy_phase)
            target = built.head if phase.cached else built.model
            trainable, _ = param_counts(built.model)
            name = "head" if phase.cached else "model"
            done_before = index < state["phase_index"] or (index == state["phase_index"] and state["phase_done"])
            if done_before:
                epoch_offset += sum(1 for h in state["history"] if h.get("phase_index") == index)
                if phase.cached:
                    self.tracker.skip(self.batches("train") + self.batches("val"))
                continue
            steps = self.batches("train")
            optimizer = build_optimizer(hp, phase.lr, steps, phase.epochs)
            target.compile(
                optimizer=optimizer,
                loss=loss,
                metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
                jit_compile=jit,
                # A head step on cached features takes well under a millisecond, less than Keras' own per-step
                # overhead: run up to HEAD_STEPS_PER_EXECUTION of them per call. Cancellation and progress are
                # then polled per execution, which still takes less time than one batch through the base.
                steps_per_execution=min(HEAD_STEPS_PER_EXECUTION, steps) if phase.cached else 1,
            )
            start = 0
            if state["weights"] is not None:
                self.ckpt.load_weights(built.head if state["weights"] == "head" else built.model, state["weights"])
            if index == state["phase_index"] and state["phase_epochs_done"] > 0:
                start = state["phase_epochs_done"]
                self.ckpt.load_optimizer(optimizer, target.trainable_variables, name)
            else:
                state.update(phase_index=index, phase_epochs_done=0, phase_done=False, es={})
            if phase.cached:
                features = features or self._cached_features(built)
                train_ds = pipelines.array_dataset(
                    features["train"],
                    self.data["train"].y,
                    len(self.labels),
                    self.batch_size,
                    shuffle=True,
                    seed=spec.seed,
                )
                val_ds = (
                    pipelines.array_dataset(features["val"], self.data["val"].y, len(self.labels), self.batch_size)
                    if "val" in features
                    else None
                )
            else:
                train_ds = self.dataset("train", shuffle=True)
                val_ds = self.dataset("val", shuffle=False) if self.data["val"].ids else None
            es_state = state["es"] if es_config is not None else None
            history: list[dict[str, Any]] = state["history"]

            def checkpoint(
                epoch_in_phase: int,
                improved: bool,
                stop: bool,
                *,
                _target: Any = target,
                _name: str = name,
                _opt: Any = optimizer,
                _index: int = index,
            ) -> None:
                state["history"][-1]["phase_index"] = _index
                self.ckpt.save_weights(_target, _name)
                self.ckpt.save_optimizer(_opt, _name)
                if improved:
                    self.ckpt.save_weights(_target, f"best_{_name}")
                state.update(phase_epochs_done=epoch_in_phase, weights=_name, notes=self.notes)
                self.ckpt.save_state(state)

            cb = EngineCallback(
                tracker=self.tracker,
                callbacks=self.cb,
                phase=phase.name,
                epoch_offset=epoch_offset,
                steps=steps,
                history=history,
                es_state=es_state,
                es_config=es_config,
                on_checkpoint=checkpoint,
                lr_getter=functools.partial(current_learning_rate, optimizer),
            )
            if start < phase.epochs:
                self.cb.log(
                    f"phase {phase.name}: epochs {start + 1}-{phase.epochs}, lr {phase.lr:g}, "
                    f"{trainable} trainable parameters"
                )
                target.fit(
                    train_ds,
                    validation_data=val_ds,
                    epochs=phase.epochs,
                    initial_epoch=start,
                    callbacks=[cb],
                    verbose=0,
                    class_weight=class_weight,
                    shuffle=False,  # tf.data shuffles (seeded) already
                )
            if es_config is not None and es_config.restore_best_weights and es_state and es_state.get("best_epoch"):
                last = history[-1]["epoch"] if history else None
                if es_state["best_epoch"] != last and self.ckpt.load_weights(target, f"best_{name}"):
                    self.cb.log(f"restored the best weights (epoch {es_state['best_epoch']})")
                    self.ckpt.save_weights(target, name)
            state.update(phase_done=True, weights=name)
            self.ckpt.save_state(state)
            epoch_offset += sum(1 for h in history if h.get("phase_index") == index)
        if state["weights"] is not None:
            self.ckpt.load_weights(built.head if state["weights"] == "head" else built.model, state["weights"])
        return trainable

    def _note(self, message: str) -> None:
        if message not in self.notes:
            self.notes.append(message)
            self.cb.log(message)
