"""Dataset scanning and splitting (no TensorFlow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.training.conftest import make_image_tree
from worker.training.data import DataSource, load_examples, make_splits, stratified_split
from worker.training.errors import InvalidSpecError


def test_all_image_formats_found(tmp_path: Path) -> None:
    make_image_tree(tmp_path, per_class=5, formats=("jpg", "png", "bmp", "gif", "webp"))
    ex = load_examples(DataSource("image_folders", tmp_path))
    assert len(ex.ids) == 15 and ex.label_names() == ["blue", "green", "red"]
    assert {Path(i).suffix for i in ex.ids} == {".jpg", ".png", ".bmp", ".gif", ".webp"}


def test_split_folders_and_wrapper_folder(tmp_path: Path) -> None:
    make_image_tree(tmp_path / "wrap" / "train", per_class=6)
    make_image_tree(tmp_path / "wrap" / "test", per_class=2, seed=1)
    ex = load_examples(DataSource("image_folders", tmp_path))
    splits = make_splits(ex, 0.2, 0.2, seed=1)
    assert all(i.startswith("wrap/test/") for i in splits["test"]) and len(splits["test"]) == 6
    assert splits["val"] and all(i.startswith("wrap/train/") for i in splits["val"])


def test_stratified_split_is_seeded_and_keeps_classes() -> None:
    ids = [f"{c}/{i}" for c in "abc" for i in range(10)]
    labels = [i.split("/")[0] for i in ids]
    one = stratified_split(ids, labels, {"val": 0.2, "test": 0.2}, seed=3)
    assert one == stratified_split(ids, labels, {"val": 0.2, "test": 0.2}, seed=3)
    assert one != stratified_split(ids, labels, {"val": 0.2, "test": 0.2}, seed=4)
    for split in ("train", "val", "test"):
        assert {i.split("/")[0] for i in one[split]} == {"a", "b", "c"}
    assert sorted(sum(one.values(), [])) == sorted(ids)


def test_given_splits_are_reused_and_checked(tmp_path: Path) -> None:
    make_image_tree(tmp_path, per_class=3)
    ex = load_examples(DataSource("image_folders", tmp_path))
    given = {"train": ex.ids[:6], "val": ex.ids[6:7], "test": ex.ids[7:]}
    assert make_splits(ex, 0.2, 0.2, 0, given) == given
    with pytest.raises(InvalidSpecError):
        make_splits(ex, 0.2, 0.2, 0, {"train": ["nope.png"]})


def test_text_csv_and_jsonl(tmp_path: Path) -> None:
    csv_path = tmp_path / "d.csv"
    csv_path.write_text('body,cat\n"hello, world",a\nbye,b\n', encoding="utf-8")
    ex = load_examples(DataSource("text_file", csv_path, text_column="body", label_column="cat"))
    assert ex.values == ["hello, world", "bye"] and ex.labels == ["a", "b"] and ex.ids == ["0", "1"]
    jl = tmp_path / "d.jsonl"
    jl.write_text("\n".join(json.dumps({"text": t, "label": lab}) for t, lab in [("x", 1), ("y", 2)]))
    assert load_examples(DataSource("text_file", jl)).labels == ["1", "2"]
    with pytest.raises(InvalidSpecError, match="no column"):
        load_examples(DataSource("text_file", csv_path))
