"""The tables Toolway had before its schema had a history: servers, tools, the audit chain.

Stores created by earlier versions already hold them (made with `create_all`), so each
is created only when missing: this revision adopts such a store instead of failing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "servers" not in existing:
        op.create_table(
            "servers",
            sa.Column("name", sa.String(64), primary_key=True),
            sa.Column("transport", sa.String(32), nullable=False),
            sa.Column("endpoint", sa.Text, nullable=False),
            sa.Column("status", sa.String(32), nullable=False),
            sa.Column("era", sa.String(32)),
            sa.Column("protocol_version", sa.String(32)),
            sa.Column("server_info", sa.JSON),
            sa.Column("capabilities", sa.JSON),
            sa.Column("last_error", sa.Text),
            sa.Column("updated_at", sa.DateTime(timezone=True)),
        )
    if "tools" not in existing:
        op.create_table(
            "tools",
            sa.Column("server", sa.String(64), sa.ForeignKey("servers.name", ondelete="CASCADE"), primary_key=True),
            sa.Column("name", sa.Text, primary_key=True),
            sa.Column("title", sa.Text),
            sa.Column("description", sa.Text),
            sa.Column("input_schema", sa.JSON),
        )
    if "audit_log" not in existing:
        op.create_table(
            "audit_log",
            # AUTOINCREMENT: ids are never reused, so a deleted last row leaves a visible gap.
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("at", sa.String(32), nullable=False, index=True),
            sa.Column("principal", sa.String(255), index=True),
            sa.Column("method", sa.String(64), nullable=False),
            sa.Column("server", sa.String(64)),
            sa.Column("target", sa.Text, index=True),
            sa.Column("era", sa.String(16), nullable=False),
            sa.Column("transport", sa.String(32), nullable=False),
            sa.Column("outcome", sa.String(16), nullable=False),
            sa.Column("error_code", sa.Integer),
            sa.Column("request_id", sa.String(128), nullable=False),
            sa.Column("args_digest", sa.String(64)),
            sa.Column("duration_us", sa.BigInteger, nullable=False),
            sa.Column("client", sa.String(128)),
            sa.Column("prev_hash", sa.String(64), nullable=False),
            sa.Column("hash", sa.String(64), nullable=False),
            sqlite_autoincrement=True,
        )


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("tools")
    op.drop_table("servers")
