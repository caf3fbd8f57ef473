"""``usagewatch db upgrade|current``: the store's schema revision, and upgrading it on purpose
(every command that opens the store upgrades it too, when that is safe; see docs/store.md)."""

from __future__ import annotations

import click

from usagewatch.cli import cli, config_option, load_config, open_store
from usagewatch.store import migrations


@cli.group("db")
def db_group() -> None:
    """The store's schema: which revision it is at, and upgrading it."""


@db_group.command("upgrade")
@config_option
def upgrade_cmd(config_path: str | None) -> None:
    """Upgrade the database to the newest schema revision (or create it when empty).

    Back it up first (an SQLite file is also copied aside automatically: <file>.before-<revision>)."""
    cfg = load_config(config_path)
    store = open_store(cfg)
    store.close()
    where = migrations.safe_url(cfg.database)
    done = store.upgraded
    if done is None:
        click.echo(f"The database {where} is at revision {migrations.head()}, the newest; nothing to do.")
    elif done.before is None:
        click.echo(f"Created the usagewatch schema in {where} at revision {done.after}.")
    else:
        copy = f" The database as it was is copied to {done.backup}." if done.backup else ""
        before = f"{done.before} (schema {migrations.LEGACY_SCHEMA_VERSION}, made before migrations)" if done.legacy else done.before
        click.echo(f"Upgraded the database {where} from revision {before} to {done.after}.{copy}")


@db_group.command("current")
@config_option
def current_cmd(config_path: str | None) -> None:
    """Print the database's schema revision (without changing anything)."""
    cfg = load_config(config_path)
    click.echo(migrations.read_state(cfg.database).describe())
