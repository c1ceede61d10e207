#!/usr/bin/env python3
"""Issue 9, target 1 (init): time from process spawn to the first
GET /2018-06-01/runtime/invocation/next of each function's release binary,
side by side with a hello-world lambda_runtime binary, against a local
Lambda Runtime API on 127.0.0.1. Python 3 standard library only.

    python3 bench/lambda/init.py                 # 20 rounds, all functions
    python3 bench/lambda/init.py --runs 5 --only publish,dispatch

Prerequisites (the script builds nothing):
    cargo build --release                         # target/release/<function>
    CARGO_TARGET_DIR=target/bench-hello \\
      cargo build --release --manifest-path bench/lambda/hello/Cargo.toml

Each round starts hello world, then every function, one process at a time
(so every function is measured under the same machine load as its
baseline). A process is killed as soon as it asks for its first invocation.

Every function gets the environment variables of its template.yaml entry
(names read from the template, placeholder values), the variables Lambda
itself sets (function name, memory 128, log format JSON, region eu-west-2),
dummy static credentials and AWS_ENDPOINT_URL pointing at a local port that
refuses connections, so no AWS call made during init could succeed, except
the calls functions make during init on purpose, which a local stub answers
(plain HTTP on loopback: no TLS, no network latency): KMS GetPublicKey
(authorizer, token; --no-kms-stub leaves it out), DynamoDB DescribeEndpoints
(every function opens its DynamoDB connection in init) and SNS
GetTopicAttributes (dispatch and replay-worker also open their SNS
connection); --no-warm-up-stub sends the last two to the dead port instead.

--binary NAME=PATH (repeatable) measures another binary the way hello world
is measured (its minimal environment, in the same rounds, right after it):
issue 19 compares bench/lambda/hello-apigw (API Gateway requests decoded by
hand) with bench/lambda/hello-http (lambda_http). --event FILE serves that
JSON event on the first GET /next of hello world and the --binary ones (not
the hub's functions, which would call AWS) and adds the time from spawn to
the handler's answer (POST .../response or .../error); --only none leaves
the hub's functions out:

    python3 bench/lambda/init.py --runs 30 --only none \
      --binary hello-apigw=target/bench-hello/release/hello-apigw \
      --binary hello-http=target/bench-hello/release/hello-http \
      --event bench/lambda/hello-apigw/event.json

bench/lambda/memory.py reuses this module's Runtime API.
"""

import argparse
import base64
import http.server
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
API_PREFIX = "/2018-06-01/runtime"
REGION = "eu-west-2"
ACCOUNT = "123456789012"
# The public half of a throwaway P-256 key (SubjectPublicKeyInfo, DER), the
# KMS stub's answer to GetPublicKey (the hub's signing key is ECC_NIST_P256).
BENCH_PUBLIC_KEY_DER_B64 = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEwnPDx5dK0xtrURtVtV1Clddv9nB/zAYn+Kr7"
    "wsz9wlIjB+guj2D2B9xnup/uua5BxEwa/y4HjRp2ka9PuHxjig=="
)
KMS_INIT_FUNCTIONS = ("authorizer", "token")


# ---------------------------------------------------------------- template


def template_environment(path=os.path.join(ROOT, "template.yaml")):
    """{function directory name: [environment variable names]} from the SAM
    template's AWS::Serverless::Function resources (names only)."""
    functions = {}
    lines = open(path, encoding="utf-8").read().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "Type: AWS::Serverless::Function":
            name, names = None, []
            j = i + 1
            # The resource ends at the next line indented as a resource (2).
            while j < len(lines) and not re.match(r"^  \S", lines[j]):
                m = re.match(r"^\s+CodeUri:\s*functions/(\S+)", lines[j])
                if m:
                    name = m.group(1)
                if lines[j].strip() == "Variables:":
                    indent = None
                    k = j + 1
                    while k < len(lines):
                        line = lines[k]
                        if not line.strip() or line.strip().startswith("#"):
                            k += 1
                            continue
                        depth = len(line) - len(line.lstrip())
                        if indent is None:
                            indent = depth
                        if depth < indent:
                            break
                        m = re.match(r"^\s+([A-Z][A-Z0-9_]*):", line)
                        if depth == indent and m:
                            names.append(m.group(1))
                        k += 1
                    j = k - 1
                j += 1
            if name:
                functions[name] = names
            i = j
        else:
            i += 1
    return functions


def template_parameter_defaults(path=os.path.join(ROOT, "template.yaml")):
    defaults, current, in_params = {}, None, False
    for line in open(path, encoding="utf-8").read().splitlines():
        if re.match(r"^\S", line):
            in_params = line.startswith("Parameters:")
            continue
        if not in_params:
            continue
        m = re.match(r"^  ([A-Za-z0-9]+):\s*$", line)
        if m:
            current = m.group(1)
            continue
        m = re.match(r"^    Default:\s*(.*)$", line)
        if m and current:
            defaults[current] = m.group(1).strip().strip('"')
    return defaults


def placeholder(name, defaults):
    """A placeholder value for one of the template's variables, by name."""
    by_parameter = {
        "EVENT_RETENTION_DAYS": "EventRetentionDays",
        "QUEUE_MAX_RECEIVE_COUNT": "QueueMaxReceiveCount",
        "QUEUE_RETENTION_SECONDS": "QueueRetentionSeconds",
        "TOKEN_ENDPOINT_URL": "TokenEndpointUrl",
    }
    if name in by_parameter:
        return defaults.get(by_parameter[name], "")
    if name.endswith("_TABLE"):
        return "chhub-dev-" + name[: -len("_TABLE")].lower().replace("_", "-")
    if name.startswith("TOPIC_ARN_"):
        topic = name[len("TOPIC_ARN_"):].lower().replace("_", "-")
        return f"arn:aws:sns:{REGION}:{ACCOUNT}:chhub-dev-{topic}"
    if name == "EVENT_TYPE":
        # The ten publish functions run one binary; it stands for them all
        # with one event type (they differ by nothing else).
        return "vaccinations-1"
    if name == "QUEUE_NAME_PREFIX":
        return "chhub-dev-sub"
    if name.endswith("KEY_ID") or name.endswith("KEY_IDS"):
        return "1234abcd-12ab-34cd-56ef-1234567890ab"
    return "bench-placeholder"


def dead_port():
    """A loopback port bound but never listening: connections are refused.
    The socket is returned so that it stays reserved for the run."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


def function_env(name, variables, defaults, runtime_api, dead_endpoint, kms_endpoint=None,
                 warm_up_endpoint=None):
    env = {
        "PATH": "/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        # What Lambda sets.
        "AWS_LAMBDA_RUNTIME_API": runtime_api,
        "AWS_LAMBDA_FUNCTION_NAME": f"chhub-dev-{name}",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/chhub-dev-{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/11/25/[$LATEST]bench",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "AWS_LAMBDA_LOG_LEVEL": "INFO",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        # Dummy credentials: no credential provider goes to the network.
        "AWS_ACCESS_KEY_ID": "AKIDBENCHMARKDUMMY00",
        "AWS_SECRET_ACCESS_KEY": "benchmark-dummy-secret-key-not-real-000000",
        "AWS_SESSION_TOKEN": "benchmark-dummy-session-token",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/nonexistent/aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
        # Nothing listens there: no AWS call can succeed.
        "AWS_ENDPOINT_URL": dead_endpoint,
    }
    for variable in variables:
        env[variable] = placeholder(variable, defaults)
    if kms_endpoint and name in KMS_INIT_FUNCTIONS:
        env["AWS_ENDPOINT_URL_KMS"] = kms_endpoint
    if warm_up_endpoint:
        env["AWS_ENDPOINT_URL_DYNAMODB"] = warm_up_endpoint
        env["AWS_ENDPOINT_URL_SNS"] = warm_up_endpoint
    return env


# ------------------------------------------------------------- runtime API


class Invocation:
    """What one process did against the Runtime API."""

    def __init__(self, event=None):
        self.event = event  # bytes served on the first /next, or None
        self.nexts = []  # perf_counter_ns of every GET /next
        self.response = None  # (perf_counter_ns, body bytes)
        self.error = None  # (perf_counter_ns, path, body bytes)
        self.served = False
        self.closed = False


class RuntimeApi:
    def __init__(self):
        self.cond = threading.Condition()
        self.current = Invocation()
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _body(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    return self.rfile.read(length)
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return b""

            def _reply(self, status, body=b"", headers=()):
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                now = time.perf_counter_ns()
                if self.path != API_PREFIX + "/invocation/next":
                    return self._reply(404, b"{}")
                with api.cond:
                    inv = api.current
                    inv.nexts.append(now)
                    api.cond.notify_all()
                    # Hold the request until the runner hands out an event
                    # (memory.py) or ends the run (the process is killed).
                    while not inv.closed and (inv.event is None or inv.served):
                        api.cond.wait(0.5)
                    if inv.closed:
                        self.close_connection = True
                        return
                    inv.served = True
                    event = inv.event
                deadline = int(time.time() * 1000) + 600_000
                self._reply(200, event, [
                    ("Lambda-Runtime-Aws-Request-Id", "bench-request-1"),
                    ("Lambda-Runtime-Deadline-Ms", str(deadline)),
                    ("Lambda-Runtime-Invoked-Function-Arn",
                     f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:bench"),
                    ("Lambda-Runtime-Trace-Id",
                     "Root=1-00000000-000000000000000000000000;Sampled=0"),
                ])

            def do_POST(self):
                now = time.perf_counter_ns()
                body = self._body()
                with api.cond:
                    inv = api.current
                    if self.path.endswith("/response"):
                        inv.response = (now, body)
                    else:
                        inv.error = (now, self.path, body)
                    api.cond.notify_all()
                self._reply(202, b'{"status":"OK"}')

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = "127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def begin(self, event=None):
        with self.cond:
            self.current.closed = True
            self.cond.notify_all()
            self.current = Invocation(event)
            return self.current

    def end(self):
        with self.cond:
            self.current.closed = True
            self.cond.notify_all()

    def wait_for(self, predicate, timeout, process=None):
        """Wait until predicate(invocation) holds, the process exits or the
        timeout passes; True when the predicate held."""
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                if predicate(self.current):
                    return True
                if process is not None and process.poll() is not None:
                    return predicate(self.current)
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.005))


class AwsStub:
    """The AWS calls functions make during init, answered on loopback over
    plain HTTP: KMS GetPublicKey and DynamoDB DescribeEndpoints (JSON
    protocols), SNS GetTopicAttributes (query protocol). Anything else is
    refused with a 400."""

    def __init__(self):
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _reply(self, status, data, content_type):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                target = self.headers.get("X-Amz-Target", "")
                if target.endswith(".GetPublicKey"):
                    request = json.loads(raw or b"{}")
                    self._reply(200, json.dumps({
                        "KeyId": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{request.get('KeyId', '')}",
                        "PublicKey": BENCH_PUBLIC_KEY_DER_B64,
                        "KeySpec": "ECC_NIST_P256",
                        "KeyUsage": "SIGN_VERIFY",
                        "SigningAlgorithms": ["ECDSA_SHA_256"],
                    }).encode(), "application/x-amz-json-1.1")
                elif target == "DynamoDB_20120810.DescribeEndpoints":
                    self._reply(200, json.dumps({"Endpoints": [{
                        "Address": f"dynamodb.{REGION}.amazonaws.com",
                        "CachePeriodInMinutes": 1440}]}).encode(), "application/x-amz-json-1.0")
                elif b"Action=GetTopicAttributes" in raw:
                    self._reply(200, (
                        '<GetTopicAttributesResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">'
                        "<GetTopicAttributesResult><Attributes><entry><key>Owner</key>"
                        f"<value>{ACCOUNT}</value></entry></Attributes></GetTopicAttributesResult>"
                        "<ResponseMetadata><RequestId>bench</RequestId></ResponseMetadata>"
                        "</GetTopicAttributesResponse>").encode(), "text/xml")
                else:
                    self._reply(400, json.dumps({"__type": "UnsupportedOperationException",
                                                 "message": "benchmark stub"}).encode(),
                                "application/x-amz-json-1.1")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


# ------------------------------------------------------------------ runner


def last_line(path):
    try:
        lines = [l for l in open(path, encoding="utf-8", errors="replace").read().splitlines() if l.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def proc_status(pid):
    """VmHWM and VmRSS (KiB) of a live process."""
    values = {}
    try:
        for line in open(f"/proc/{pid}/status"):
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                values[key] = int(rest.split()[0])
    except OSError:
        pass
    return values


class Spawned:
    def __init__(self, api, binary, env, event=None):
        self.log = tempfile.NamedTemporaryFile(prefix="lambda-bench-", suffix=".log", delete=False)
        self.invocation = api.begin(event)
        self.api = api
        self.start = time.perf_counter_ns()
        self.process = subprocess.Popen([binary], env=env, stdin=subprocess.DEVNULL,
                                        stdout=self.log, stderr=subprocess.STDOUT,
                                        close_fds=True)

    def wait_ready(self, timeout=30.0):
        """ms from spawn to the first GET /next, or None if it never came."""
        ok = self.api.wait_for(lambda inv: len(inv.nexts) >= 1, timeout, self.process)
        return (self.invocation.nexts[0] - self.start) / 1e6 if ok else None

    def warm_up_failures(self):
        """The warm-up calls the function logged as failed (its log at INFO)."""
        self.log.flush()
        return [line for line in open(self.log.name, encoding="utf-8", errors="replace")
                if "warm-up call" in line]

    def failure(self):
        code = self.process.poll()
        err = self.invocation.error
        detail = last_line(self.log.name)
        if err:
            detail = f"{err[1]}: {err[2][:200].decode(errors='replace')} | {detail}"
        return f"exit {code}: {detail}" if code is not None else f"no /next within the timeout: {detail}"

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.api.end()
        self.log.close()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass


def function_names(bin_dir, only=None):
    names = sorted(d for d in os.listdir(os.path.join(ROOT, "functions"))
                   if os.path.isfile(os.path.join(ROOT, "functions", d, "Cargo.toml")))
    if only:
        names = [n for n in names if n in only]
    return [n for n in names if os.path.isfile(os.path.join(bin_dir, n))], \
           [n for n in names if not os.path.isfile(os.path.join(bin_dir, n))]


class Bench:
    """The shared set-up of init.py and memory.py."""

    def __init__(self, kms_stub=True, warm_up_stub=False):
        self.api = RuntimeApi()
        self.aws = AwsStub()
        self.kms_stub, self.warm_up_stub = kms_stub, warm_up_stub
        self._dead_socket, port = dead_port()
        self.dead_endpoint = f"http://127.0.0.1:{port}"
        self.variables = template_environment()
        self.defaults = template_parameter_defaults()

    def env(self, name):
        return function_env(name, self.variables.get(name, []), self.defaults,
                            self.api.address, self.dead_endpoint,
                            self.aws.endpoint if self.kms_stub else None,
                            self.aws.endpoint if self.warm_up_stub else None)


def percentile(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"))
    parser.add_argument("--hello", default=os.path.join(ROOT, "target", "bench-hello", "release", "hello-lambda"))
    parser.add_argument("--only", default="", help="comma-separated function names")
    parser.add_argument("--no-kms-stub", action="store_true")
    parser.add_argument("--no-warm-up-stub", action="store_true",
                        help="no answer to the DynamoDB and SNS warm-up calls (the dead port refuses them)")
    parser.add_argument("--binary", action="append", default=[], metavar="NAME=PATH",
                        help="another binary measured like hello world (issue 19); repeatable")
    parser.add_argument("--event", default="",
                        help="a JSON event served to hello world and the --binary ones; "
                             "adds the time to their first answer")
    parser.add_argument("--json", default="", help="write the raw samples here")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="an extra variable for the functions (not hello world), e.g. "
                             "SSL_CERT_DIR=/nonexistent to see what reading the certificate "
                             "directory costs; repeatable")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    baselines = {"hello-world": args.hello}
    baselines.update(item.split("=", 1) for item in args.binary)
    event = open(args.event, "rb").read() if args.event else None

    only = set(filter(None, args.only.split(",")))
    names, missing = function_names(args.bin_dir, only)
    for name, path in baselines.items():
        if not os.path.isfile(path):
            sys.exit(f"no {name} binary at {path}: build it first (see the docstring)")
    bench = Bench(kms_stub=not args.no_kms_stub, warm_up_stub=not args.no_warm_up_stub)
    hello_env = function_env("hello", [], {}, bench.api.address, bench.dead_endpoint)

    samples = {name: [] for name in baselines}
    samples.update({n: [] for n in names})
    answers = {name: [] for name in baselines}  # ms from spawn to the answer (--event)
    failures = {}
    for _ in range(args.runs):
        for name in list(baselines) + names:
            if name in failures:
                continue
            baseline = name in baselines
            binary = baselines[name] if baseline else os.path.join(args.bin_dir, name)
            env = hello_env if baseline else dict(bench.env(name), **extra)
            run = Spawned(bench.api, binary, env, event if baseline else None)
            try:
                ms = run.wait_ready()
                if ms is None:
                    failures[name] = run.failure()
                elif baseline and event is not None:
                    # Until the process asks for its next invocation: killed
                    # earlier, its 202 or that request could reach the next
                    # process's round (as memory.py waits).
                    answered = bench.api.wait_for(
                        lambda inv: len(inv.nexts) >= 2 or inv.error is not None,
                        30.0, run.process)
                    if not answered or run.invocation.response is None:
                        failures[name] = run.failure()
                    else:
                        samples[name].append(ms)
                        answers[name].append((run.invocation.response[0] - run.start) / 1e6)
                elif bench.warm_up_stub and not baseline and run.warm_up_failures():
                    # The figure would leave out the round trip it claims.
                    failures[name] = "warm-up call not answered: " + run.warm_up_failures()[0].strip()
                else:
                    samples[name].append(ms)
            finally:
                run.stop()

    load = open("/proc/loadavg").read().split()[:3]
    hello_median = statistics.median(samples["hello-world"])
    print(f"# init: spawn -> first GET /next, {args.runs} rounds, load average {' '.join(load)}, "
          f"warm-up calls {'refused' if args.no_warm_up_stub else 'answered by the stub'}"
          + (f", extra environment {extra}" if extra else ""))
    print("| function | median (ms) | p90 (ms) | min (ms) | median / hello world | within 1.5x |"
          + (" answer median (ms) | answer p90 (ms) |" if event is not None else ""))
    print("|---|---|---|---|---|---|" + ("---|---|" if event is not None else ""))
    for name in list(baselines) + names:
        values = samples[name]
        if name in failures and not values:
            print(f"| {name} | failed: {failures[name]} | | | | no |")
            continue
        median = statistics.median(values)
        ratio = median / hello_median
        row = (f"| {name} | {median:.2f} | {percentile(values, 0.9):.2f} | {min(values):.2f} "
               f"| {ratio:.2f} | {'yes' if ratio <= 1.5 else 'no'} |")
        if event is not None:
            times = answers.get(name) or []
            row += (f" {statistics.median(times):.2f} | {percentile(times, 0.9):.2f} |"
                    if times else " | |")
        print(row)
    for name, why in failures.items():
        print(f"FAILED {name}: {why}", file=sys.stderr)
    for name in missing:
        print(f"no binary for {name} in {args.bin_dir}", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"runs": args.runs, "load": load, "samples_ms": samples,
                       "answer_ms": answers, "failures": failures}, out, indent=1)
    # A failed or missing function fails the run, so CI's smoke run of this
    # script notices when it no longer measures what it says.
    sys.exit(1 if failures or missing else 0)


if __name__ == "__main__":
    main()
