"""Load profile files, reporting every problem with its file and line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from hub.profiles.schema import Profile


@dataclass(frozen=True, slots=True)
class ProfileError:
    """One problem in one profile file."""

    path: Path
    line: int | None
    location: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
        loc = f" {self.location}:" if self.location else ""
        return f"{where}:{loc} {self.message}"


class ProfileLoadError(Exception):
    """Raised when one or more profile files are invalid."""

    def __init__(self, errors: Sequence[ProfileError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


def _line_of(node: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    """Follow a pydantic error location through the YAML node tree; return a 1-based line."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == str(part)), None)
            if match is None:
                break
            # Point at the key line: that is where a reader looks for it.
            key = next(k for k, v in node.value if v is match)
            line = key.start_mark.line + 1
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def parse_profile(path: Path, text: str | None = None) -> Profile:
    """Parse and validate one profile file; raise ProfileLoadError with file:line details."""
    source = path.read_text(encoding="utf-8") if text is None else text
    try:
        node = yaml.compose(source)
        data: Any = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ProfileLoadError([ProfileError(path, line, "", f"not valid YAML: {exc}")]) from exc
    if not isinstance(data, dict):
        raise ProfileLoadError([ProfileError(path, 1, "", "a profile is a YAML mapping")])
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
            errors.append(
                ProfileError(
                    path,
                    _line_of(node, loc),
                    ".".join(str(p) for p in loc),
                    err["msg"].removeprefix("Value error, "),
                )
            )
        raise ProfileLoadError(errors) from exc


def load_profiles(directory: Path) -> list[Profile]:
    """Load every ``*.yaml`` profile of a directory; collect all errors before raising."""
    profiles: list[Profile] = []
    errors: list[ProfileError] = []
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise ProfileLoadError([ProfileError(directory, None, "", "no *.yaml profiles found")])
    seen: dict[str, Path] = {}
    for path in files:
        try:
            profile = parse_profile(path)
        except ProfileLoadError as exc:
            errors.extend(exc.errors)
            continue
        if profile.model in seen:
            errors.append(
                ProfileError(
                    path, 1, "model", f"model {profile.model!r} also in {seen[profile.model]}"
                )
            )
            continue
        seen[profile.model] = path
        profiles.append(profile)
    if errors:
        raise ProfileLoadError(errors)
    return profiles
