"""The base of every section and the way sections come from and go to YAML: load, parse, override, dump
and hash."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError


class Section(BaseModel):
    """A typed config section; unknown keys are errors, because a misspelt setting that silently falls
    back to a default costs a GPU-day."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


SectionT = TypeVar("SectionT", bound=BaseModel)


class ConfigError(ValueError):
    """A config file that is missing, unreadable or invalid; the message names the file and the key."""


def load_config(path: str | Path, cls: type[SectionT], overrides: dict | None = None) -> SectionT:
    """Read YAML into ``cls``; ``overrides`` (dotted keys) are applied on top, as from a CLI."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(raw).__name__}")
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, value)
    return parse_config(raw, cls, origin=str(path))


def parse_config(raw: dict, cls: type[SectionT], origin: str = "config") -> SectionT:
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{origin}: invalid configuration ({exc.error_count()} problem(s)):"]
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  - {where}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from None


def dump_config(cfg: BaseModel, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


def config_hash(cfg: object) -> str:
    """Stable digest of a section (or of plain data holding sections), recorded in run manifests to
    detect changed settings."""

    def plain(obj: object) -> object:
        if isinstance(obj, BaseModel):
            return obj.model_dump(mode="json")
        raise TypeError(f"cannot hash a {type(obj).__name__}")

    blob = json.dumps(cfg, default=plain, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def parse_overrides(pairs: list[str]) -> dict:
    """``key.sub=value`` strings (value parsed as YAML) into a dict for ``load_config``."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"override must look like key=value, got {pair!r}")
        out[key] = yaml.safe_load(value)
    return out


def _set_dotted(raw: dict, dotted: str, value: object) -> None:
    """Set one dotted key. Each section on the way is copied before it is changed: a YAML alias
    (``rm_round: *rm``) shares its mapping with the anchor, and an override must change only the place
    it names (else ``train.rm_round.max_steps`` would also change ``train.rm``). A section left out or set
    to null (``verifier_arm: null``) starts empty, so ``verifier_arm.verifier=...`` turns it on."""
    *parents, leaf = dotted.split(".")
    node = raw
    for key in parents:
        child = node.get(key)
        child = {} if child is None else child
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r}: {key!r} is not a section")
        node[key] = dict(child)
        node = node[key]
    node[leaf] = value
