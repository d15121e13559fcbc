"""Custom serialisable layers. Import this module before loading a TransferLab text model
(``worker.training.inference.load_for_inference`` does it for you). Image models use none of these."""

from __future__ import annotations

from typing import Any

import keras
import keras_hub


@keras.saving.register_keras_serializable(package="transferlab")
class InlineVocabBertTokenizer(keras_hub.models.BertTokenizer):
    """A BertTokenizer whose vocabulary travels inside the layer config.

    keras-hub stores a tokenizer's vocabulary as an asset that is read only after the functional graph has
    been rebuilt, so a model with the tokenizer inside (raw strings in) cannot be reloaded. Keeping the
    vocabulary in the config makes the layer usable the moment it is deserialised, fully offline.
    """

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = super().get_config()
        config["vocabulary"] = list(self.vocabulary)
        return config

    def save_assets(self, dir_path: str) -> None:
        return None

    def load_assets(self, dir_path: str) -> None:
        return None
