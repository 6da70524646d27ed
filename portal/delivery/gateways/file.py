"""`file`: appends each text as a JSON line (`to`, `text`, `message_id`), which `/dev/sms`
reads. The test adapter: the embedded default and the tests use it."""

import fcntl
import json

from portal.delivery.gateways.interface import Accepted
from portal.delivery.texts import Text


class FileGateway:
    name = "file"

    def __init__(self, path: str):
        self.path = path

    def send(self, text: Text) -> Accepted:
        line = json.dumps(
            {"to": text.phone, "text": text.body, "message_id": text.message_id},
            ensure_ascii=False,
        )
        with open(self.path, "a", encoding="utf-8") as sink:
            fcntl.flock(sink, fcntl.LOCK_EX)
            sink.write(line + "\n")
        return Accepted(self.name, text.message_id)


def from_config(config: dict) -> FileGateway:
    return FileGateway(config["SMS_FILE_PATH"])
