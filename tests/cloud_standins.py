"""Local stand-ins for Alibaba Cloud's and Tencent Cloud's SendSms, for tests and benchmarks.

Each speaks its gateway's documented protocol and checks every request's signature with
the published algorithm (Aliyun ACS3-HMAC-SHA256, Tencent TC3-HMAC-SHA256), computed here
from the documentation, independently of the SDKs: a client holding the wrong secret is
refused as the real service refuses it. Each answers from a script of behaviours, then
`then`: "ok" (accepted), "refuse" (an error answer), "unavailable" (a 503), "slow"
(accepted, but only after `slow_seconds`).
"""

import hashlib
import hmac
import itertools
import json
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, quote, urlsplit


@dataclass(frozen=True)
class Sent:
    params: dict
    signature_valid: bool
    behaviour: str
    gateway_id: str | None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def _authorization(header: str, scheme: str) -> dict[str, str]:
    """`SCHEME Credential=…, SignedHeaders=…, Signature=…` as a dict."""
    if not header.startswith(scheme + " "):
        return {}
    parts = (part.strip().split("=", 1) for part in header[len(scheme) + 1 :].split(","))
    return {part[0]: part[1] for part in parts if len(part) == 2}


def acs3_signature_is_valid(method, path, headers, body, key_id, secret) -> bool:
    """Alibaba Cloud's V3 signature (ACS3-HMAC-SHA256), as its documentation gives it."""
    fields = _authorization(headers.get("Authorization", ""), "ACS3-HMAC-SHA256")
    if fields.get("Credential") != key_id or "SignedHeaders" not in fields:
        return False
    if headers.get("x-acs-content-sha256") != _sha256(body):
        return False
    url = urlsplit(path)
    query = sorted(parse_qsl(url.query, keep_blank_values=True))
    canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in query)
    signed = fields["SignedHeaders"].split(";")
    canonical_headers = "".join(f"{name}:{(headers.get(name) or '').strip()}\n" for name in signed)
    canonical_request = "\n".join(
        [
            method,
            url.path or "/",
            canonical_query,
            canonical_headers,
            ";".join(signed),
            _sha256(body),
        ]
    )
    string_to_sign = "ACS3-HMAC-SHA256\n" + _sha256(canonical_request.encode())
    expected = hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields.get("Signature", ""))


def tc3_signature_is_valid(method, path, headers, body, secret_id, secret_key) -> bool:
    """Tencent Cloud's API 3.0 signature (TC3-HMAC-SHA256), as its documentation gives it."""
    fields = _authorization(headers.get("Authorization", ""), "TC3-HMAC-SHA256")
    credential = fields.get("Credential", "").split("/")
    if (
        len(credential) != 4
        or credential[0] != secret_id
        or credential[2:] != ["sms", "tc3_request"]
    ):
        return False
    timestamp = headers.get("X-TC-Timestamp", "")
    date = credential[1]
    if not timestamp.isdigit():
        return False
    if datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%d") != date:
        return False
    url = urlsplit(path)
    signed = fields.get("SignedHeaders", "").split(";")
    canonical_headers = "".join(
        f"{name}:{(headers.get(name) or '').strip().lower()}\n" for name in signed
    )
    canonical_request = "\n".join(
        [method, url.path or "/", url.query, canonical_headers, ";".join(signed), _sha256(body)]
    )
    scope = f"{date}/sms/tc3_request"
    string_to_sign = f"TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{_sha256(canonical_request.encode())}"
    key = _hmac(_hmac(_hmac(("TC3" + secret_key).encode(), date), "sms"), "tc3_request")
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields.get("Signature", ""))


class _StandIn:
    """Use as a context manager: the server runs inside the `with` block."""

    def __init__(self, script=(), then: str = "ok", slow_seconds: float = 1.0, port: int = 0):
        self._script = list(script)
        self._then = then
        self.slow_seconds = slow_seconds
        self._lock = threading.Lock()
        self._sent: list[Sent] = []
        self._ids = itertools.count(1)
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._server.request_queue_size = 128
        # A client that timed out hangs up before a slow answer: nothing to report.
        self._server.handle_error = lambda request, client_address: None
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self._server.server_port}"

    @property
    def sent(self) -> list[Sent]:
        with self._lock:
            return list(self._sent)

    def then(self, behaviour: str) -> None:
        with self._lock:
            self._script, self._then = [], behaviour

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _next(self, params: dict, valid: bool) -> tuple[str, str | None]:
        with self._lock:
            behaviour = (self._script.pop(0) if self._script else self._then) if valid else "denied"
            gateway_id = self._new_id(next(self._ids)) if behaviour in ("ok", "slow") else None
            self._sent.append(Sent(params, valid, behaviour, gateway_id))
        return behaviour, gateway_id

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: with Nagle on, the body would wait for
            # the client's delayed ACK, 40 ms a text (see tests/load/gateway.py).
            disable_nagle_algorithm = True

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, answer = stand_in._answer(self.command, self.path, self.headers, body)
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        return Handler


class AliyunStandIn(_StandIn):
    """Dysmsapi SendSms 2017-05-25 (RPC style: the parameters in the query, an empty body)."""

    def __init__(self, key_id: str, secret: str, **options):
        super().__init__(**options)
        self.key_id, self.secret = key_id, secret

    def _new_id(self, n: int) -> str:
        return f"{900000 + n}^0"

    def _answer(self, method, path, headers, body) -> tuple[int, dict]:
        valid = acs3_signature_is_valid(method, path, headers, body, self.key_id, self.secret)
        params = dict(parse_qsl(urlsplit(path).query))
        params["x-acs-action"] = headers.get("x-acs-action")
        behaviour, biz_id = self._next(params, valid)
        if behaviour == "slow":
            time.sleep(self.slow_seconds)
        request_id = "A1B2C3D4-0000-0000-0000-000000000000"
        if behaviour in ("ok", "slow"):
            return 200, {"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": request_id}
        if behaviour == "denied":
            message = "Specified signature does not match our calculation."
            return 400, {
                "Code": "SignatureDoesNotMatch",
                "Message": message,
                "RequestId": request_id,
            }
        if behaviour == "unavailable":
            return 503, {"Code": "ServiceUnavailable", "Message": "busy", "RequestId": request_id}
        return 200, {
            "Code": "isv.BUSINESS_LIMIT_CONTROL",
            "Message": "触发分钟级流控Permits:1",
            "RequestId": request_id,
        }


class TencentStandIn(_StandIn):
    """SMS SendSms 2021-01-11 (a JSON body)."""

    def __init__(self, secret_id: str, secret_key: str, **options):
        super().__init__(**options)
        self.secret_id, self.secret_key = secret_id, secret_key

    def _new_id(self, n: int) -> str:
        return f"2433:{n:020d}"

    def _answer(self, method, path, headers, body) -> tuple[int, dict]:
        valid = tc3_signature_is_valid(method, path, headers, body, self.secret_id, self.secret_key)
        params = json.loads(body or b"{}")
        params["X-TC-Action"] = headers.get("X-TC-Action")
        behaviour, serial_no = self._next(params, valid)
        if behaviour == "slow":
            time.sleep(self.slow_seconds)
        request_id = "a0aabda6-0000-0000-0000-000000000000"
        if behaviour == "denied":
            error = {
                "Code": "AuthFailure.SignatureFailure",
                "Message": "The provided credentials could not be validated.",
            }
            return 200, {"Response": {"Error": error, "RequestId": request_id}}
        if behaviour == "unavailable":
            return 503, {"Response": {"Error": {"Code": "InternalError", "Message": "busy"}}}
        phone = (params.get("PhoneNumberSet") or [""])[0]
        if behaviour in ("ok", "slow"):
            status = {"SerialNo": serial_no, "Code": "Ok", "Message": "send success", "Fee": 1}
        else:
            status = {
                "SerialNo": "",
                "Code": "LimitExceeded.PhoneNumberDailyLimit",
                "Message": "daily limit",
                "Fee": 0,
            }
        status |= {
            "PhoneNumber": phone,
            "SessionContext": params.get("SessionContext", ""),
            "IsoCode": "CN",
        }
        return 200, {"Response": {"SendStatusSet": [status], "RequestId": request_id}}


ALIYUN_KEY = ("LTAI5tTestKeyId", "aliyun-test-secret")
TENCENT_KEY = ("AKIDtestSecretId", "tencent-test-secret-key")


def aliyun_settings(stand_in: AliyunStandIn) -> dict[str, str]:
    """The portal's settings (SPEC §9) for the Aliyun stand-in."""
    return {
        "ALIYUN_SMS_ACCESS_KEY_ID": ALIYUN_KEY[0],
        "ALIYUN_SMS_ACCESS_KEY_SECRET": ALIYUN_KEY[1],
        "ALIYUN_SMS_SIGN_NAME": "通信管理局",
        "ALIYUN_SMS_TEMPLATE_CODE": "SMS_123456789",
        "ALIYUN_SMS_ENDPOINT": stand_in.endpoint,
        "ALIYUN_SMS_PROTOCOL": "http",
    }


def tencent_settings(stand_in: TencentStandIn) -> dict[str, str]:
    return {
        "TENCENT_SMS_SECRET_ID": TENCENT_KEY[0],
        "TENCENT_SMS_SECRET_KEY": TENCENT_KEY[1],
        "TENCENT_SMS_SDK_APP_ID": "1400000001",
        "TENCENT_SMS_SIGN_NAME": "通信管理局",
        "TENCENT_SMS_TEMPLATE_ID": "1234567",
        "TENCENT_SMS_ENDPOINT": stand_in.endpoint,
        "TENCENT_SMS_PROTOCOL": "http",
    }


def main() -> None:
    """`python -m tests.cloud_standins aliyun|tencent PORT`: a stand-in in a process of its own
    (the benchmark's), holding the test keys."""
    import sys

    gateway, port = sys.argv[1], int(sys.argv[2])
    stand_in = (
        AliyunStandIn(*ALIYUN_KEY, port=port)
        if gateway == "aliyun"
        else TencentStandIn(*TENCENT_KEY, port=port)
    )
    stand_in._server.serve_forever()


if __name__ == "__main__":
    main()
