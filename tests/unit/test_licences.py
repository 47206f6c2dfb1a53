"""The licence check's decisions (``cxrview.licences``), on fake metadata and on this checkout."""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path

import pytest

from cxrview import licences
from cxrview.licences import UNKNOWN, dependency_closure, read_licence, verdict
from tests.conftest import REPO_ROOT


def meta(name: str = "pkg", *, expression: str | None = None, license: str | None = None,
         classifiers: tuple[str, ...] = ()) -> Message:
    message = Message()
    message["Name"] = name
    if expression is not None:
        message["License-Expression"] = expression
    if license is not None:
        message["License"] = license
    for classifier in classifiers:
        message["Classifier"] = classifier
    return message


@dataclass
class FakeDist:
    metadata: Message
    version: str = "1.0"
    requires: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.metadata["Version"] = self.version
        for requirement in self.requires:
            self.metadata["Requires-Dist"] = requirement


def test_the_spdx_expression_wins_over_everything_else() -> None:
    m = meta(expression="MIT", license="GPL v3.0", classifiers=("License :: OSI Approved :: GNU General "
                                                              "Public License v3 (GPLv3)",))
    assert read_licence(m) == ("MIT", "License-Expression")


@pytest.mark.parametrize(("metadata", "expected"), [
    (meta(license="BSD-3-Clause"), ("BSD-3-Clause", "License")),
    (meta(license="Apache 2.0"), ("Apache-2.0", "License")),
    (meta(license="LGPL-3.0-only OR GPL-2.0-only OR GPL-3.0-only"),
     ("LGPL-3.0-only OR GPL-2.0-only OR GPL-3.0-only", "License")),
    (meta(license="GPL V3.0"), ("GPL-3.0-only", "License")),
    (meta(classifiers=("License :: OSI Approved :: MIT License",)), ("MIT", "classifiers")),
    (meta(license="see LICENSE file", classifiers=("License :: OSI Approved :: BSD License",)),
     ("BSD", "classifiers")),
    (meta(license="Apache License\n   Version 2.0, January 2004\n ..."), ("Apache-2.0", "licence text")),
    (meta(license="Copyright (c) 2020 X\n\nPermission is hereby granted, free of charge, to any person"),
     ("MIT", "licence text")),
    (meta(license="Copyright (c) 2020 X\nAll rights reserved."), (UNKNOWN, "none")),
    (meta(), (UNKNOWN, "none")),
])
def test_licence_read_from_the_fields_in_order(metadata: Message, expected: tuple[str, str]) -> None:
    assert read_licence(metadata) == expected


def test_several_classifiers_all_apply() -> None:
    m = meta(classifiers=("License :: OSI Approved :: GNU General Public License v3 (GPLv3)",
                          "License :: Other/Proprietary License"))
    expression, _ = read_licence(m)
    assert expression == "GPL-3.0-only AND LicenseRef-Proprietary"
    assert not verdict("x", expression).allowed


@pytest.mark.parametrize(("expression", "allowed", "used_under"), [
    ("MIT", True, "MIT"),
    ("mit", True, "mit"),
    ("BSD-3-Clause AND 0BSD AND MIT AND Zlib AND CC0-1.0", True, None),
    ("Apache-2.0 WITH LLVM-exception", True, None),
    ("LGPL-3.0-only OR GPL-2.0-only OR GPL-3.0-only", True, "LGPL-3.0-only"),
    ("(GPL-3.0-only OR MIT) AND BSD-3-Clause", True, "MIT AND BSD-3-Clause"),
    ("GPL-3.0-only", False, None),
    ("GPL-2.0-only WITH Classpath-exception-2.0", False, None),
    ("MIT AND GPL-3.0-or-later", False, None),
    ("AGPL-3.0-only OR SSPL-1.0", False, None),
    ("CC-BY-NC-4.0", False, None),
    ("LicenseRef-NVIDIA-Proprietary", False, None),
    ("(MIT", False, None),
    ("MIT AND", False, None),
    (UNKNOWN, False, None),
])
def test_verdict_on_expressions(expression: str, allowed: bool, used_under: str | None) -> None:
    decided = verdict("somepkg", expression)
    assert decided.allowed is allowed, decided.reason
    if used_under is not None:
        assert decided.used_under == used_under
    if not allowed:
        assert decided.reason


def test_exceptions_by_name_only_and_with_their_reason() -> None:
    assert verdict("nvidia-cublas", "LicenseRef-NVIDIA-Proprietary").allowed
    assert "NVIDIA" in verdict("nvidia_cudnn_cu13", UNKNOWN).reason
    assert not verdict("nvidiafake", "LicenseRef-NVIDIA-Proprietary").allowed
    assert not verdict("not-nvidia-cublas", "LicenseRef-NVIDIA-Proprietary").allowed


def test_the_closure_follows_requirements_markers_and_extras() -> None:
    dists = {
        "app-dep": FakeDist(meta("app-dep", expression="MIT"),
                            requires=["child[extra1]>=1", "testonly ; extra == 'dev'",
                                      "windows-only ; sys_platform == 'nonexistent'"]),
        "child": FakeDist(meta("child", license="BSD"), requires=["viral ; extra == 'extra1'"]),
        "viral": FakeDist(meta("viral", classifiers=("License :: OSI Approved :: GNU General Public "
                                                     "License v3 (GPLv3)",))),
        "testonly": FakeDist(meta("testonly", expression="GPL-3.0-only")),
        "windows-only": FakeDist(meta("windows-only", expression="GPL-3.0-only")),
        "ml-dep": FakeDist(meta("ml-dep", expression="Apache-2.0")),
    }
    packages, missing = dependency_closure(
        ["app-dep", "ml-dep ; extra == 'ml'", "dev-tool ; extra == 'dev'", "absent>=2"], dists.get)
    by_name = {p.name: p for p in packages}
    assert set(by_name) == {"app-dep", "child", "viral", "ml-dep"}
    assert missing == ["absent"]
    assert not by_name["viral"].allowed and by_name["viral"].required_by == "child"
    assert all(p.allowed for n, p in by_name.items() if n != "viral")


def test_main_fails_when_a_dependency_is_incompatible(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str],
                                                      tmp_path: Path) -> None:
    dists = {"good": FakeDist(meta("good", expression="MIT"), requires=["bad"]),
             "bad": FakeDist(meta("bad", license="GPL v3.0"), version="2.5")}
    monkeypatch.setattr(licences, "project_requirements", lambda root=None: ["good"])
    monkeypatch.setattr(licences, "_installed", dists.get)
    report = tmp_path / "third.md"
    assert licences.main(["--write", str(report)]) == 1
    err = capsys.readouterr().err
    assert "bad 2.5" in err and "pulled in by good" in err and "GPL-3.0-only" in err
    text = report.read_text()
    assert "| bad | 2.5 |" in text and "NOT ALLOWED" in text and "NIH ChestX-ray14" in text


def test_this_checkout_declares_its_licence_and_no_gpl_decoder() -> None:
    import tomllib

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == licences.PROJECT_LICENCE == "Apache-2.0"
    assert "Apache License" in (REPO_ROOT / project["license-files"][0]).read_text()[:200]
    names = {licences.canonical(r.split(";")[0].split(">")[0].split("=")[0].split("[")[0].strip())
             for r in licences.project_requirements(REPO_ROOT)}
    assert "pylibjpeg-libjpeg" not in names and "imagecodecs" in names and "torch" in names


def test_the_real_gpl_decoder_would_be_refused() -> None:
    try:
        dist = importlib.metadata.distribution("pylibjpeg-libjpeg")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("pylibjpeg-libjpeg is not installed here")
    expression, _ = read_licence(dist.metadata)
    assert not verdict("pylibjpeg-libjpeg", expression).allowed
    packages, _ = dependency_closure([*licences.project_requirements(REPO_ROOT), "pylibjpeg-libjpeg"])
    assert [p.name for p in packages if not p.allowed] == ["pylibjpeg-libjpeg"]


def test_the_installed_runtime_dependencies_pass() -> None:
    packages, _ = dependency_closure(licences.project_requirements(REPO_ROOT))
    assert packages and [p.name for p in packages if not p.allowed] == []
    assert {"numpy", "pydicom", "imagecodecs"} <= {licences.canonical(p.name) for p in packages}
