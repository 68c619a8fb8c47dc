"""Which compiled program each device runs: the kind's rules, the site's and device's overrides."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hub.rules import schema
from hub.rules.compiled import Program
from hub.sites import UNASSIGNED_SITE, Device, Site, SiteRegistry


def resolve_for(rule_sets: Mapping[str, schema.RuleSet], kind: str, site: Site | None,
                device: Device | None) -> dict[str, schema.Rule] | None:
    """A kind's rules with a site's and a device's overrides (None: the kind has no rules).

    The one resolution: the engine compiles it, the console and the dashboards read their
    readiness from it (hub/rules/readiness.py).
    """
    rule_set = rule_sets.get(kind)
    if rule_set is None:
        return None
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if site is not None and site.rules:
        layers.append((f"site {site.site}", schema.site_overrides_for_kind(
            site.rules, kind, set(rule_sets))))
    rules = schema.resolve_rules(rule_set, *layers, strict_ids=False)
    if device is not None and device.rules:
        dev_set = schema.RuleSet(kind=kind, rules=rules)
        site_id = site.site if site else UNASSIGNED_SITE
        rules = schema.resolve_rules(
            dev_set, (f"site {site_id} device {device.id}", device.rules), strict_ids=True)
    return rules


class ProgramResolver:
    """Compiles and caches one program per (kind, site, device with its own overrides)."""

    def __init__(self, rule_sets: Mapping[str, schema.RuleSet], sites: SiteRegistry) -> None:
        self.rule_sets = rule_sets
        self.sites = sites
        self._programs: dict[tuple[str, str, str | None], Program | None] = {}

    def validate_overrides(self, model_kinds: Mapping[str, str] | None = None) -> None:
        """Compile every site's and device's overrides now; raise RuleError on the first bad one."""
        kinds = set(self.rule_sets)
        for site in self.sites.sites.values():
            known: set[str] = set(kinds)
            for rs in self.rule_sets.values():
                known |= set(rs.rules)
            for key, override in site.rules.items():
                if key not in known and not schema.is_complete_rule(override):
                    raise schema.RuleError(
                        f"site {site.site}: rules: unknown rule or kind {key!r} "
                        f"(known kinds: {', '.join(sorted(kinds))})")
            for kind in kinds:
                self.program(kind, site, None)
            for device in site.devices:
                if not device.rules:
                    continue
                known_kind = (model_kinds or {}).get(device.model)
                candidates = [known_kind] if known_kind in kinds else [
                    k for k in sorted(kinds)
                    if all(r in self.rule_sets[k].rules or schema.is_complete_rule(v)
                           for r, v in device.rules.items())
                ]
                if not candidates:
                    raise schema.RuleError(
                        f"site {site.site} device {device.id}: rules: no device kind has "
                        f"rules {', '.join(sorted(device.rules))}")
                for kind_name in candidates:
                    if kind_name is not None:
                        self.program(kind_name, site, device)

    def program(self, kind: str, site: Site | None, device: Device | None) -> Program | None:
        """The program of a device of ``kind`` in ``site`` (None: the kind has no rules)."""
        key = (kind, site.site if site else UNASSIGNED_SITE,
               device.id if device is not None and device.rules else None)
        if key in self._programs:
            return self._programs[key]
        rules = resolve_for(self.rule_sets, kind, site, device)
        if rules is None:
            self._programs[key] = None
            return None
        program = Program(rules)
        self._programs[key] = program
        return program
