"""detection metrics: every number of a result's accuracy pass, AP per pruning step, optional detections

Revision ID: 0005
Revises: 0004

accuracy_metrics holds one row per number a board's accuracy pass computed (COCO's twelve, VOC AP all-point and
11-point; per class with class_name set), so `SELECT value FROM accuracy_metrics WHERE metric = 'coco_ap50'`
works on every detection result; results.accuracy keeps the headline (accuracy_metric says which).
pruning_steps holds the figures after every round of an iterative pruning (step 0 is the parent model), filled
for older databases from each variant's lineage. detections keeps a result's every detection (COCO's results
format, original pixels) when its recipe asks (`benchmark.keep_detections`).
"""
import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'accuracy_metrics',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('result_id', sa.Integer(), sa.ForeignKey('results.id', ondelete='CASCADE'), nullable=False),
        sa.Column('metric', sa.String(length=40), nullable=False),
        sa.Column('class_name', sa.String(length=200), nullable=True),
        sa.Column('value', sa.Float(), nullable=True),
    )
    op.create_index('ix_accuracy_metrics_result_id', 'accuracy_metrics', ['result_id'])
    op.create_table(
        'pruning_steps',
        sa.Column('variant_sha256', sa.String(length=64), sa.ForeignKey('variants.sha256'), primary_key=True),
        sa.Column('step', sa.Integer(), primary_key=True),
        sa.Column('ratio', sa.Float(), nullable=True),
        sa.Column('macs', sa.BigInteger(), nullable=True),
        sa.Column('params', sa.BigInteger(), nullable=True),
        sa.Column('accuracy_metric', sa.String(length=40), nullable=True),
        sa.Column('accuracy', sa.Float(), nullable=True),
    )
    op.create_table(
        'detections',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('result_id', sa.Integer(), sa.ForeignKey('results.id', ondelete='CASCADE'), nullable=False),
        sa.Column('image_id', sa.BigInteger(), nullable=False),
        sa.Column('category_id', sa.BigInteger(), nullable=False),
        sa.Column('x', sa.Float(), nullable=False),
        sa.Column('y', sa.Float(), nullable=False),
        sa.Column('w', sa.Float(), nullable=False),
        sa.Column('h', sa.Float(), nullable=False),
        sa.Column('score', sa.Float(), nullable=False),
    )
    op.create_index('ix_detections_result_id', 'detections', ['result_id'])
    op.add_column('variants', sa.Column('host_metric', sa.String(length=40), nullable=True))
    op.add_column('variants', sa.Column('graph_nms', sa.Boolean(), nullable=True))
    op.add_column('results', sa.Column('postprocess_ms_per_image', sa.Float(), nullable=True))
    _backfill_pruning_steps()


def _backfill_pruning_steps() -> None:
    """Every older variant's iterative pruning rounds, from its lineage (the metric was not recorded then)."""
    bind = op.get_bind()
    rows: list[dict[str, Any]] = []
    for sha256, lineage in bind.execute(sa.text("SELECT sha256, lineage FROM variants")).fetchall():
        steps = json.loads(lineage) if isinstance(lineage, str) else lineage
        rows += [{"variant_sha256": sha256, "step": item.get("step"), "ratio": item.get("ratio"),
                  "macs": item.get("macs"), "params": item.get("params"), "accuracy_metric": None,
                  "accuracy": item.get("accuracy")}
                 for record in steps or [] if isinstance(record, dict)
                 for item in (record.get("meta") or {}).get("iterations") or [] if isinstance(item, dict)]
    if rows:
        bind.execute(sa.text("INSERT INTO pruning_steps (variant_sha256, step, ratio, macs, params, accuracy_metric, "
                             "accuracy) VALUES (:variant_sha256, :step, :ratio, :macs, :params, :accuracy_metric, "
                             ":accuracy)"), rows)


def downgrade() -> None:
    raise NotImplementedError("orch does not downgrade results databases: restore a copy made before upgrading")
