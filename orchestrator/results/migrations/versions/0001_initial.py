"""initial schema: sweeps, devices, variants, results, latency samples

Revision ID: 0001
Revises: (none: the walking skeleton's schema)
"""
import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('devices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('board', sa.Text(), nullable=True),
    sa.Column('info', sa.JSON(), nullable=False),
    sa.Column('first_seen', sa.DateTime(), nullable=False),
    sa.Column('last_seen', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('sweeps',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('recipe_name', sa.String(length=200), nullable=False),
    sa.Column('recipe_path', sa.Text(), nullable=False),
    sa.Column('recipe_sha256', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('devices', sa.JSON(), nullable=False),
    sa.Column('jobs_total', sa.Integer(), nullable=False),
    sa.Column('orch_version', sa.String(length=40), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('sweeps', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sweeps_recipe_name'), ['recipe_name'], unique=False)

    op.create_table('variants',
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('recipe_name', sa.String(length=200), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('axes', sa.JSON(), nullable=False),
    sa.Column('lineage', sa.JSON(), nullable=False),
    sa.Column('params', sa.BigInteger(), nullable=True),
    sa.Column('macs', sa.BigInteger(), nullable=True),
    sa.Column('sparsity', sa.Float(), nullable=True),
    sa.Column('file_size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('host_accuracy', sa.Float(), nullable=True),
    sa.Column('build_s', sa.Float(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('sha256')
    )
    with op.batch_alter_table('variants', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_variants_recipe_name'), ['recipe_name'], unique=False)

    op.create_table('results',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sweep_id', sa.Integer(), nullable=False),
    sa.Column('device_id', sa.Integer(), nullable=False),
    sa.Column('variant_sha256', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('providers', sa.String(length=300), nullable=False),
    sa.Column('threads', sa.Integer(), nullable=False),
    sa.Column('graph_optimization', sa.String(length=20), nullable=False),
    sa.Column('session_create_ms', sa.Float(), nullable=True),
    sa.Column('first_run_ms', sa.Float(), nullable=True),
    sa.Column('p50_ms', sa.Float(), nullable=True),
    sa.Column('p90_ms', sa.Float(), nullable=True),
    sa.Column('p99_ms', sa.Float(), nullable=True),
    sa.Column('mean_ms', sa.Float(), nullable=True),
    sa.Column('std_ms', sa.Float(), nullable=True),
    sa.Column('min_ms', sa.Float(), nullable=True),
    sa.Column('max_ms', sa.Float(), nullable=True),
    sa.Column('iterations', sa.Integer(), nullable=True),
    sa.Column('duration_s', sa.Float(), nullable=True),
    sa.Column('throughput_ips', sa.Float(), nullable=True),
    sa.Column('rss_before_session_mb', sa.Float(), nullable=True),
    sa.Column('peak_rss_mb', sa.Float(), nullable=True),
    sa.Column('accuracy_metric', sa.String(length=40), nullable=True),
    sa.Column('accuracy', sa.Float(), nullable=True),
    sa.Column('accuracy_n', sa.Integer(), nullable=True),
    sa.Column('telemetry', sa.JSON(), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], ),
    sa.ForeignKeyConstraint(['sweep_id'], ['sweeps.id'], ),
    sa.ForeignKeyConstraint(['variant_sha256'], ['variants.sha256'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_results_device_id'), ['device_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_results_sweep_id'), ['sweep_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_results_variant_sha256'), ['variant_sha256'], unique=False)

    op.create_table('latency_samples',
    sa.Column('result_id', sa.Integer(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('encoding', sa.String(length=40), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['result_id'], ['results.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('result_id')
    )


def downgrade() -> None:
    op.drop_table('latency_samples')
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_results_variant_sha256'))
        batch_op.drop_index(batch_op.f('ix_results_sweep_id'))
        batch_op.drop_index(batch_op.f('ix_results_device_id'))

    op.drop_table('results')
    with op.batch_alter_table('variants', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_variants_recipe_name'))

    op.drop_table('variants')
    with op.batch_alter_table('sweeps', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sweeps_recipe_name'))

    op.drop_table('sweeps')
    op.drop_table('devices')
