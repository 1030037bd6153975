"""What starting, stopping and checking a node returns (workers, beat and Flower alike), with the exit
codes the commands derive from it.

Status states and their exit codes (usable as a systemd/Kubernetes probe; the command exits with the
highest code among the nodes it reports):

| state            | exit | meaning                                                              |
|------------------|------|----------------------------------------------------------------------|
| running          | 0    | our process is alive and answers (worker: a ping addressed to its    |
|                  |      | node name; beat: its heartbeat in Redis is recent and is its own)    |
| not-running      | 3    | nothing runs (never started, stopped, or exited cleanly)             |
| not-responding   | 4    | our process is alive but does not answer / beat stopped ticking      |
| crashed          | 5    | its process died without a clean shutdown (killed, or an error it   |
|                  |      | logged last); the note says why, `last_errors` holds the log lines   |
| stale            | 5    | a pidfile whose pid is dead or is not our process (reused)           |
| (broker down)    | 69   | the broker cannot be reached, so the answer is unknown               |

Stop outcomes and their exit codes: 0 stopped gracefully (warm), or was not running / only a stale
pidfile was removed; 10 the warm shutdown timed out and a cold shutdown (SIGQUIT) ended it, running
tasks were cancelled and re-queued (acks_late); 11 it had to be killed (SIGKILL, only with --force);
1 still running after the cold shutdown and --force was not given (nothing was killed).

Field names are the `--json` keys; a field that does not apply to a result is null.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from carsctl.process.nodes import NodeState


class NodeStatus(StrEnum):
    """A node's status as `worker status` / `beat status` report it (see the module docstring)."""

    RUNNING = "running"
    NOT_RUNNING = "not-running"
    NOT_RESPONDING = "not-responding"
    CRASHED = "crashed"
    STALE = "stale"

    @property
    def exit_code(self) -> int:
        """The status command's exit code for this state."""
        return _STATUS_EXIT[self]


_STATUS_EXIT = {NodeStatus.RUNNING: 0, NodeStatus.NOT_RUNNING: 3, NodeStatus.NOT_RESPONDING: 4, NodeStatus.CRASHED: 5,
                NodeStatus.STALE: 5}


class StartState(StrEnum):
    """How a start of one node ended."""

    STARTED = "started"                  # spawned and ready (answered a ping / ticked / listens)
    ALREADY_RUNNING = "already-running"  # our process already ran: nothing changed
    REFUSED = "refused"                  # not started on purpose (another beat holds the broker's lock)
    FAILED = "failed"                    # died or did not get ready in time (stopped again)


class StopOutcome(StrEnum):
    """How a stop of one node ended: the four ways a signalled process ends
    (:class:`carsctl.process.supervise.Shutdown`, same values), or never signalled at all."""

    WARM = "warm"
    COLD = "cold"
    KILLED = "killed"
    STILL_RUNNING = "still-running"
    NOT_RUNNING = "not-running"  # nothing ran
    STALE = "stale"              # a pidfile of a dead or foreign pid: removed, nothing signalled

    @property
    def exit_code(self) -> int:
        """The stop command's exit code for this outcome."""
        return _STOP_EXIT[self]


_STOP_EXIT = {StopOutcome.WARM: 0, StopOutcome.NOT_RUNNING: 0, StopOutcome.STALE: 0, StopOutcome.STILL_RUNNING: 1,
              StopOutcome.COLD: 10, StopOutcome.KILLED: 11}


@dataclass(frozen=True, slots=True)
class StartResult:
    """One node's start: its state, and what explains it (log tail of a failure, lock holder of a refusal)."""

    name: str
    state: StartState
    hostname: str | None = None  # None where the message names the node by its short name (beat refused)
    pid: int | None = None
    logfile: str | None = None
    seconds: float | None = None  # from spawn until ready (started only)
    error: str | None = None  # failed or refused: why
    log_tail: tuple[str, ...] | None = None  # failed: this start's last log lines, secrets masked
    queues: tuple[str, ...] | None = None  # already-running worker: the queues it consumes
    url: str | None = None  # Flower
    removed_stale: tuple[str, ...] | None = None  # worker: stale files removed before spawning
    holder: dict[str, Any] | None = None  # beat refused: the lock holder as cars_bot.beat reads it
    heartbeat_age_seconds: float | None = None  # beat refused: the holder's last tick


@dataclass(frozen=True, slots=True)
class StopResult:
    """One node's stop: its outcome and the exit code that outcome means."""

    name: str
    outcome: StopOutcome
    hostname: str | None = None
    pid: int | None = None
    note: str | None = None  # never signalled: why (e.g. "pid 123 is dead")
    seconds: float | None = None  # signalled: until it was gone
    removed_stale: tuple[str, ...] | None = None  # never signalled: the files removed
    exit_code: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "exit_code", self.outcome.exit_code)


@dataclass(frozen=True, slots=True)
class StatusVerdict:
    """Why a node whose process is gone (or not ours) is not running: its status and a note."""

    status: NodeStatus
    note: str


#: The NodeState fields a status row shows (not its command line, start time or kind).
_SHOWN = ("name", "hostname", "queues", "concurrency", "pool", "autoscale", "loglevel", "logfile", "pidfile",
          "pid", "started_at", "include", "cwd", "stopped_at")


@dataclass(frozen=True, slots=True)
class NodeStatusRow:
    """One node in `worker status`: its options as started, its status, exit code and uptime."""

    name: str
    hostname: str
    queues: tuple[str, ...]
    concurrency: int | None
    pool: str | None
    autoscale: str | None
    loglevel: str
    logfile: str
    pidfile: str
    pid: int | None
    started_at: str | None
    include: tuple[str, ...]
    cwd: str
    stopped_at: str | None
    status: NodeStatus
    note: str = ""
    uptime_seconds: float | None = None
    last_errors: tuple[str, ...] = ()  # crashed: the last error lines of its log (secrets masked)
    exit_code: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "exit_code", self.status.exit_code)

    @classmethod
    def of(cls, state: NodeState, status: NodeStatus, note: str = "", **extra: Any) -> Self:
        """The row of `state` (uptime only while its process runs; a crashed node's last error lines);
        `extra` fills a subclass's fields."""
        shown = {name: getattr(state, name) for name in _SHOWN}
        shown["queues"], shown["include"] = tuple(state.queues), tuple(state.include)
        alive = status in (NodeStatus.RUNNING, NodeStatus.NOT_RESPONDING)
        if status is NodeStatus.CRASHED and "last_errors" not in extra:
            from carsctl.process.exit_reason import diagnose

            extra["last_errors"] = diagnose(state.logfile, pidfile_left=True).last_errors
        return cls(**shown, status=status, note=note, uptime_seconds=_uptime(state) if alive else None, **extra)


def _uptime(state: NodeState) -> float | None:
    if not state.started_at:
        return None
    return round((datetime.now(UTC) - datetime.fromisoformat(state.started_at)).total_seconds(), 1)
