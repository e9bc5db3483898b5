"""The store's tables at the newest migration (queries use these; kfadapter/watch/migrations creates them)."""

from __future__ import annotations

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text

metadata = MetaData()

# Runs being watched until they reach a terminal state.
tracked_runs = Table(
    "tracked_runs",
    metadata,
    Column("run_id", Text, primary_key=True),
    Column("trainingjob_id", Text, nullable=False),
    Column("pipeline_name", Text),
    Column("experiment_id", Text),
    Column("created_at", Float, nullable=False),
)

# Finished runs: the notification to the training manager (pending or delivered) and, after delivery, the
# run's history until KFADAPTER_HISTORY_DAYS have passed.
outbox = Table(
    "outbox",
    metadata,
    Column("run_id", Text, primary_key=True),
    Column("trainingjob_id", Text, nullable=False),
    Column("run_status", Text, nullable=False),
    Column("created_at", Float, nullable=False),  # when the run was seen finished
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False),
    Column("last_attempt_at", Float),
    Column("last_status", Integer),
    Column("last_error", Text),
    Column("delivered_at", Float),
    Column("pipeline_name", Text),
    Column("experiment_id", Text),
    Column("tracked_at", Float),  # when the execution started tracking it (None for rows of the landed store)
    Column("tm_answer", Text),  # the training manager's answer body, cut to ANSWER_CHARS
)

# Runs whose tracking DELETE /runs/<id> stopped (no notification is sent): kept in their training job's
# history for KFADAPTER_HISTORY_DAYS; their state is read from KFP.
untracked_runs = Table(
    "untracked_runs",
    metadata,
    Column("run_id", Text, primary_key=True),
    Column("trainingjob_id", Text, nullable=False),
    Column("pipeline_name", Text),
    Column("experiment_id", Text),
    Column("tracked_at", Float),
    Column("untracked_at", Float, nullable=False),
)

meta = Table(
    "meta",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Float, nullable=False),
)

# Named leases: the run watcher's, and one per pipeline name while an upload picks its version number.
lease = Table(
    "lease",
    metadata,
    Column("name", Text, primary_key=True),
    Column("holder", Text, nullable=False),
    Column("expires_at", Float, nullable=False),
)

# Executions written before KFP is asked to start the run; the row goes when its run id is tracked.
intents = Table(
    "intents",
    metadata,
    Column("token", String(64), primary_key=True),
    Column("trainingjob_id", Text, nullable=False),
    Column("pipeline_name", Text, nullable=False),
    Column("run_name", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)
