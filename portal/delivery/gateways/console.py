"""`console`: logs the text (redacted, like every log line: it shows that a text went out,
not its code). The production default until a real gateway is configured."""

import logging

from portal.delivery.gateways.interface import Accepted
from portal.delivery.texts import Text

log = logging.getLogger(__name__)


class ConsoleGateway:
    name = "console"

    def send(self, text: Text) -> Accepted:
        log.info("SMS %s to %s: %s", text.message_id, text.phone, text.body)
        return Accepted(self.name, text.message_id)


def from_config(config: dict) -> ConsoleGateway:
    return ConsoleGateway()
