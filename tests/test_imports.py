"""Each hub process imports what it runs and no more (every module is resident memory)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOLDEN_SITES = REPO / "tests" / "golden" / "_sites"

_PRINT_MODULES = "import sys; print('\\n'.join(n for n, m in sys.modules.items() if m))"


def _modules(code: str) -> set[str]:
    """The modules loaded by a fresh interpreter after running ``code``."""
    done = subprocess.run([sys.executable, "-c", f"{code}\n{_PRINT_MODULES}"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=True)
    return set(done.stdout.split())


def _packages(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def test_hub_process_with_the_intake_child_loads_no_paho_and_no_httpx_cli(tmp_path: Path) -> None:
    modules = _modules(
        "from hub.tuning import tune_process\n"
        "tune_process()  # as the hub's entry point does\n"
        "from hub.runtime import Hub\n"
        "from hub.settings import Settings\n"
        "import hub.api.app, uvicorn\n"
        f"hub = Hub(Settings(data_dir={str(tmp_path)!r}, sites_dir={str(GOLDEN_SITES)!r},\n"
        "                    mqtt_url='mqtt://127.0.0.1:9', mqtt_intake='process'))\n"
        "import httpx\n"
    )
    # the check below would pass on a hub that was never built
    assert "hub.intake.process" in modules
    assert "paho" not in _packages(modules)
    assert not {"httpx._main", "rich", "pygments"} & modules
    # reports and evidence load their libraries when one is asked for, not with the hub
    assert "hub.evidence.service" in modules
    assert not {"PIL", "weasyprint", "openpyxl", "pypdf"} & _packages(modules)


def test_hub_in_thread_mode_loads_paho(tmp_path: Path) -> None:
    modules = _modules(
        "from hub.runtime import Hub\n"
        "from hub.settings import Settings\n"
        f"hub = Hub(Settings(data_dir={str(tmp_path)!r}, sites_dir={str(GOLDEN_SITES)!r},\n"
        "                    mqtt_url='mqtt://127.0.0.1:9', mqtt_intake='thread'))\n"
    )
    assert "paho" in _packages(modules)


def test_intake_process_loads_no_prometheus_client_and_no_httpx() -> None:
    modules = _modules("import hub.intake.child")
    # the check below would pass on a child importing nothing
    assert "hub.intake.lean.client" in modules
    # paho only in paho mode (HUB_MQTT_CLIENT=paho): it brings email, http.client, urllib
    assert not {"paho", "prometheus_client", "httpx", "hub.intake.process", "hub.intake.metrics",
                "dataclasses"} & (_packages(modules) | modules)


def test_intake_process_in_paho_mode_loads_paho() -> None:
    modules = _modules(
        "import hub.intake.child as c\n"
        "from hub.intake.protocol import IntakeConfig\n"
        "config = IntakeConfig('mqtt://127.0.0.1:9', 'x', [], None, None, None, 'hub/status',\n"
        "                      'auto', 20, client='paho')\n"
        "c._Child(config, None, None)\n")
    assert "paho" in _packages(modules)
    assert not {"prometheus_client", "httpx"} & _packages(modules)


def test_importing_the_hub_has_no_side_effects() -> None:
    # the tuning is the entry points' to apply: a simulator or a test importing hub gets none
    done = subprocess.run(
        [sys.executable, "-c", "import sys, hub.runtime, hub.api.app\n"
         "print(sys.modules.get('httpx._main', 'absent') is None)"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "False"
