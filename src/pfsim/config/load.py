"""Load a TOML scenario, apply ``--set`` overrides, validate it into a :class:`Config`.

Every failure is a :class:`~pfsim.errors.ConfigError` whose one-line message starts with
the dotted key at fault and says what is allowed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from pfsim.config.cluster_checks import check_cluster_config, step_targets
from pfsim.config.schema import Config
from pfsim.errors import ConfigError
from pfsim.units import PAGE_SIZE

_INDEX = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\[(\d+)\]$")
_OPS = "access, compute, syscall, touch, sleep, fork, exit, wait, munmap, exec"


def load_config(source: str | Path | dict[str, Any], overrides: list[str] | None = None,
                seed: int | None = None) -> Config:
    """Read ``source`` (a TOML path or an already-parsed dict) into a validated Config.

    Args:
        source: path to a TOML file, or a dict with the same shape.
        overrides: ``"dotted.key=value"`` strings; values are TOML literals or bare strings.
        seed: replaces ``sim.seed`` when given.

    Raises:
        ConfigError: the file is missing or malformed, or a value is refused.
    """
    if isinstance(source, dict):
        data = copy.deepcopy(source)
    else:
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(None, f"{path}: no such file") from None
        except OSError as exc:
            raise ConfigError(None, f"{path}: cannot read ({exc.strerror})") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(None, f"{path}: malformed TOML: {exc}") from None
    apply_overrides(data, overrides or [])
    if seed is not None:
        data.setdefault("sim", {})
        if not isinstance(data["sim"], dict):
            raise ConfigError("sim", "must be a table")
        data["sim"]["seed"] = seed
    return validate_config(data)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> None:
    """Set each ``a.b[0].c=value`` in ``data`` in place (values parsed as TOML literals)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(None, f"--set {item!r}: expected dotted.key=value")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        node: Any = data
        parts = _split_key(key)
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            where = _join(parts[: i + 1])
            if isinstance(part, int):
                if not isinstance(node, list) or part >= len(node):
                    raise ConfigError(where, "no such list element to override")
                if last:
                    node[part] = value
                else:
                    node = node[part]
            else:
                if not isinstance(node, dict):
                    raise ConfigError(where, "cannot set a key inside a non-table value")
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})


def _split_key(key: str) -> list[str | int]:
    parts: list[str | int] = []
    for piece in key.split("."):
        match = _INDEX.match(piece)
        if match:
            parts.extend([match.group(1), int(match.group(2))])
        elif piece.isdigit():
            parts.append(int(piece))
        else:
            parts.append(piece)
    return parts


def _join(parts: list[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validate_config(data: dict[str, Any]) -> Config:
    """Validate a parsed dict into a Config, then check the rules that span fields."""
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise _one_line(exc) from None
    _check_cross_fields(config)
    return config


def config_digest(config: Config) -> str:
    """SHA-256 of the canonical JSON of the resolved config (seed excluded)."""
    dumped = config.model_dump(mode="json")
    dumped["sim"].pop("seed", None)
    dumped["sim"].pop("engine", None)  # the engine never changes a result
    text = json.dumps(dumped, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- errors


def _one_line(exc: ValidationError) -> ConfigError:
    error = exc.errors()[0]
    loc, model_type = _clean_loc(error["loc"])
    key = _join(list(loc))
    if error["type"] == "extra_forbidden":
        allowed = ", ".join(sorted(model_type.model_fields)) if model_type else ""
        return ConfigError(key, f"unknown key; allowed here: {allowed}")
    if error["type"] == "missing":
        return ConfigError(key, "required key is missing")
    if error["type"] == "union_tag_invalid":
        return ConfigError(key + ".op" if key else "op",
                           f"unknown step op; allowed: {_OPS}")
    if error["type"] == "union_tag_not_found":
        return ConfigError(key, f"a step needs an 'op' key ({_OPS})")
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    return ConfigError(key, message[0].lower() + message[1:] if message else "invalid value")


def _clean_loc(loc: tuple[Any, ...]) -> tuple[list[Any], type[BaseModel] | None]:
    """Drop pydantic's union-tag segments and find the model that holds the last key."""
    out: list[Any] = []
    model: Any = Config
    parent: type[BaseModel] | None = Config
    for part in loc:
        if isinstance(part, int):
            out.append(part)
            model = _list_item(model)
            continue
        options = _models_of(model)
        chosen = next((m for m in options if part in m.model_fields), None)
        if chosen is None:
            # either a union tag (e.g. 'access') or an unknown key of the current model
            tagged = next((m for m in options
                           if "op" in m.model_fields and _literal_of(m, "op") == part), None)
            if tagged is not None:
                model = tagged
                continue
            parent = options[0] if len(options) == 1 else parent
            out.append(part)
            model = None
            continue
        parent = chosen
        out.append(part)
        model = chosen.model_fields[part].annotation
    return out, parent


def _models_of(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found.extend(_models_of(arg))
    return found


def _list_item(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is list:
        return typing.get_args(annotation)[0]
    if origin in (typing.Union, types.UnionType) or origin is typing.Annotated:
        for arg in typing.get_args(annotation):
            item = _list_item(arg)
            if item is not None:
                return item
    return None


def _literal_of(model: type[BaseModel], field: str) -> Any:
    args = typing.get_args(model.model_fields[field].annotation)
    return args[0] if args else None


# ------------------------------------------------------------------------ cross-field


def _check_cross_fields(config: Config) -> None:
    guest = config.guest
    frames = guest.memory // PAGE_SIZE
    if guest.memory % PAGE_SIZE:
        raise ConfigError("guest.memory", "must be a whole number of 4KiB pages")
    if guest.mm.kernel_reserved >= guest.memory:
        raise ConfigError("guest.mm.kernel_reserved", f"must be smaller than guest.memory ({frames} pages)")
    if guest.clusters > guest.vcpus or guest.vcpus % guest.clusters:
        raise ConfigError("guest.clusters",
                          f"must divide guest.vcpus ({guest.vcpus}) into equal clusters")
    hyp = config.hypervisor
    if hyp.memory_limit is not None:
        if hyp.memory_limit % PAGE_SIZE or hyp.memory_limit < 64 * PAGE_SIZE:
            raise ConfigError("hypervisor.memory_limit", "must be a whole number of 4KiB pages, at least 256KiB")
        if hyp.memory_limit > guest.memory:
            raise ConfigError("hypervisor.memory_limit",
                              f"exceeds guest.memory ({guest.memory}); leave it unset for no limit")
    if hyp.reclaim_batch * PAGE_SIZE > (hyp.memory_limit or guest.memory) // 2:
        raise ConfigError("hypervisor.reclaim_batch", "must be at most half the host memory limit in pages")
    if guest.sched.timeslice <= 0:
        raise ConfigError("guest.sched.timeslice", "must be positive")
    names: set[str] = set()
    for p, proc in enumerate(config.processes):
        where = f"processes[{p}]"
        if proc.name in names:
            raise ConfigError(f"{where}.name", f"duplicate process name {proc.name!r}")
        names.add(proc.name)
        vsegs: dict[str, Any] = {}
        for v, vseg in enumerate(proc.vsegs):
            vw = f"{where}.vsegs[{v}]"
            if vseg.name in vsegs:
                raise ConfigError(f"{vw}.name", f"duplicate vseg name {vseg.name!r}")
            vsegs[vseg.name] = vseg
            if vseg.size > guest.memory:
                raise ConfigError(f"{vw}.size",
                                  f"{vseg.size} bytes is larger than guest.memory ({guest.memory})")
            if vseg.base is not None and vseg.base % PAGE_SIZE:
                raise ConfigError(f"{vw}.base", "must be page aligned (a multiple of 4KiB)")
            if vseg.type == "stack" and vseg.stack_max < vseg.size:
                raise ConfigError(f"{vw}.stack_max", "must be at least the stack's size")
            if vseg.file is not None and vseg.type not in ("code", "data", "file"):
                raise ConfigError(f"{vw}.file", "only code, data and file vsegs have a file")
        for t, group in enumerate(proc.threads):
            tw = f"{where}.threads[{t}]"
            if group.cpu is not None and group.cpu >= guest.vcpus:
                raise ConfigError(f"{tw}.cpu",
                                  f"vCPU {group.cpu} does not exist (guest.vcpus = {guest.vcpus})")
            targets = step_targets(proc, vsegs)
            for s, step in enumerate(group.steps):
                _check_step(step, f"{tw}.steps[{s}]", targets)
    check_cluster_config(config)


def _check_step(step: Any, where: str, vsegs: dict[str, Any]) -> None:
    op = step.op
    if op in ("access", "compute"):
        limit = "accesses" if op == "access" else "units"
        if (getattr(step, limit) is None) == (step.duration is None):
            raise ConfigError(where, f"give exactly one of {limit} or duration")
    if op in ("access", "syscall"):
        if (step.vseg is None) == (step.addr is None):
            raise ConfigError(where, "give exactly one of vseg or addr")
        if step.vseg is not None:
            if step.vseg not in vsegs:
                known = ", ".join(vsegs) or "none"
                raise ConfigError(f"{where}.vseg", f"unknown vseg {step.vseg!r}; this process has: {known}")
            size = vsegs[step.vseg].size
            length = step.length if step.length is not None else size - step.offset
            if step.offset >= size or length <= 0 or step.offset + length > size:
                raise ConfigError(f"{where}.length",
                                  f"offset+length must lie inside vseg {step.vseg!r} ({size} bytes)")
        elif step.length is None or step.length <= 0:
            raise ConfigError(f"{where}.length", "an addr range needs a positive length")
    if op == "munmap" and (step.vseg not in vsegs or vsegs[step.vseg].type == "stack"):
        raise ConfigError(f"{where}.vseg", f"unknown vseg {step.vseg!r}; munmap takes a non-stack "
                          "vseg of the process")
    if op == "fork":
        for s, child in enumerate(step.steps):
            _check_step(child, f"{where}.steps[{s}]", vsegs)
