"""Model › Models…: activating a version asks first; Cancel changes nothing."""

from __future__ import annotations

from pathlib import Path

from cxrview.inference.registry import ModelRegistry
from cxrview.qt.finetune.models_dialog import ModelsDialog


class _Source:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.activated: list[str] = []

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.root)

    def activate(self, version_id: str, *, rollback: bool = False) -> bool:
        self.activated.append(version_id)
        return True


def test_activate_asks_first_and_cancel_changes_nothing(qtbot, tmp_path: Path) -> None:
    source = _Source(tmp_path / "registry")
    dialog = ModelsDialog(source)
    qtbot.addWidget(dialog)
    dialog.refresh()
    assert dialog.versions, "the shipped classifier is always listed"
    target = dialog.versions[-1].id
    dialog.select_id(target)
    asked: list[str] = []
    dialog.confirm = lambda title, question: bool(asked.append(question))  # answers Cancel
    dialog.activate_button.click()
    assert asked and target in asked[0] and "Roll Back" in asked[0]
    assert source.activated == []
    dialog.confirm = lambda title, question: True
    dialog.activate_button.click()
    assert source.activated == [target]
