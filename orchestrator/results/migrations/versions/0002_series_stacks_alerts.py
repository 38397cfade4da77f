"""series, software stacks, power/energy/conditions columns, change markers, alerts, views

Revision ID: 0002
Revises: 0001

Every row of a 0001 database is kept: new columns are added (ALTER TABLE ADD COLUMN, never a table
copy, which on SQLite would cascade-delete latency samples), then each old result is given its series
and software stack, computed from the spec and telemetry it was stored with.
"""
import json
from typing import Any

import sqlalchemy as sa
from alembic import op

from orchestrator.results import mapping
from orchestrator.results.samples import decode_samples

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def _variant_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column('prune_method', sa.String(length=40), nullable=True),
        sa.Column('prune_ratio', sa.Float(), nullable=True),
        sa.Column('prune_scope', sa.String(length=20), nullable=True),
        sa.Column('prune_steps', sa.Integer(), nullable=True),
        sa.Column('finetune_epochs', sa.Integer(), nullable=True),
        sa.Column('sparsity_target', sa.Float(), nullable=True),
        sa.Column('fold_bn', sa.Boolean(), nullable=True),
        sa.Column('distilled', sa.Boolean(), nullable=True),
        sa.Column('input_size', sa.Integer(), nullable=True),
        sa.Column('quantize', sa.String(length=60), nullable=True),
    ]


def _result_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column('series_id', sa.Integer(), sa.ForeignKey('series.id'), nullable=True),
        sa.Column('stack_id', sa.Integer(), sa.ForeignKey('software_stacks.id'), nullable=True),
        sa.Column('repeat_index', sa.Integer(), nullable=True),
        sa.Column('repeat_count', sa.Integer(), nullable=True),
        sa.Column('timed_s', sa.Float(), nullable=True),
        sa.Column('warmup_iterations', sa.Integer(), nullable=True),
        sa.Column('warmup_s', sa.Float(), nullable=True),
        sa.Column('power_method', sa.String(length=40), nullable=True),
        sa.Column('power_meter', sa.String(length=100), nullable=True),
        sa.Column('power_measured', sa.Boolean(), nullable=True),
        sa.Column('power_samples', sa.Integer(), nullable=True),
        sa.Column('power_rate_hz', sa.Float(), nullable=True),
        sa.Column('power_window_s', sa.Float(), nullable=True),
        sa.Column('idle_w', sa.Float(), nullable=True),
        sa.Column('mean_w', sa.Float(), nullable=True),
        sa.Column('max_w', sa.Float(), nullable=True),
        sa.Column('energy_j', sa.Float(), nullable=True),
        sa.Column('energy_per_inference_mj', sa.Float(), nullable=True),
        sa.Column('energy_per_inference_net_mj', sa.Float(), nullable=True),
        sa.Column('power_reasons', sa.JSON(), nullable=True),
        sa.Column('temp_before_max_c', sa.Float(), nullable=True),
        sa.Column('temp_after_max_c', sa.Float(), nullable=True),
        sa.Column('throttled', sa.Boolean(), nullable=True),
        sa.Column('power_mode', sa.String(length=60), nullable=True),
        sa.Column('conditions', sa.JSON(), nullable=True),
    ]


# Latest valid ("ok") result per series. The correlated max(id) walks ix_results_series_status_id, so one
# device's rows cost one index probe per series whatever the size of the results table.
LATEST_RESULTS = """
CREATE VIEW latest_results AS
SELECT s.id AS series_id, s.key AS series_key, d.name AS device, d.board AS board,
       v.recipe_name AS recipe, v.name AS variant, v.sha256 AS variant_sha256,
       v.prune_method, v.prune_ratio, v.prune_scope, v.prune_steps, v.finetune_epochs, v.sparsity_target,
       v.fold_bn, v.distilled, v.input_size, v.quantize, v.params, v.macs, v.file_size_bytes,
       s.providers, s.intra_op_threads AS threads, s.inter_op_threads, s.graph_optimization,
       r.id AS result_id, r.sweep_id, r.created_at AS measured_at, r.repeat_index,
       r.p50_ms, r.p90_ms, r.p99_ms, r.mean_ms, r.std_ms, r.min_ms, r.max_ms, r.iterations,
       r.throughput_ips, r.session_create_ms, r.first_run_ms, r.peak_rss_mb,
       r.accuracy_metric, r.accuracy, r.accuracy_n,
       r.power_method, r.power_measured, r.idle_w, r.mean_w, r.max_w,
       r.energy_per_inference_mj, r.energy_per_inference_net_mj,
       r.temp_before_max_c, r.temp_after_max_c, r.throttled, r.power_mode,
       st.onnxruntime_version, st.os_image, st.kernel, st.jetpack, st.agent_version, st.orch_version
FROM series s
JOIN results r ON r.id = (SELECT max(r2.id) FROM results r2 WHERE r2.series_id = s.id AND r2.status = 'ok')
JOIN devices d ON d.id = s.device_id
JOIN variants v ON v.sha256 = s.variant_sha256
LEFT JOIN software_stacks st ON st.id = r.stack_id
"""

# Non-dominated variants of one recipe on one device and run configuration: nothing else is at least as fast
# (p50) and as accurate and strictly better in one; likewise for energy per inference vs accuracy.
PARETO = """
CREATE VIEW pareto AS
WITH l AS (SELECT * FROM latest_results WHERE accuracy IS NOT NULL),
fronts AS (
  SELECT l.*,
    CASE WHEN l.p50_ms IS NOT NULL AND NOT EXISTS (
      SELECT 1 FROM l o WHERE o.device = l.device AND o.recipe = l.recipe AND o.providers = l.providers
        AND o.threads = l.threads AND o.graph_optimization = l.graph_optimization
        AND o.p50_ms <= l.p50_ms AND o.accuracy >= l.accuracy AND (o.p50_ms < l.p50_ms OR o.accuracy > l.accuracy)
    ) THEN 1 ELSE 0 END AS on_latency_front,
    CASE WHEN l.energy_per_inference_mj IS NOT NULL AND NOT EXISTS (
      SELECT 1 FROM l o WHERE o.device = l.device AND o.recipe = l.recipe AND o.providers = l.providers
        AND o.threads = l.threads AND o.graph_optimization = l.graph_optimization
        AND o.energy_per_inference_mj <= l.energy_per_inference_mj AND o.accuracy >= l.accuracy
        AND (o.energy_per_inference_mj < l.energy_per_inference_mj OR o.accuracy > l.accuracy)
    ) THEN 1 ELSE 0 END AS on_energy_front
  FROM l)
SELECT * FROM fronts WHERE on_latency_front = 1 OR on_energy_front = 1
"""

FOM = """
CREATE VIEW fom AS
SELECT series_id, series_key, device, recipe, variant, providers, threads, quantize, prune_ratio,
       p50_ms, energy_per_inference_mj, accuracy,
       accuracy / (p50_ms * energy_per_inference_mj) AS fom_per_ms_mj
FROM latest_results
WHERE accuracy IS NOT NULL AND p50_ms > 0 AND energy_per_inference_mj > 0
"""

REGRESSIONS = """
CREATE VIEW regressions AS
SELECT a.id AS alert_id, a.kind, a.status, d.name AS device, s.key AS series_key, v.name AS variant,
       s.providers, s.intra_op_threads AS threads, a.metric, a.baseline_value, a.new_value, a.rerun_value,
       a.change_pct, a.z, a.baseline_n, a.first_result_id, a.last_result_id, a.created_at, a.updated_at
FROM alerts a
JOIN devices d ON d.id = a.device_id
LEFT JOIN series s ON s.id = a.series_id
LEFT JOIN variants v ON v.sha256 = s.variant_sha256
WHERE a.closed_at IS NULL
"""

VIEWS = {"latest_results": LATEST_RESULTS, "pareto": PARETO, "fom": FOM, "regressions": REGRESSIONS}

PG_QUANTILE = """
CREATE FUNCTION samples_quantile(samples real[], q double precision) RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT AS $$
  SELECT (percentile_disc(q) WITHIN GROUP (ORDER BY v))::double precision FROM unnest(samples) AS v
$$
"""
# The zlib blob cannot be read by PostgreSQL's SQL: point whoever tries at the array column.
PG_QUANTILE_BLOB = """
CREATE FUNCTION samples_quantile(samples bytea, q double precision) RETURNS double precision
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  RAISE EXCEPTION 'samples_quantile: on PostgreSQL pass latency_samples.samples_ms (real[]), not the zlib blob';
END
$$
"""


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def upgrade() -> None:
    op.create_table('series',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('device_id', sa.Integer(), nullable=False),
    sa.Column('variant_sha256', sa.String(length=64), nullable=False),
    sa.Column('providers', sa.String(length=300), nullable=False),
    sa.Column('intra_op_threads', sa.Integer(), nullable=False),
    sa.Column('inter_op_threads', sa.Integer(), nullable=False),
    sa.Column('graph_optimization', sa.String(length=20), nullable=False),
    sa.Column('run_config', sa.JSON(), nullable=False),
    sa.Column('config_sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], ),
    sa.ForeignKeyConstraint(['variant_sha256'], ['variants.sha256'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('device_id', 'variant_sha256', 'config_sha256'),
    sa.UniqueConstraint('key')
    )
    op.create_index('ix_series_device_id', 'series', ['device_id'])
    op.create_index('ix_series_variant_sha256', 'series', ['variant_sha256'])
    op.create_table('software_stacks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('stack_sha256', sa.String(length=64), nullable=False),
    sa.Column('onnxruntime_version', sa.String(length=40), nullable=True),
    sa.Column('os_image', sa.Text(), nullable=True),
    sa.Column('kernel', sa.String(length=200), nullable=True),
    sa.Column('jetpack', sa.String(length=40), nullable=True),
    sa.Column('python_version', sa.String(length=40), nullable=True),
    sa.Column('numpy_version', sa.String(length=40), nullable=True),
    sa.Column('agent_version', sa.String(length=40), nullable=True),
    sa.Column('orch_version', sa.String(length=40), nullable=True),
    sa.Column('providers_available', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('stack_sha256')
    )
    for column in _variant_columns():
        op.add_column('variants', column)
    sqlite = op.get_bind().dialect.name == "sqlite"
    for column in _result_columns():
        if sqlite and column.foreign_keys:
            # Alembic would copy the table to add the constraint; SQLite's ADD COLUMN takes it inline.
            target = next(iter(column.foreign_keys)).target_fullname.replace(".", " (") + ")"
            op.execute(f"ALTER TABLE results ADD COLUMN {column.name} INTEGER REFERENCES {target}")
        else:
            op.add_column('results', column)
    op.create_index('ix_results_series_status_id', 'results', ['series_id', 'status', 'id'])
    op.create_table('change_markers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('series_id', sa.Integer(), nullable=False),
    sa.Column('first_result_id', sa.Integer(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('created_by', sa.String(length=100), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['series_id'], ['series.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_change_markers_series_id', 'change_markers', ['series_id'])
    op.create_table('alerts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('device_id', sa.Integer(), nullable=False),
    sa.Column('series_id', sa.Integer(), nullable=True),
    sa.Column('metric', sa.String(length=60), nullable=False),
    sa.Column('baseline_value', sa.Float(), nullable=True),
    sa.Column('baseline_spread', sa.Float(), nullable=True),
    sa.Column('baseline_n', sa.Integer(), nullable=True),
    sa.Column('new_value', sa.Float(), nullable=True),
    sa.Column('rerun_value', sa.Float(), nullable=True),
    sa.Column('z', sa.Float(), nullable=True),
    sa.Column('change_pct', sa.Float(), nullable=True),
    sa.Column('first_result_id', sa.Integer(), nullable=True),
    sa.Column('last_result_id', sa.Integer(), nullable=True),
    sa.Column('last_good_result_id', sa.Integer(), nullable=True),
    sa.Column('rerun_result_id', sa.Integer(), nullable=True),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('closed_at', sa.DateTime(), nullable=True),
    sa.Column('resolution', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], ),
    sa.ForeignKeyConstraint(['series_id'], ['series.id'], ),
    sa.ForeignKeyConstraint(['first_result_id'], ['results.id'], ),
    sa.ForeignKeyConstraint(['last_result_id'], ['results.id'], ),
    sa.ForeignKeyConstraint(['last_good_result_id'], ['results.id'], ),
    sa.ForeignKeyConstraint(['rerun_result_id'], ['results.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_alerts_device_id', 'alerts', ['device_id'])
    op.create_index('ix_alerts_series_id', 'alerts', ['series_id'])
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        op.execute("ALTER TABLE latency_samples ADD COLUMN samples_ms real[]")
        op.execute(PG_QUANTILE)
        op.execute(PG_QUANTILE_BLOB)
    _backfill(postgresql)
    for sql in VIEWS.values():
        op.execute(sql)


def _backfill(postgresql: bool) -> None:
    """Give the rows of a 0001 database what 0002 adds: variant parameters, series, stacks, conditions."""
    bind = op.get_bind()
    added = {column.name for column in _variant_columns()}  # later revisions add more axis columns
    for sha256, axes in bind.execute(sa.text("SELECT sha256, axes FROM variants")).all():
        columns = {name: value for name, value in mapping.variant_axis_columns(_json(axes) or {}).items()
                   if name in added}
        bind.execute(sa.text("UPDATE variants SET " + ", ".join(f"{name} = :{name}" for name in columns)
                             + " WHERE sha256 = :sha256"), {**columns, "sha256": sha256})
    rows = bind.execute(sa.text(
        "SELECT r.id, r.device_id, d.name, r.variant_sha256, r.spec, r.telemetry, sw.orch_version "
        "FROM results r JOIN devices d ON d.id = r.device_id JOIN sweeps sw ON sw.id = r.sweep_id "
        "ORDER BY r.id")).all()
    series: dict[tuple[int, str, str], int] = {}
    stacks: dict[str, int] = {}
    for result_id, device_id, device_name, variant_sha256, spec, telemetry, orch_version in rows:
        spec, telemetry = _json(spec) or {}, _json(telemetry) or {}
        config = mapping.series_config(spec)
        digest = mapping.config_sha256(config)
        if (device_id, variant_sha256, digest) not in series:
            series[(device_id, variant_sha256, digest)] = bind.execute(sa.text(
                "INSERT INTO series (key, device_id, variant_sha256, providers, intra_op_threads, inter_op_threads, "
                "graph_optimization, run_config, config_sha256, created_at) VALUES (:key, :device_id, :variant, "
                ":providers, :intra, :inter, :graph, :config, :digest, CURRENT_TIMESTAMP) RETURNING id"
                ).bindparams(sa.bindparam("config", type_=sa.JSON)), {
                "key": mapping.series_key(device_name, variant_sha256, digest), "device_id": device_id,
                "variant": variant_sha256, "providers": ",".join(config["providers"]),
                "intra": config["intra_op_threads"], "inter": config["inter_op_threads"],
                "graph": config["graph_optimization"], "config": config, "digest": digest}).scalar_one()
        fields = mapping.stack_fields(telemetry, orch_version)
        stack = mapping.stack_sha256(fields)
        if stack not in stacks:
            stacks[stack] = bind.execute(sa.text(
                "INSERT INTO software_stacks (stack_sha256, " + ", ".join(fields) + ") VALUES (:stack_sha256, "
                + ", ".join(f":{name}" for name in fields) + ") RETURNING id"),
                {**fields, "stack_sha256": stack}).scalar_one()
        legacy = mapping.result_columns(spec, {"telemetry": telemetry})
        bind.execute(sa.text("UPDATE results SET series_id = :series, stack_id = :stack, "
                             "temp_before_max_c = :before, temp_after_max_c = :after WHERE id = :id"), {
            "series": series[(device_id, variant_sha256, digest)], "stack": stacks[stack],
            "before": legacy["temp_before_max_c"], "after": legacy["temp_after_max_c"], "id": result_id})
    if postgresql:
        for result_id, data in bind.execute(sa.text("SELECT result_id, data FROM latency_samples")).all():
            bind.execute(sa.text("UPDATE latency_samples SET samples_ms = :values WHERE result_id = :id"),
                         {"values": [float(v) for v in decode_samples(bytes(data))], "id": result_id})


def downgrade() -> None:
    # Dropping the new columns would need a table copy on SQLite, which cascade-deletes latency samples.
    raise NotImplementedError("orch does not downgrade results databases: restore a copy made before upgrading")
