#!/usr/bin/env python3
"""Cost per million events: every AWS request one published event costs,
counted from the code, priced at list prices.

Stdlib only. Run from anywhere:

    python3 bench/cost/cost.py                  # London estimate, the table
    python3 bench/cost/cost.py --prices us-east-1
    python3 bench/cost/cost.py --markdown       # the tables for docs/benchmarks.md
    python3 bench/cost/cost.py --recipients 10 --first-event no

The request counts follow the code path of one event (see the section "Cost
per million events (issue 9)" of docs/benchmarks.md for where each comes from):

  API Gateway (REST, TOKEN authorizer without caching: ReauthorizeEvery 0)
    -> authorizer Lambda: GetItem clients (consistent)
    -> publish Lambda (shared/src/lambda.rs publish, shared/src/events.rs publish):
         GetItem versions (consistent)
         TransactWriteItems: Put event (condition) + Put/ConditionCheck version
         GetItem register (consistent; note_known_sensitivity)
         PutItem audit (1 record)
  events table stream (free for a Lambda trigger) -> dispatch Lambda, batches of 10:
         GetItem register (consistent) [+ conditional PutItem when the event changes the record]
         Query explicit candidates (consistent)
         BatchGetItem reference (postcode + practice, eventually consistent)
         Query per generic key (consistent; 5 keys for one place)
         BatchWriteItem audit (one record per recipient)
         SNS PublishBatch (up to 10 recipients, 256 KiB)
         UpdateItem delivery stats (one per recipient)
  SNS -> SQS (raw delivery, filter on the subscriber attribute)
  each subscriber: ReceiveMessage + DeleteMessage
"""

import argparse
import math
import pathlib
import zlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "events" / "nems" / "vaccinations-1-new.xml"

# ---------------------------------------------------------------------------
# Prices. Each: (USD, unit, source URL, status). "status" says what was
# confirmed: the search tool found no page giving eu-west-2 figures for most
# services, so the London set is marked where it is an estimate.
# ---------------------------------------------------------------------------

SRC = {
    "lambda": "https://aws.amazon.com/lambda/pricing/ (Arm tiers as quoted by https://cloudchipr.com/blog/aws-lambda-pricing)",
    "apigw": "https://docs.aws.amazon.com/whitepapers/latest/best-practices-api-gateway-private-apis-integration/cost-optimization.html",
    "ddb": "https://airbyte.com/data-engineering-resources/dynamodb-pricing (after the November 2024 50% on-demand cut)",
    "ddb_eu": "https://engineering-ed7.pages.dev/docs/architecture/aws/services/dynamodb (pre-cut European on-demand figures)",
    "ddb_units": "https://docs.aws.amazon.com/whitepapers/latest/how-aws-pricing-works/dynamodb.html",
    "sns": "https://www.factualminds.com/blog/amazon-sns-pricing-publishes-fanout-protocols/",
    "sns_batch": "https://docs.aws.amazon.com/sns/latest/dg/sns-batch-api-actions.html",
    "sqs": "https://cloudburn.io/blog/amazon-sqs-pricing",
    "kms": "https://aws.amazon.com/kms/pricing/ ($0.03 per 10,000 as quoted by https://www.wring.co/blog/aws-kms-pricing-guide)",
    "logs": "https://www.duckbillgroup.com/?p=9080 (Lambda logs, first tier, us-east-1)",
    "logs_eu": "https://dev.to./matheusdasmerces/optimizing-amazon-cloudwatch-costs-for-high-traffic-lambda-functions-with-advanced-logging-controls-5406 (eu-west-1: $0.57/GB)",
    "xray": "https://aws.amazon.com/de/xray/pricing/",
}

PRICE_SETS = {
    # Every figure here was read in a cited page (us-east-1 unless stated).
    "us-east-1": {
        "lambda_request": (0.20e-6, "per request", SRC["lambda"], "confirmed (us-east-1)"),
        "lambda_gb_s_arm": (0.0000133334, "per GB-second, arm64", SRC["lambda"], "confirmed (us-east-1)"),
        "apigw_rest": (3.50e-6, "per request (first 333 M/month)", SRC["apigw"], "confirmed (us-east-1)"),
        "apigw_http": (1.00e-6, "per request (first 300 M/month)", SRC["apigw"], "confirmed (us-east-1)"),
        "ddb_wru": (0.625e-6, "per write request unit", SRC["ddb"], "confirmed (us-east-1)"),
        "ddb_rru": (0.125e-6, "per read request unit", SRC["ddb"], "confirmed (us-east-1)"),
        "sns_request": (0.50e-6, "per request (64 KB chunk)", SRC["sns"], "confirmed (us-east-1)"),
        "sqs_request": (0.40e-6, "per request (64 KB chunk), standard", SRC["sqs"], "confirmed (us-east-1)"),
        "kms_request": (0.03e-4, "per request (symmetric)", SRC["kms"], "confirmed"),
        "logs_gb": (0.50, "per GB ingested", SRC["logs"], "confirmed (us-east-1)"),
        "xray_trace": (5.00e-6, "per trace recorded", SRC["xray"], "confirmed (page gives no region)"),
        "ddb_storage_gb_month": (0.25, "per GB-month", "not found with the search tool", "NOT confirmed (from memory)"),
        "ddb_pitr_gb_month": (0.20, "per GB-month", "not found with the search tool", "NOT confirmed (from memory)"),
    },
    # London: the figures the pages above give where a service is priced the
    # same in every region that was checked, else an estimate, marked.
    "eu-west-2": {
        "lambda_request": (0.20e-6, "per request", SRC["lambda"], "us-east-1 figure; London assumed equal, NOT confirmed"),
        "lambda_gb_s_arm": (0.0000133334, "per GB-second, arm64", SRC["lambda"], "us-east-1 figure; London assumed equal, NOT confirmed"),
        "apigw_rest": (3.70e-6, "per request (first 333 M/month)", SRC["apigw"], "NOT confirmed: London from memory; the cited page gives $3.50 (us-east-1)"),
        "apigw_http": (1.11e-6, "per request (first 300 M/month)", SRC["apigw"], "NOT confirmed: London from memory; the cited page gives $1.00 (us-east-1)"),
        "ddb_wru": (0.7425e-6, "per write request unit", SRC["ddb_eu"], "NOT confirmed: half the pre-cut London $1.485 (from memory); cited pages give $0.625 (us-east-1) and pre-cut $1.4135 (Europe, region not stated)"),
        "ddb_rru": (0.1485e-6, "per read request unit", SRC["ddb_eu"], "NOT confirmed: half the pre-cut London $0.297 (from memory); cited pages give $0.125 (us-east-1) and pre-cut $0.283"),
        "sns_request": (0.50e-6, "per request (64 KB chunk)", SRC["sns"], "us-east-1 figure; London assumed equal, NOT confirmed"),
        "sqs_request": (0.40e-6, "per request (64 KB chunk), standard", SRC["sqs"], "us-east-1 figure; London assumed equal, NOT confirmed"),
        "kms_request": (0.03e-4, "per request (symmetric)", SRC["kms"], "confirmed (no regional figure on the page)"),
        "logs_gb": (0.5985, "per GB ingested", SRC["logs_eu"], "NOT confirmed: London from memory; cited eu-west-1 $0.57, us-east-1 $0.50"),
        "xray_trace": (5.00e-6, "per trace recorded", SRC["xray"], "confirmed (page gives no region)"),
        "ddb_storage_gb_month": (0.29715, "per GB-month", SRC["ddb_eu"], "NOT confirmed: London from memory; cited European page $0.283"),
        "ddb_pitr_gb_month": (0.2377, "per GB-month", "not found with the search tool", "NOT confirmed (from memory)"),
    },
}

# ---------------------------------------------------------------------------
# DynamoDB item sizes (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html):
# attribute name bytes + value bytes; a number is about (digits / 2) + 1 bytes.
# ---------------------------------------------------------------------------


def number_size(digits):
    return digits // 2 + 1


def events_item_bytes(payload_bytes):
    """The events table item of StoredEvent (shared/src/events.rs, camelCase
    attributes), with values of the vaccination example's lengths."""
    strings = {
        "eventKey": len("vaccinations-1/") + 36,
        "eventId": 36,
        "eventType": len("vaccinations-1"),
        "lifecycle": len("new"),
        "contentType": len("application/fhir+xml"),
        "payload": payload_bytes,
        "payloadSha256": 64,
        "nhsNumber": 10,
        "birthDate": 10,
        "timestamp": 25,
        "lastUpdated": 25,
        "responsibleOds": 6,
        "gpOds": 6,
        "homePostcode": 7,
        "receivedAt": 24,
        "focusIdentifier": 90,
        "receivedDay": 10,
        "receivedSort": 24 + 1 + 51,
    }
    numbers = {"versionId": number_size(1), "expiresAt": number_size(10)}
    booleans = {"registeredWithGp": 1, "sensitive": 1}
    total = 0
    for group in (strings, numbers, booleans):
        total += sum(len(name) + size for name, size in group.items())
    return total


def units(size_bytes, unit_bytes):
    return max(1, math.ceil(size_bytes / unit_bytes))


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------


def model(args, prices):
    body = EXAMPLE.read_bytes()
    payload = len(body)
    item = events_item_bytes(payload)
    p = {key: value[0] for key, value in prices.items()}
    r = args.recipients
    lines = []  # (group, what, count per event, unit, unit price USD, note)

    def add(group, what, count, unit_key, note=""):
        lines.append((group, what, count, unit_key, p[unit_key], note))

    # --- Lambda durations: sequential round trips x latency + CPU ---------
    # CPU at 128 MB: Lambda gives CPU in proportion to memory, one vCPU at
    # 1,769 MB, so 128 MB has about 7 % of a core: the benches' one-core
    # microseconds are multiplied by 1769/128.
    cpu_scale = 1769 / args.memory_mb
    gb = args.memory_mb / 1024

    def duration_ms(round_trips, cpu_us):
        return math.ceil(round_trips * args.latency_ms + cpu_us * cpu_scale / 1000)

    authorizer_ms = duration_ms(1, 100)  # GetItem clients; token check (signature) ~100 us, estimated
    publish_trips = (1 if args.focus else 0) + 1 + 1 + 1  # versions get, write, register get, audit put
    publish_ms = duration_ms(publish_trips, 60)  # read_validate bench: ~50 us for 11 KB
    first = args.first_event
    dispatch_trips = 1 + (1 if first else 0) + 1 + 1 + 1 + 1 + 1 + 1
    # register get, [register put], explicit Query, BatchGetItem, generic Queries
    # (concurrent: one round trip), audit BatchWriteItem, PublishBatch, stats
    # UpdateItems (concurrent: one round trip)
    dispatch_ms = duration_ms(dispatch_trips, 60)  # dispatch_scaling bench: ~55 us per event
    share = 1 / args.batch

    api = "apigw_http" if args.http_api else "apigw_rest"
    add("API Gateway", f"{'HTTP' if args.http_api else 'REST'} API request (POST /events/vaccinations-1)", 1, api)
    add("X-Ray", "API stage TracingEnabled: traces recorded (default rule: 1/s + 5 %)", args.xray_fraction, "xray_trace",
        "1.0 below about 1 event/s (every request is in the 1/s reservoir); 0.05 at high rates")
    auth = 1 - args.authorizer_cache_hits
    add("Lambda authorizer", "invocation (no decision caching: ReauthorizeEvery 0)", auth, "lambda_request")
    add("Lambda authorizer", f"duration {authorizer_ms} ms x {gb:.3f} GB", auth * authorizer_ms / 1000 * gb, "lambda_gb_s_arm")
    add("DynamoDB read", "authorizer GetItem clients (consistent, < 4 KB)", auth, "ddb_rru")
    add("Lambda publish", "invocation", 1, "lambda_request")
    add("Lambda publish", f"duration {publish_ms} ms x {gb:.3f} GB ({publish_trips} round trips)", publish_ms / 1000 * gb, "lambda_gb_s_arm")
    if args.focus:
        add("DynamoDB read", "GetItem versions (consistent, < 4 KB)", 1, "ddb_rru")
    if args.compress:
        item = events_item_bytes(len(zlib.compress(body, 6)))
    event_wru = 2 * units(item, 1024)
    stored = " (payload stored gzip-compressed)" if args.compress else ""
    add("DynamoDB write", f"TransactWriteItems: event item {item} B{stored} -> {units(item, 1024)} WRU x 2 (transactional)", event_wru, "ddb_wru")
    if args.focus:
        add("DynamoDB write", "TransactWriteItems: versions item (< 1 KB) x 2 (transactional)", 2, "ddb_wru")
    add("DynamoDB write", "GSI ByPatient (INCLUDE, < 1 KB)", 1, "ddb_wru", "assumed 1 WRU (GSI writes not doubled)")
    add("DynamoDB write", "GSI ByDay (KEYS_ONLY)", 1, "ddb_wru", "assumed 1 WRU")
    add("DynamoDB read", "publish GetItem register (sensitivity note, consistent)", 1, "ddb_rru")
    add("DynamoDB write", "publish audit PutItem (< 1 KB) + GSIs ByPatient, ByClient (ALL)", 3, "ddb_wru")
    add("DynamoDB stream", "GetRecords by the Lambda trigger", 0, "ddb_rru", "free for Lambda triggers")
    add("Lambda dispatch", f"invocation, share of a batch of {args.batch}", share, "lambda_request")
    add("Lambda dispatch", f"duration {dispatch_ms} ms x {gb:.3f} GB ({dispatch_trips} round trips)", dispatch_ms / 1000 * gb, "lambda_gb_s_arm")
    add("DynamoDB read", "dispatch GetItem register (consistent)", 1, "ddb_rru")
    if first:
        add("DynamoDB write", "dispatch conditional PutItem register (< 1 KB)", 1, "ddb_wru", "only when the event changes the record")
    add("DynamoDB read", "BatchGetItem reference: 2 keys, eventually consistent", 2 * 0.5, "ddb_rru")
    add("DynamoDB read", "Query explicit candidates (consistent, < 4 KB)", 1, "ddb_rru")
    add("DynamoDB read", f"Query generic candidates: {args.generic_keys} keys (consistent, < 4 KB each)", args.generic_keys, "ddb_rru")
    if args.audit_per_event:
        add("DynamoDB write", f"audit PutItem: one record naming the {r} recipients (< 1 KB) x (1 + 2 GSIs)", 3, "ddb_wru")
    else:
        add("DynamoDB write", f"audit BatchWriteItem: {r} records x (1 + 2 GSIs)", 3 * r, "ddb_wru")
    entry_bytes = payload + args.attribute_bytes
    batches = math.ceil(r / 10)
    sns_units = sum(
        math.ceil(min(10, r - 10 * b) * entry_bytes / 65536) for b in range(batches)
    )
    if args.sns_per_entry:
        sns_units = r * math.ceil(entry_bytes / 65536)
    add("SNS", f"PublishBatch: {batches} request(s), {r} entries of {entry_bytes} B", sns_units, "sns_request",
        "64 KB chunks of the batch's payload" if not args.sns_per_entry else "pessimistic: each entry billed")
    add("SNS", "deliveries to SQS", 0, "sns_request", "free for SQS endpoints")
    if not args.no_stats:
        add("DynamoDB write", f"delivery stats UpdateItem x {r}", r, "ddb_wru")
    if args.sqs_batch > 1:
        n = args.sqs_batch
        per_message = math.ceil(n * entry_bytes / 65536) / n + 1 / n
        add("SQS", f"subscriber ReceiveMessage ({n} a request) + DeleteMessageBatch, x {r}", r * per_message, "sqs_request",
            "billed to the hub's account: the queues are the hub's")
    else:
        sqs_chunks = math.ceil(entry_bytes / 65536)
        add("SQS", f"subscriber ReceiveMessage + DeleteMessage, one message at a time, x {r}", 2 * r * sqs_chunks, "sqs_request",
            "billed to the hub's account: the queues are the hub's")
    # Logs: the success path's tracing calls (info! "publish", info! "dispatched";
    # the authorizer logs nothing when it allows), SystemLogLevel WARN drops
    # the platform START/REPORT lines, plus one API Gateway access log line.
    log_bytes = (250 + 26) + (250 + 26) + (220 + 26)
    add("CloudWatch Logs", f"ingestion: 2 function lines + 1 access log line, {log_bytes} B", log_bytes / 1e9, "logs_gb")
    add("KMS", "per event: none (data keys cached by DynamoDB, SNS, SQS)", 0, "kms_request", "time-based: see the notes")
    return lines, {
        "payload": payload,
        "item": item,
        "authorizer_ms": authorizer_ms,
        "publish_ms": publish_ms,
        "dispatch_ms": dispatch_ms,
        "gzip": len(zlib.compress(body, 6)),
        "entry_bytes": entry_bytes,
    }


def summarise(lines):
    groups = {}
    for group, _, count, _, price, _ in lines:
        groups[group] = groups.get(group, 0) + count * price * 1e6
    return groups


def print_table(lines, facts, prices, markdown):
    total = sum(count * price for _, _, count, _, price, _ in lines) * 1e6
    if markdown:
        print("| service | request (per event) | count per event | unit price (USD) | USD per million events |")
        print("|---|---|---|---|---|")
        for group, what, count, unit, price, note in lines:
            note = f" ({note})" if note else ""
            print(f"| {group} | {what}{note} | {count:g} | {price:.4g} {prices[unit][1]} | {count * price * 1e6:.3f} |")
        print(f"| **total** | | | | **{total:.2f}** |")
    else:
        for group, what, count, unit, price, note in lines:
            print(f"{group:18} {what[:78]:78} {count:8.4g} x {price:10.4g} = {count * price * 1e6:8.3f} $/M")
        print(f"{'TOTAL':18} {'':78} {'':8} {'':12} {total:10.2f} $/M events")
    return total


def total_of(args, prices, **changes):
    changed = argparse.Namespace(**{**vars(args), **changes})
    lines, _ = model(changed, prices)
    return sum(count * price for _, _, count, _, price, _ in lines) * 1e6


LEVERS = [
    ("store the payload gzip-compressed (events item 12.1 KB -> 3.2 KB, still one transaction)", {"compress": True}),
    ("one delivery audit record per event, naming its recipients", {"audit_per_event": True}),
    ("X-Ray on the API stage off, or a sampling rule (at low rates every request is traced)", {"xray_fraction": 0.0}),
    ("HTTP API instead of REST API (needs the gateway responses and authorizer reworked)", {"http_api": True}),
    ("subscribers receive 10 messages a request and delete in batches", {"sqs_batch": 10}),
    ("no per-recipient delivery stats UpdateItem (count from the audit trail instead)", {"no_stats": True}),
    ("authorizer result caching, 90 % hits (a disabled client stays allowed up to the TTL)", {"authorizer_cache_hits": 0.9}),
    ("a quiet hub: every stream batch holds one event (dispatch invoked per event)", {"batch": 1}),
]


def print_levers(args, prices):
    base = total_of(args, prices)
    print("| change | USD per million events | saving (negative: costs more) |")
    print("|---|---|---|")
    print(f"| none (the code as it is) | {base:.2f} | |")
    combined = {}
    for text, change in LEVERS:
        value = total_of(args, prices, **change)
        print(f"| {text} | {value:.2f} | {base - value:.2f} |")
        if not change.get("authorizer_cache_hits") and not change.get("http_api") and "batch" not in change:
            combined.update(change)
    value = total_of(args, prices, **combined)
    print(f"| the first three, with batched receives and no stats writes (API and authorizer unchanged) | {value:.2f} | {base - value:.2f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prices", choices=sorted(PRICE_SETS), default="eu-west-2")
    ap.add_argument("--recipients", type=int, default=4)
    ap.add_argument("--generic-keys", type=int, default=5, help="generic Queries (5: one place; 10: a move)")
    ap.add_argument("--first-event", choices=["yes", "no"], default="yes", help="the event changes the register record")
    ap.add_argument("--no-focus", dest="focus", action="store_false", help="no focus identifier: no versions item")
    ap.add_argument("--latency-ms", type=float, default=10.0, help="per sequential AWS round trip")
    ap.add_argument("--memory-mb", type=int, default=128)
    ap.add_argument("--batch", type=int, default=10, help="stream records per dispatch invocation")
    ap.add_argument("--xray-fraction", type=float, default=1.0)
    ap.add_argument("--attribute-bytes", type=int, default=300, help="SNS message attributes per entry")
    ap.add_argument("--sns-per-entry", action="store_true")
    ap.add_argument("--markdown", action="store_true")
    # Levers (what would cut it), off by default: the code as it is.
    ap.add_argument("--compress", action="store_true", help="store the payload gzip-compressed")
    ap.add_argument("--audit-per-event", action="store_true", help="one delivery audit record per event")
    ap.add_argument("--http-api", action="store_true", help="API Gateway HTTP API instead of REST")
    ap.add_argument("--sqs-batch", type=int, default=1, help="messages per subscriber ReceiveMessage")
    ap.add_argument("--authorizer-cache-hits", type=float, default=0.0, help="fraction of requests answered from the authorizer cache")
    ap.add_argument("--no-stats", action="store_true", help="no per-recipient delivery stats UpdateItem")
    ap.add_argument("--levers", action="store_true", help="print the saving of each lever")
    args = ap.parse_args()
    args.first_event = args.first_event == "yes"
    prices = PRICE_SETS[args.prices]
    lines, facts = model(args, prices)
    print(f"# prices: {args.prices}; {args.recipients} recipients; latency {args.latency_ms} ms per round trip; "
          f"{args.memory_mb} MB arm64; dispatch batch {args.batch}")
    print(f"# example {EXAMPLE.name}: {facts['payload']} B body, events item {facts['item']} B, "
          f"gzip -6 body {facts['gzip']} B; durations: authorizer {facts['authorizer_ms']} ms, "
          f"publish {facts['publish_ms']} ms, dispatch {facts['dispatch_ms']} ms per event")
    if args.levers:
        print_levers(args, prices)
        return
    total = print_table(lines, facts, prices, args.markdown)
    print()
    groups = sorted(summarise(lines).items(), key=lambda kv: -kv[1])
    if args.markdown:
        print("| service | USD per million events | share |")
        print("|---|---|---|")
        for group, cost in groups:
            print(f"| {group} | {cost:.2f} | {100 * cost / total:.0f} % |")
        print(f"| **total** | **{total:.2f}** | |")
    else:
        for group, cost in groups:
            print(f"{group:18} {cost:8.2f} $/M  {100 * cost / total:4.0f} %")
    # Storage: not a request cost, but what each million events keeps paying
    # every month of EventRetentionDays (2190 days by default).
    p = prices
    gsi = 200 + 100  # ByPatient + ByDay items with their 100-byte overheads (estimate)
    stored_gb = (facts["item"] + 100 + gsi) * 1e6 / 1e9
    audit_gb = (1 + args.recipients) * 3 * (400 + 100) * 1e6 / 1e9
    per_month = (stored_gb + audit_gb) * (p["ddb_storage_gb_month"][0] + p["ddb_pitr_gb_month"][0])
    print()
    print(f"# storage (not in the total): events {stored_gb:.1f} GB + audit {audit_gb:.1f} GB per million events, "
          f"x (storage {p['ddb_storage_gb_month'][0]} + PITR {p['ddb_pitr_gb_month'][0]}) $/GB-month "
          f"= {per_month:.2f} $ per month kept ({p['ddb_storage_gb_month'][3]})")
    print("# prices used:")
    for key, (usd, unit, source, status) in prices.items():
        print(f"#   {key:22} {usd:<12.6g} {unit:38} {status}; {source}")


if __name__ == "__main__":
    main()
