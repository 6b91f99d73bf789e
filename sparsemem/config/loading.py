"""Loading configs: YAML files, dotted overrides, and one-line errors.

Any bad value raises :class:`ConfigError`, whose message is one line naming the
field, the value and what is allowed. The schemas themselves live in
``schemas.py`` and, for the task families, beside each task in ``sparsemem.tasks``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Union

import yaml
from pydantic import BaseModel, ValidationError

from ..fields import ConfigError, FieldError
from ..tasks import TASK_CONFIGS


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                repeated = key in seen
            except TypeError:  # an unhashable key: the base loader reports it
                break
            if not repeated:
                seen[key] = key_node.start_mark.line + 1
            else:
                first = seen[key]
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} appears twice (lines {first} and {key_node.start_mark.line + 1})",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str):
    """YAML text to Python objects, refusing repeated keys; yaml.YAMLError otherwise."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"  # configs and sweep specs shipped in the package


def examples() -> list[str]:
    """The names of the packaged examples (``sparsemem train kernel_exp`` finds one by name)."""
    return sorted(p.stem for p in EXAMPLES.glob("*.yaml"))


def resolve_config_path(path: Union[str, Path]) -> Path:
    """``path`` itself if it exists; else a packaged example of that name (``kernel_exp`` or
    ``kernel_exp.yaml``); else ``path`` (reading it then says what is wrong)."""
    p = Path(path)
    if (
        not p.exists()
        and p.parent == Path(".")
        and (EXAMPLES / f"{p.stem}.yaml").is_file()
        and p.suffix in ("", ".yaml")
    ):
        return EXAMPLES / f"{p.stem}.yaml"
    return p


def load_yaml(path: Union[str, Path]) -> dict:
    """Read a YAML config file (or a packaged example by name) into a dict; ConfigError if unreadable."""
    p = resolve_config_path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except FileNotFoundError as err:
        hint = f"; packaged examples: {', '.join(examples())}" if p.parent == Path(".") else ""
        raise ConfigError(f"config file {str(p)!r} cannot be read: {err.strerror or err}{hint}") from None
    except OSError as err:
        raise ConfigError(f"config file {str(p)!r} cannot be read: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"config file {str(p)!r} is not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start})"
        ) from None
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None)
        detail = f": {problem}" if problem and "appears twice" in problem else ""
        raise ConfigError(f"config file {str(p)!r} is not valid YAML{where}{detail}") from None
    except RecursionError:
        raise ConfigError(f"config file {str(p)!r} nests too deeply") from None
    if data is None:
        raise ConfigError(
            f"config file {str(p)!r} is empty (or only comments); a config is a mapping of task, model, "
            "train (a sweep spec: name, base, grid); to train the defaults give no file"
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {str(p)!r} must hold a mapping with task, model, train; got {type(data).__name__}"
        )
    return data


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Set dotted ``key=value`` overrides into a nested dict (values parsed as YAML)."""
    import copy

    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} is not of the form key.path=value")
        try:
            value = parse_yaml(raw) if raw != "" else None
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: value {raw!r} is not valid YAML") from None
        node = data
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if isinstance(child, str):  # a bare name stands for {kind: name}
                child = {"kind": child}
            elif child is None:
                child = {}
            elif not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"override {item!r}: {where} is a value, not a section")
            node[part] = child
            node = child
        node[parts[-1]] = value
    return data


# tag -> schema, for the discriminated unions (the task families): an error inside one names the tag
TAGGED: dict[str, type[BaseModel]] = TASK_CONFIGS


def _field_names(model: type[BaseModel], loc: tuple) -> list[str]:
    """Allowed keys at a location, for unknown-key messages (loc with union tags still in it)."""
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        field = model.model_fields.get(str(part)) if isinstance(part, str) else None
        if field is None:
            break
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        elif parts and parts[0] in TAGGED:
            model = TAGGED[parts.pop(0)]
        else:
            break
    return list(model.model_fields)


def validate_config(model: type[BaseModel], data: dict):
    """Validate ``data`` into ``model``; ConfigError with a one-line message otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        # of a union's branches, the one that got furthest into the value says best what is wrong
        err = max(errors, key=lambda e: len(e["loc"]))
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        # drop the union branch tags pydantic adds to locations
        loc = tuple(p for p in loc if not (isinstance(p, str) and (p == "str" or "[" in p)))
        value, msg = err.get("input"), err["msg"]
        cause = (err.get("ctx") or {}).get("error")
        allowed_loc = loc
        loc = tuple(p for p in loc if p not in TAGGED)
        if isinstance(cause, FieldError):
            loc = loc + tuple(cause.field.split("."))
            value, msg = cause.value, cause.message
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        field = ".".join(str(p) if str(p).isprintable() else repr(str(p)) for p in loc) or "config"
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(_field_names(model, allowed_loc[:-1]))
            raise ConfigError(f"unknown key {field}; allowed here: {allowed}{more}") from None
        shown = json.dumps(value, default=str)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        raise ConfigError(f"{field} = {shown}: {msg}{more}") from None
