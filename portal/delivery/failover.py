"""Several gateways in order of preference (`SMS_BACKEND=aliyun,tencent`), SPEC §9.

A text a gateway refuses goes to the next at once. A text a gateway did not answer in
time is not sent elsewhere here: `TimedOut` goes up, the text is `sent`, and `reroute`
decides later. With two gateways or more, each has a circuit breaker (pybreaker) whose
state lives in Redis, shared by every process: after `FAIL_MAX` failures in a row it is
skipped for `COOL_DOWN_SECONDS`, then tried with one text and taken back if it answers. A
refusal for the phone (its per-phone limits) is an answer, not a failure.
"""

import logging
import threading

from pybreaker import (
    STATE_CLOSED,
    CircuitBreaker,
    CircuitBreakerError,
    CircuitBreakerStorage,
    CircuitMemoryStorage,
    CircuitRedisStorage,
)
from redis import Redis
from redis.exceptions import RedisError

from portal.delivery.gateways import Accepted, Gateway, Refused, RefusedForThePhone, TimedOut
from portal.delivery.texts import Text
from portal.monitoring import SMS_GATEWAY_SENDS

log = logging.getLogger(__name__)

FAIL_MAX = 5
COOL_DOWN_SECONDS = 60


class Failover:
    """One gateway or several, behind the gateways' own interface."""

    name = "failover"

    def __init__(self, gateways: list[Gateway], redis: Redis | None):
        self.gateways = gateways
        self.names = [gateway.name for gateway in gateways]
        # Breakers only where there is somewhere else to go: skipping the only gateway
        # would spend a text's attempts without trying it.
        self._storages = (
            {name: _storage(name, redis) for name in self.names} if len(gateways) > 1 else {}
        )
        # pybreaker holds a breaker's lock for the whole call: one breaker per sending
        # thread, all sharing one storage, so the threads send in parallel.
        self._local = threading.local()

    def send(self, text: Text) -> Accepted:
        refusals = []
        for gateway in self._candidates(text):
            try:
                accepted = self._call(gateway, text)
            except CircuitBreakerError:
                SMS_GATEWAY_SENDS.labels(gateway.name, "skipped").inc()
                refusals.append(f"{gateway.name}: skipped while it keeps failing")
                continue
            except Refused as refusal:
                SMS_GATEWAY_SENDS.labels(gateway.name, "refused").inc()
                refusals.append(str(refusal))
                continue
            except TimedOut:
                SMS_GATEWAY_SENDS.labels(gateway.name, "timed_out").inc()
                raise
            SMS_GATEWAY_SENDS.labels(gateway.name, "accepted").inc()
            return accepted
        raise Refused("; ".join(refusals) or f"no gateway after {text.not_via}")

    def next_after(self, name: str) -> str | None:
        """The gateway a text goes to when `name` did not deliver it."""
        if name not in self.names:
            return None
        later = self.names[self.names.index(name) + 1 :]
        return later[0] if later else None

    def _candidates(self, text: Text) -> list[Gateway]:
        if text.not_via is None:
            return self.gateways
        return (
            self.gateways[self.names.index(text.not_via) + 1 :]
            if text.not_via in self.names
            else []
        )

    def _call(self, gateway: Gateway, text: Text) -> Accepted:
        if not self._storages:
            return gateway.send(text)
        return self._breaker(gateway.name).call(gateway.send, text)

    def _breaker(self, name: str) -> CircuitBreaker:
        breakers = getattr(self._local, "breakers", None)
        if breakers is None:
            breakers = self._local.breakers = {
                gateway: CircuitBreaker(
                    fail_max=FAIL_MAX,
                    reset_timeout=COOL_DOWN_SECONDS,
                    state_storage=storage,
                    name=gateway,
                    # The gateway's own exception, never a breaker's: a timeout that trips
                    # the breaker must still not send the text elsewhere.
                    throw_new_error_on_trip=False,
                    # A phone's limits say nothing about the gateway.
                    exclude=[RefusedForThePhone],
                )
                for gateway, storage in self._storages.items()
            }
        return breakers[name]


def _storage(name: str, redis: Redis | None) -> CircuitBreakerStorage:
    """In Redis, shared by every process; in memory without Redis or while it is away."""
    if redis is not None:
        try:
            return CircuitRedisStorage(STATE_CLOSED, redis, namespace=f"portal:gateway:{name}")
        except RedisError:
            log.warning("Redis away: the %s breaker keeps its state in this process", name)
    return CircuitMemoryStorage(STATE_CLOSED)
