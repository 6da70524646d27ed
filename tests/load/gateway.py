"""A fake SMS gateway for load runs: accepts every text (`SMS_BACKEND=http`) and records
`phone:code:province` in a Redis list, the inbox the applicant users of the locustfile read,
and `message_id time` of each arrival (the bench's latency from submission to gateway).

    python -m tests.load.gateway --port 8025 --redis redis://127.0.0.1:6379/14
"""

import argparse
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from redis import Redis

INBOX = "bench:inbox"
RECEIVED = "bench:received"
ARRIVALS = "bench:arrivals"
INBOX_SIZE = 200_000
_CODE = re.compile(r"核验码为(\d{6})")
_PROVINCE = re.compile(r"/([a-z][a-z0-9-]*)/v/")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a job's session reuses its connection
    # Headers and body go out in two writes: with Nagle on, the body waits for the client's
    # delayed ACK, 40 ms a text.
    disable_nagle_algorithm = True
    redis: Redis

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        message = json.loads(body)
        text = message.get("text", "")
        found, province = _CODE.search(text), _PROVINCE.search(text)
        with self.redis.pipeline(transaction=False) as pipe:
            if found and province:
                pipe.lpush(INBOX, f"{message['to']}:{found.group(1)}:{province.group(1)}")
                pipe.ltrim(INBOX, 0, INBOX_SIZE - 1)
            pipe.incr(RECEIVED)
            pipe.rpush(ARRIVALS, f"{message.get('message_id')} {time.time()}")
            pipe.execute()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args) -> None:
        pass


def make_server(port: int, redis_url: str) -> ThreadingHTTPServer:
    handler = type("Handler", (_Handler,), {"redis": Redis.from_url(redis_url)})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    return server


def serve_in_thread(port: int, redis_url: str) -> ThreadingHTTPServer:
    server = make_server(port, redis_url)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()
    make_server(args.port, args.redis).serve_forever()


if __name__ == "__main__":
    main()
