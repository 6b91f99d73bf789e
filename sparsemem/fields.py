"""The schema vocabulary, the ground every config schema stands on: numbers that refuse booleans, strict
models, the two shorthands, and the errors a bad value raises. It imports nothing of the project, so a
layer's schema (a task family's beside its generator) can use it without importing the config package."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is a boolean; give a number")
    return value


def _only_bool(value: Any) -> Any:
    if not isinstance(value, bool):
        raise ValueError("give true or false")
    return value


# Numbers that refuse booleans (YAML's `true` would otherwise become 1) and flags that refuse numbers;
# with allow_inf_nan off, every float is finite.
Int = Annotated[int, BeforeValidator(_not_bool)]
Float = Annotated[float, BeforeValidator(_not_bool)]
Bool = Annotated[bool, BeforeValidator(_only_bool)]
SEED_MAX = 2**63 - 1  # seeds are 64-bit signed integers (torch.Generator, numpy)


class Strict(BaseModel):
    """A schema that refuses unknown keys and non-finite floats."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False, allow_inf_nan=False)


def kind_shorthand(value: Any) -> Any:
    return {"kind": value} if isinstance(value, str) else value


def listify(value: Any) -> Any:
    return [value] if isinstance(value, (str, int, float)) and not isinstance(value, bool) else value


class ConfigError(ValueError):
    """A bad configuration value; ``str(err)`` is one line for the user."""


class FieldError(ValueError):
    """Raised inside validators to blame one field (relative to the model validated)."""

    def __init__(self, field: str, value: Any, message: str):
        super().__init__(message)
        self.field, self.value, self.message = field, value, message
