"""The migration tool: versioned, locked, backed-up schema and data upgrades.

Layers (as in Alembic's command / script / runtime split):

* :mod:`.scripts` - migration files: discover, load, checksum, scaffold ``new``;
* :mod:`.ops` - building blocks for migration files (idempotent, plannable commands; batches;
  :func:`.ops.transform_files`: a change to ``files`` documents that reaches the versions kept
  in ``file_versions`` too -- the rule for every migration that rewrites documents);
* :mod:`.reconcile` - schema.json versus the database, compared by spec; the fixing commands;
* :mod:`.lock` - the atomic migration lock with a lease and stale-lock takeover;
* :mod:`.durable` - majority concerns, retries through a failover, the server's clock;
* :mod:`.backups` - verified backups in mongodump's layout, rotation, restore;
* :mod:`.runner` - status / check / plan / up / down / stamp / history / ack / unlock,
  returning plain result objects.

Nothing here prints; ``spine-docs migrate ...`` (cli.py) renders the results
(see ``spine_docs/migrate/README-cli.md``).
"""

from .backups import (BackupError, BackupInfo, BackupResult, RestoreError, RestoreResult, VerifyResult,
                     default_root, list_backups, manual_restore_command, rotate, verify)
from .lock import Lock, LockBusy, LockError, LockLost, acquire, describe_holder, force_unlock, holder
from .reconcile import Drift, diff, snapshot
from .runner import (ChangedMigration, CheckResult, ChecksumMismatch, HistoryEntry, MigrationError,
                     MigrationInfo, Plan, PlanStep, RunResult, StatusResult, StepResult, acknowledge,
                     backup, changed_migrations, check, down, history, load, plan, restore, restore_url,
                     stamp, status, unlock, up)
from .scripts import Migration, MigrationScriptError, discover, new_migration

__all__ = [
    "BackupError", "BackupInfo", "BackupResult", "RestoreError", "RestoreResult", "VerifyResult",
    "default_root", "list_backups", "manual_restore_command", "rotate", "verify",
    "Lock", "LockBusy", "LockError", "LockLost", "acquire", "describe_holder", "force_unlock", "holder",
    "Drift", "diff", "snapshot",
    "ChangedMigration", "CheckResult", "ChecksumMismatch", "HistoryEntry", "MigrationError",
    "MigrationInfo", "Plan", "PlanStep", "RunResult", "StatusResult", "StepResult", "acknowledge",
    "backup", "changed_migrations", "check", "down", "history", "load", "plan", "restore", "restore_url",
    "stamp", "status", "unlock", "up",
    "Migration", "MigrationScriptError", "discover", "new_migration",
]
