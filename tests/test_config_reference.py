"""docs/config.md is generated from the schema, describes every key, and its defaults are the
schema's: a stale page or an undocumented key fails here."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from pydantic import BaseModel

from pfsim.config import load_config, schema
from pfsim.config.reference import render

DOC = Path(__file__).resolve().parents[1] / "docs" / "config.md"
MINIMAL = {"processes": [{"name": "p", "threads": [{"steps": [{"op": "compute", "units": 1}]}]}]}


def _models(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def every_field() -> list[tuple[str, str, object]]:
    seen: set[type[BaseModel]] = set()
    found = []
    pending = [schema.Config]
    while pending:
        model = pending.pop()
        if model in seen:
            continue
        seen.add(model)
        assert (model.__doc__ or "").strip(), f"{model.__name__} has no docstring"
        for name, field in model.model_fields.items():
            found.append((model.__name__, name, field))
            pending.extend(_models(field.annotation))
    return found


def test_every_field_has_a_description():
    missing = [f"{model}.{name}" for model, name, field in every_field()
               if not (field.description or "").strip()]
    assert missing == [], "add a docstring under each field in src/pfsim/config/schema.py"
    assert len(every_field()) > 150


def test_docs_config_md_is_up_to_date():
    assert DOC.read_text() == render(), \
        "regenerate it: python -m pfsim.config.reference > docs/config.md"


def test_every_key_is_on_the_page():
    text = DOC.read_text()
    for model, name, field in every_field():
        if model == "Config":
            assert f"## `[{name}]`" in text or f"## `[[{name}]]`" in text
        elif name == "op":
            assert f'### `op = "{typing.get_args(field.annotation)[0]}"`' in text
        else:
            assert f"| `{name}` |" in text or f"`[{name}]`" in text or f".{name}]" in text, \
                f"{model}.{name}"


def test_documented_defaults_read_back_as_the_schema_defaults():
    """Each default printed in the [guest.*] and [hypervisor.*] tables, given back as a
    --set value, gives the config the schema builds without it (the page shows real values
    in the units a user writes)."""
    base = load_config(MINIMAL)
    section = None
    checked = 0
    for line in DOC.read_text().splitlines():
        if line.startswith("#"):
            heading = re.match(r"^## `\[([a-z_.]+)\]`$", line)
            section = heading.group(1) if heading else None
            continue
        row = re.match(r"^\| `(\w+)` \| [^|]+ \| `(.+?)` \|", line)
        if section is None or row is None or not section.startswith(("guest", "hypervisor", "sim")):
            continue
        key, value = f"{section}.{row.group(1)}", row.group(2)
        changed = load_config(MINIMAL, overrides=[f"{key}={value}"])
        assert changed == base, key
        checked += 1
    assert checked > 50
