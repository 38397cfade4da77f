"""detection pipeline: a pipeline job's figures, its per-stage times, a detector's settings on its variant

Revision ID: 0006
Revises: 0005

A pipeline job (benchmark.pipeline, agent/pipeline/) runs every frame of a source through read, pre-process,
infer, post-process, draw and encode. Its results row keeps the per-frame latency in the usual p50_ms ... columns
and adds pipeline_mode (sequential | pipelined; NULL: a plain latency job), fps, frames, frames_dropped,
cpu_percent and frames_dir (where the annotated frames it sent back were written). pipeline_stages holds one row
per stage and result. variants.detector keeps what a detector needs to run outside a sweep (its input,
pre-processing, decoder, class map and label names), so `orch stream DEVICE VARIANT` finds it by name.
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('results', sa.Column('pipeline_mode', sa.String(length=20), nullable=True))
    op.add_column('results', sa.Column('fps', sa.Float(), nullable=True))
    op.add_column('results', sa.Column('frames', sa.Integer(), nullable=True))
    op.add_column('results', sa.Column('frames_dropped', sa.Integer(), nullable=True))
    op.add_column('results', sa.Column('cpu_percent', sa.Float(), nullable=True))
    op.add_column('results', sa.Column('frames_dir', sa.Text(), nullable=True))
    op.add_column('variants', sa.Column('detector', sa.JSON(), nullable=True))
    op.create_table(
        'pipeline_stages',
        sa.Column('result_id', sa.Integer(), sa.ForeignKey('results.id', ondelete='CASCADE'), primary_key=True),
        sa.Column('stage', sa.String(length=20), primary_key=True),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('p50_ms', sa.Float(), nullable=True),
        sa.Column('p90_ms', sa.Float(), nullable=True),
        sa.Column('mean_ms', sa.Float(), nullable=True),
        sa.Column('share', sa.Float(), nullable=True),
    )


def downgrade() -> None:
    raise NotImplementedError("orch does not downgrade results databases: restore a copy made before upgrading")
