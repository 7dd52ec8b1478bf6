"""Write the README's settings tables from the settings classes (``make readme``).

    python scripts/settings_table.py [README.md]

Each table sits between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` markers;
tests/core/test_settings.py fails when a table is stale.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, Literal

from pydantic_settings import BaseSettings

from otel_trader.settings import TelemetryConfig, env_names
from otel_trader.telegram.settings import TelegramSettings

__all__ = ["settings_table_markdown", "update_readme"]


def _type_text(annotation: Any) -> str:
    args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
    origin = getattr(annotation, "__origin__", None)
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in annotation.__args__)
    if origin is Annotated:
        return _type_text(args[0])
    if origin in (list, dict):
        return "comma list" if origin is list else "`k=v` list"
    if args and origin is not None and type(None) in annotation.__args__:
        return _type_text(args[0])
    if len(args) > 1 or (args and type(None) in getattr(annotation, "__args__", ())):
        return _type_text(args[0])
    return getattr(annotation, "__name__", str(annotation))


def settings_table_markdown(model: type[BaseSettings] | None = None) -> str:
    """The README's settings table, derived from :class:`TelemetryConfig` (or another settings class)."""
    model = model or TelemetryConfig
    rows = ["| variable | type | default | meaning |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        env = " / ".join(f"`{n}`" for n in env_names(name, model))
        annotation = _type_text(field.annotation)
        if field.default_factory is not None:
            default: Any = field.default_factory()  # type: ignore[call-arg]
            default = ",".join(default) if isinstance(default, list) else (default or "")
        else:
            default = field.default
        default_text = (
            ""
            if default in (None, "", {})
            else f"`{str(default).lower() if isinstance(default, bool) else default}`"
        )
        rows.append(f"| {env} | {annotation} | {default_text} | {field.description} |")
    return "\n".join(rows)


def _readme_tables() -> dict[str, type[BaseSettings]]:
    return {"settings-table": TelemetryConfig, "telegram-settings-table": TelegramSettings}


def update_readme(path: str) -> bool:
    """Rewrite each generated settings table between its README markers; True when the file changed."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    new = text
    for marker, model in _readme_tables().items():
        begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
        head, found, rest = new.partition(begin)
        _, found_end, tail = rest.partition(end)
        if not found or not found_end:
            raise SystemExit(f"{path} lacks the {begin} … {end} markers")
        new = f"{head}{begin}\n{settings_table_markdown(model)}\n{end}{tail}"
    if new != text:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(new)
    return new != text


if __name__ == "__main__":
    update_readme(sys.argv[1] if len(sys.argv) > 1 else "README.md")
