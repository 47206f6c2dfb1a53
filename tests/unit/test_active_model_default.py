"""Issue 14, defect 9 (CLI part): `cxrview score` and `predict` use the active model by default."""

from __future__ import annotations

from pathlib import Path

from cxrview.cli.predict import default_classifier
from cxrview.inference.registry import ModelRegistry
from tests.unit.test_registry import env, make_bundle  # noqa: F401 (the env fixture)


def test_default_classifier_follows_activate(env: Path) -> None:  # noqa: F811 (the fixture)
    assert default_classifier() == env / "shipped" / "classifier"  # nothing activated: the shipped one
    registry = ModelRegistry()
    version = registry.register(make_bundle(env / "run" / "bundle", name="ft", payload=b"tuned"))
    registry.activate(version.id, require_comparison=False)
    assert default_classifier() == version.path
    registry.rollback()
    assert default_classifier() == env / "shipped" / "classifier"
