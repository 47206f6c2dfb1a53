"""The model registry: which classifier / segmenter the app uses, and every version it could use.

State lives in ``<root>/registry.json`` (replaced atomically, so a switch of the
active model is all-or-nothing); registered bundles are copied into
``<root>/versions/<id>/`` through a staging folder, so a half-copied bundle
never appears under its final name. The shipped bundles are always there as the
read-only versions ``shipped:classifier`` and ``shipped:segmenter``, active until
something else is activated and always a rollback target; earlier shipped versions
kept beside them (``resources/models/previous/<task>-<version>/``) are read-only
versions too, ``shipped:classifier@4.1.0``, so an upgrade of the defaults can be
rolled back.

A registered version only becomes active after it has been compared with the
model that is active at that moment (``comparison["baseline"]`` names it); the
comparison itself is produced elsewhere and stored here as it is. Each version
folder also holds ``registry-entry.json``, a copy of its record, so a lost or
corrupt ``registry.json`` is rebuilt from what is on disk (only the active
choice and the history are lost: the shipped models become active again).

Neither torch nor Qt is imported here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from cxrview.inference.bundle import file_sha256
from cxrview.inference.card import BundleError, ModelCard
from cxrview.inference.shipped import CLASSIFIER, SEGMENTER, previous_bundles, shipped_bundle

REGISTRY_FILE = "registry.json"
VERSIONS_DIR = "versions"
ENTRY_FILE = "registry-entry.json"
LOCK_FILE = ".lock"
STAGING_PREFIX = ".tmp-"
REGISTRY_FORMAT = 1
TASKS = (CLASSIFIER, SEGMENTER)
CARD_TASK = {CLASSIFIER: "multilabel-classification", SEGMENTER: "segmentation"}
SHIPPED_PREFIX = "shipped:"
_RECORD_KEYS = ("id", "task", "name", "version", "created", "parent", "manifest_sha256", "comparison",
                "log_path")


class RegistryError(Exception):
    """A registry operation that cannot be done; the message is one line saying why."""


@dataclass
class ModelVersion:
    id: str
    task: str
    path: Path
    name: str
    version: str
    created: str
    parent: str | None = None
    manifest_sha256: str | None = None
    comparison: dict[str, Any] | None = None
    read_only: bool = False
    log_path: str | None = None
    active: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        return data

    def read_card(self) -> ModelCard:
        """The bundle's card (BundleError when the folder is gone or the card unreadable)."""
        return ModelCard.read(self.path)


def default_root() -> Path:
    """``$CXRVIEW_REGISTRY_DIR`` if set, else ``<user data dir>/cxrview/models``."""
    override = os.environ.get("CXRVIEW_REGISTRY_DIR")
    if override:
        return Path(override)
    from platformdirs import user_data_dir

    return Path(user_data_dir("cxrview")) / "models"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _check_task(task: str) -> str:
    if task not in TASKS:
        raise RegistryError(f"unknown task {task!r} (choose from {', '.join(TASKS)})")
    return task


def _folder_name(version_id: str) -> str:
    """A file-system-safe folder name for an id (ids come from card names, which are free text)."""
    name = re.sub(r"[^A-Za-z0-9._@+-]", "_", version_id).lstrip(".")
    return name or "version"


def _empty_state() -> dict[str, Any]:
    return {"format": REGISTRY_FORMAT, "versions": [], "active": {}, "history": []}


def _clean_record(raw: Any) -> dict[str, Any] | None:
    """A version record as stored, or None when it is unusable."""
    if not isinstance(raw, dict):
        return None
    record: dict[str, Any] = {key: raw.get(key) for key in _RECORD_KEYS}
    record["folder"] = raw.get("folder")
    if not all(isinstance(record[k], str) and record[k] for k in ("id", "name", "version")):
        return None
    if record["task"] not in TASKS or record["id"].startswith(SHIPPED_PREFIX):
        return None
    if not isinstance(record["folder"], str) or record["folder"] != _folder_name(record["folder"]):
        record["folder"] = _folder_name(record["id"])
    if not isinstance(record["comparison"], dict):
        record["comparison"] = None
    if not isinstance(record["created"], str):
        record["created"] = ""
    for key in ("parent", "manifest_sha256", "log_path"):
        if not isinstance(record[key], str):
            record[key] = None
    return record


def _clean_state(raw: Any) -> dict[str, Any]:
    """Validated state; ValueError when the file is not a registry at all."""
    if not isinstance(raw, dict) or not isinstance(raw.get("versions"), list):
        raise ValueError("not a registry file")
    state = _empty_state()
    seen: set[str] = set()
    for item in raw["versions"]:
        record = _clean_record(item)
        if record is not None and record["id"] not in seen:
            seen.add(record["id"])
            state["versions"].append(record)
    active = raw.get("active")
    if isinstance(active, dict):
        state["active"] = {t: v for t, v in active.items() if t in TASKS and isinstance(v, str)}
    history = raw.get("history")
    if isinstance(history, list):
        state["history"] = [h for h in history if isinstance(h, dict) and h.get("task") in TASKS
                            and isinstance(h.get("id"), str)]
    return state


class ModelRegistry:
    """Versions of the classifier and segmenter, the active one of each, and how they got there.

    Every call reads ``registry.json`` afresh, so the GUI and the command line
    see each other's changes; changes are made under a lock file.
    """

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.versions_dir = self.root / VERSIONS_DIR
        self.state_path = self.root / REGISTRY_FILE

    # -- reading ------------------------------------------------------------------------------
    def versions(self, task: str | None = CLASSIFIER) -> list[ModelVersion]:
        """Shipped first, then registered ones in the order they were registered (None: all tasks)."""
        tasks = TASKS if task is None else (_check_task(task),)
        state = self._load()
        out: list[ModelVersion] = []
        for t in tasks:
            found = self._all_versions(state, t)
            active_id = self._effective_active(state, t, found)
            for version in found:
                version.active = version.id == active_id
            out.extend(found)
        return out

    def get(self, version_id: str) -> ModelVersion:
        for version in self.versions(None):
            if version.id == version_id:
                return version
        raise RegistryError(f"no model version {version_id!r} (see `cxrview models list`)")

    def active(self, task: str = CLASSIFIER) -> ModelVersion:
        """The active version; the shipped one when the chosen one's folder vanished or is unreadable."""
        _check_task(task)
        for version in self.versions(task):
            if version.active:
                return version
        raise RegistryError(f"no usable {task} model: the shipped one is missing from "
                            f"{shipped_bundle(task)} and none is registered and active")

    def active_path(self, task: str = CLASSIFIER) -> Path:
        return self.active(task).path

    def history(self, task: str = CLASSIFIER) -> list[dict[str, Any]]:
        """Activation and rollback entries of this task, oldest first."""
        _check_task(task)
        return [dict(h) for h in self._load()["history"] if h.get("task") == task]

    def activation_problem(self, version_id: str) -> str | None:
        """Why ``activate(version_id)`` would be refused, or None when it would not."""
        version = self.get(version_id)
        current = self.active(version.task)
        return self._problem(version, current)

    # -- changing -----------------------------------------------------------------------------
    def register(self, bundle_dir: str | os.PathLike[str], *, task: str = CLASSIFIER,
                 parent: str | None = None, manifest_sha256: str | None = None,
                 comparison: dict[str, Any] | None = None, log_path: str | None = None) -> ModelVersion:
        """Copy a bundle into the registry as a new, inactive version."""
        _check_task(task)
        source = Path(bundle_dir)
        card = self._readable_card(source, task)
        if comparison is not None and not isinstance(comparison, dict):
            raise RegistryError("comparison must be a JSON object")
        with self._locked():
            state = self._load(locked=True)
            if not self.state_path.exists():
                # record what is known first, so a copy that crashes before being recorded
                # stays an unlisted orphan instead of being adopted by a later rebuild
                self._save(state)
            self._clean_staging()
            staging = self._stage_copy(source)
            try:
                card = self._readable_card(staging, task)
                weights = staging / card.weights_file
                if not weights.is_file():
                    raise RegistryError(f"{source / card.weights_file}: weights file missing")
                sha = file_sha256(weights)
                if card.weights_sha256 and sha != card.weights_sha256:
                    raise RegistryError(f"{source / card.weights_file}: sha256 {sha[:12]}… does not match "
                                        f"the card's {card.weights_sha256[:12]}… (file corrupt or replaced)")
                version_id = self._new_id(state, f"{card.name}@{card.version}-{sha[:8]}")
                record: dict[str, Any] = {
                    "id": version_id, "task": task, "name": card.name, "version": card.version,
                    "created": _now(), "parent": parent, "manifest_sha256": manifest_sha256,
                    "comparison": comparison, "log_path": log_path, "folder": _folder_name(version_id)}
                self._write_json(staging / ENTRY_FILE, record)
                target = self.versions_dir / record["folder"]
                if target.exists():  # left by a register that crashed before recording it
                    self._discard(target)
                os.replace(staging, target)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            state["versions"].append(record)
            self._save(state)
        return self.get(version_id)

    def set_comparison(self, version_id: str, comparison: dict[str, Any]) -> ModelVersion:
        """Store (replace) the comparison of a registered version."""
        if not isinstance(comparison, dict):
            raise RegistryError("comparison must be a JSON object")
        with self._locked():
            state = self._load(locked=True)
            record = self._record(state, version_id)
            record["comparison"] = comparison
            self._save(state)
            entry = self.versions_dir / record["folder"] / ENTRY_FILE
            if entry.parent.is_dir():
                with contextlib.suppress(OSError):  # only a recovery copy; registry.json is the truth
                    self._write_json(entry, record)
        return self.get(version_id)

    def activate(self, version_id: str, *, require_comparison: bool = True) -> ModelVersion:
        """Make a version the active one of its task (shipped versions need no comparison)."""
        with self._locked():
            state = self._load(locked=True)
            version, current = self._target(state, version_id)
            if version.id == current.id:
                return self.get(version.id)
            problem = self._problem(version, current)
            if require_comparison and problem is not None:
                raise RegistryError(problem)
            self._switch(state, version, current, "activate",
                         forced=bool(problem is not None and not require_comparison))
        return self.get(version.id)

    def rollback(self, version_id: str | None = None, *, task: str = CLASSIFIER) -> ModelVersion:
        """Back to ``version_id`` or, with None, to the version active before the current one.

        Repeated rollbacks without an id walk further back through the activations.
        No comparison is needed.
        """
        with self._locked():
            state = self._load(locked=True)
            if version_id is None:
                _check_task(task)
                current = self._active_from(state, task)
                stack = self._undo_stack(state, task)
                while stack and stack[-1] == current.id:
                    stack.pop()
                if not stack:
                    raise RegistryError(f"nothing to roll back to: {current.id} is the first active {task}")
                version_id = stack[-1]
                if not any(v.id == version_id for v in self._all_versions(state, task)):
                    raise RegistryError(f"the previous {task} {version_id} no longer exists; name a version "
                                        "to roll back to")
            version, current = self._target(state, version_id)
            if version.id == current.id:
                return self.get(version.id)
            self._switch(state, version, current, "rollback")
        return self.get(version.id)

    def remove(self, version_id: str) -> None:
        """Delete a registered version that is not active (shipped versions cannot be removed)."""
        with self._locked():
            state = self._load(locked=True)
            record = self._record(state, version_id)
            task = record["task"]
            effective = self._effective_active(state, task, self._all_versions(state, task))
            if version_id in (state["active"].get(task), effective):
                raise RegistryError(f"{version_id} is the active {task}; roll back or activate another first")
            state["versions"] = [r for r in state["versions"] if r["id"] != version_id]
            self._save(state)
            folder = self.versions_dir / record["folder"]
            if folder.exists():
                self._discard(folder)

    # -- internals: versions ------------------------------------------------------------------
    def _shipped(self, task: str) -> list[ModelVersion]:
        """The shipped default (``shipped:<task>``) and the earlier shipped versions kept for rollback."""
        found = []
        for path, suffix in [(shipped_bundle(task), ""), *((p, "@") for p in previous_bundles(task))]:
            try:
                card = ModelCard.read(path)
            except BundleError:
                continue
            if card.task != CARD_TASK[task]:
                continue
            created = str((card.training or {}).get("date") or "")
            vid = f"{SHIPPED_PREFIX}{task}" + (f"@{card.version}" if suffix else "")
            found.append(ModelVersion(id=vid, task=task, path=path, name=card.name, version=card.version,
                                      created=created, parent=None, read_only=True))
        return found

    def _from_record(self, record: dict[str, Any]) -> ModelVersion:
        return ModelVersion(id=record["id"], task=record["task"], path=self.versions_dir / record["folder"],
                            name=record["name"], version=record["version"], created=record["created"],
                            parent=record["parent"], manifest_sha256=record["manifest_sha256"],
                            comparison=record["comparison"], read_only=False, log_path=record["log_path"])

    def _all_versions(self, state: dict[str, Any], task: str) -> list[ModelVersion]:
        registered = [self._from_record(r) for r in state["versions"] if r["task"] == task]
        return self._shipped(task) + registered

    @staticmethod
    def _usable(version: ModelVersion) -> bool:
        try:
            return version.read_card().task == CARD_TASK[version.task]
        except BundleError:
            return False

    def _effective_active(self, state: dict[str, Any], task: str, found: list[ModelVersion]) -> str | None:
        chosen = state["active"].get(task)
        for version in found:
            if version.id == chosen and (version.read_only or self._usable(version)):
                return version.id
        shipped = f"{SHIPPED_PREFIX}{task}"
        return shipped if any(v.id == shipped for v in found) else None

    def _active_from(self, state: dict[str, Any], task: str) -> ModelVersion:
        found = self._all_versions(state, task)
        active_id = self._effective_active(state, task, found)
        for version in found:
            if version.id == active_id:
                return version
        raise RegistryError(f"no usable {task} model: the shipped one is missing from {shipped_bundle(task)} "
                            "and none is registered and active")

    def _record(self, state: dict[str, Any], version_id: str) -> dict[str, Any]:
        for record in state["versions"]:
            if record["id"] == version_id:
                return cast(dict[str, Any], record)  # the stored record itself: callers update it
        if version_id.startswith(SHIPPED_PREFIX):
            raise RegistryError(f"{version_id} is a shipped model and cannot be changed")
        raise RegistryError(f"no model version {version_id!r} (see `cxrview models list`)")

    def _target(self, state: dict[str, Any], version_id: str) -> tuple[ModelVersion, ModelVersion]:
        for task in TASKS:
            for version in self._all_versions(state, task):
                if version.id == version_id:
                    if not version.read_only and not self._usable(version):
                        raise RegistryError(f"{version_id}: its bundle in {version.path} is missing or "
                                            "unreadable")
                    return version, self._active_from(state, task)
        raise RegistryError(f"no model version {version_id!r} (see `cxrview models list`)")

    @staticmethod
    def _problem(version: ModelVersion, current: ModelVersion) -> str | None:
        if version.read_only or version.id == current.id:
            return None
        comparison = version.comparison or {}
        baseline = comparison.get("baseline")
        if not comparison:
            return (f"{version.id} has not been compared with the active {version.task} {current.id}; "
                    "compare it first")
        if baseline != current.id:
            return (f"{version.id} was compared with {baseline or 'an unnamed model'}, not with the active "
                    f"{version.task} {current.id}; compare it again first")
        return None

    def _new_id(self, state: dict[str, Any], base: str) -> str:
        taken = {r["id"] for r in state["versions"]}
        folders = {r["folder"] for r in state["versions"]}
        candidate, n = base, 1
        while candidate in taken or _folder_name(candidate) in folders:
            n += 1
            candidate = f"{base}-{n}"
        return candidate

    def _readable_card(self, folder: Path, task: str) -> ModelCard:
        try:
            card = ModelCard.read(folder)
        except BundleError as exc:
            raise RegistryError(str(exc)) from exc
        if card.task != CARD_TASK[task]:
            raise RegistryError(f"{folder}: a {card.task} model cannot be registered as a {task} "
                                f"(expected {CARD_TASK[task]})")
        return card

    # -- internals: history ---------------------------------------------------------------------
    @staticmethod
    def _undo_stack(state: dict[str, Any], task: str) -> list[str]:
        """Versions a plain rollback would return to, most recent last.

        An activation pushes the version it replaced; a rollback to the version on
        top pops it (a rollback elsewhere counts as an activation).
        """
        stack: list[str] = []
        for entry in state["history"]:
            if entry.get("task") != task:
                continue
            previous = entry.get("previous")
            if entry.get("action") == "rollback" and stack and stack[-1] == entry["id"]:
                stack.pop()
            elif isinstance(previous, str):
                stack.append(previous)
        return stack

    def _switch(self, state: dict[str, Any], version: ModelVersion, current: ModelVersion, action: str,
                *, forced: bool = False) -> None:
        entry: dict[str, Any] = {"task": version.task, "id": version.id, "previous": current.id,
                                 "time": _now(), "action": action}
        if forced:
            entry["forced"] = True
        state["active"][version.task] = version.id
        state["history"].append(entry)
        self._save(state)  # one atomic replace: the switch and its history entry together

    # -- internals: storage ---------------------------------------------------------------------
    def _load(self, *, locked: bool = False) -> dict[str, Any]:
        try:
            raw = self.state_path.read_bytes()
        except FileNotFoundError:
            return self._rebuild()
        except OSError:
            return self._rebuild()  # unreadable (permissions): defaults; a change will say why it fails
        try:
            return _clean_state(json.loads(raw.decode("utf-8")))
        except (UnicodeDecodeError, ValueError):
            pass
        if not locked:
            try:
                with self._locked():
                    return self._load(locked=True)  # another process may have repaired it meanwhile
            except RegistryError:
                return self._rebuild()
        stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
        aside = self.state_path.with_name(f"{REGISTRY_FILE}.corrupt-{stamp}")
        n = 1
        while aside.exists():
            n += 1
            aside = self.state_path.with_name(f"{REGISTRY_FILE}.corrupt-{stamp}-{n}")
        with contextlib.suppress(OSError):
            os.replace(self.state_path, aside)
        return self._rebuild()

    def _rebuild(self) -> dict[str, Any]:
        """Defaults plus the registered versions found on disk (their folders keep a copy of their record)."""
        state = _empty_state()
        if not self.versions_dir.is_dir():
            return state
        records = []
        try:
            folders = sorted(self.versions_dir.iterdir())
        except OSError:
            return state
        for folder in folders:
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            try:
                record = _clean_record(json.loads((folder / ENTRY_FILE).read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError, ValueError):
                continue
            if record is not None and record["folder"] == folder.name:
                records.append(record)
        records.sort(key=lambda r: (r["created"], r["id"]))
        seen: set[str] = set()
        for record in records:
            if record["id"] not in seen:
                seen.add(record["id"])
                state["versions"].append(record)
        return state

    def _save(self, state: dict[str, Any]) -> None:
        self._write_json(self.state_path, state)

    @staticmethod
    def _write_json(path: Path, data: dict[str, Any]) -> None:
        from cxrview.core.export import atomic_write_bytes  # not at import time: cxrview.core is heavy

        try:
            atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))
        except OSError as exc:
            raise RegistryError(f"{path}: cannot write ({exc.strerror or exc})") from exc

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """An exclusive lock on ``<root>/.lock`` for the duration of a change (advisory, per process)."""
        try:
            self.versions_dir.mkdir(parents=True, exist_ok=True)
            handle = open(self.root / LOCK_FILE, "a+b")  # closed below
        except OSError as exc:
            raise RegistryError(f"{self.root}: cannot use the model registry "
                                f"({exc.strerror or exc})") from exc
        try:
            _lock(handle)
            yield
        finally:
            _unlock(handle)
            handle.close()

    def _clean_staging(self) -> None:
        """Remove staging folders of copies that crashed (safe: we hold the lock)."""
        try:
            leftovers = [p for p in self.versions_dir.iterdir() if p.name.startswith(STAGING_PREFIX)]
        except OSError:
            return
        for path in leftovers:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    path.unlink()

    def _stage_copy(self, source: Path) -> Path:
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.versions_dir))
        try:
            shutil.copytree(source, staging, dirs_exist_ok=True)
        except (OSError, shutil.Error) as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise RegistryError(f"{source}: cannot copy the bundle into {self.versions_dir} ({exc})") from exc
        return staging

    def _discard(self, folder: Path) -> None:
        """Rename out of the way first, so a crash mid-delete leaves only a staging folder."""
        trash = self.versions_dir / f"{STAGING_PREFIX}trash-{os.getpid()}-{folder.name}"
        try:
            os.replace(folder, trash)
        except OSError:
            trash = folder
        shutil.rmtree(trash, ignore_errors=True)


def _lock(handle: Any) -> None:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)  # type: ignore[attr-defined]
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)


def _unlock(handle: Any) -> None:
    try:
        import fcntl
    except ImportError:
        import msvcrt

        handle.seek(0)
        with contextlib.suppress(OSError):
            msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
