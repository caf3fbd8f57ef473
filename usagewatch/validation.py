"""Turns pydantic validation errors into located ``Problem``s: ``path:line:col: message``.

Config and rule files are both pydantic models validated against data loaded by ``yamlload``; this
module is the single place that translates pydantic's ``loc`` tuples back to YAML lines and adds
"Did you mean ...?" for misspelt keys.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from usagewatch.errors import Problem
from usagewatch.registry import did_you_mean
from usagewatch.yamlload import Loc, Located


def _unwrap(tp: Any) -> Any:
    """From Optional[X], list[X], dict[str, X], Annotated[X, ...] down to X."""
    while True:
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is typing.Annotated:
            tp = args[0]
        elif origin in (typing.Union, types.UnionType):
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            if not models:
                return None
            tp = models[0]
        elif origin in (list, tuple, set, frozenset):
            tp = args[0] if args else None
        elif origin is dict:
            tp = args[1] if len(args) > 1 else None
        else:
            return tp


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    current: Any = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            field = next((f for f in current.model_fields.values() if f.alias == part), None)
        if field is None:
            return None
        current = _unwrap(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None


def _field_names(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _loc_text(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def problems_from(exc: ValidationError, doc: Located, model: type[BaseModel], base: Loc = ()) -> list[Problem]:
    """One Problem per pydantic error, located in ``doc``. ``base`` prefixes locs (for sub-documents)."""
    problems = []
    for err in exc.errors(include_url=False):
        loc: Loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        full = base + loc
        if err["type"] == "extra_forbidden":
            key = str(loc[-1])
            parent = _model_at(model, loc[:-1])
            hint = did_you_mean(key, _field_names(parent)) if parent else ""
            where = _loc_text(full[:-1])
            msg = f'unknown key "{key}"' + (f" in {where}" if where else "") + "." + hint
        elif err["type"] == "missing":
            msg = f'missing required key "{_loc_text(full)}".'
        else:
            text = err["msg"]
            if text.startswith("Value error, "):
                text = text[len("Value error, "):]
            msg = f"{_loc_text(full)}: {text}" if full else text
        problems.append(doc.problem(full, msg, at_key=err["type"] == "extra_forbidden"))
    return problems
