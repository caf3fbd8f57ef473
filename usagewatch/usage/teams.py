"""Which team each warehouse user belongs to: from the config's ``usage.teams`` (team -> users)
and a CSV file of ``user,team`` lines (``usage.teams_file``), checked when the config loads.

A user may be in one team only: a second team for the same user is an error (naming both places),
because a report that silently picked one would put the user's usage in the wrong team.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from usagewatch.errors import Problem

#: a first CSV line equal to this (any case) is a header, not a user
HEADER = ("user", "team")


def from_map(teams: dict[str, list[str]], where: str) -> tuple[dict[str, str], list[Problem]]:
    """``{team: [user, ...]}`` -> ``{user: team}``; a user listed under two teams is a problem."""
    out: dict[str, str] = {}
    problems: list[Problem] = []
    for team, users in teams.items():
        for user in users:
            if user in out and out[user] != team:
                problems.append(Problem(where, None, None,
                                        f'usage.teams: user "{user}" is in team "{out[user]}" and in team "{team}"; '
                                        "a user belongs to one team"))
            out.setdefault(user, team)
    return out, problems


def from_csv(path: Path, known: dict[str, str] | None = None) -> tuple[dict[str, str], list[Problem]]:
    """Read ``user,team`` lines (an optional header line ``user,team``; blank lines and lines
    starting with # are skipped). Every problem is reported as ``file:line: message``.
    ``known`` (from the config's map) is checked for conflicts too."""
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        return {}, [Problem(where, None, None, f"cannot read the teams file: {exc.strerror or exc}")]
    except UnicodeDecodeError:
        return {}, [Problem(where, None, None, "the teams file is not UTF-8 text")]
    out: dict[str, str] = {}
    lines: dict[str, int] = {}
    problems: list[Problem] = []
    known = known or {}
    reader = csv.reader(io.StringIO(text))
    first = True
    for fields in reader:
        line = reader.line_num
        cells = [f.strip() for f in fields]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if first and tuple(c.lower() for c in cells) == HEADER:
            first = False
            continue
        first = False
        if len(cells) != 2 or not cells[0] or not cells[1]:
            problems.append(Problem(where, line, None,
                                    f"expected two fields, user and team (like: kim,finance); found {len(cells)}: "
                                    f"{','.join(fields)!r}" if len(cells) != 2 else
                                    "expected two fields, user and team (like: kim,finance); one is empty"))
            continue
        user, team = cells
        if user in out and out[user] != team:
            problems.append(Problem(where, line, None, f'user "{user}" is already in team "{out[user]}" '
                                                       f"(line {lines[user]}); a user belongs to one team"))
            continue
        if user in known and known[user] != team:
            problems.append(Problem(where, line, None, f'user "{user}" is in team "{known[user]}" in usage.teams '
                                                       f'of the config and in team "{team}" here'))
            continue
        out[user] = team
        lines.setdefault(user, line)
    return out, problems
