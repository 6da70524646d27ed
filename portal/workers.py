"""The RQ worker that `flask worker` runs: RQ's `SimpleWorker` with its scheduler, made to
take over the scheduling of delayed jobs (retries, paced texts) within seconds when the worker
that scheduled them is killed.

RQ lets one scheduler per queue move due jobs onto the queue. It holds
`rq:scheduler-lock:<queue>` with a TTL of its interval + 60 s (61 s), refreshed every second;
another worker tries for the lock only in its maintenance, every `maintenance_interval`
(10 minutes by default) and only between dequeues, which block for `worker_ttl` - 15 s
(405 s). A SIGKILLed scheduler's locks so outlive it by up to 61 s and then wait for a
maintenance run: the other workers' retries stopped for up to about 11 minutes.

Here maintenance runs every `MAINTENANCE_SECONDS` (dequeues block no longer), and frees each
lock not refreshed for `STALE_SECONDS` (a live scheduler refreshes it every second), so a
surviving worker takes the lock at its next maintenance: retries resume within about
`STALE_SECONDS` + 2 × `MAINTENANCE_SECONDS` of the kill.
"""

from rq import SimpleWorker
from rq.scheduler import RQScheduler

MAINTENANCE_SECONDS = 10
STALE_SECONDS = 15
# What RQ's scheduler sets its lock's TTL to: its interval (1 s by default) + 60 s.
LOCK_TTL_SECONDS = 61

# Delete the lock only if its TTL says it was not refreshed for ARGV[1] ms (atomically: a
# scheduler refreshing it meanwhile keeps it).
_FREE_STALE_LOCK = """
local left = redis.call('PTTL', KEYS[1])
if left >= 0 and left < tonumber(ARGV[1]) then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class Worker(SimpleWorker):
    def __init__(self, queues, **options):
        super().__init__(
            queues,
            maintenance_interval=MAINTENANCE_SECONDS,
            worker_ttl=MAINTENANCE_SECONDS + 15,  # dequeues block for worker_ttl - 15 s
            **options,
        )

    def run_maintenance_tasks(self):
        # RQ's own maintenance then starts our scheduler if it holds no lock. One that already
        # holds some takes a freed lock in its own loop, within DEFAULT_SCHEDULER_FALLBACK_PERIOD
        # (120 s): only workers on different sets of queues meet that case.
        if self.last_cleaned_at and self.scheduler:
            self.free_stale_scheduler_locks()
        super().run_maintenance_tasks()

    def free_stale_scheduler_locks(self) -> list[str]:
        """Free the scheduler lock of each of our queues whose scheduler stopped refreshing it;
        the names of those queues."""
        free = self.connection.register_script(_FREE_STALE_LOCK)
        refreshed_within = (LOCK_TTL_SECONDS - STALE_SECONDS) * 1000
        freed = [
            name
            for name in self.queue_names()
            if free(keys=[RQScheduler.get_locking_key(name)], args=[refreshed_within])
        ]
        if freed:
            self.log.warning("freed the scheduler locks of a dead scheduler: %s", ", ".join(freed))
        return freed
