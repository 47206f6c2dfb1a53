"""The About text (Qt-free): models from their cards, their training data, intended use, licences."""

from __future__ import annotations

import json
from pathlib import Path

from cxrview import __version__, about
from cxrview.licences import TRAINING_DATA


def _bundle(folder: Path, **card: object) -> Path:
    folder.mkdir(parents=True)
    (folder / "card.json").write_text(json.dumps(card))
    return folder


def test_models_and_their_training_data_come_from_the_cards(tmp_path: Path) -> None:
    cls = _bundle(tmp_path / "c", name="my-classifier", version="9.1.0",
                  training={"command": "train --nih-images X --data-entry Data_Entry_2017.csv",
                            "sources": ["rsna_normals"]},
                  metrics={"external": "jsrt"})  # evaluation data is not training data
    seg = _bundle(tmp_path / "s", name="my-segmenter", version="2.0.0",
                  training={"config": {"images": "wingspan/png", "extra": "JSRT"}})
    info = about.gather({"classifier": cls, "segmenter": seg}, third_party=False)
    by_task = {m.task: m for m in info.models}
    assert (by_task["classifier"].name, by_task["classifier"].version) == ("my-classifier", "9.1.0")
    assert [d.key for d in by_task["classifier"].data] == ["nih", "rsna"]
    assert [d.key for d in by_task["segmenter"].data] == ["jsrt", "wingspan"]
    text = about.about_text(info)
    assert "my-classifier 9.1.0" in text and "my-segmenter 2.0.0" in text
    assert about.INTENDED_USE in text and "Apache-2.0" in text
    for source in TRAINING_DATA:  # every data source's terms, whichever the models use
        assert source.terms in text
    assert about.version_text(info).splitlines() == [f"cxrview {__version__}",
                                                     "classifier: my-classifier 9.1.0",
                                                     "segmenter: my-segmenter 2.0.0"]


def test_a_missing_or_broken_card_is_said_not_raised(tmp_path: Path) -> None:
    broken = tmp_path / "b"
    broken.mkdir()
    (broken / "card.json").write_text("{not json")
    info = about.gather({"classifier": broken, "segmenter": tmp_path / "absent"}, third_party=False)
    assert all(m.problem for m in info.models)
    assert "card unreadable" in about.about_text(info) and "card unreadable" in about.about_html(info)


def test_html_escapes_card_text(tmp_path: Path) -> None:
    cls = _bundle(tmp_path / "c", name="<script>x</script>", version="1 & 2", training={})
    html = about.about_html(about.gather({"classifier": cls}, third_party=False))
    assert "<script>" not in html and "&lt;script&gt;" in html and "1 &amp; 2" in html


def test_the_shipped_models_and_the_training_data_terms_of_sources_md() -> None:
    info = about.gather(third_party=True)
    assert {m.task for m in info.models} == {"classifier", "segmenter"}
    assert all(m.problem is None and m.data for m in info.models)
    names = {p.name.lower() for p in info.third_party}
    assert {"pydicom", "imagecodecs", "numpy"} <= names and "pylibjpeg-libjpeg" not in names
    terms = {d.key: d.terms for d in TRAINING_DATA}
    assert "CC0" in terms["nih"] and "research and education" in terms["jsrt"] and "MIT" in terms["wingspan"]
