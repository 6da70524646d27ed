"""Delivery of texts and webhook events.

`outbox` queues the rows a transaction asked for when it commits (on RQ or in-process), holds
the one claim every job takes a row with, and marks what Redis refused; `sending` claims and
sends texts and marks them sent or failed; `webhooks` posts events; `relay` queues again what
no job delivered. `gateways/` has one module per gateway behind one interface
(`gateways/interface.py`); `failover` tries several in order; `texts` writes what is sent;
`receipts` takes the gateways' delivery reports; `reroute` sends a text through the next
gateway when the first did not deliver it; `pacing` holds back a text until its phone may get
another. The RQ jobs themselves are in portal/jobs.py.
"""

from redis import Redis

from portal.delivery.failover import Failover
from portal.delivery.gateways import GATEWAYS
from portal.settings import SettingsError


def gateway_from_config(config: dict, redis: Redis | None) -> Failover:
    """`SMS_BACKEND`: one gateway name or several, comma-separated, in order of preference."""
    names = [name.strip() for name in config["SMS_BACKEND"].split(",") if name.strip()]
    unknown = [name for name in names if name not in GATEWAYS]
    if unknown or not names:
        raise SettingsError(
            f"unknown SMS_BACKEND {config['SMS_BACKEND']!r}: one or more of {', '.join(GATEWAYS)}"
        )
    if len(set(names)) < len(names):
        raise SettingsError(f"SMS_BACKEND names a gateway twice: {config['SMS_BACKEND']!r}")
    return Failover([GATEWAYS[name](config) for name in names], redis)
