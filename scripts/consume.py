#!/usr/bin/env python3
"""Reads every record of a Kafka topic from the beginning with a standard
client (confluent-kafka) and prints one JSON line per record: partition,
offset, headers, the value's size and the value (lossy UTF-8). Stops once no
record has arrived for QUIET seconds. The tests use it as a client this
project did not write.

    scripts/consume.py BROKERS TOPIC [QUIET] [KEY=VALUE ...]
"""
import json
import sys
import time

from confluent_kafka import Consumer, KafkaException, TopicPartition


def main() -> int:
    brokers, topic = sys.argv[1:3]
    quiet = float(sys.argv[3]) if len(sys.argv) > 3 else 2.0
    conf = {"bootstrap.servers": brokers, "group.id": "foreign-reader", "enable.auto.commit": False}
    for kv in sys.argv[4:]:
        k, v = kv.split("=", 1)
        conf[k] = v
    consumer = Consumer(conf)
    meta = consumer.list_topics(topic, timeout=10)
    if topic not in meta.topics or meta.topics[topic].error is not None:
        print(f"topic {topic} not found", file=sys.stderr)
        return 1
    parts = sorted(meta.topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    last = time.monotonic()
    while time.monotonic() - last < quiet:
        msg = consumer.poll(0.1)
        if msg is None:
            continue
        if msg.error():
            raise KafkaException(msg.error())
        last = time.monotonic()
        value = msg.value() or b""
        headers = {k: (v or b"").decode("utf-8", "replace") for k, v in (msg.headers() or [])}
        print(json.dumps({
            "partition": msg.partition(),
            "offset": msg.offset(),
            "headers": headers,
            "size": len(value),
            "value": value.decode("utf-8", "replace"),
        }))
    consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
