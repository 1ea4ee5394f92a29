#!/usr/bin/env python3
"""One librdkafka client against one Kafka-compatible broker: produce, consume, end-to-end latency.

Usage: python wire_peers.py --bootstrap HOST:PORT [--broker-pid PID] [--records 200000]
Prints one JSON object (the figures of this run) on stdout; progress on stderr.

Phases (each on its own fresh topic, 1 partition, created with CreateTopics):
  produce  N records of --size bytes, acks=1, linger.ms=5, one producer; records/s from the first
           send to the end of flush() (every delivery report received).
  consume  one consumer, partition assigned directly (no group), from earliest, until N records;
           checks every sequence number 0..N-1 arrived exactly once.
  latency  --rate records/s for --seconds s (acks=1, linger.ms=0); a consumer in another process
           stamps the receive time; latency = receive time - send time stamped in the value.
           The first --warmup seconds of sends are not counted.
With --broker-pid, the broker's CPU seconds (utime+stime from /proc/PID/stat) per phase are reported.
"""
import argparse
import json
import multiprocessing as mp
import os
import struct
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition, OFFSET_BEGINNING
from confluent_kafka import libversion, version
from confluent_kafka.admin import AdminClient, NewTopic

STAMP = struct.Struct(">qq")  # sequence number, send time in ns (time.time_ns)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def client_cpu():
    t = os.times()
    return t.user + t.system


def cpu_seconds(pid):
    if pid is None:
        return None
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is state (field 3); utime, stime are fields 14, 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def create_topic(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)],
                                  operation_timeout=30, request_timeout=30)
    try:
        futures[topic].result(timeout=60)
        return "created"
    except Exception as e:  # reported, then the run relies on auto-create
        log(f"CreateTopics {topic} failed: {e!r}")
        return f"CreateTopics failed: {e!r}"


def wait_metadata(bootstrap, topic, timeout=60):
    """Wait until the topic has a partition 0 with a leader (auto-create happens here if needed)."""
    p = Producer({"bootstrap.servers": bootstrap, "allow.auto.create.topics": True})
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            md = p.list_topics(topic, timeout=5)
            t = md.topics.get(topic)
            if t is not None and t.error is None and 0 in t.partitions and t.partitions[0].leader >= 0:
                return True
            last = t.error if t is not None else "absent"
        except Exception as e:
            last = e
        time.sleep(0.2)
    log(f"topic {topic} never became ready: {last}")
    return False


def produce(bootstrap, topic, n, size):
    errors = []
    acked = [0]

    def on_delivery(err, msg):
        if err is not None:
            if len(errors) < 5:
                errors.append(str(err))
            else:
                errors.append(None)
        else:
            acked[0] += 1

    p = Producer({"bootstrap.servers": bootstrap, "acks": "1", "linger.ms": 5,
                  "queue.buffering.max.messages": 1_000_000,
                  "queue.buffering.max.kbytes": 1_048_576})
    pad = b"x" * (size - STAMP.size)
    t0 = time.perf_counter()
    for i in range(n):
        v = STAMP.pack(i, 0) + pad
        while True:
            try:
                p.produce(topic, v, partition=0, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.001)
        if i % 1000 == 0:
            p.poll(0)
    left = p.flush(120)
    dt = time.perf_counter() - t0
    return {"seconds": dt, "records_per_s": acked[0] / dt, "acked": acked[0],
            "errors": len(errors), "first_errors": [e for e in errors if e][:5], "unflushed": left}


def consume(bootstrap, topic, n, size, timeout=120):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4()}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    seen = bytearray(n)
    got = dup = bad = 0
    errs = []
    t0 = time.perf_counter()
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    deadline = time.time() + timeout
    while got < n and time.time() < deadline:
        for m in c.consume(num_messages=10_000, timeout=1.0):
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF and len(errs) < 5:
                    errs.append(str(m.error()))
                continue
            v = m.value()
            if v is None or len(v) != size:
                bad += 1
                continue
            seq, _ = STAMP.unpack_from(v)
            if 0 <= seq < n and not seen[seq]:
                seen[seq] = 1
                got += 1
            else:
                dup += 1
    dt = time.perf_counter() - t0
    c.close()
    return {"seconds": dt, "records_per_s": got / dt, "received": got, "duplicates": dup,
            "bad_size": bad, "errors": errs, "complete": got == n}


def latency_consumer(bootstrap, topic, total, ready, out, timeout):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"lat-{uuid.uuid4()}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "fetch.wait.max.ms": 100})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    c.consume(num_messages=1, timeout=1.0)  # first fetch in flight before producing starts
    ready.set()
    lat = {}
    deadline = time.time() + timeout
    while len(lat) < total and time.time() < deadline:
        m = c.poll(0.1)  # one at a time: a batch consume() waits to fill its batch
        now = time.time_ns()
        if m is None or m.error() or m.value() is None:
            continue
        seq, sent = STAMP.unpack_from(m.value())
        lat.setdefault(seq, now - sent)
    c.close()
    out.put(lat)


def latency(bootstrap, topic, size, rate, seconds, warmup):
    total = int(rate * seconds)
    ctx = mp.get_context("spawn")  # no fork of a process that has run librdkafka threads
    ready, out = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=latency_consumer,
                      args=(bootstrap, topic, total, ready, out, seconds + 60))
    proc.start()
    ready.wait(60)
    p = Producer({"bootstrap.servers": bootstrap, "acks": "1", "linger.ms": 0})
    pad = b"x" * (size - STAMP.size)
    errors = [0]

    def on_delivery(err, msg):
        if err is not None:
            errors[0] += 1

    t0 = time.perf_counter()
    for i in range(total):
        due = t0 + i / rate
        while True:
            wait = due - time.perf_counter()
            if wait <= 0:
                break
            p.poll(min(wait, 0.0005)) if wait > 0.0002 else None
        p.produce(topic, STAMP.pack(i, time.time_ns()) + pad, partition=0, on_delivery=on_delivery)
        p.poll(0)
    p.flush(60)
    achieved = total / (time.perf_counter() - t0)
    lat = out.get(timeout=seconds + 90)
    proc.join(10)
    skip = int(rate * warmup)
    xs = sorted(v for k, v in lat.items() if k >= skip)

    def pct(q):
        return xs[min(len(xs) - 1, int(q * len(xs)))] / 1e6 if xs else None

    return {"offered_per_s": rate, "achieved_send_per_s": achieved, "sent": total,
            "received": len(lat), "counted": len(xs), "send_errors": errors[0],
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": xs[-1] / 1e6 if xs else None}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--broker-pid", type=int)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--warmup", type=float, default=1)
    a = ap.parse_args()
    run = uuid.uuid4().hex[:8]
    res = {"bootstrap": a.bootstrap, "records": a.records, "size": a.size,
           "confluent_kafka": version()[0], "librdkafka": libversion()[0]}
    pid = a.broker_pid
    tp, tl = f"bench-{run}", f"lat-{run}"
    res["create_topic"] = create_topic(a.bootstrap, tp)
    if not wait_metadata(a.bootstrap, tp):
        res["failed"] = "topic not ready"
        print(json.dumps(res))
        return 1
    c0, k0 = cpu_seconds(pid), client_cpu()
    log(f"produce {a.records} x {a.size} B to {tp}")
    res["produce"] = produce(a.bootstrap, tp, a.records, a.size)
    c1, k1 = cpu_seconds(pid), client_cpu()
    log(f"produce: {res['produce']['records_per_s']:.0f} rec/s; consume")
    res["consume"] = consume(a.bootstrap, tp, a.records, a.size)
    c2, k2 = cpu_seconds(pid), client_cpu()
    res["client_cpu_s"] = {"produce": k1 - k0, "consume": k2 - k1}
    log(f"consume: {res['consume']['records_per_s']:.0f} rec/s complete={res['consume']['complete']}")
    res["create_topic_latency"] = create_topic(a.bootstrap, tl)
    if wait_metadata(a.bootstrap, tl):
        c3 = cpu_seconds(pid)
        res["latency"] = latency(a.bootstrap, tl, a.size, a.rate, a.seconds, a.warmup)
        c4 = cpu_seconds(pid)
        log(f"latency: {res['latency']}")
    else:
        c3 = c4 = None
    if pid is not None:
        per100k = lambda c, n: (c * 100_000 / n) if n else None
        res["cpu_s"] = {"produce": c1 - c0, "consume": c2 - c1,
                        "latency": (c4 - c3) if c3 is not None else None}
        res["cpu_s_per_100k"] = {
            "produce": per100k(c1 - c0, res["produce"]["acked"]),
            "consume": per100k(c2 - c1, res["consume"]["received"])}
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
