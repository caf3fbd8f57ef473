"""The contract every log format implements, and the registry that maps `format:` names to them.

A format splits a byte stream into complete records (``frame``), decodes one record into fields
(``parse``), and gives an ``Assembler`` that turns records into query executions (several records
may describe one execution: a statement and its later ``duration:`` record; parse/bind/execute).
The file reader owns offsets and checkpoints; a format never touches a file.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from usagewatch.errors import BadRecord
from usagewatch.model import QueryEvent
from usagewatch.registry import Registry


class Assembler:
    """Turns a stream of parsed records of ONE file into QueryEvents.

    It may hold back an event until a later record completes it (e.g. the ``duration:`` record that
    follows a ``statement:`` record of the same session). ``state()`` returns that held-back work as
    JSON-able data, saved in the checkpoint with the offset, so a restart neither loses nor repeats it.
    ``skipped`` counts records that are not query executions, by reason.
    """

    def __init__(self, source: str, dialect: str):
        self.source = source
        self.dialect = dialect
        self.skipped: Counter[str] = Counter()

    def feed(self, fields: dict[str, Any], position: str) -> list[QueryEvent]:
        """Take one parsed record; return the events it completes (often none or one)."""
        raise NotImplementedError

    def flush(self) -> list[QueryEvent]:
        """Emit every held-back event as it is (end of a replay, or the file went idle)."""
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        """Held-back work as JSON-able data (for the checkpoint)."""
        raise NotImplementedError

    def restore(self, state: dict[str, Any]) -> None:
        """Load what ``state()`` returned."""
        raise NotImplementedError


class FormatOptions(BaseModel):
    """Format-specific settings under a source's ``options:`` key; a format that needs some
    (``log_line_prefix``, a field mapping) subclasses this and sets ``LogFormat.Options``."""

    model_config = ConfigDict(extra="forbid")


class LogFormat:
    """One log format. Subclasses are registered by name with ``@formats.register("name")``.

    A format is constructed with its validated options (``Options``); formats without options
    accept being constructed with none.
    """

    name: ClassVar[str]
    dialect: ClassVar[str] = "postgres"
    Options: ClassVar[type[FormatOptions]] = FormatOptions
    #: True when a record ends only where the next one starts (stderr, slow logs): the reader then
    #: frames the last record once the file has been idle, instead of waiting for the next record
    frame_when_idle: ClassVar[bool] = False

    def __init__(self, options: FormatOptions | None = None) -> None:
        self.options = options if options is not None else self.Options()

    def frame(self, data: bytes, at_eof: bool) -> list[int]:
        """End offsets (relative to ``data``) of the complete records at the start of ``data``.

        Bytes after the last returned offset are an incomplete record (a writer's half-flushed
        line): the reader keeps them and offers them again with more data. ``at_eof`` is True when
        no more data will come (a replay of a finished file), so a final unterminated record may be
        returned.
        """
        raise NotImplementedError

    def parse(self, raw: bytes) -> dict[str, Any]:
        """Decode one framed record into fields. Raises ``BadRecord`` when it is malformed."""
        raise NotImplementedError

    def parse_into(self, raw: bytes, assembler: Assembler, position: str) -> list[QueryEvent]:
        """``assembler.feed(self.parse(raw), position)``: what the file reader does with each
        framed record. A format may override it with a shortcut that skips work the assembler
        does not need (the same events, counters and ``BadRecord`` as the long way)."""
        return assembler.feed(self.parse(raw), position)

    def assembler(self, source: str) -> Assembler:
        raise NotImplementedError


formats: Registry[LogFormat] = Registry("log format")

_decode_json = json.JSONDecoder().decode


def json_object(text: str) -> dict[str, Any]:
    """One JSON-lines record as a dict; ``BadRecord`` (json-empty, json-invalid, json-not-object)
    otherwise. Shared by every JSON-lines format so they count bad lines alike."""
    text = text.strip().lstrip("\ufeff")
    if not text:
        raise BadRecord("json-empty", "blank line")
    try:
        obj = _decode_json(text)
    except ValueError as exc:
        raise BadRecord("json-invalid", str(exc)[:200]) from None
    if not isinstance(obj, dict):
        raise BadRecord("json-not-object", type(obj).__name__)
    return obj
