"""study views: figures aggregated over repeats, figures of merit as data, memory in MB, the timed loop's inputs

Revision ID: 0007
Revises: 0006

A study measures every job `repeat` times and reports averages over the repeats (maxima for memory and power).
`study_results` is that table: one row per series, over the valid (`ok`) repeats of the latest sweep that
measured it (from its newest valid repeat #1 on, so a resumed sweep's repeats count together with the ones
before them); `series_sweeps` is the same aggregation for every sweep and series, with the count of each
status (what `orch results` shows). Both are generated below from one list of aggregates (`AGGREGATES`), so
the two cannot disagree. `latest_results` keeps its meaning (the one newest valid result of a series) and gains
`model_rss_mb` and `measure_inputs`; `pareto` and `fom` now read `study_results`, so they use the averages.

Figures of merit are data: the table `figures_of_merit` holds each one's name, SQL formula over
study_results' columns, units and description, and the `fom` view has one column per row, named for the figure
and its units. A table rather than a Python registry because the definitions then live next to the numbers
they define: any SQL client (or `orch export`) shows how a figure was computed, and the view and the table are
generated from the table's rows, so they cannot drift. A new figure is a new migration that inserts its row and
re-creates `fom` from the table as this one does (`fom_view`), as a schema change always is. The default is ECE 379K's:
accuracy (%) / (average latency (ms) x average energy per image (mJ)). The former p50-based column
(`fom_per_ms_mj`: accuracy as a fraction over p50 x energy, one run) is dropped: energy per image is integrated
over the mean time per image, so pairing it with the median mixed two statistics, and two figures a factor of
100 apart under similar names invited the wrong one into a report.

Memory: agents before this revision reported `peak_rss_mb` and `rss_before_session_mb` in MiB (VmHWM kB / 1024)
under an MB name; every existing row is converted to MB (10^6 bytes, x 1.048576), which is what the agent
reports from now on. `model_rss_mb` (peak minus the RSS before the session was created: the model's share) is
new and stays NULL on older rows. `measure_inputs` says what the timed loop fed the model: `synthetic` or
`evaluation_set` (NULL on older rows: synthetic). `variants.baseline` names a study's baseline variant
(`source`: the network as its weights file has it; `retrained`: before compression; NULL: a grid variant).
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

MIB_TO_MB = 1.048576

# The series, device and variant columns every study view starts with (latest_results' own).
IDENTITY = (
    ("s.id", "series_id"), ("s.key", "series_key"), ("d.name", "device"), ("d.board", "board"),
    ("v.recipe_name", "recipe"), ("v.name", "variant"), ("v.sha256", "variant_sha256"),
    *((f"v.{name}", name) for name in (
        "prune_method", "prune_ratio", "prune_scope", "prune_steps", "finetune_epochs", "sparsity_target", "fold_bn",
        "distilled", "input_size", "quantize", "params", "macs", "file_size_bytes")),
    ("s.providers", "providers"), ("s.intra_op_threads", "threads"), ("s.inter_op_threads", "inter_op_threads"),
    ("s.graph_optimization", "graph_optimization"),
)
# Latency figures summarized over the repeats: the mean (under the column's own name), min, max, sample stdev.
SPREAD = ("mean_ms", "p50_ms", "p90_ms")
# (aggregate, column, name): one figure over the valid repeats.
AGGREGATES = (
    ("avg", "throughput_ips", "throughput_ips"),
    ("avg", "energy_per_inference_mj", "energy_per_inference_mj"),
    ("avg", "energy_per_inference_net_mj", "energy_per_inference_net_mj"),
    ("avg", "mean_w", "mean_w"),
    ("max", "max_w", "max_w"),
    ("max", "power_method", "power_method"),
    ("max", "peak_rss_mb", "peak_rss_mb"),
    ("max", "model_rss_mb", "model_rss_mb"),
    ("max", "accuracy_metric", "accuracy_metric"),
    ("avg", "accuracy", "accuracy"),
    ("max", "accuracy_n", "accuracy_n"),
    ("max", "measure_inputs", "measure_inputs"),
    ("max", "pipeline_mode", "pipeline_mode"),
    ("max", "created_at", "measured_at"),
)

# (name = the fom view's column, formula over study_results' columns, units, description)
FIGURES_OF_MERIT = (
    ("fom_pct_per_ms_mj", "accuracy_pct / NULLIF(mean_ms * energy_per_inference_mj, 0)", "% / (ms x mJ)",
     "ECE 379K figure of merit: accuracy (%) / (average latency (ms) x average energy per image (mJ)), each "
     "averaged over the valid repeats of the series' latest run (study_results)"),
)

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
       st.onnxruntime_version, st.os_image, st.kernel, st.jetpack, st.agent_version, st.orch_version,
       r.model_rss_mb, r.measure_inputs, r.pipeline_mode, r.fps, r.frames_dropped
FROM series s
JOIN results r ON r.id = (SELECT max(r2.id) FROM results r2 WHERE r2.series_id = s.id AND r2.status = 'ok')
JOIN devices d ON d.id = s.device_id
JOIN variants v ON v.sha256 = s.variant_sha256
LEFT JOIN software_stacks st ON st.id = r.stack_id
"""

# Non-dominated variants of one recipe on one device and run configuration, on the averages over the repeats:
# nothing else is at least as fast (p50) and as accurate and strictly better in one; likewise for energy per
# inference vs accuracy. `l` is materialized: computed once, not once per comparison.
PARETO = """
CREATE VIEW pareto AS
WITH l AS MATERIALIZED (SELECT * FROM study_results WHERE accuracy IS NOT NULL),
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


def _ok(value: str) -> str:
    """A value on valid repeats, NULL on the others (aggregates skip NULL)."""
    return f"CASE WHEN r.status = 'ok' THEN {value} END"


def _stdev(value: str, dialect: str) -> str:
    """Sample standard deviation: PostgreSQL's own; SQLite has none, so its formula (NULL under two values)."""
    if dialect == "postgresql":
        return f"stddev_samp({value})"
    return (f"sqrt(max(0.0, (sum(({value}) * ({value})) - sum({value}) * sum({value}) / count({value})) "
            f"/ (count({value}) - 1)))")


def _figures(dialect: str) -> list[str]:
    """The aggregated figures of a study view: over the valid repeats only."""
    figures = ["sum(CASE WHEN r.status = 'ok' THEN 1 ELSE 0 END) AS repeats"]
    for column in SPREAD:
        value = _ok(f"r.{column}")
        figures += [f"avg({value}) AS {column}", f"min({value}) AS {column}_min", f"max({value}) AS {column}_max",
                    f"{_stdev(value, dialect)} AS {column}_sd"]
    figures += [f"{aggregate}({_ok(f'r.{column}')}) AS {name}" for aggregate, column, name in AGGREGATES]
    figures += [f"100 * avg({_ok('r.accuracy')}) AS accuracy_pct",
                f"min({_ok('CASE WHEN r.power_measured THEN 1 ELSE 0 END')}) AS power_measured"]
    return figures


def _study_view(name: str, source: str, dialect: str, counts: bool) -> str:
    """A view of aggregated figures per series (and sweep) from `source` (FROM ... with results as r).

    Grouped by every identity column (not only the keys), so SQLite moves a filter on any of them (device,
    recipe, sweep_id) below the aggregation, onto the indexes."""
    # series_sweeps: one row per sweep; study_results: one row per series, its run possibly spread over sweeps (a
    # resumed sweep), named by the last of them.
    identity = [*IDENTITY, ("r.sweep_id", "sweep_id")] if counts else IDENTITY
    columns = [f"{expression} AS {alias}" for expression, alias in identity] + _figures(dialect)
    if not counts:
        columns.append("max(r.sweep_id) AS sweep_id")
    if counts:
        columns += ["count(*) AS jobs",
                    *(f"sum(CASE WHEN r.status = '{status}' THEN 1 ELSE 0 END) AS {status}_jobs"
                      for status in ("invalid", "error"))]
    group_by = ", ".join(expression for expression, _ in identity)
    return f"CREATE VIEW {name} AS\nSELECT " + ",\n       ".join(columns) + f"\n{source}\nGROUP BY {group_by}\n"


def study_results(dialect: str) -> str:
    """One row per series: the valid repeats of its latest run, i.e. from its newest valid repeat #1 on. A sweep
    resumed after an interruption or after invalid repeats measures only the repeats still missing, in a sweep of
    its own: they count together with the ones before them. A series measured without repeats (no repeat index):
    its valid results of the latest sweep that has one.

    The newest repeat #1 is a walk of ix_results_series_status_id, the repeats after it a range of it. SQLite's
    CROSS JOIN keeps
    series before results in the plan: without statistics its planner would otherwise scan every result."""
    join = "CROSS JOIN" if dialect == "sqlite" else "JOIN"
    return _study_view("study_results", f"""FROM series s
JOIN devices d ON d.id = s.device_id
JOIN variants v ON v.sha256 = s.variant_sha256
{join} results r ON r.series_id = s.id AND r.status = 'ok'
  AND r.id >= coalesce(
    (SELECT max(r2.id) FROM results r2 WHERE r2.series_id = s.id AND r2.status = 'ok' AND r2.repeat_index = 1),
    (SELECT min(r3.id) FROM results r3 WHERE r3.series_id = s.id AND r3.status = 'ok' AND r3.sweep_id =
      (SELECT max(r4.sweep_id) FROM results r4 WHERE r4.series_id = s.id AND r4.status = 'ok')))""",
                       dialect, counts=False)


def series_sweeps(dialect: str) -> str:
    """One row per series and sweep: figures over that sweep's valid repeats, and how many jobs had each status.

    Read one sweep at a time (ix_results_sweep_id); SQLite's CROSS JOIN keeps results first in the plan, as a
    device's series would otherwise each be read over all their sweeps."""
    join = "CROSS JOIN" if dialect == "sqlite" else "JOIN"
    return _study_view("series_sweeps", f"""FROM results r
{join} series s ON s.id = r.series_id
JOIN devices d ON d.id = s.device_id
JOIN variants v ON v.sha256 = s.variant_sha256""", dialect, counts=True)


def fom_view(figures: list[tuple[str, str]]) -> str:
    """The fom view: study_results' headline figures and one column per (name, formula) figure of merit."""
    columns = ",\n       ".join(f"{formula} AS {name}" for name, formula in figures)
    return f"""
CREATE VIEW fom AS
SELECT series_id, series_key, device, recipe, variant, providers, threads, quantize, prune_ratio, sweep_id, repeats,
       accuracy_metric, accuracy_pct, mean_ms, p50_ms, energy_per_inference_mj,
       {columns}
FROM study_results
WHERE accuracy IS NOT NULL
"""


def upgrade() -> None:
    bind = op.get_bind()
    dialect = bind.dialect.name
    op.add_column('results', sa.Column('model_rss_mb', sa.Float(), nullable=True))
    op.add_column('results', sa.Column('measure_inputs', sa.String(length=20), nullable=True))
    op.add_column('variants', sa.Column('baseline', sa.String(length=20), nullable=True))
    bind.execute(sa.text("UPDATE results SET peak_rss_mb = peak_rss_mb * :mb, "
                         "rss_before_session_mb = rss_before_session_mb * :mb"), {"mb": MIB_TO_MB})
    bind.execute(sa.text("UPDATE alerts SET baseline_value = baseline_value * :mb, new_value = new_value * :mb, "
                         "rerun_value = rerun_value * :mb WHERE metric = 'peak_rss_mb'"), {"mb": MIB_TO_MB})
    # One sweep of a series is one probe here (series_sweeps).
    op.create_index('ix_results_series_status_sweep', 'results', ['series_id', 'status', 'sweep_id'])
    op.create_table(
        'figures_of_merit',
        sa.Column('name', sa.String(length=60), primary_key=True),
        sa.Column('formula', sa.Text(), nullable=False),
        sa.Column('units', sa.String(length=60), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
    )
    bind.execute(sa.text("INSERT INTO figures_of_merit (name, formula, units, description) "
                         "VALUES (:name, :formula, :units, :description)"),
                 [dict(zip(("name", "formula", "units", "description"), figure, strict=True))
                  for figure in FIGURES_OF_MERIT])
    for view in ("fom", "pareto", "latest_results"):  # dependents first
        op.execute(f"DROP VIEW {view}")
    if dialect == "postgresql":  # a meter's method text runs past 40 characters; SQLite never enforced the length
        op.alter_column('results', 'power_method', type_=sa.Text(), existing_type=sa.String(length=40))
    figures = bind.execute(sa.text("SELECT name, formula FROM figures_of_merit ORDER BY name")).all()
    for sql in (LATEST_RESULTS, study_results(dialect), series_sweeps(dialect), PARETO,
                fom_view([(name, formula) for name, formula in figures])):
        op.execute(sql)


def downgrade() -> None:
    raise NotImplementedError("orch does not downgrade results databases: restore a copy made before upgrading")
