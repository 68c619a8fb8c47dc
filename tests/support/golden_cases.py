"""The golden cases as data for other tests, read from the hand-written folders in tests/golden.

``CASES[profile][case]`` is ``(topic, payload)``; ``XS``, ``SCAN``, ``HAZARD``, ``MFS`` and ``YK``
are the datasheet payloads of the five profiles, parsed (tests build variants from them).
"""

from __future__ import annotations

import json
from typing import Any

from tests.support.golden import ROOT, case_folders, read_case

CASES: dict[str, dict[str, tuple[str, bytes]]] = {}
for _folder in case_folders(ROOT):
    _case = read_case(_folder)
    CASES.setdefault(_case.profile, {})[_case.name] = (_case.topic, _case.payload)


def datasheet(profile: str, case: str = "datasheet") -> dict[str, Any]:
    """A case's JSON payload as a dict."""
    parsed: dict[str, Any] = json.loads(CASES[profile][case][1])
    return parsed


XS = datasheet("xs-fl200")
SCAN = datasheet("pt-nfc1", "scan_datasheet")
HAZARD = datasheet("pt-nfc1", "hazard_datasheet")
MFS = datasheet("mfs-gw1")
YK = datasheet("yk-fs8")
