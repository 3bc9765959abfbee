"""Files ``storagectl migrate init`` writes into a new Alembic script directory."""

from __future__ import annotations

ENV_PY = '''\
"""Alembic environment for storagectl.

storagectl opens the connection (with the backend's URL, pool, TLS and timeouts from its config)
and passes it in ``config.attributes["connection"]``; there is no alembic.ini to keep in sync.
``config.attributes["configure_options"]`` carries storagectl's settings: one transaction per
revision, the checksum bookkeeping, and keeping its own tables out of autogenerate. Keep the
``**options`` when you customise this file.
"""

from alembic import context

config = context.config
options = config.attributes.get("configure_options", {})
# Set by `storagectl migrate new --autogenerate --models module:metadata`.
target_metadata = config.attributes.get("target_metadata")


def run_migrations_offline() -> None:
    """`--dry-run`: render the SQL for the backend's dialect without connecting."""
    context.configure(
        dialect_name=config.attributes["dialect_name"],
        target_metadata=target_metadata,
        literal_binds=True,
        **options,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    context.configure(connection=config.attributes["connection"], target_metadata=target_metadata, **options)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
'''

SCRIPT_PY_MAKO = '''\
"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}

# revision identifiers, used by Alembic.
revision: str = ${repr(up_revision)}
down_revision: str | Sequence[str] | None = ${repr(down_revision)}
branch_labels: str | Sequence[str] | None = ${repr(branch_labels)}
depends_on: str | Sequence[str] | None = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
'''

README = """\
Schema migrations for this backend, managed with `storagectl migrate` (Alembic underneath).

    storagectl migrate new --backend NAME -m "what changes"   # then edit versions/<rev>_*.py
    storagectl migrate up --backend NAME --dry-run            # review the SQL
    storagectl migrate up --backend NAME
    storagectl migrate status --backend NAME

Do not edit a revision once it is applied anywhere: `status` reports it as edited.
"""
