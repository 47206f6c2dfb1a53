"""Licences of what cxrview runs on and what its models learnt from (ADR 0012). Qt-free.

    python -m cxrview.licences             check: list every runtime dependency's licence; exit 1
                                           when one is not compatible with Apache-2.0
    python -m cxrview.licences --write F   also write the third-party licence report (Markdown) to F
    python -m cxrview.licences --json      the same list as JSON
    python -m cxrview.licences --quiet     only the refusals and a one-line summary (``dev.py check``)

The runtime dependencies are the closure of the default install plus the ``ml`` extra: read
from ``pyproject.toml`` in a checkout, else from the installed ``cxrview`` distribution, then
followed through each installed distribution's own requirements (markers evaluated here).
A distribution's licence is read, in this order, from its SPDX ``License-Expression``, a short
``License`` field, its trove classifiers, or the first words of a licence text in ``License``.
The decision is :func:`verdict`: an SPDX expression is allowed when every ``AND`` term and some
``OR`` alternative is on :data:`ALLOWED`; a few distributions are allowed by name
(:data:`EXCEPTIONS`) with the reason next to them. Anything else, unknown included, fails.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

PROJECT_LICENCE = "Apache-2.0"
ML_EXTRA = "ml"

# SPDX identifiers compatible with distributing cxrview (Apache-2.0) together with them.
_PERMISSIVE = "permissive"
_WEAK = "weak copyleft: used as an unmodified, separately replaceable library"
ALLOWED: dict[str, str] = {
    "Apache-2.0": "the project's own licence",
    "Apache-2.0 WITH LLVM-exception": _PERMISSIVE,
    "MIT": _PERMISSIVE, "MIT-0": _PERMISSIVE, "MIT-CMU": _PERMISSIVE, "X11": _PERMISSIVE,
    "HPND": _PERMISSIVE, "NCSA": _PERMISSIVE, "ISC": _PERMISSIVE, "Zlib": _PERMISSIVE,
    "BSD": _PERMISSIVE, "BSD-2-Clause": _PERMISSIVE, "BSD-3-Clause": _PERMISSIVE, "0BSD": _PERMISSIVE,
    "BSL-1.0": _PERMISSIVE, "PSF-2.0": _PERMISSIVE, "Python-2.0": _PERMISSIVE,
    "CC0-1.0": "public domain dedication", "Unlicense": "public domain dedication",
    "LicenseRef-Public-Domain": "public domain",
    "MPL-2.0": "file-level copyleft: used unmodified",
    "LGPL-2.1-only": _WEAK, "LGPL-2.1-or-later": _WEAK, "LGPL-3.0-only": _WEAK, "LGPL-3.0-or-later": _WEAK,
}

# Allowed by distribution name (canonical, or a prefix ending in "-") whatever their metadata says.
EXCEPTIONS: dict[str, str] = {
    "nvidia-": "NVIDIA CUDA runtime library pulled in by the CUDA build of torch: redistributable under "
               "the NVIDIA Software License Agreement; a CPU bundle does not contain it",
    "cuda-toolkit": "NVIDIA meta-package of the CUDA build of torch (no licence metadata; NVIDIA EULA); "
                    "a CPU bundle does not contain it",
}

# Free-form License fields and classifier names → SPDX.
_ALIASES: dict[str, str] = {
    "mit": "MIT", "mit license": "MIT", "the mit license": "MIT", "expat": "MIT",
    "bsd": "BSD", "bsd license": "BSD", "new bsd": "BSD-3-Clause", "new bsd license": "BSD-3-Clause",
    "3-clause bsd": "BSD-3-Clause", "bsd 3-clause": "BSD-3-Clause", "modified bsd": "BSD-3-Clause",
    "simplified bsd": "BSD-2-Clause", "bsd-3": "BSD-3-Clause",
    "apache 2.0": "Apache-2.0", "apache-2": "Apache-2.0", "apache 2": "Apache-2.0",
    "apache license 2.0": "Apache-2.0", "apache license, version 2.0": "Apache-2.0",
    "apache license version 2.0": "Apache-2.0", "apache software license": "Apache-2.0",
    "apache software license 2.0": "Apache-2.0", "apache": "Apache-2.0",
    "psf": "PSF-2.0", "python software foundation license": "PSF-2.0",
    "mozilla public license 2.0 (mpl 2.0)": "MPL-2.0", "mpl 2.0": "MPL-2.0",
    "isc license (iscl)": "ISC", "isc license": "ISC", "zlib/libpng license": "Zlib",
    "historical permission notice and disclaimer (hpnd)": "HPND", "public domain": "LicenseRef-Public-Domain",
    "cc0 1.0 universal (cc0 1.0) public domain dedication": "CC0-1.0",
    "gnu lesser general public license v3 (lgplv3)": "LGPL-3.0-only",
    "gnu lesser general public license v3 or later (lgplv3+)": "LGPL-3.0-or-later",
    "gnu lesser general public license v2 or later (lgplv2+)": "LGPL-2.1-or-later",
    "gnu library or lesser general public license (lgpl)": "LGPL-2.1-or-later",
    "gnu general public license v3 (gplv3)": "GPL-3.0-only", "gpl v3.0": "GPL-3.0-only",
    "gplv3": "GPL-3.0-only", "gpl-3": "GPL-3.0-only", "gpl v3": "GPL-3.0-only",
    "gnu general public license v3 or later (gplv3+)": "GPL-3.0-or-later",
    "gnu general public license v2 (gplv2)": "GPL-2.0-only", "gpl": "GPL-2.0-or-later",
    "gnu general public license (gpl)": "GPL-2.0-or-later",
    "gnu affero general public license v3": "AGPL-3.0-only",
    "gnu affero general public license v3 or later (agplv3+)": "AGPL-3.0-or-later",
    "other/proprietary license": "LicenseRef-Proprietary",
}
# Identifiers recognised (so a License field made of them is an expression), though not allowed.
_KNOWN_DENIED = {"GPL-2.0-only", "GPL-2.0-or-later", "GPL-3.0-only", "GPL-3.0-or-later", "AGPL-3.0-only",
                 "AGPL-3.0-or-later", "SSPL-1.0", "CC-BY-NC-4.0", "CC-BY-NC-SA-4.0", "LicenseRef-Proprietary",
                 "EUPL-1.2", "CDDL-1.0", "EPL-2.0"}
_CLASSIFIER_PREFIX = "License :: "
UNKNOWN = "UNKNOWN"


class Metadata(Protocol):
    def get(self, name: str, failobj: Any = None) -> Any: ...
    def get_all(self, name: str, failobj: Any = None) -> list[Any] | None: ...


class Dist(Protocol):
    """What is read of a distribution: its core metadata (Name, Version, License…, Requires-Dist)."""

    @property
    def metadata(self) -> Any: ...


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# ---------------------------------------------------------------- SPDX expressions


def _tokens(expression: str) -> list[str]:
    return re.findall(r"\(|\)|[^\s()]+", expression)


def _parse(tokens: list[str]) -> Any:
    """expr := term (OR term)*; term := factor (AND factor)*; factor := ( expr ) | ID [WITH ID]."""
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        if position >= len(tokens):
            raise ValueError("unexpected end of licence expression")
        position += 1
        return tokens[position - 1]

    def expr() -> Any:
        terms = [term()]
        while (peek() or "").upper() == "OR":
            take()
            terms.append(term())
        return ("OR", terms) if len(terms) > 1 else terms[0]

    def term() -> Any:
        factors = [factor()]
        while (peek() or "").upper() == "AND":
            take()
            factors.append(factor())
        return ("AND", factors) if len(factors) > 1 else factors[0]

    def factor() -> Any:
        token = take()
        if token == "(":
            inner = expr()
            if take() != ")":
                raise ValueError("unbalanced parentheses in licence expression")
            return inner
        if token.upper() in ("AND", "OR", "WITH", ")"):
            raise ValueError(f"unexpected {token!r} in licence expression")
        if (peek() or "").upper() == "WITH":
            take()
            return ("ID", f"{token} WITH {take()}")
        return ("ID", token)

    tree = expr()
    if position != len(tokens):
        raise ValueError(f"unexpected {tokens[position]!r} in licence expression")
    return tree


_ALLOWED_FOLDED = {key.lower(): key for key in ALLOWED}


def _allowed_id(identifier: str) -> bool:
    if identifier.lower() in _ALLOWED_FOLDED:
        return True
    base, _, exception = identifier.partition(" WITH ")
    return bool(exception) and base.lower() in _ALLOWED_FOLDED  # an exception only adds permissions


def _reason_for(identifier: str) -> str:
    key = identifier.lower()
    if key not in _ALLOWED_FOLDED:
        key = identifier.partition(" WITH ")[0].lower()
    return ALLOWED[_ALLOWED_FOLDED[key]]


def _evaluate(tree: Any) -> tuple[bool, list[str], str]:
    """(allowed, offending identifiers, the licence it is used under)."""
    kind, value = tree
    if kind == "ID":
        ok = _allowed_id(value)
        return ok, [] if ok else [value], value
    results = [_evaluate(child) for child in value]
    if kind == "AND":
        ok = all(r[0] for r in results)
        return ok, [bad for r in results for bad in r[1]], " AND ".join(r[2] for r in results)
    for result in results:  # OR: the first alternative we may use
        if result[0]:
            return result
    return False, [bad for r in results for bad in r[1]], " OR ".join(r[2] for r in results)


def is_expression(text: str) -> bool:
    """Whether ``text`` is an SPDX expression made only of identifiers we know."""
    try:
        tree = _parse(_tokens(text))
    except ValueError:
        return False

    def known(node: Any) -> bool:
        kind, value = node
        if kind == "ID":
            base = value.partition(" WITH ")[0]
            return (base.lower() in _ALLOWED_FOLDED or base in _KNOWN_DENIED
                    or base.startswith("LicenseRef-"))
        return all(known(child) for child in value)

    return bool(text.strip()) and known(tree)


# ---------------------------------------------------------------- reading metadata


def _alias(text: str) -> str | None:
    folded = " ".join(text.lower().split()).strip(" .")
    return _ALIASES.get(folded)


def _from_text(text: str) -> str | None:
    """A licence *text* pasted into the License field: recognise the common ones by their words."""
    head = " ".join(text.lower().split())[:600]
    if "apache license" in head and "2.0" in head:
        return "Apache-2.0"
    if "gnu lesser general public license" in head:
        return "LGPL-3.0-or-later" if "version 3" in head else "LGPL-2.1-or-later"
    if "gnu affero general public license" in head:
        return "AGPL-3.0-or-later"
    if "gnu general public license" in head:
        return "GPL-3.0-or-later" if "version 3" in head else "GPL-2.0-or-later"
    if "permission is hereby granted, free of charge" in head:
        return "MIT"
    if "redistribution and use in source and binary forms" in head:
        return "BSD"
    return None


def read_licence(metadata: Metadata) -> tuple[str, str]:
    """(SPDX expression or UNKNOWN, where it was read from)."""
    expression = (metadata.get("License-Expression") or "").strip()
    if expression:
        return expression, "License-Expression"
    field = (metadata.get("License") or "").strip()
    if field and len(field) <= 100 and "\n" not in field:
        if is_expression(field):
            return field, "License"
        alias = _alias(field)
        if alias:
            return alias, "License"
    classifiers = [c[len(_CLASSIFIER_PREFIX):] for c in metadata.get_all("Classifier") or []
                   if c.startswith(_CLASSIFIER_PREFIX)]
    named = []
    for classifier in classifiers:
        leaf = classifier.rsplit(" :: ", 1)[-1]
        spdx = _alias(leaf)
        named.append(spdx or f"LicenseRef-{re.sub(r'[^A-Za-z0-9.]+', '-', leaf).strip('-')}")
    if named:  # several classifiers: all of them apply, to be safe (a dual licence says OR in SPDX)
        unique = list(dict.fromkeys(named))
        return " AND ".join(unique), "classifiers"
    if field:
        recognised = _from_text(field) or _alias(field.splitlines()[0])
        if recognised:
            return recognised, "licence text"
    return UNKNOWN, "none"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    used_under: str  # the alternative we use (an OR expression), or the whole expression
    reason: str


def exception_for(name: str) -> str | None:
    key = canonical(name)
    for pattern, reason in EXCEPTIONS.items():
        if key == pattern or (pattern.endswith("-") and key.startswith(pattern)):
            return reason
    return None


def verdict(name: str, expression: str) -> Verdict:
    """Whether a distribution with this licence may be a runtime dependency of cxrview."""
    exception = exception_for(name)
    if exception:
        return Verdict(True, expression, f"allowed by name: {exception}")
    if expression == UNKNOWN:
        return Verdict(False, expression, "no licence found in its metadata")
    try:
        ok, offending, used = _evaluate(_parse(_tokens(expression)))
    except ValueError as exc:
        return Verdict(False, expression, f"unreadable licence expression ({exc})")
    if ok:
        reasons = dict.fromkeys(_reason_for(identifier) for identifier in _ids(used))
        return Verdict(True, used, "; ".join(reasons))
    return Verdict(False, expression, f"not compatible with {PROJECT_LICENCE}: " + ", ".join(offending))


def _ids(expression: str) -> list[str]:
    found: list[str] = []

    def walk(node: Any) -> None:
        if node[0] == "ID":
            found.append(node[1])
        else:
            for child in node[1]:
                walk(child)

    walk(_parse(_tokens(expression)))
    return found


# ---------------------------------------------------------------- the dependency closure


def project_requirements(root: Path | None = None) -> list[str]:
    """The default install plus the ``ml`` extra: from ``pyproject.toml`` in a checkout, else
    from the installed distribution's metadata."""
    root = root or Path(__file__).resolve().parents[1]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        import tomllib

        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        if project.get("name") == "cxrview":
            return [*project.get("dependencies", []),
                    *project.get("optional-dependencies", {}).get(ML_EXTRA, [])]
    from packaging.requirements import Requirement

    requires = importlib.metadata.distribution("cxrview").requires or []
    return [r for r in requires if _applies(Requirement(r), {"", ML_EXTRA})]


def _applies(requirement: Any, extras: Iterable[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in extras)


def _installed(name: str) -> Dist | None:
    try:
        return importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    licence: str
    source: str
    allowed: bool
    used_under: str
    reason: str
    required_by: str


def dependency_closure(requirements: Sequence[str], lookup: Callable[[str], Dist | None] | None = None,
                       ) -> tuple[list[Package], list[str]]:
    """Every distribution the requirements pull in, with its licence and verdict; and the names
    of required distributions that are not installed here (not checked)."""
    from packaging.requirements import Requirement

    lookup = lookup or _installed
    queue: list[tuple[Any, str]] = [(Requirement(r), "cxrview") for r in requirements]
    queue = [(r, parent) for r, parent in queue if _applies(r, {"", ML_EXTRA})]
    seen: dict[str, Package] = {}
    missing: list[str] = []
    while queue:
        requirement, parent = queue.pop(0)
        key = canonical(requirement.name)
        if key in seen or key in missing:
            continue
        dist = lookup(requirement.name)
        if dist is None:
            missing.append(key)
            continue
        metadata = dist.metadata  # parsed anew on every access: once per distribution
        name = metadata.get("Name") or requirement.name
        expression, source = read_licence(metadata)
        decided = verdict(name, expression)
        seen[key] = Package(name, str(metadata.get("Version") or "?"), expression, source, decided.allowed,
                            decided.used_under, decided.reason, parent)
        for raw in metadata.get_all("Requires-Dist") or []:
            child = Requirement(raw)
            if _applies(child, {"", *requirement.extras}):
                queue.append((child, name))
    return sorted(seen.values(), key=lambda p: canonical(p.name)), sorted(missing)


# ---------------------------------------------------------------- the model weights' data


@dataclass(frozen=True)
class DataSource:
    key: str  # how a model card names it (matched case-insensitively in its training record)
    name: str
    terms: str


TRAINING_DATA: tuple[DataSource, ...] = (
    DataSource("nih", "NIH ChestX-ray14 (NIH Clinical Center)",
               "CC0 / public domain; cite Wang et al., CVPR 2017"),
    DataSource("jsrt", "JSRT database (Shiraishi et al. 2000) with SCR masks (van Ginneken et al. 2006)",
               "research and education use only; the images are never redistributed; cite both papers"),
    DataSource("wingspan", "Wingspan cardiothoracic-ratio set (Dong et al., MICCAI 2018/2019)",
               "MIT; cite Dong et al."),
    DataSource("rsna", "RSNA pneumonia challenge normals via the COVID-19 Radiography Database (Kaggle)",
               "Kaggle dataset with mixed upstream terms (RSNA challenge terms; NIH images CC0): "
               "research use"),
)


def model_data_terms() -> str:
    """The paragraph about model weights every licence statement carries."""
    return ("Model weights are distributed under the project licence only as far as their training "
            "data allow; the narrowest terms (JSRT/SCR: research and education use) apply to the "
            "models as a whole. They are for research and second reading, not diagnosis.")


# ---------------------------------------------------------------- report and command line


def report_markdown(packages: Sequence[Package], missing: Sequence[str]) -> str:
    lines = [
        "# Third-party licences",
        "",
        "Generated by `python -m cxrview.licences --write docs/THIRD_PARTY_LICENSES.md`"
        " (`python3 dev.py licences`); do not edit by hand.",
        "",
        f"cxrview itself is licensed under {PROJECT_LICENCE} (`LICENSE`; ADR 0012). Its runtime "
        f"dependencies (the default install and the `{ML_EXTRA}` extra, with everything they pull in) "
        "are listed below with the licence read from their metadata, the licence cxrview uses them "
        "under, and why that is compatible. Each package's full licence text is in its installed "
        "`*.dist-info/` folder; a desktop bundle ships those folders with this report.",
        "",
        "| package | version | licence (metadata) | used under | why allowed |",
        "|---|---|---|---|---|",
    ]
    for p in packages:
        flag = "" if p.allowed else " **NOT ALLOWED**"
        lines.append(f"| {p.name} | {p.version} | {p.licence} ({p.source}) | {p.used_under}{flag} | "
                     f"{p.reason} |")
    if missing:
        lines += ["", "Required on other platforms only, or not installed here (not checked): "
                  + ", ".join(missing) + "."]
    lines += ["", "## Model weights: their training data", "",
              "| data | terms |", "|---|---|"]
    lines += [f"| {d.name} | {d.terms} |" for d in TRAINING_DATA]
    lines += ["", model_data_terms(), ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cxrview.licences", description=__doc__.split("\n")[0])
    parser.add_argument("--write", metavar="FILE", help="write the third-party licence report (Markdown)")
    parser.add_argument("--json", action="store_true", help="the list as JSON on stdout")
    parser.add_argument("--quiet", action="store_true", help="print only refusals and the summary")
    parser.add_argument("--root", metavar="DIR", help="the checkout whose pyproject.toml to read")
    args = parser.parse_args(argv)
    packages, missing = dependency_closure(project_requirements(Path(args.root) if args.root else None))
    refused = [p for p in packages if not p.allowed]
    if args.json:
        print(json.dumps({"project_licence": PROJECT_LICENCE, "packages": [asdict(p) for p in packages],
                          "not_installed": missing, "refused": [p.name for p in refused]}, indent=1))
    elif not args.quiet:
        for p in packages:
            mark = "ok  " if p.allowed else "FAIL"
            print(f"{mark} {p.name} {p.version}: {p.used_under}  [{p.source}]")
    if args.write:
        Path(args.write).write_text(report_markdown(packages, missing), encoding="utf-8")
    for p in refused:
        print(f"licence check: {p.name} {p.version} ({p.licence}, pulled in by {p.required_by}): {p.reason}",
              file=sys.stderr)
    if not refused:
        print(f"licence check: {len(packages)} runtime dependencies, all compatible with {PROJECT_LICENCE}",
              file=sys.stderr)
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
