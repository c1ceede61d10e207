#!/usr/bin/env python3
"""Writes events/apigw/*.json: API Gateway REST proxy events wrapping sample
requests, for `cargo lambda invoke --data-file` and `sam local invoke -e`.
Bodies come from the fixtures under events/, so the two never drift apart.
Run from anywhere: python3 infra/tools/make-sample-events.py [OUT_DIR]
(OUT_DIR defaults to events/apigw)."""

import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
OUT = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else EVENTS / "apigw"


# One sample message per event type: (code, folder, example name).
SAMPLES = [
    ("pds-birth-notification-1", "derived", "BirthNotificationWithMother-valid-mother"),
    ("pds-change-of-address-1", "nems", "PDS-Change-Of-Address-ems-example"),
    ("pds-change-of-gp-1", "nems", "PDS-Change-Of-GP-ems-example"),
    ("pds-death-notification-1", "nems", "PDS-Death-Notification-formal-ems-example"),
    ("pds-record-change-1", "nems", "PDS-Record-Change"),
    ("blood-spot-test-outcome-1", "nems", "blood-spot-test-outcome-1-new"),
    ("newborn-hearing-1", "nems", "newborn-hearing-1-new"),
    ("nipe-outcome-1", "nems", "nipe-outcome-1-new"),
    ("professional-contacts-1", "nems", "Professional-Contacts-1-new"),
    ("vaccinations-1", "nems", "vaccinations-1-new"),
]


ALL_EVENT_TYPES = [code for code, _, _ in SAMPLES]

# The demo clients the local stack registers, as the authorizer passes them
# on: API Gateway gives the function the authorizer's context (string
# values only), so the caller travels as JSON under "caller".
CALLERS = {
    "demo-publisher": {
        "clientId": "demo-publisher", "odsCode": "RR8", "roles": ["publisher"],
        "publishEventTypes": ALL_EVENT_TYPES, "publishForOds": ["A83627", "RR8", "RX3EP", "X26"],
        "subscribeExplicit": False, "subscribeGeneric": {},
    },
    "demo-subscriber-1": {
        "clientId": "demo-subscriber-1", "odsCode": "A83627", "roles": ["subscriber"],
        "subscriberId": "REPLACE-WITH-SUBSCRIBER-ID",
        "publishEventTypes": [], "publishForOds": [],
        "subscribeExplicit": True, "subscribeGeneric": {},
    },
    "demo-operator": {
        "clientId": "demo-operator", "odsCode": "X26", "roles": ["operator"],
        "publishEventTypes": [], "publishForOds": [],
        "subscribeExplicit": False, "subscribeGeneric": {},
    },
}


def authorizer_context(client_id):
    caller = CALLERS[client_id]
    return {
        "principalId": client_id,
        "clientId": client_id,
        "caller": json.dumps(caller, separators=(",", ":")),
    }


def proxy_event(method, path, resource, body, content_type, caller, path_parameters=None):
    headers = {"content-type": content_type, "accept": content_type}
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/dev{path}",
            "stage": "dev",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "identity": {"sourceIp": "127.0.0.1"},
            "authorizer": authorizer_context(caller),
        },
        "body": body,
        "isBase64Encoded": False,
    }


def write(name, event):
    target = OUT / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(event, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main():
    for code, folder, example in SAMPLES:
        path = f"/events/{code}"
        xml_folder, json_folder = (folder, folder) if folder == "derived" else (folder, "nems-json")
        xml = (EVENTS / xml_folder / f"{example}.xml").read_text(encoding="utf-8")
        json_body = (EVENTS / json_folder / f"{example}.json").read_text(encoding="utf-8")
        write(f"publish-{code}-xml", proxy_event("POST", path, path, xml, "application/fhir+xml", "demo-publisher"))
        write(f"publish-{code}-json", proxy_event("POST", path, path, json_body, "application/fhir+json", "demo-publisher"))
    onboard = {"clientId": "demo-subscriber-1", "odsCode": "A83627", "name": "Silverdale Family Practice", "eventTypes": ["vaccinations-1"]}
    write("onboard-subscriber", proxy_event("POST", "/subscribers", "/subscribers", json.dumps(onboard), "application/json", "demo-operator"))
    subscription = (EVENTS / "subscriptions" / "explicit-vaccinations.json").read_text(encoding="utf-8")
    write("subscription-create", proxy_event("POST", "/Subscription", "/Subscription", subscription, "application/fhir+json", "demo-subscriber-1"))
    write("subscription-read", proxy_event("GET", "/Subscription/6f66834b-753a-4076-9a95-b54b84520b59",
                                           "/Subscription/{id}", None, "application/fhir+json", "demo-subscriber-1",
                                           {"id": "6f66834b-753a-4076-9a95-b54b84520b59"}))
    # An operator looking into a subscriber (an id onboarding answered).
    subscriber = "0e5b0c33-7a51-4b8f-9c2e-5d0c4f1a8b27"
    write("subscriber-status", proxy_event("GET", f"/subscribers/{subscriber}/status", "/subscribers/{id}/status",
                                           None, "application/json", "demo-operator", {"id": subscriber}))
    write("subscriber-redrive", proxy_event("POST", f"/subscribers/{subscriber}/$redrive", "/subscribers/{id}/$redrive",
                                            None, "application/json", "demo-operator", {"id": subscriber}))


if __name__ == "__main__":
    main()
