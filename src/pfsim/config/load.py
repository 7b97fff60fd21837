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
from pfsim.config.schema import MAX_COST_NS, MAX_TIME_NS, PID_MAX_LIMIT, Config
from pfsim.errors import ConfigError, clip, listing, raise_all, shown
from pfsim.units import PAGE_SIZE, SIZE_HINT, TIME_HINT, format_time, size_text

_INDEX = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\[(\d+)\]$")
_OPS = "access, compute, syscall, touch, sleep, fork, exit, wait, munmap, exec"
MAX_DEPTH = 64
"""Deepest nesting of tables and arrays a config may have (a fork chain of about 28 levels);
checked before the TOML parser (whose recursion a deeper file would exhaust) runs."""
USER_SPACE = 1 << 47
"""Size of the x86-64 user address space with 4-level paging (TASK_SIZE_MAX + one page)."""
ADDRESS_LIMIT = 1 << 64
MAX_CONFIG_BYTES = 64 << 20
"""Largest config file read."""


def load_config(source: str | Path | dict[str, Any], overrides: list[str] | None = None,
                seed: int | None = None) -> Config:
    """Read ``source`` (a TOML path or an already-parsed dict) into a validated Config.

    Args:
        source: path to a TOML file, or a dict with the same shape.
        overrides: ``"dotted.key=value"`` strings; values are TOML literals or bare strings.
        seed: replaces ``sim.seed`` when given.

    Raises:
        ConfigError: the file is missing, not UTF-8 or malformed, or a value is refused;
            a :class:`~pfsim.errors.ConfigErrors` when several values are refused.
    """
    if isinstance(source, dict):
        check_depth(source, "config")
        data = copy.deepcopy(source)
    elif isinstance(source, (str, Path)):
        data = read_toml(Path(source))
    else:
        raise ConfigError(None, f"expected a TOML path or a dict, got {type(source).__name__}")
    apply_overrides(data, overrides or [])
    if seed is not None:
        data.setdefault("sim", {})
        if not isinstance(data["sim"], dict):
            raise ConfigError("sim", "must be a table")
        data["sim"]["seed"] = seed
    check_depth(data, "config")
    return validate_config(data)


def read_toml(path: Path) -> dict[str, Any]:
    """The parsed TOML file at ``path``; every failure is a one-line ConfigError."""
    where = clip(str(path), 120)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(None, f"{where}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(None, f"{where}: is a directory, not a TOML file") from None
    except OSError as exc:
        raise ConfigError(None, f"{where}: cannot read ({exc.strerror or exc})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(None, f"{where}: larger than {MAX_CONFIG_BYTES >> 20} MiB; a config "
                          "is a short TOML file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(None, f"{where}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} "
                          f"at offset {exc.start}); save the config as UTF-8") from None
    return parse_toml(text, where)


def parse_toml(text: str, where: str) -> dict[str, Any]:
    """``tomllib.loads`` after a nesting-depth check; errors name ``where``."""
    depth, line = toml_depth(text)
    if depth > MAX_DEPTH:
        raise ConfigError(None, f"{where}:{line}: arrays and tables nested more than "
                          f"{MAX_DEPTH} deep")
    try:
        return tomllib.loads(text)
    except ValueError as exc:  # TOMLDecodeError, or an integer of more than 4300 digits
        raise ConfigError(None, f"{where}: malformed TOML: {clip(str(exc), 160)}") from None


def toml_depth(text: str) -> tuple[int, int]:
    """(deepest nesting of ``[`` and ``{`` outside strings and comments, its line) of a
    TOML text, without parsing it."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return 0, 0  # cannot nest deeper than the limit
    depth = deepest = 0
    deepest_line = line = 1
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
        elif c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        elif c in "\"'":
            triple = text.startswith(c * 3, i)
            quote = c * 3 if triple else c
            j = i + len(quote)
            while j < n:
                if c == '"' and text[j] == "\\":
                    j += 2
                    continue
                if text.startswith(quote, j) or (not triple and text[j] == "\n"):
                    break
                j += 1
            line += text.count("\n", i, j)
            i = j + len(quote)
            continue
        elif c in "[{":
            depth += 1
            if depth > deepest:
                deepest, deepest_line = depth, line
        elif c in "]}":
            depth = max(0, depth - 1)
        i += 1
    return deepest, deepest_line


def check_depth(data: Any, where: str) -> None:
    """Refuse dicts and lists nested more than :data:`MAX_DEPTH` deep (or cyclic)."""
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ConfigError(None, f"{where}: tables and arrays nested more than {MAX_DEPTH} deep")
        if isinstance(node, dict):
            stack.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, list):
            stack.extend((value, depth + 1) for value in node)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> None:
    """Set each ``a.b[0].c=value`` in ``data`` in place (values parsed as TOML literals)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        shown_item = clip(repr(item), 80)
        if not sep or not key:
            raise ConfigError(None, f"--set {shown_item}: expected dotted.key=value")
        if "\n" in raw or "\r" in raw:
            raise ConfigError(None, f"--set {shown_item}: the value must be on one line")
        raw = raw.strip()
        depth, _ = toml_depth(raw)
        if depth > MAX_DEPTH:
            raise ConfigError(key, f"--set value nested more than {MAX_DEPTH} deep")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except ValueError:  # not a TOML literal: a bare string (e.g. guest.vmm.model=almos)
            value = raw
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
                if not part or not part.isprintable() or "[" in part or "]" in part:
                    raise ConfigError(None, f"--set {shown_item}: {clip(repr(key), 60)} is not "
                                      "a dotted key such as guest.vcpus or processes[0].name")
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
        elif piece.isascii() and piece.isdigit():
            parts.append(int(piece))
        else:
            parts.append(piece)
    return parts


def _join(parts: list[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


MAX_ERRORS = 100
"""Most problems one ConfigErrors holds (the command line prints fewer)."""


def validate_config(data: dict[str, Any]) -> Config:
    """Validate a parsed dict into a Config, then check the rules that span fields.

    Every schema problem is reported at once.  The cross-field rules (a step naming a vseg
    the process lacks, a vCPU that does not exist...) run on the config the schema accepts;
    when the only schema problems are unknown keys or bad values inside ``processes``, they
    also run on the config without those keys, so one run reports both kinds.
    """
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        problems: list[ConfigError] = []
        for error in errors:
            problem = _translate(error)
            if str(problem) not in {str(p) for p in problems}:
                problems.append(problem)
        problems += [p for p in _cross_fields_without(data, errors)
                     if str(p) not in {str(q) for q in problems}]
        raise_all(problems[:MAX_ERRORS])
        raise AssertionError("unreachable") from None
    raise_all(_check_cross_fields(config)[:MAX_ERRORS])
    return config


def _cross_fields_without(data: dict[str, Any], errors: list[Any]) -> list[ConfigError]:
    """The cross-field problems of ``data`` with its refused keys removed, when removing them
    cannot change what those rules see: unknown keys anywhere, bad values inside a process
    (not its name).  Problems about a removed key are dropped.  [] when that is not so."""
    removed: list[list[Any]] = []
    for error in errors:
        path, _ = _clean_loc(error["loc"])
        unknown = error["type"] == "extra_forbidden"
        if not path or not (unknown or (path[0] == "processes" and len(path) > 2
                                        and path[2:] != ["name"] and error["type"] != "missing")):
            return []
        removed.append(path)
    trimmed = copy.deepcopy(data)
    for path in removed:
        node: Any = trimmed
        for part in path[:-1]:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                return []
        if not isinstance(node, dict) or path[-1] not in node:
            return []
        del node[path[-1]]
    try:
        config = Config.model_validate(trimmed)
    except ValidationError:
        return []
    keys = [_join(path) for path in removed]
    return [p for p in _check_cross_fields(config)
            if not any((p.key or "").startswith(key) or key.startswith(p.key or "\0")
                       for key in keys)]


def config_warnings(config: Config) -> list[str]:
    """Settings that are accepted but probably not what the author meant (one line each)."""
    warnings = []
    hyp = config.hypervisor
    if not hyp.enabled:
        ignored = sorted(hyp.model_fields_set - {"enabled"})
        if ignored:
            keys = ", ".join(f"hypervisor.{key}" for key in ignored)
            warnings.append(f"{keys} set but hypervisor.enabled = false, so the host is not "
                            "modelled and these keys are ignored; add enabled = true to "
                            "[hypervisor]")
    return warnings


def config_digest(config: Config) -> str:
    """SHA-256 of the canonical JSON of the resolved config (seed excluded)."""
    dumped = config.model_dump(mode="json")
    dumped["sim"].pop("seed", None)
    dumped["sim"].pop("engine", None)  # the engine never changes a result
    dumped["sim"].pop("sample", None)  # nor do the samples taken on the way
    text = json.dumps(dumped, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- errors


def _translate(error: Any) -> ConfigError:
    """One pydantic error as a ConfigError naming the dotted key."""
    loc, model_type = _clean_loc(error["loc"])
    key = _join(list(loc))
    if error["type"] == "extra_forbidden":
        allowed = ", ".join(sorted(model_type.model_fields)) if model_type else ""
        return ConfigError(clip(key, 120), f"unknown key; allowed here: {allowed}")
    if error["type"] == "missing":
        return ConfigError(key, "required key is missing")
    if error["type"] == "union_tag_invalid":
        return ConfigError(key + ".op" if key else "op",
                           f"unknown step op; allowed: {_OPS}")
    if error["type"] == "union_tag_not_found":
        return ConfigError(key, f"a step needs an 'op' key ({_OPS})")
    if error["type"] == "model_type":  # pydantic's words name the model class
        return ConfigError(key, "expected a table ({ key = value, ... } or a [section])")
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    message = message[0].lower() + message[1:] if message else "invalid value"
    kind = _field_kind(model_type, loc)
    if error["type"] == "less_than_equal" and kind == "time":
        limit = error.get("ctx", {}).get("le")
        message = ("must be at most 1s (the longest cost or latency of one operation)"
                   if limit == MAX_COST_NS else
                   f"must be at most {MAX_TIME_NS} ns (about 104 days, the longest time a run "
                   "may span)")
    elif error["type"] == "int_type" and kind is not None:
        message += "; " + (TIME_HINT if kind == "time" else SIZE_HINT)
    return ConfigError(key, message)


def _field_kind(model_type: type[BaseModel] | None, loc: list[Any]) -> str | None:
    """'time' or 'size' when the field at ``loc`` holds a duration or a size."""
    if model_type is None or not loc or not isinstance(loc[-1], str):
        return None
    field = model_type.model_fields.get(loc[-1])
    if field is None:
        return None
    names = {getattr(getattr(m, "func", None), "__name__", "")
             for m in [*field.metadata, *_metadata(field.annotation)]}
    return "time" if "_time" in names else "size" if "_size" in names else None


def _metadata(annotation: Any) -> list[Any]:
    """Every Annotated metadata item inside ``annotation`` (through unions)."""
    found: list[Any] = []
    if typing.get_origin(annotation) is typing.Annotated:
        found.extend(annotation.__metadata__)
    for arg in typing.get_args(annotation):
        if not isinstance(arg, (str, int, float)):
            found.extend(_metadata(arg))
    return found


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


def _check_cross_fields(config: Config) -> list[ConfigError]:
    """Every problem of the rules that span fields, in config order."""
    problems: list[ConfigError] = []

    def problem(key: str, message: str) -> None:
        problems.append(ConfigError(key, message))

    guest = config.guest
    if guest.memory % PAGE_SIZE:
        problem("guest.memory", "must be a whole number of 4KiB pages")
    if guest.mm.kernel_reserved >= guest.memory:
        problem("guest.mm.kernel_reserved", "must be smaller than guest.memory "
                f"({size_text(guest.mm.kernel_reserved)} is not smaller than "
                f"{size_text(guest.memory)})")
    if guest.clusters > guest.vcpus or guest.vcpus % guest.clusters:
        problem("guest.clusters", f"must divide guest.vcpus ({guest.vcpus}) into equal clusters")
    balloon = guest.balloon
    user_bytes = guest.memory - guest.mm.kernel_reserved
    changes = [("guest.balloon.target", balloon.at, balloon.target)] + [
        (f"guest.balloon.schedule[{i}].target", c.at, c.target)
        for i, c in enumerate(balloon.schedule)]
    for key, _at, target in changes:
        if target == 0:
            continue
        if target % PAGE_SIZE:
            problem(key, "must be a whole number of 4KiB pages")
        elif user_bytes > 0 and target >= user_bytes:
            problem(key, f"must be smaller than guest memory less kernel_reserved ({user_bytes})")
    times = [at for _key, at, _target in changes]
    if times != sorted(times):
        problem("guest.balloon.schedule", "the changes must come in time order, after at")
    if (balloon.target or balloon.schedule) and (guest.clusters > 1 or guest.vmm.model == "almos"):
        problem("guest.balloon.target", "the balloon needs the flat kernel")
    swap = guest.swap
    if swap.size is not None and (swap.size % PAGE_SIZE or swap.size == 0):
        problem("guest.swap.size", "must be a positive whole number of 4KiB pages")
    if swap.device != "none" and (guest.clusters > 1 or guest.vmm.model == "almos"):
        problem("guest.swap.device", "guest swap needs the flat kernel (ALMOS-MKH does not swap)")
    hyp = config.hypervisor
    if hyp.memory_limit is not None:
        if hyp.memory_limit % PAGE_SIZE or hyp.memory_limit < 64 * PAGE_SIZE:
            problem("hypervisor.memory_limit",
                    "must be a whole number of 4KiB pages, at least 256KiB")
        elif hyp.memory_limit > guest.memory:
            problem("hypervisor.memory_limit",
                    f"exceeds guest.memory ({guest.memory}); leave it unset for no limit")
    if hyp.enabled and hyp.reclaim_batch * PAGE_SIZE > (hyp.memory_limit or guest.memory) // 2:
        problem("hypervisor.reclaim_batch", "must be at most half the host memory limit in pages")
    if guest.sched.timeslice <= 0:
        problem("guest.sched.timeslice", "must be positive")
    if hyp.timeslice <= 0:
        problem("hypervisor.timeslice", "must be positive")
    threads = sum(group.count for proc in config.processes for group in proc.threads)
    if threads > PID_MAX_LIMIT:
        problem("processes", f"{threads:,} threads in all; Linux allows at most {PID_MAX_LIMIT:,} "
                "(PID_MAX_LIMIT)")
    names: set[str] = set()
    for p, proc in enumerate(config.processes):
        where = f"processes[{p}]"
        if proc.name in names:
            problem(f"{where}.name", f"duplicate process name {shown(proc.name)}")
        names.add(proc.name)
        vsegs: dict[str, Any] = {}
        for v, vseg in enumerate(proc.vsegs):
            vw = f"{where}.vsegs[{v}]"
            if vseg.name in vsegs:
                problem(f"{vw}.name", f"duplicate vseg name {shown(vseg.name)}")
            vsegs[vseg.name] = vseg
            if vseg.size > USER_SPACE:  # mmap's overcommit: bounded by the address space
                problem(f"{vw}.size", f"{vseg.size} bytes is larger than the user address "
                        "space (128TiB)")
            if vseg.type in ("code", "data", "file") and vseg.cached and vseg.size > guest.memory:
                problem(f"{vw}.size", f"{vseg.size} bytes is larger than guest.memory "
                        f"({guest.memory}) for a file cached at the start")
            if vseg.base is not None and vseg.base % PAGE_SIZE:
                problem(f"{vw}.base", "must be page aligned (a multiple of 4KiB)")
            if vseg.type == "stack" and vseg.stack_max < vseg.size:
                problem(f"{vw}.stack_max", "must be at least the stack's size")
            elif vseg.type == "stack" and vseg.stack_max > USER_SPACE:
                problem(f"{vw}.stack_max", "is larger than the user address space (128TiB)")
            elif vseg.type == "stack" and vseg.base is not None and not (
                    vseg.stack_max <= vseg.base <= USER_SPACE):
                problem(f"{vw}.base", "a stack's base is its top: between stack_max and the end "
                        "of the user address space (128TiB, 0x800000000000)")
            elif (vseg.type != "stack" and vseg.base is not None
                  and vseg.base + vseg.size > USER_SPACE):
                problem(f"{vw}.base", "the vseg ends above the user address space (128TiB, "
                        "0x800000000000)")
            if vseg.file is not None and vseg.type not in ("code", "data", "file"):
                problem(f"{vw}.file", "only code, data and file vsegs have a file")
        targets = step_targets(proc, vsegs)
        for t, group in enumerate(proc.threads):
            tw = f"{where}.threads[{t}]"
            if group.cpu is not None and group.cpu >= guest.vcpus:
                problem(f"{tw}.cpu",
                        f"vCPU {group.cpu} does not exist (guest.vcpus = {guest.vcpus})")
            for s, step in enumerate(group.steps):
                _check_step(step, f"{tw}.steps[{s}]", targets, problems)
            if config.sim.duration is None:
                span = proc.start + _steps_time(group.steps, config)
                if span > MAX_TIME_NS:
                    problem(tw, f"the steps take at least {format_time(span)} of simulated time, "
                            f"more than a run may span ({format_time(MAX_TIME_NS)}); shorten "
                            "them or give sim.duration")
    problems.extend(check_cluster_config(config))
    return problems


def _steps_time(steps: list[Any], config: Config) -> int:
    """Least simulated time a thread running ``steps`` takes (forked children included)."""
    total = longest = 0
    for step in steps:
        op = step.op
        if op == "sleep":
            total += step.duration
        elif op == "access":
            total += (step.duration if step.duration is not None
                      else (step.accesses or 0) * step.think)
        elif op == "compute":
            total += (step.duration if step.duration is not None
                      else (step.units or 0) * step.unit)
        elif op == "touch":
            total += step.think
        elif op == "syscall":
            total += step.repeat * config.guest.syscall
        elif op == "fork":
            total += config.guest.costs.fork
            longest = max(longest, total + _steps_time(step.steps, config))
        if total > MAX_TIME_NS:
            break
    return max(total, longest)


def _check_step(step: Any, where: str, vsegs: dict[str, Any], problems: list[ConfigError]) -> None:
    def problem(key: str, message: str) -> None:
        problems.append(ConfigError(key, message))

    op = step.op
    if op in ("access", "compute"):
        limit = "accesses" if op == "access" else "units"
        if (getattr(step, limit) is None) == (step.duration is None):
            problem(where, f"give exactly one of {limit} or duration")
    if op in ("access", "syscall"):
        if (step.vseg is None) == (step.addr is None):
            problem(where, "give exactly one of vseg or addr")
        elif step.vseg is not None:
            if step.vseg not in vsegs:
                problem(f"{where}.vseg", f"unknown vseg {shown(step.vseg)}; this process has: "
                        f"{listing(list(vsegs))}")
            else:
                size = vsegs[step.vseg].size
                length = step.length if step.length is not None else size - step.offset
                if step.offset >= size or length <= 0 or step.offset + length > size:
                    problem(f"{where}.length", f"offset+length must lie inside vseg "
                            f"{shown(step.vseg)} ({size} bytes)")
        elif step.length is None or step.length <= 0:
            problem(f"{where}.length", "an addr range needs a positive length")
        elif step.addr + step.length > ADDRESS_LIMIT:
            problem(f"{where}.length", "addr+length goes past the end of the 64-bit address space")
    if op == "munmap" and (step.vseg not in vsegs or vsegs[step.vseg].type == "stack"):
        problem(f"{where}.vseg", f"unknown vseg {shown(step.vseg)}; munmap takes a non-stack "
                "vseg of the process")
    if op == "fork":
        for s, child in enumerate(step.steps):
            _check_step(child, f"{where}.steps[{s}]", vsegs, problems)
