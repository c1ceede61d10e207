#!/usr/bin/env python3
"""Load test of a running local hub: sustained publishing at a stated rate
with a mix of every event type, explicit subscriptions for two subscribers,
then a check of every queue against an independent record of what each
subscriber should have received.

    infra/run-local.sh &                                  # the hub, on loopback
    .venv/bin/python bench/load/load.py --minutes 10 --rate 4
    # the same with faults injected into the hub's AWS calls:
    HUB_FAULTS='dynamodb:TransactWriteItems#7..=error' infra/run-local.sh &

(see docs/reliability.md for the fault rules), or let the script change
them as it runs: with the hub started with an empty rule set
(`HUB_FAULTS= HUB_FAULT_PORT=4599 infra/run-local.sh`),

    .venv/bin/python bench/load/load.py --faults http://127.0.0.1:4599/_faults

replaces the rules every --fault-every seconds with the next set of
FAULT_CYCLE (failed and lost publish writes, stream reads, dispatch reads
and SNS publishes, slow calls) and SIGKILLs the dispatch process every
--kill-every seconds (hub-local restarts it). Needs the project venv (boto3
comes with moto) and a hub started by `hub-local run`, whose demo clients'
keys and queues are under .local/ (--state).

The record is the script's own: which event ids the hub accepted (202, or a
200 "duplicate" answer to a retry of a publish whose first answer was a 5xx),
for which child and event type, and which subscriptions the script created.
Subscriber 1 (a GP) subscribes to children 0..CHILDREN*2/3 for every event
type; subscriber 2 (a health visiting team) to children CHILDREN/3..CHILDREN
for vaccinations and professional contacts. A birth notification's planned
patient is the mother it routes on, its baby a number of another pool. A
queue must hold exactly the
events its subscriptions match: none missing, none that should not be there
(duplicates are counted: the contract allows them, recognisable by eventId).

Prints throughput, publish latency and end-to-end latency (202 -> received)
percentiles as Markdown, and exits 1 if anything is missing or misdelivered.
"""

import argparse
import copy
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from urllib.parse import urlparse

import boto3

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURE_CHILD = "9912003888"
# A birth notification routes on the mother (docs/subscriptions.md): her
# number takes the planned patient's place, and the baby gets a new one.
FIXTURE_MOTHER = "9449305552"
BIRTH = "pds-birth-notification-1"
NHS_SYSTEM = "http://fhir.nhs.net/Id/nhs-number"
FIXTURES = [
    ("nems-json", name) for name in sorted(os.listdir(os.path.join(ROOT, "events", "nems-json")))
    if name.endswith(".json") and name != "BirthNotificationWithMother.json"
] + [("derived", "BirthNotificationWithMother-valid-mother.json")]
# Identifiers that name organisations or people and must stay as published
# (the publisher's ODS code is checked against its registration).
KEPT_IDENTIFIER_SYSTEMS = ("ods", "nhs-number", "sds")
SUBSCRIBER_2_TYPES = ("vaccinations-1", "professional-contacts-1")


def nhs_numbers(count, seed):
    """Valid (Modulus 11) NHS numbers in the 999 test range."""
    rng, numbers = random.Random(seed), []
    while len(numbers) < count:
        digits = [9, 9, 9] + [rng.randrange(10) for _ in range(6)]
        check = 11 - sum(d * w for d, w in zip(digits, range(10, 1, -1))) % 11
        check = 0 if check == 11 else check
        number = "".join(map(str, digits + [check]))
        if check != 10 and number not in numbers:
            numbers.append(number)
    return numbers


def event_code(bundle):
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "MessageHeader":
            return resource["event"]["code"]
    raise ValueError("no MessageHeader")


def unique_identifiers(value, suffix):
    """A new business identifier for the event's own resources, so that
    events of different children are not versions of one resource."""
    if isinstance(value, dict):
        system = value.get("system")
        if isinstance(system, str) and isinstance(value.get("value"), str) \
                and not any(kept in system for kept in KEPT_IDENTIFIER_SYSTEMS) \
                and value.get("resourceType") is None:
            value["value"] = f"{value['value']}-{suffix}"
        for item in value.values():
            unique_identifiers(item, suffix)
    elif isinstance(value, list):
        for item in value:
            unique_identifiers(item, suffix)


def message_for(code, template, child, baby):
    """The message about `child` (the routed patient), with a new event id."""
    bundle = copy.deepcopy(template)
    event_id = str(uuid.uuid4())
    unique_identifiers(bundle, event_id[:8])
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "MessageHeader":
            resource["id"] = event_id
            resource["timestamp"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    body = json.dumps(bundle)
    if code == BIRTH:
        body = body.replace(f'"{FIXTURE_CHILD}"', f'"{baby}"').replace(f'"{FIXTURE_MOTHER}"', f'"{child}"')
    else:
        body = body.replace(f'"{FIXTURE_CHILD}"', f'"{child}"')
    return event_id, body


class Tokens:
    """Access tokens of the demo clients, renewed before their 5 minutes end."""

    def __init__(self, api, state):
        self.api, self.lock, self.cache = api, threading.Lock(), {}
        self.env = dict(os.environ, HUB_LOCAL_STATE_DIR=state)

    def get(self, client):
        with self.lock:
            token, minted = self.cache.get(client, (None, 0))
            if token is None or time.monotonic() - minted > 180:
                token = subprocess.run(
                    [os.path.join(ROOT, "target", "debug", "hub-local"), "token", client,
                     "--api", self.api, "--template", os.path.join(ROOT, "template.yaml")],
                    check=True, capture_output=True, text=True, cwd=ROOT, env=self.env).stdout.strip()
                self.cache[client] = (token, time.monotonic())
            return token


class Api:
    def __init__(self, api):
        self.url = urlparse(api)
        self.local = threading.local()

    def call(self, method, path, token, body=None, content_type="application/fhir+json"):
        for attempt in range(2):
            connection = getattr(self.local, "connection", None)
            if connection is None:
                connection = http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=60)
                self.local.connection = connection
            try:
                connection.request(method, path, body=body, headers={
                    "authorization": f"Bearer {token}", "content-type": content_type,
                    "accept": "application/fhir+json"})
                response = connection.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, OSError):
                connection.close()
                self.local.connection = None
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")


# One set of rules per --fault-every seconds, in turn. Calls are counted
# across all functions, and the SDK makes three attempts of an operation:
# twelve failed calls in a row make some publishes fail whole (a 5xx the
# publisher retries); `drop-response` stores the item and loses the answer,
# so a retry, the SDK's or the publisher's, meets a duplicate.
FAULT_CYCLE = [
    "dynamodb:TransactWriteItems#2..13=error;sns:PublishBatch#3..5=unavailable",
    "dynamodb:TransactWriteItems#3..14=drop-response;streams:GetRecords#2..4=error",
    "dynamodb:Query#2..4=throttle;sns:PublishBatch#5=drop-response",
    "dynamodb:*=slow:150ms;sns:PublishBatch#2=timeout:3s",
    "dynamodb:TransactWriteItems#2=timeout:3s;dynamodb:BatchGetItem#1..3=error",
    "sns:PublishBatch#1..6=error;dynamodb:PutItem#2..4=error",
]


class FaultInjector(threading.Thread):
    """Changes the fault proxy's rules in turn and kills dispatch now and
    then, until stopped; counts what fired."""

    def __init__(self, admin, every, kill_every):
        super().__init__(daemon=True)
        self.admin, self.every, self.kill_every = urlparse(admin), every, kill_every
        self.stopped, self.hits, self.kills = threading.Event(), {}, 0

    def _call(self, method, body=None):
        connection = http.client.HTTPConnection(self.admin.hostname, self.admin.port, timeout=10)
        connection.request(method, self.admin.path, body=body)
        answer = connection.getresponse()
        data = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"fault proxy: {method} {answer.status} {data[:200]!r}")
        return json.loads(data or b"[]")

    def _count(self):
        for rule in self._call("GET"):
            self.hits[rule["rule"]] = self.hits.get(rule["rule"], 0) + rule["hits"]

    def _kill_dispatch(self):
        for pid in os.listdir("/proc"):
            try:
                command = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0]
            except OSError:
                continue
            if os.path.basename(command) == b"dispatch":
                os.kill(int(pid), 9)
                self.kills += 1

    def run(self):
        started, cycle, next_kill = time.time(), 0, time.time() + self.kill_every
        while not self.stopped.is_set():
            self._count()
            self._call("PUT", FAULT_CYCLE[cycle % len(FAULT_CYCLE)])
            cycle += 1
            until = time.time() + self.every
            while time.time() < until and not self.stopped.is_set():
                if self.kill_every and time.time() >= next_kill:
                    self._kill_dispatch()
                    next_kill += self.kill_every
                self.stopped.wait(1)
        self._count()
        self._call("DELETE")
        self.ran_for = time.time() - started

    def stop(self):
        self.stopped.set()
        self.join()


def percentiles(values):
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "max": float("nan")}
    ordered = sorted(values)

    def at(p):
        return ordered[min(len(ordered) - 1, int(round(p * (len(ordered) - 1))))]
    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": ordered[-1]}


def read_env(path):
    values = {}
    for line in open(path):
        if "=" in line and not line.startswith("#"):
            name, value = line.strip().split("=", 1)
            values[name] = value
    return values


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api", default="http://127.0.0.1:3000")
    parser.add_argument("--emulator", default="http://127.0.0.1:4566")
    parser.add_argument("--state", default=os.path.join(ROOT, ".local"))
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=4.0, help="events published per second")
    parser.add_argument("--publishers", type=int, default=4, help="concurrent publishing threads")
    parser.add_argument("--children", type=int, default=60)
    parser.add_argument("--retries", type=int, default=5, help="re-sends of a publish answered 5xx")
    parser.add_argument("--settle", type=float, default=180.0,
                        help="seconds to wait for the last deliveries after publishing ends")
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--json", default="", help="write the raw record here")
    parser.add_argument("--faults", default="", metavar="ADMIN_URL",
                        help="the fault proxy's admin URL: inject FAULT_CYCLE while publishing")
    parser.add_argument("--fault-every", type=float, default=20.0)
    parser.add_argument("--kill-every", type=float, default=120.0,
                        help="seconds between SIGKILLs of dispatch (0: never); with --faults")
    args = parser.parse_args()

    env = read_env(os.path.join(args.state, "demo.env"))
    queues = {"demo-subscriber-1": env["DEMO_SUBSCRIBER_1_QUEUE"],
              "demo-subscriber-2": env["DEMO_SUBSCRIBER_2_QUEUE"]}
    subscriber_ids = {"demo-subscriber-1": env["DEMO_SUBSCRIBER_1"],
                      "demo-subscriber-2": env["DEMO_SUBSCRIBER_2"]}
    ods = {"demo-subscriber-1": "A83627", "demo-subscriber-2": "Y12345"}
    tokens, api = Tokens(args.api, args.state), Api(args.api)

    templates = []
    for folder, name in FIXTURES:
        bundle = json.load(open(os.path.join(ROOT, "events", folder, name)))
        templates.append((event_code(bundle), bundle))
    all_types = sorted({code for code, _ in templates})

    # Subscriptions, and from them the independent record of who gets what.
    numbers = nhs_numbers(args.children * 2, args.seed)
    children, babies = numbers[: args.children], numbers[args.children:]
    wanted = {
        "demo-subscriber-1": (set(children[: args.children * 2 // 3]), set(all_types)),
        "demo-subscriber-2": (set(children[args.children // 3:]), set(SUBSCRIBER_2_TYPES)),
    }
    subscriptions = 0
    for subscriber, (kids, types) in wanted.items():
        for child in sorted(kids):
            events = "".join(f"&MessageHeader.event={t}" for t in sorted(types))
            criteria = f"/Bundle?type=message&Patient.identifier={NHS_SYSTEM}|{child}{events}"
            resource = {
                "resourceType": "Subscription",
                "meta": {"profile": ["https://fhir.nhs.uk/STU3/StructureDefinition/EMS-Subscription-1"]},
                "status": "requested",
                "contact": [{"system": "url", "use": "work",
                             "value": f"https://directory.spineservices.nhs.uk/STU3/Organization/{ods[subscriber]}"}],
                "reason": "Patient under our care",
                "criteria": criteria,
                "channel": {"type": "message", "endpoint": subscriber_ids[subscriber]},
            }
            for attempt in range(10):
                status, answer = api.call("POST", "/Subscription", tokens.get(subscriber),
                                          json.dumps(resource))
                if status < 500:
                    break
                time.sleep(0.5 * (attempt + 1))
            if status != 201:
                sys.exit(f"creating a subscription for {subscriber}: {status} {answer[:300]!r}")
            subscriptions += 1

    sqs = boto3.client("sqs", endpoint_url=args.emulator, region_name="eu-west-2",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    received = {name: [] for name in queues}   # (eventId, eventType, time)
    stop_receiving = threading.Event()

    def receive(name, url):
        while not stop_receiving.is_set():
            answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                         MessageAttributeNames=["All"])
            now = time.time()
            for message in answer.get("Messages", []):
                attributes = message.get("MessageAttributes", {})
                received[name].append((attributes.get("eventId", {}).get("StringValue"),
                                       attributes.get("eventType", {}).get("StringValue"), now))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    receivers = [threading.Thread(target=receive, args=item, daemon=True) for item in queues.items()]
    for thread in receivers:
        thread.start()

    # Publishing: a shared schedule at the stated rate; each event is
    # re-sent while the hub answers 5xx (the publisher's side of the contract).
    accepted, rejected, failed, latencies, lock = {}, [], [], [], threading.Lock()
    rng = random.Random(args.seed)
    total = int(args.minutes * 60 * args.rate)
    plan = [(rng.choice(templates), rng.choice(children)) for _ in range(total)]
    start = time.time()
    next_index = iter(range(total))
    index_lock = threading.Lock()

    def publish_worker():
        while True:
            with index_lock:
                index = next(next_index, None)
            if index is None:
                return
            due = start + index / args.rate
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            (code, template), child = plan[index]
            event_id, body = message_for(code, template, child, babies[index % len(babies)])
            for attempt in range(args.retries + 1):
                sent = time.time()
                try:
                    status, answer = api.call("POST", f"/events/{code}", tokens.get("demo-publisher"), body)
                except OSError as error:
                    status, answer = 599, str(error).encode()
                answered = time.time()
                with lock:
                    latencies.append((answered - sent) * 1000)
                if status in (200, 202):
                    with lock:
                        accepted[event_id] = (code, child, answered)
                    break
                if status < 500:
                    with lock:
                        rejected.append((event_id, code, status, answer[:300].decode(errors="replace")))
                    break
                time.sleep(min(2 ** attempt * 0.2, 5))
            else:
                with lock:
                    failed.append((event_id, code, status))

    injector = FaultInjector(args.faults, args.fault_every, args.kill_every) if args.faults else None
    if injector:
        injector.start()
    publishers = [threading.Thread(target=publish_worker) for _ in range(args.publishers)]
    for thread in publishers:
        thread.start()
    for thread in publishers:
        thread.join()
    published_for = time.time() - start
    if injector:
        injector.stop()

    expected = {name: {event_id for event_id, (code, child, _) in accepted.items()
                       if child in wanted[name][0] and code in wanted[name][1]}
                for name in queues}
    deadline = time.time() + args.settle
    while time.time() < deadline:
        with lock:
            got = {name: {e for e, _, _ in received[name]} for name in queues}
        if all(expected[name] <= got[name] for name in queues):
            break
        time.sleep(2)
    time.sleep(5)  # anything delivered late or twice
    stop_receiving.set()
    for thread in receivers:
        thread.join()

    failures = 0
    end_to_end = []
    print(f"# load: {len(plan)} events planned over {args.minutes:g} min at {args.rate:g}/s, "
          f"{subscriptions} subscriptions, {len(children)} children, "
          f"load average {' '.join(open('/proc/loadavg').read().split()[:3])}")
    print(f"published in {published_for:.0f} s: {len(plan) / published_for:.2f} events/s attempted; "
          f"accepted {len(accepted)}, rejected {len(rejected)}, gave up after retries {len(failed)}, "
          f"publish calls {len(latencies)}")
    for name in queues:
        ids = [e for e, _, _ in received[name]]
        got = set(ids)
        missing = expected[name] - got
        unexpected = got - expected[name]
        duplicates = len(ids) - len(got)
        failures += len(missing) + len(unexpected)
        for event_id, _, when in received[name]:
            if event_id in accepted and event_id in expected[name]:
                end_to_end.append((when - accepted[event_id][2]) * 1000)
        print(f"{name}: expected {len(expected[name])}, received {len(ids)} "
              f"({len(got)} distinct), missing {len(missing)}, unexpected {len(unexpected)}, "
              f"duplicates {duplicates}")
        for event_id in sorted(missing)[:5]:
            print(f"  missing {event_id} {accepted[event_id][0]}", file=sys.stderr)
        for event_id in sorted(unexpected)[:5]:
            print(f"  unexpected {event_id}", file=sys.stderr)
    if injector:
        print(f"faults: {len(FAULT_CYCLE)} rule sets in turn, {args.fault_every:g} s each, "
              f"dispatch killed {injector.kills} times; hits per rule:")
        for rule, hits in sorted(injector.hits.items()):
            print(f"  {rule}: {hits}")
    failures += len(rejected) + len(failed)
    for event_id, code, status, answer in rejected[:5]:
        print(f"  rejected {event_id} {code} {status}: {answer}", file=sys.stderr)

    # Where undeliverable messages would wait: none may hold anything.
    for url in sqs.list_queues().get("QueueUrls", []):
        name = url.rsplit("/", 1)[-1]
        if any(part in name for part in ("dispatch-failures", "dlq", "undelivered", "Undelivered")):
            waiting = int(sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]["ApproximateNumberOfMessages"])
            print(f"{name}: {waiting} messages")
            failures += waiting

    publish, delivery = percentiles(latencies), percentiles(end_to_end)
    print("| measure | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) |")
    print("|---|---|---|---|---|")
    print(f"| publish call (202) | {publish['p50']:.0f} | {publish['p95']:.0f} | "
          f"{publish['p99']:.0f} | {publish['max']:.0f} |")
    print(f"| end to end (202 -> received by the subscriber) | {delivery['p50']:.0f} | "
          f"{delivery['p95']:.0f} | {delivery['p99']:.0f} | {delivery['max']:.0f} |")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"accepted": accepted, "rejected": rejected, "failed": failed,
                       "received": received, "publish_ms": latencies}, out)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
