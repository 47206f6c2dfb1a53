"""What cxrview is, which models it runs and under which terms: the About box's text. Qt-free.

The GUI (Help › About) renders :func:`about_html`; ``cxrview --version`` prints
:func:`version_text` and the same facts come from :func:`gather`, so the two never disagree.
Reading cards only (JSON), never weights: no torch, fast.
"""

from __future__ import annotations

import functools
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

from cxrview import __version__
from cxrview.licences import PROJECT_LICENCE, TRAINING_DATA, DataSource, Package, model_data_terms

APP_NAME = "cxrview"
SUMMARY = "Offline chest X-ray review and annotation with local AI"
INTENDED_USE = "Research and second reading; not a certified medical device."
INTENDED_USE_DETAIL = ("AI output is an aid for research and for a second reading by a qualified reader. "
                       "It is not cleared or certified for diagnosis; never act on it alone.")

# How a card's training record names each data source (lower-case substrings).
_DATA_KEYWORDS: dict[str, tuple[str, ...]] = {
    "nih": ("nih", "data_entry", "chestx-ray14", "chestxray14"),
    "jsrt": ("jsrt",),
    "wingspan": ("wingspan", "cardiothoracic_ratio_estimation"),
    "rsna": ("rsna", "covid", "radiography database"),
}


@dataclass(frozen=True)
class ModelInfo:
    task: str  # "classifier" / "segmenter"
    name: str
    version: str
    path: str
    data: tuple[DataSource, ...] = ()
    problem: str | None = None  # the card could not be read


@dataclass(frozen=True)
class About:
    version: str
    licence: str
    intended_use: str
    models: tuple[ModelInfo, ...]
    third_party: tuple[Package, ...] = ()
    third_party_problem: str | None = None
    training_data: tuple[DataSource, ...] = field(default=TRAINING_DATA)


def data_sources(card_data: dict[str, object]) -> tuple[DataSource, ...]:
    """The training data a card names (in its name or training record), in TRAINING_DATA order."""
    text = json.dumps({k: card_data.get(k) for k in ("name", "training")}).lower()
    return tuple(source for source in TRAINING_DATA
                 if any(word in text for word in _DATA_KEYWORDS.get(source.key, (source.key,))))


def model_info(task: str, bundle: Path) -> ModelInfo:
    try:
        data = json.loads((bundle / "card.json").read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("card.json is not an object")
        return ModelInfo(task, str(data.get("name", "?")), str(data.get("version", "?")), str(bundle),
                         data_sources(data))
    except (OSError, ValueError) as exc:
        return ModelInfo(task, "?", "?", str(bundle), (), f"card unreadable: {exc}")


def active_bundles() -> dict[str, Path]:
    """The classifier the viewer uses (the registry's active one, else the shipped one) and the
    shipped segmenter: what Help › About and ``--version`` describe unless told otherwise."""
    from cxrview.inference.shipped import CLASSIFIER, SEGMENTER, shipped_bundle

    bundles = {CLASSIFIER: shipped_bundle(CLASSIFIER), SEGMENTER: shipped_bundle(SEGMENTER)}
    try:
        from cxrview.inference.registry import ModelRegistry

        bundles[CLASSIFIER] = ModelRegistry().active_path(CLASSIFIER)
    except Exception:  # an unreadable registry: the viewer falls back to the shipped model too
        pass
    return bundles


@functools.cache
def third_party_packages() -> tuple[Package, ...]:
    """The runtime dependencies and their licences (read once per process)."""
    from cxrview.licences import dependency_closure, project_requirements

    return tuple(dependency_closure(project_requirements())[0])


def gather(bundles: dict[str, Path] | None = None, *, third_party: bool = True) -> About:
    """Everything the About box says; ``bundles`` (task → folder) default to :func:`active_bundles`."""
    chosen = bundles if bundles is not None else active_bundles()
    models = tuple(model_info(task, Path(path)) for task, path in chosen.items())
    packages: tuple[Package, ...] = ()
    problem = None
    if third_party:
        try:
            packages = third_party_packages()
        except Exception as exc:  # no metadata (a stripped bundle): say where the report is
            problem = f"the package metadata is not available here ({exc}); see THIRD_PARTY_LICENSES.md"
    return About(__version__, PROJECT_LICENCE, INTENDED_USE, models, packages, problem)


def _model_line(m: ModelInfo) -> str:
    if m.problem:
        return f"{m.task}: {m.path} ({m.problem})"
    data = "; ".join(d.name for d in m.data) or "training data not named on its card"
    return f"{m.task}: {m.name} {m.version} — trained on {data}"


def version_text(about: About) -> str:
    """``cxrview --version``: the version, then one line per active model."""
    lines = [f"{APP_NAME} {about.version}"]
    lines += [f"{m.task}: {m.name} {m.version}" + (f" ({m.problem})" if m.problem else "")
              for m in about.models]
    return "\n".join(lines)


def about_text(about: About) -> str:
    """The whole About box as plain text."""
    lines = [f"{APP_NAME} {about.version} — {SUMMARY}", "", f"Intended use: {about.intended_use}",
             INTENDED_USE_DETAIL, "", f"Licence: {about.licence} (see LICENSE).", "", "Models:"]
    lines += [f"  {_model_line(m)}" for m in about.models]
    lines += ["", "Licences of the models' training data:"]
    lines += [f"  {d.name}: {d.terms}" for d in about.training_data]
    lines += [f"  {model_data_terms()}", "", "Third-party software:"]
    if about.third_party_problem:
        lines.append(f"  {about.third_party_problem}")
    lines += [f"  {p.name} {p.version}: {p.used_under}" for p in about.third_party]
    return "\n".join(lines)


def about_html(about: About) -> str:
    """The About box as Qt rich text (a subset of HTML 4)."""
    e = html.escape
    parts = [f"<h2>{APP_NAME} {e(about.version)}</h2><p>{e(SUMMARY)}</p>",
             f"<p><b>Intended use:</b> {e(about.intended_use)}<br>{e(INTENDED_USE_DETAIL)}</p>",
             f"<p><b>Licence:</b> {e(about.licence)}. cxrview is free software under the Apache "
             "License, Version 2.0; it comes with no warranty.</p>", "<h3>Models</h3><ul>"]
    for m in about.models:
        if m.problem:
            parts.append(f"<li>{e(m.task)}: <i>{e(m.problem)}</i> ({e(m.path)})</li>")
        else:
            data = ", ".join(e(d.name) for d in m.data) or "training data not named on its card"
            parts.append(f"<li><b>{e(m.task)}</b>: {e(m.name)} {e(m.version)}<br>"
                         f"<small>trained on {data}</small></li>")
    parts.append("</ul><h3>Licences of the models' training data</h3><table cellpadding='2'>")
    parts += [f"<tr><td>{e(d.name)}</td><td>{e(d.terms)}</td></tr>" for d in about.training_data]
    parts.append(f"</table><p><small>{e(model_data_terms())}</small></p><h3>Third-party software</h3>")
    if about.third_party_problem:
        parts.append(f"<p><i>{e(about.third_party_problem)}</i></p>")
    if about.third_party:
        parts.append("<table cellpadding='1'>")
        parts += [f"<tr><td>{e(p.name)}</td><td>{e(p.version)}</td><td>{e(p.used_under)}</td></tr>"
                  for p in about.third_party]
        parts.append("</table>")
    return "".join(parts)
