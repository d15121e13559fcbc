"""Optimizers and learning-rate schedules from the job's hyperparameters."""

from __future__ import annotations

from typing import Any

import keras

from worker.training.spec import Hyperparameters


def default_learning_rate(strategy: str, is_text: bool, phase: int = 1) -> float:
    if strategy in ("feature_extraction",) or (strategy == "two_phase" and phase == 1):
        return 1e-3
    if strategy == "peft":
        return 1e-3 if is_text else 1e-3
    return 5e-5 if is_text else 1e-4


def build_schedule(hp: Hyperparameters, lr: float, steps_per_epoch: int, epochs: int) -> Any:
    steps = max(1, steps_per_epoch)
    if hp.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(lr, decay_steps=steps * max(1, epochs))
    if hp.lr_schedule == "exponential":
        return keras.optimizers.schedules.ExponentialDecay(lr, decay_steps=steps, decay_rate=hp.lr_decay_rate)
    return lr


def build_optimizer(hp: Hyperparameters, lr: float, steps_per_epoch: int, epochs: int) -> keras.optimizers.Optimizer:
    schedule = build_schedule(hp, lr, steps_per_epoch, epochs)
    if hp.optimizer == "sgd":
        return keras.optimizers.SGD(schedule, momentum=hp.momentum)
    if hp.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(schedule)
    if hp.optimizer == "adamw":
        return keras.optimizers.AdamW(schedule, weight_decay=hp.weight_decay)
    return keras.optimizers.Adam(schedule)


def current_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    lr = optimizer.learning_rate
    try:
        return float(keras.ops.convert_to_numpy(lr))
    except Exception:  # noqa: BLE001
        return float("nan")
