"""variant runtime: the onnxruntime a variant was built for, and what a runtime must load of it

Revision ID: 0004
Revises: 0003

target_runtime is the release a build targeted (NULL: none was); ir_version and opsets are what the artifact
imports, so `SELECT name FROM variants WHERE json_extract(opsets, '$.""') > 19` finds what an onnxruntime
1.16 board cannot load. Rows of older databases keep NULL: their artifacts were not inspected then.
"""
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

COLUMNS: list[sa.Column[Any]] = [
    sa.Column('target_runtime', sa.String(length=40), nullable=True),
    sa.Column('ir_version', sa.Integer(), nullable=True),
    sa.Column('opsets', sa.JSON(), nullable=True),
]


def upgrade() -> None:
    for column in COLUMNS:
        op.add_column('variants', column)


def downgrade() -> None:
    raise NotImplementedError("orch does not downgrade results databases: restore a copy made before upgrading")
