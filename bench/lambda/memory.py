#!/usr/bin/env python3
"""Issue 9, target 5 (memory): peak resident memory (VmHWM of
/proc/<pid>/status) of each function's release binary after init and after
one invocation, against the 128 MB (Lambda's MB are MiB: 134 217 728 bytes)
the functions are deployed with (template.yaml Globals MemorySize).
Python 3 standard library only; the Runtime API, environment and KMS stub
are bench/lambda/init.py's.

    python3 bench/lambda/memory.py [--runs 3] [--only publish]

The events:
- publish (the ten publish functions' one binary, run as vaccinations-1:
  bench/lambda/init.py's EVENT_TYPE placeholder): the API Gateway sample
  (events/apigw/publish-vaccinations-1-xml.json and -json.json) with the
  body padded to just under the largest message the hub accepts (192 KiB, shared/src/events.rs MAX_PAYLOAD_BYTES): an XML
  comment inside the Bundle, or whitespace inside the JSON object. The body
  is read and validated in full; the store call then fails against the dead
  endpoint (the answer is a 5xx), so the figure covers read, validate and
  the store request, not a stored item's round trip.
- dispatch: events/dynamodb/dispatch-vaccinations-1.json, ten records (the
  template's BatchSize) each carrying a payload padded the same way.
- authorizer: a TOKEN authorizer event with a malformed bearer token.
- token: a client-credentials POST with a malformed client assertion.
- the others: their events/apigw sample where there is one, else the
  subscription-read sample (a GET with an authorized caller); every store
  call fails against the dead endpoint.
- replay-worker: the dispatch stream sample (one record), which is not a
  replays-table record: it measures the runtime and the batch decoding only.
"""

import argparse
import copy
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import init  # noqa: E402  (bench/lambda/init.py)

ROOT = init.ROOT
MAX_PAYLOAD_BYTES = 192 * 1024
PADDED_BYTES = MAX_PAYLOAD_BYTES - 8  # "just under" the limit


def load(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return json.load(f)


def pad_xml(body, size=PADDED_BYTES):
    """An XML comment right after the Bundle's start tag, to `size` bytes."""
    start = body.index("<Bundle")
    end = body.index(">", start) + 1
    overhead = len(body.encode()) + len("\n<!--  -->")
    filler = "x" * (size - overhead)
    padded = body[:end] + "\n<!-- " + filler + " -->" + body[end:]
    assert len(padded.encode()) == size, len(padded.encode())
    return padded


def pad_json(body, size=PADDED_BYTES):
    """Whitespace after the object's opening brace, to `size` bytes."""
    start = body.index("{") + 1
    padded = body[:start] + " " * (size - len(body.encode())) + body[start:]
    assert len(padded.encode()) == size
    return padded


def publish_event(encoding):
    event = load(f"events/apigw/publish-vaccinations-1-{encoding}.json")
    event["body"] = (pad_xml if encoding == "xml" else pad_json)(event["body"])
    return event


def dispatch_event(records=10):
    sample = load("events/dynamodb/dispatch-vaccinations-1.json")
    record = sample["Records"][0]
    image = record["dynamodb"]["NewImage"]
    image["payload"]["S"] = pad_xml(image["payload"]["S"])
    out = []
    for i in range(records):
        r = copy.deepcopy(record)
        r["eventID"] = f"bench-{i}"
        out.append(r)
    return {"Records": out}


def events_for(name):
    """[(label, event dict)] for one function."""
    if name == "publish":
        return [("192 KiB XML", publish_event("xml")),
                ("192 KiB JSON", publish_event("json"))]
    if name == "dispatch":
        return [("10 records x 192 KiB payload", dispatch_event())]
    if name == "replay-worker":
        return [("dispatch stream sample (1 record)", load("events/dynamodb/dispatch-vaccinations-1.json"))]
    if name == "authorizer":
        return [("TOKEN event, malformed token", {
            "type": "TOKEN",
            "authorizationToken": "Bearer not-a-valid-token",
            "methodArn": f"arn:aws:execute-api:{init.REGION}:{init.ACCOUNT}:abcdef1234/dev/GET/Subscription",
        })]
    if name == "token":
        event = load("events/apigw/subscription-read.json")
        event.update({
            "resource": "/oauth2/token", "path": "/oauth2/token", "httpMethod": "POST",
            "pathParameters": None,
            "headers": {"content-type": "application/x-www-form-urlencoded"},
            "multiValueHeaders": {"content-type": ["application/x-www-form-urlencoded"]},
            "body": "grant_type=client_credentials&client_assertion_type="
                    "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
                    "&client_assertion=not.a.jwt",
        })
        event["requestContext"] = dict(event["requestContext"], resourcePath="/oauth2/token",
                                       httpMethod="POST", path="/dev/oauth2/token")
        event["requestContext"].pop("authorizer", None)
        return [("client assertion POST, malformed", event)]
    own = f"events/apigw/{name}.json"
    if os.path.isfile(os.path.join(ROOT, own)):
        return [(own, load(own))]
    return [("events/apigw/subscription-read.json", load("events/apigw/subscription-read.json"))]


def status_of(invocation):
    if invocation.response:
        try:
            body = json.loads(invocation.response[1])
        except ValueError:
            return "response"
        if isinstance(body, dict) and "statusCode" in body:
            return str(body["statusCode"])
        if isinstance(body, dict) and "batchItemFailures" in body:
            return f"{len(body['batchItemFailures'])} item failures"
        if isinstance(body, dict) and "policyDocument" in body:
            return "policy"
        return "response"
    if invocation.error:
        try:
            message = json.loads(invocation.error[2]).get("errorMessage", "")
        except ValueError:
            message = invocation.error[2][:60].decode(errors="replace")
        return "error: " + message[:60].replace("|", "/")
    return "none"


def measure(bench, env, binary, event, timeout):
    run = init.Spawned(bench.api, binary, env, json.dumps(event).encode())
    try:
        ready = run.wait_ready()
        if ready is None:
            return {"failed": run.failure()}
        after_init = init.proc_status(run.process.pid)
        t0 = time.perf_counter_ns()
        # Answered (response or error) and asking for the next invocation.
        done = bench.api.wait_for(lambda inv: len(inv.nexts) >= 2, timeout, run.process)
        elapsed = (time.perf_counter_ns() - t0) / 1e6
        after = init.proc_status(run.process.pid)
        if not done:
            return {"failed": run.failure(), "after_init_kib": after_init.get("VmHWM")}
        return {
            "after_init_kib": after_init.get("VmHWM"),
            "after_invocation_kib": after.get("VmHWM"),
            "rss_after_kib": after.get("VmRSS"),
            "invocation_ms": elapsed,
            "answer": status_of(run.invocation),
        }
    finally:
        run.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per event; the largest peak is kept")
    parser.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"))
    parser.add_argument("--hello", default=os.path.join(ROOT, "target", "bench-hello", "release", "hello-lambda"))
    parser.add_argument("--only", default="")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--no-kms-stub", action="store_true")
    parser.add_argument("--json", default="")
    args = parser.parse_args()

    only = set(filter(None, args.only.split(",")))
    names, missing = init.function_names(args.bin_dir, only)
    bench = init.Bench(kms_stub=not args.no_kms_stub)
    rows, raw, failed = [], {}, []

    targets = []
    if os.path.isfile(args.hello) and not only:
        targets.append(("hello-world", args.hello, [("{} (JSON object)", {})]))
    for name in names:
        targets.append((name, os.path.join(args.bin_dir, name), events_for(name)))

    for name, binary, events in targets:
        for label, event in events:
            results = []
            if name == "hello-world":
                env = init.function_env("hello", [], {}, bench.api.address, bench.dead_endpoint)
            else:
                env = bench.env(name)
            for _ in range(args.runs):
                results.append(measure(bench, env, binary, event, args.timeout))
            raw[f"{name} / {label}"] = results
            ok = [r for r in results if "failed" not in r]
            if not ok:
                rows.append(f"| {name} | {label} | failed: {results[0]['failed']} | | | | |")
                failed.append(name)
                continue
            init_peak = max(r["after_init_kib"] for r in ok)
            peak = max(r["after_invocation_kib"] for r in ok)
            answer = ", ".join(sorted({r["answer"] for r in ok}))
            ms = sorted(r["invocation_ms"] for r in ok)[len(ok) // 2]
            rows.append(f"| {name} | {label} | {init_peak / 1024:.1f} | {peak / 1024:.1f} "
                        f"| {peak / (128 * 1024):.3f} | {answer} | {ms:.0f} |")

    load_avg = " ".join(open("/proc/loadavg").read().split()[:3])
    print(f"# memory: VmHWM, largest of {args.runs} runs, load average {load_avg}")
    print("| function | event | peak after init (MiB) | peak after one invocation (MiB) "
          "| peak / 128 MiB | answer | invocation (ms, median) |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    for name in missing:
        print(f"no binary for {name} in {args.bin_dir}", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(raw, out, indent=1)
    sys.exit(1 if failed or missing else 0)


if __name__ == "__main__":
    main()
