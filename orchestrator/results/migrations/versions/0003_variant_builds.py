"""variant builds: build status and failure, simplify axis, node counts, agreement with the model it came from

Revision ID: 0003
Revises: 0002

A variant whose build failed gets a row too (its id is the lineage key of its last step, since it has no
artifact), with the step that failed and why; its jobs are recorded as errors. Every existing variant was
built: build_status 'ok', and none was simplified.
"""
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

COLUMNS: list[sa.Column[Any]] = [
    sa.Column('build_status', sa.String(length=20), nullable=True),
    sa.Column('failed_step', sa.String(length=60), nullable=True),
    sa.Column('build_error', sa.Text(), nullable=True),
    sa.Column('simplify', sa.Boolean(), nullable=True),
    sa.Column('onnx_nodes', sa.Integer(), nullable=True),
    sa.Column('nodes_before_simplify', sa.Integer(), nullable=True),
    sa.Column('nodes_after_simplify', sa.Integer(), nullable=True),
    sa.Column('output_error', sa.Float(), nullable=True),
    sa.Column('top1_agreement', sa.Float(), nullable=True),
]


def upgrade() -> None:
    for column in COLUMNS:
        op.add_column('variants', column)
    # Every variant of an older database was built, and none was simplified (the axis did not exist).
    op.get_bind().execute(sa.text("UPDATE variants SET build_status = 'ok', simplify = :no"), {"no": False})


def downgrade() -> None:
    raise NotImplementedError("orch does not downgrade results databases: restore a copy made before upgrading")
