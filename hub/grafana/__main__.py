"""``python -m hub.grafana [OUT_DIR]``: regenerate the committed Grafana files."""

from __future__ import annotations

import sys
from pathlib import Path

from hub.grafana.export import GRAFANA_DIR, export, generate
from hub.settings import Settings


def main(argv: list[str]) -> int:
    """Write the generated files under OUT_DIR (default ``grafana/``)."""
    settings = Settings()
    out = Path(argv[0]) if argv else GRAFANA_DIR
    boards = generate(settings.profiles_dir, settings.sites_dir, settings.rules_dir)
    for path in export(boards, out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
