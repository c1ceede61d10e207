#!/usr/bin/env python3
"""The local stack's AWS emulator: moto's server, with one change.

moto's DynamoDB TransactWriteItems deep-copies every table the transaction
names before it starts, to roll back on failure. Each publish is such a
transaction on the events table, so a publish costs time and memory in
proportion to every event stored so far: the load test (bench/load) saw
the emulator reach 23 GB after about 3 000 events. Here a transaction
instead remembers the items it may change (one copy each) and the length
of each table's stream, and a failed transaction puts those items back and
drops the stream records it wrote: the same outcome, in proportion to the
transaction's own size.

    .venv/bin/python infra/emulator.py -H 127.0.0.1 -p 4566   # moto_server's options
    .venv/bin/python infra/emulator.py -H 127.0.0.1 -p 0      # any free port, printed
    .venv/bin/python infra/emulator.py --self-test

With port 0 the emulator binds a free port itself and prints `Port N` as its
first line: a port chosen by the caller beforehand could be taken by another
process before the emulator binds it, and the caller would then talk to that
process instead.
"""

import copy
import sys
import types

from moto.dynamodb import models
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table


def _deepcopy_except_tables(value, memo=None):
    # transact_write_items' own table copy becomes a no-op; its rollback then
    # puts back the same table object, and ours (below) restores the items.
    if isinstance(value, Table):
        return value
    return copy.deepcopy(value, memo)


def _key_of(table, op):
    """The (hash, range) key an operation touches, or None if it names none."""
    attributes = op.get("Item") if "Item" in op else op.get("Key")
    if not isinstance(attributes, dict) or table.hash_key_attr not in attributes:
        return None
    range_value = None
    if table.range_key_attr is not None:
        if table.range_key_attr not in attributes:
            return None
        range_value = DynamoType(attributes[table.range_key_attr])
    return DynamoType(attributes[table.hash_key_attr]), range_value


def _put_back(table, hash_value, range_value, previous):
    if range_value is None:
        if previous is None:
            table.items.pop(hash_value, None)
        else:
            table.items[hash_value] = previous
        return
    bucket = table.items.get(hash_value)
    if previous is not None:
        table.items[hash_value][range_value] = previous
    elif bucket is not None:
        bucket.pop(range_value, None)
        if not bucket:
            table.items.pop(hash_value, None)


def _transact_write_items(original):
    def transact_write_items(self, transact_items):
        undo, streams = [], {}
        for entry in transact_items if isinstance(transact_items, list) else []:
            if not isinstance(entry, dict) or len(entry) != 1:
                continue
            _, op = next(iter(entry.items()))
            table = self.tables.get(op.get("TableName")) if isinstance(op, dict) else None
            if table is None:
                continue
            if table.stream_shard is not None and id(table) not in streams:
                streams[id(table)] = (table.stream_shard, len(table.stream_shard.items))
            key = _key_of(table, op)
            if key is not None:
                undo.append((table, *key, copy.deepcopy(table.get_item(*key))))
        try:
            return original(self, transact_items)
        except Exception:
            for table, hash_value, range_value, previous in reversed(undo):
                _put_back(table, hash_value, range_value, previous)
            for shard, length in streams.values():
                del shard.items[length:]
            raise

    return transact_write_items


def install():
    models.copy = types.SimpleNamespace(deepcopy=_deepcopy_except_tables, copy=copy.copy)
    backend = models.DynamoDBBackend
    if not getattr(backend.transact_write_items, "_hub_patched", False):
        patched = _transact_write_items(backend.transact_write_items)
        patched._hub_patched = True
        backend.transact_write_items = patched


def self_test():
    """The patched transactions against moto in-process: success, a failed
    transaction that must leave no trace, and an update rolled back."""
    import boto3
    from botocore.exceptions import ClientError
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("dynamodb", region_name="eu-west-2")
        for name, keys in (("events", ["pk"]), ("versions", ["pk", "sk"])):
            client.create_table(
                TableName=name, BillingMode="PAY_PER_REQUEST",
                KeySchema=[{"AttributeName": k, "KeyType": t} for k, t in zip(keys, ["HASH", "RANGE"])],
                AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in keys],
                StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})

        def put(table, key, value, condition=None):
            op = {"TableName": table, "Item": dict(key, value={"S": value})}
            if condition:
                op["ConditionExpression"] = condition
            return {"Put": op}

        def update(table, key, value):
            return {"Update": {"TableName": table, "Key": key, "UpdateExpression": "SET #v = :v",
                               "ExpressionAttributeNames": {"#v": "value"},
                               "ExpressionAttributeValues": {":v": {"S": value}}}}

        def stream_length():
            backend = models.dynamodb_backends["123456789012"]["eu-west-2"]
            return {n: len(backend.tables[n].stream_shard.items) for n in ("events", "versions")}

        def value(table, key):
            item = client.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
            return item["value"]["S"] if item else None

        first, version = {"pk": {"S": "e1"}}, {"pk": {"S": "v"}, "sk": {"S": "1"}}
        client.transact_write_items(TransactItems=[
            put("events", first, "one", "attribute_not_exists(pk)"), put("versions", version, "a")])
        before = stream_length()
        events_table = models.dynamodb_backends["123456789012"]["eu-west-2"].tables["events"]
        second = {"pk": {"S": "e2"}}
        new_version = {"pk": {"S": "v"}, "sk": {"S": "2"}}
        for items in (
            # A new event and a new version, then a check that fails.
            [put("events", second, "two"), put("versions", new_version, "b"),
             put("events", first, "again", "attribute_not_exists(pk)")],
            # An update of an existing item, then a failing condition.
            [update("versions", version, "changed"),
             put("events", first, "again", "attribute_not_exists(pk)")],
        ):
            try:
                client.transact_write_items(TransactItems=items)
                raise AssertionError("the transaction should have been cancelled")
            except ClientError as error:
                assert error.response["Error"]["Code"] == "TransactionCanceledException", error
        assert value("events", second) is None, "a cancelled Put stayed"
        assert value("versions", new_version) is None, "a cancelled Put (range key) stayed"
        assert value("versions", version) == "a", "a cancelled Update stayed"
        assert value("events", first) == "one"
        assert models.dynamodb_backends["123456789012"]["eu-west-2"].tables["events"] is events_table, \
            "the table was copied (moto's own rollback, not this one)"
        assert stream_length() == before, f"stream records of cancelled writes: {before} -> {stream_length()}"
        listed = client.query(TableName="versions", KeyConditionExpression="pk = :p",
                              ExpressionAttributeValues={":p": {"S": "v"}})["Items"]
        assert [i["sk"]["S"] for i in listed] == ["1"], listed
        client.transact_write_items(TransactItems=[update("versions", version, "b")])
        assert value("versions", version) == "b"
        assert stream_length()["versions"] == before["versions"] + 1
    print("emulator self-test: 2 cancelled transactions left no item and no stream record; 1 passed")


def serve_on_a_free_port(host):
    """moto's server (as moto.server.main runs it) on a port the OS picks."""
    import os
    import signal

    from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    application = DomainDispatcherApplication(create_backend_app)
    server = make_server(host, 0, application, threaded=True, request_handler=MotoRequestHandler)
    # moto builds some URLs (queue URLs among them) from MOTO_PORT.
    os.environ["MOTO_PORT"] = str(server.port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"Port {server.port}", flush=True)
    server.serve_forever()


def _port_argument(arguments):
    for flag in ("-p", "--port"):
        if flag in arguments[:-1]:
            return arguments[arguments.index(flag) + 1]
    return None


if __name__ == "__main__":
    install()
    if sys.argv[1:] == ["--self-test"]:
        self_test()
        sys.exit(0)
    if _port_argument(sys.argv[1:]) == "0":
        host = sys.argv[sys.argv.index("-H") + 1] if "-H" in sys.argv[:-1] else "127.0.0.1"
        serve_on_a_free_port(host)
        sys.exit(0)
    from moto.server import main

    sys.argv[0] = "moto_server"
    sys.exit(main())
