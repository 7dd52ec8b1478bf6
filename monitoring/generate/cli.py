"""``python -m monitoring.generate [--check] [--out DIR]``: render, write or check every generated file."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from . import __doc__ as package_doc
from .alerts import ALERTS
from .catalog import ROOT
from .dashboards import dashboards
from .docs import documents
from .grafana import grafana_dashboard
from .prometheus_rules import RULE_DIR, rule_files
from .signoz import signoz_dashboard, signoz_rule

GRAFANA_DIR = Path("monitoring/grafana/dashboards")
SIGNOZ_DASHBOARD_DIR = Path("signoz/dashboards")
SIGNOZ_ALERT_DIR = Path("signoz/alerts")
#: Directories whose every file of that suffix is generated: anything else there is stale.
OWNED = ((GRAFANA_DIR, "*.json"), (SIGNOZ_DASHBOARD_DIR, "*.json"), (SIGNOZ_ALERT_DIR, "*.json"), (RULE_DIR, "*.yml"))


def slug(name: str) -> str:
    """TraderAPIDown -> trader-api-down."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", name).lower()


def _dump(obj: dict) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render(root: Path = ROOT) -> dict[Path, str]:
    """Every generated file: relative path -> text. The documents' hand-written parts are read
    from ``root`` where it has them, else from the repository."""
    out: dict[Path, str] = {}
    for dash in dashboards():
        out[GRAFANA_DIR / f"{dash.slug}.json"] = _dump(grafana_dashboard(dash))
        out[SIGNOZ_DASHBOARD_DIR / f"{dash.slug}.json"] = _dump(signoz_dashboard(dash))
    for alert in ALERTS:
        out[SIGNOZ_ALERT_DIR / f"{slug(alert.name)}.json"] = _dump(signoz_rule(alert))
    out.update(rule_files())
    source = root if (root / "docs" / "DESIGN.md").is_file() else ROOT
    out.update(documents(source))
    return out


def write(root: Path) -> list[Path]:
    written = []
    for rel, text in render(root).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale(root: Path) -> list[str]:
    """Generated files that differ from (or are missing in) ``root``, plus files there that are not generated."""
    expected = render(root)
    problems = [str(rel) for rel, text in expected.items()
                if not (root / rel).is_file() or (root / rel).read_text(encoding="utf-8") != text]
    for directory, pattern in OWNED:
        for path in sorted((root / directory).glob(pattern)):
            if path.relative_to(root) not in expected:
                problems.append(f"{path.relative_to(root)} (not generated: remove it)")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitoring.generate", description=(package_doc or "").split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT, help="root to write under (default: the repository)")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when the files under --out are stale")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale(args.out)
        for problem in problems:
            print(f"stale: {problem}", file=sys.stderr)
        if problems:
            print("run: python -m monitoring.generate (make dashboards)", file=sys.stderr)
        return 1 if problems else 0
    for path in write(args.out):
        print(path)
    return 0
