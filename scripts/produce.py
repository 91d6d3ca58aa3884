#!/usr/bin/env python3
"""Produces a JSON-lines file into a Kafka topic with a standard client
(confluent-kafka), one record per line, keyed so that lines spread over the
topic's partitions. The tests use it as a client this project did not write.

    scripts/produce.py BROKERS TOPIC CODEC FILE [KEY=VALUE ...]

CODEC is a compression.type: none, gzip, snappy, lz4 or zstd. Extra
KEY=VALUE pairs are passed to the producer, but for `pace=N`: at most N
records a second, spread evenly (unpaced without it). Exits non-zero unless
every record was acknowledged.
"""
import sys
import time

from confluent_kafka import Producer


def main() -> int:
    brokers, topic, codec, path = sys.argv[1:5]
    conf = {"bootstrap.servers": brokers, "compression.type": codec, "linger.ms": 20}
    pace = 0.0
    for kv in sys.argv[5:]:
        k, v = kv.split("=", 1)
        if k == "pace":
            pace = float(v)
        else:
            conf[k] = v
    failed = []

    def delivered(err, _msg):
        if err is not None:
            failed.append(str(err))

    producer = Producer(conf)
    sent = 0
    started = time.monotonic()
    with open(path, "rb") as f:
        for i, line in enumerate(f):
            if pace > 0:
                ahead = started + i / pace - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            value = line.rstrip(b"\n")
            while True:
                try:
                    producer.produce(topic, value=value, key=str(i % 101).encode(), on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
            sent += 1
    left = producer.flush(60)
    if left or failed:
        print(f"{left} records unacknowledged, {len(failed)} failed: {failed[:3]}", file=sys.stderr)
        return 1
    print(f"{sent} records produced with {codec}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
