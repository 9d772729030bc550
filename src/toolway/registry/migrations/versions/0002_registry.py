"""The registry: servers registered at run time, health transitions, pinned tool definitions."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_registry"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registrations",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("managed_by", sa.String(16), nullable=False),  # "file" | "api"
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("config", sa.JSON, nullable=False),  # the server's config entry, as the API took it
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "health_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("server", sa.String(64), nullable=False, index=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("previous", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
    )
    op.create_table(
        "tool_pins",
        sa.Column("server", sa.String(64), primary_key=True),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("definition", sa.JSON, nullable=False),  # the pinned fields, for field-level diffs
        sa.Column("source", sa.String(16), nullable=False),  # "first_seen" | "approved"
        sa.Column("pinned_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tool_pins")
    op.drop_table("health_events")
    op.drop_table("registrations")
