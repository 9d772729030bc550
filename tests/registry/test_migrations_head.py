"""`migrate.HEAD` names the newest migration script (opening a current store trusts it)."""

from toolway.registry import migrate


def test_head_constant_is_the_newest_migration_script() -> None:
    assert migrate.script_head() == migrate.HEAD
