#!/usr/bin/env python3
"""Writes Kafka RecordBatch v2 test vectors with the batch builders of two independent Kafka
client libraries, kafka-python and aiokafka, into ../generated/ with a manifest.json.

    python3 tests/data/generate/generate.py            # (re)writes tests/data/generated/

Run with any Python 3.10+: the script creates its own virtualenv (.venv beside it), installs the
pinned requirements.txt there and re-runs itself inside it. The output is deterministic (gzip's
header timestamp is fixed at 0), so re-running it changes no committed byte unless a pinned
version or this script changed.

What it guarantees about its output, checked before anything is written:

- every batch carries the codec bits it was asked for. Both libraries silently store a batch
  uncompressed when compression does not make it smaller, so every compressed batch holds
  compressible values, and a batch that came back `none` stops the script;
- every file reads back, batch for batch and record for record, as the manifest says, through
  the readers of BOTH libraries (each validating the CRC), and the corrupt files fail both
  readers' CRC checks;
- ../kafka-partitioner.json agrees with kafka-python's murmur2 and default partitioner.

The fields a broker sets and a client builder does not (base offset, partition leader epoch,
the log-append-time bit with its max timestamp) are stamped afterwards the way a broker does:
by writing the header fields and, where the CRC covers them, recomputing the CRC-32C with the
library's own function.
"""

import os
import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv"
REQUIREMENTS = HERE / "requirements.txt"
OUT = HERE.parent / "generated"
PARTITIONER_VECTORS = HERE.parent / "kafka-partitioner.json"


def ensure_venv():
    """Re-executes this script inside its own virtualenv, creating and filling it if needed."""
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    python = VENV / "bin" / "python"
    if not python.exists():
        print(f"creating a virtualenv in {VENV}", file=sys.stderr)
        venv.create(VENV, with_pip=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-r", str(REQUIREMENTS)],
        check=True,
    )
    os.execv(str(python), [str(python), str(Path(__file__).resolve()), *sys.argv[1:]])


ensure_venv()

# Everything below runs inside the virtualenv.
import gzip  # noqa: E402
import json  # noqa: E402
import struct  # noqa: E402
import zlib  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from importlib import metadata  # noqa: E402
from unittest import mock  # noqa: E402

import aiokafka.record.default_records as aio_records  # noqa: E402
import aiokafka.record.memory_records as aio_memory  # noqa: E402
import aiokafka.record.util as aio_util  # noqa: E402
import kafka.record.default_records as kp_records  # noqa: E402
import kafka.record.memory_records as kp_memory  # noqa: E402
import kafka.record.util as kp_util  # noqa: E402
from kafka.partitioner.default import murmur2  # noqa: E402

# RecordBatch v2 header layout (byte offsets), as in Kafka's DefaultRecordBatch.
BASE_OFFSET = 0
LENGTH = 8
LEADER_EPOCH = 12
CRC = 17
ATTRIBUTES = 21
MAX_TIMESTAMP = 35
HEADER_LEN = 61
HEADER = struct.Struct(">qiibIhiqqqhii")
HEADER_FIELDS = (
    "base_offset", "batch_length", "partition_leader_epoch", "magic", "crc", "attributes",
    "last_offset_delta", "first_timestamp", "max_timestamp", "producer_id", "producer_epoch",
    "base_sequence", "record_count",
)

CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
CODEC_NAMES = {v: k for k, v in CODECS.items()}
CODEC_MASK = 0x07
LOG_APPEND_TIME_BIT = 0x08
TRANSACTIONAL_BIT = 0x10
CONTROL_BIT = 0x20

# No wall clock anywhere: every timestamp is fixed, so the output is reproducible.
T0 = 1_700_000_000_000


@dataclass(frozen=True)
class Library:
    """One client library: its batch builder, its reader and its CRC-32C."""

    name: str
    slug: str
    builder: type
    builder_path: str
    read_batches: object
    crc32c: object

    def version(self):
        return metadata.version(self.name)


LIBRARIES = [
    Library(
        name="kafka-python",
        slug="kafka_python",
        builder=kp_records.DefaultRecordBatchBuilder,
        builder_path="kafka.record.default_records.DefaultRecordBatchBuilder",
        read_batches=kp_memory.MemoryRecords,
        crc32c=kp_util.calc_crc32c,
    ),
    Library(
        name="aiokafka",
        slug="aiokafka",
        # The implementation aiokafka's producer itself uses (its compiled one when installed).
        builder=aio_records.DefaultRecordBatchBuilder,
        builder_path="aiokafka.record.default_records.DefaultRecordBatchBuilder",
        read_batches=aio_memory.MemoryRecords,
        crc32c=aio_util.calc_crc32c,
    ),
]


@dataclass
class Rec:
    """A record as handed to a builder: offset delta, create time, key, value, headers."""

    delta: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list = field(default_factory=list)


@dataclass
class BatchSpec:
    """What one batch should hold, and the broker-side fields to stamp after building."""

    codec: str
    records: list
    base_offset: int = 0
    leader_epoch: int | None = None  # None keeps what the builder wrote
    producer: tuple = (-1, -1, -1)  # (id, epoch, base sequence)
    transactional: bool = False
    log_append_time: int | None = None


@dataclass
class FileSpec:
    name: str
    library: Library
    description: str
    batches: list
    # Set on corrupt files: the byte (from the file's start) flipped after the CRC was written.
    corrupt_at: int | None = None
    # Set on files whose payload was re-compressed after the builder ran.
    rebuild_gzip_members: int | None = None


# ---------------------------------------------------------------------------------------------
# Payloads. Values repeat words so that every codec shrinks them (see the module docstring).


def order_value(i, words=3):
    note = " ".join(["lorem ipsum dolor sit amet"] * (words + i % 4))
    return (
        f'{{"order":{i},"customer":"customer-{i % 17}","items":["widget","gadget","widget"],'
        f'"note":"{note}"}}'
    ).encode()


def mixed_records(count, t0=T0):
    """Keys null every fifth record, values null every eleventh, timestamps not monotonic."""
    records = []
    for i in range(count):
        key = None if i % 5 == 4 else f"customer-{i % 17}".encode()
        value = None if i % 11 == 10 else order_value(i)
        headers = [("trace-id", f"{i:016x}".encode())]
        if i % 3 == 0:
            headers.append(("source", b"generator"))
        # Deltas go backwards sometimes: Kafka allows a record older than the first one.
        timestamp = t0 + (i * 37) % 50 - 10
        records.append(Rec(i, timestamp, key, value, headers))
    return records


def null_records():
    """Every combination of null and empty keys, values and header values, then padding that
    makes the batch compressible."""
    odd = [
        Rec(0, T0, None, None, []),
        Rec(1, T0 + 1, b"", b"", []),
        Rec(2, T0 + 2, None, b"value with null key", [("h", None)]),
        Rec(3, T0 + 3, b"key with null value", None, [("", b""), ("null-header", None)]),
        Rec(4, T0 + 4, b"\x00\xff", b"\xff\x00", [("\u00fcn\u00efc\u00f6d\u00e9", b"\x00\x01\xfe\xff")]),
        Rec(5, T0 + 5, None, None, [("a", None), ("a", None), ("b", b"")]),
    ]
    padding = [
        Rec(6 + i, T0 + 6 + i, None, order_value(i), [("pad", None)]) for i in range(30)
    ]
    return odd + padding


# ---------------------------------------------------------------------------------------------
# Building and stamping.


def build_batch(lib, spec):
    """One batch from `lib`'s builder, its codec bits checked, broker fields stamped."""
    producer_id, producer_epoch, base_sequence = spec.producer
    builder = lib.builder(
        2, CODECS[spec.codec], int(spec.transactional), producer_id, producer_epoch,
        base_sequence, 1 << 30,
    )
    for rec in spec.records:
        if builder.append(rec.delta, rec.timestamp, rec.key, rec.value, rec.headers) is None:
            raise SystemExit(f"{lib.name}: builder refused a record at delta {rec.delta}")
    buf = bytearray(builder.build())
    got = header_of(buf)["attributes"] & CODEC_MASK
    if got != CODECS[spec.codec]:
        raise SystemExit(
            f"{lib.name} stored a {spec.codec} batch as {CODEC_NAMES.get(got, got)}: "
            "its payload did not shrink; use more compressible values"
        )
    stamp_as_broker(buf, spec, lib.crc32c)
    return buf


def stamp_as_broker(buf, spec, crc32c):
    """Writes the fields a broker assigns; the CRC is recomputed when a covered field changes."""
    struct.pack_into(">q", buf, BASE_OFFSET, spec.base_offset)
    if spec.leader_epoch is not None:
        struct.pack_into(">i", buf, LEADER_EPOCH, spec.leader_epoch)
    if spec.log_append_time is not None:
        attributes = header_of(buf)["attributes"] | LOG_APPEND_TIME_BIT
        struct.pack_into(">h", buf, ATTRIBUTES, attributes)
        struct.pack_into(">q", buf, MAX_TIMESTAMP, spec.log_append_time)
        rewrite_crc(buf, crc32c)


def rewrite_crc(buf, crc32c):
    struct.pack_into(">I", buf, CRC, crc32c(memoryview(buf)[ATTRIBUTES:]))


def header_of(buf, position=0):
    return dict(zip(HEADER_FIELDS, HEADER.unpack_from(buf, position)))


def regzip_in_members(buf, members, crc32c):
    """Re-compresses an uncompressed batch's records as `members` gzip members back to back
    (what Java's GZIPOutputStream users and some proxies emit), marks it gzip and re-CRCs it."""
    if header_of(buf)["attributes"] & CODEC_MASK != CODECS["none"]:
        raise SystemExit("regzip_in_members needs an uncompressed batch")
    payload = bytes(buf[HEADER_LEN:])
    cut = [len(payload) * k // members for k in range(members + 1)]
    packed = b"".join(
        gzip.compress(payload[cut[k]:cut[k + 1]], mtime=0) for k in range(members)
    )
    if len(packed) >= len(payload):
        raise SystemExit("two-member gzip payload did not shrink; use more compressible values")
    # A reader that stops after the first member sees only part of the records.
    first = zlib.decompressobj(wbits=31)
    if len(first.decompress(packed)) == len(payload) or not first.unused_data:
        raise SystemExit("the gzip payload does not hold several members")
    out = bytearray(buf[:HEADER_LEN]) + packed
    struct.pack_into(">i", out, LENGTH, len(out) - 12)
    attributes = header_of(out)["attributes"] | CODECS["gzip"]
    struct.pack_into(">h", out, ATTRIBUTES, attributes)
    rewrite_crc(out, crc32c)
    return out


# ---------------------------------------------------------------------------------------------
# The vectors.


def file_specs():
    specs = []
    alt = {"kafka_python": 0, "aiokafka": 1}
    for lib in LIBRARIES:
        pick = alt[lib.slug]
        s = lib.slug
        for codec in CODECS:
            specs.append(FileSpec(
                f"{s}_{codec}", lib,
                f"one {codec} batch of 50 records: keys null every 5th, values every 11th, "
                "one or two headers each, create times out of order",
                [BatchSpec(codec, mixed_records(50))],
            ))
        specs.append(FileSpec(
            f"{s}_nulls", lib,
            "null and empty keys, values and header values, repeated and non-ASCII header names",
            [BatchSpec(["gzip", "snappy"][pick], null_records())],
        ))
        specs.append(FileSpec(
            f"{s}_log_append_time", lib,
            "timestamp type LogAppendTime (attribute bit 3), stamped as a broker does: every "
            "record's timestamp is the batch's max timestamp",
            [BatchSpec(["snappy", "zstd"][pick], mixed_records(20), base_offset=500,
                       log_append_time=T0 + 123_456)],
        ))
        specs.append(FileSpec(
            f"{s}_idempotent", lib,
            "an idempotent producer's batch: producer id, epoch and base sequence set",
            [BatchSpec(["gzip", "lz4"][pick], mixed_records(25), base_offset=42,
                       producer=(4_000_000_123, 7, 1_000))],
        ))
        specs.append(FileSpec(
            f"{s}_transactional", lib,
            "a transactional producer's batch: the transactional bit (attribute bit 4) and "
            "producer fields",
            [BatchSpec(["zstd", "gzip"][pick], mixed_records(25), base_offset=7,
                       producer=(77, 2, 0), transactional=True)],
        ))
        specs.append(FileSpec(
            f"{s}_1000_records", lib,
            "1,000 records in one batch; its records section spans several codec blocks "
            "(32 KiB xerial blocks for snappy, 64 KiB frame blocks for lz4)",
            [BatchSpec(["snappy", "lz4"][pick], mixed_records(1000), base_offset=10_000)],
        ))
        specs.append(FileSpec(
            f"{s}_offset_gaps", lib,
            "offset deltas with gaps (0, 1, 4, 9, 10), as log compaction leaves them",
            [BatchSpec(["lz4", "snappy"][pick],
                       [Rec(d, T0 + d, f"k{d}".encode(), order_value(d), []) for d in (0, 1, 4, 9, 10)]
                       + [Rec(11 + i, T0 + 11 + i, b"pad", order_value(i), []) for i in range(10)],
                       base_offset=300)],
        ))
        specs.append(FileSpec(
            f"{s}_concatenated", lib,
            "five batches back to back as in a segment, one per codec, contiguous offsets from "
            "1,000, partition leader epoch 3; the idempotent ones continue one sequence",
            concatenated_batches(),
        ))
        specs.append(FileSpec(
            f"{s}_corrupt_crc", lib,
            "the gzip batch of this library with one payload byte flipped after the CRC was "
            "written: a reader must report a CRC error and no records",
            [BatchSpec("gzip", mixed_records(50))],
            corrupt_at=HEADER_LEN + 40,
        ))
    specs.append(FileSpec(
        "kafka_python_gzip_two_members", LIBRARIES[0],
        "a gzip batch whose records section is two gzip members back to back: kafka-python "
        "built it uncompressed, Python's gzip compressed each half, the CRC was recomputed. "
        "Java's GZIPInputStream and both libraries read every member",
        [BatchSpec("none", mixed_records(60), base_offset=900)],
        rebuild_gzip_members=2,
    ))
    return specs


def concatenated_batches():
    batches = []
    offset = 1_000
    sequence = 0
    for k, codec in enumerate(CODECS):
        records = mixed_records(10, t0=T0 + 1_000 * k)
        producer = (555, 1, sequence) if k % 2 else (-1, -1, -1)
        batches.append(BatchSpec(codec, records, base_offset=offset, leader_epoch=3,
                                 producer=producer))
        offset += len(records)
        sequence += len(records)
    return batches


# ---------------------------------------------------------------------------------------------
# The manifest: what a correct reader finds, derived from the specs (what was asked for), not
# from reading the output back; the read-back check then compares the two.


def hex_or_null(b):
    return None if b is None else b.hex()


def expected_records(spec):
    out = []
    for rec in spec.records:
        timestamp = spec.log_append_time if spec.log_append_time is not None else rec.timestamp
        out.append({
            "offset": spec.base_offset + rec.delta,
            "timestamp": timestamp,
            "key": hex_or_null(rec.key),
            "value": hex_or_null(rec.value),
            "headers": [[name, hex_or_null(value)] for name, value in rec.headers],
        })
    return out


def batch_entry(buf, position, spec, codec):
    header = header_of(buf)
    size = 12 + header["batch_length"]
    attributes = header["attributes"]
    records = spec.records
    max_ts = max(r.timestamp for r in records)
    entry = {
        "position": position,
        "size": size,
        "base_offset": spec.base_offset,
        "partition_leader_epoch": header["partition_leader_epoch"],
        "magic": 2,
        "crc": header["crc"],
        "attributes": attributes,
        "codec": codec,
        "timestamp_type": "log_append_time" if spec.log_append_time is not None else "create_time",
        "transactional": spec.transactional,
        "control": False,
        "last_offset_delta": records[-1].delta,
        "first_timestamp": records[0].timestamp,
        "max_timestamp": spec.log_append_time if spec.log_append_time is not None else max_ts,
        "producer_id": spec.producer[0],
        "producer_epoch": spec.producer[1],
        "base_sequence": spec.producer[2],
        "record_count": len(records),
        "records": expected_records(spec),
    }
    # The header as written must say what the spec asked for.
    for name in ("base_offset", "last_offset_delta", "first_timestamp", "max_timestamp",
                 "producer_id", "producer_epoch", "base_sequence", "record_count"):
        if header[name] != entry[name]:
            raise SystemExit(f"header field {name}: wrote {header[name]}, expected {entry[name]}")
    if CODEC_NAMES[attributes & CODEC_MASK] != codec:
        raise SystemExit(f"codec bits say {attributes & CODEC_MASK}, expected {codec}")
    if bool(attributes & TRANSACTIONAL_BIT) != spec.transactional:
        raise SystemExit("transactional bit differs from the spec")
    if bool(attributes & LOG_APPEND_TIME_BIT) != (spec.log_append_time is not None):
        raise SystemExit("timestamp type bit differs from the spec")
    return entry


def make_file(fspec):
    lib = fspec.library
    data = bytearray()
    entries = []
    for spec in fspec.batches:
        buf = build_batch(lib, spec)
        codec = spec.codec
        if fspec.rebuild_gzip_members:
            buf = regzip_in_members(buf, fspec.rebuild_gzip_members, lib.crc32c)
            codec = "gzip"
        entries.append(batch_entry(buf, len(data), spec, codec))
        data += buf
    entry = {
        "library": lib.name,
        "builder": lib.builder_path,
        "description": fspec.description,
        "expect": "valid",
        "batches": entries,
    }
    if fspec.corrupt_at is not None:
        data[fspec.corrupt_at] ^= 0x01
        entry["expect"] = "crc_error"
        entry["flipped_byte"] = fspec.corrupt_at
    return bytes(data), entry


# ---------------------------------------------------------------------------------------------
# Reading back through both libraries.


def read_back(lib, name, data, entry):
    """Reads `data` with `lib`'s reader and compares it with the manifest entry."""
    records = lib.read_batches(data)
    batches = []
    while records.has_next():
        batches.append(records.next_batch())
    if entry["expect"] == "crc_error":
        if len(batches) != 1 or batches[0].validate_crc():
            raise SystemExit(f"{name}: {lib.name} did not see the CRC error")
        return
    if len(batches) != len(entry["batches"]):
        raise SystemExit(f"{name}: {lib.name} read {len(batches)} batches")
    for batch, want in zip(batches, entry["batches"]):
        where = f"{name} batch at {want['position']} read by {lib.name}"
        if not batch.validate_crc():
            raise SystemExit(f"{where}: CRC does not validate")
        got = {
            "base_offset": batch.base_offset,
            "producer_id": batch.producer_id,
            "producer_epoch": batch.producer_epoch,
            "base_sequence": batch.base_sequence,
            "transactional": bool(batch.is_transactional),
            "control": bool(batch.is_control_batch),
            "codec": CODEC_NAMES[batch.compression_type],
            "timestamp_type": ["create_time", "log_append_time"][batch.timestamp_type],
            "max_timestamp": batch.max_timestamp,
            "first_timestamp": batch.first_timestamp,
            "last_offset_delta": batch.last_offset_delta,
        }
        for key, value in got.items():
            if want[key] != value:
                raise SystemExit(f"{where}: {key} is {value!r}, manifest says {want[key]!r}")
        read = [
            {
                "offset": r.offset,
                "timestamp": r.timestamp,
                "key": hex_or_null(r.key),
                "value": hex_or_null(r.value),
                "headers": [[k, hex_or_null(v)] for k, v in r.headers],
            }
            for r in batch
        ]
        if read != want["records"]:
            raise SystemExit(f"{where}: records differ from the manifest")


def check_partitioner_vectors():
    """The committed partitioner keys against kafka-python's murmur2 and default partitioner."""
    vectors = json.loads(PARTITIONER_VECTORS.read_text())
    for v in vectors:
        h = murmur2(bytes.fromhex(v["key"]))
        signed = h - (1 << 32) if h >= 1 << 31 else h
        if signed != v["murmur2"]:
            raise SystemExit(f"partitioner key {v['key']}: murmur2 {signed} != {v['murmur2']}")
        for count, partition in v["partitions"].items():
            if (h & 0x7FFFFFFF) % int(count) != partition:
                raise SystemExit(f"partitioner key {v['key']}: partition for {count} differs")
    return len(vectors)


# ---------------------------------------------------------------------------------------------


def write_manifest(path, manifest):
    """JSON with one record per line: readable, and small diffs when a vector changes."""
    lines = ["{"]
    lines.append(f' "generator": {json.dumps(manifest["generator"])},')
    lines.append(f' "versions": {json.dumps(manifest["versions"], sort_keys=True)},')
    lines.append(' "files": {')
    names = sorted(manifest["files"])
    for n, name in enumerate(names):
        entry = manifest["files"][name]
        lines.append(f"  {json.dumps(name)}: {{")
        head = {k: v for k, v in entry.items() if k != "batches"}
        for key, value in head.items():
            lines.append(f"   {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)},")
        lines.append('   "batches": [')
        for b, batch in enumerate(entry["batches"]):
            fields = {k: v for k, v in batch.items() if k != "records"}
            lines.append(f"    {{{json.dumps(fields)[1:-1]}, \"records\": [")
            recs = batch["records"]
            for r, rec in enumerate(recs):
                comma = "," if r + 1 < len(recs) else ""
                lines.append(f"     {json.dumps(rec, ensure_ascii=False)}{comma}")
            lines.append("    ]}" + ("," if b + 1 < len(entry["batches"]) else ""))
        lines.append("   ]")
        lines.append("  }" + ("," if n + 1 < len(names) else ""))
    lines.append(" }")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    if json.loads(text) != manifest:
        raise SystemExit("manifest writer lost information")
    path.write_text(text)


def main():
    pinned = {}
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            package, version = line.split("==")
            pinned[package] = version
    for package, version in pinned.items():
        if metadata.version(package) != version:
            raise SystemExit(f"{package} {metadata.version(package)} installed, {version} pinned")

    files = {}
    manifest = {
        "generator": "tests/data/generate/generate.py",
        "versions": dict(pinned, python=sys.version.split()[0]),
        "files": {},
    }
    # gzip writes the current time into its header; a fixed 0 keeps the output reproducible.
    with mock.patch.object(gzip, "time", mock.Mock(time=lambda: 0)):
        for fspec in file_specs():
            data, entry = make_file(fspec)
            files[fspec.name] = data
            manifest["files"][fspec.name] = entry

    for name, data in files.items():
        for lib in LIBRARIES:
            read_back(lib, name, data, manifest["files"][name])
    partitioner = check_partitioner_vectors()

    OUT.mkdir(exist_ok=True)
    for old in OUT.glob("*.bin"):
        old.unlink()
    for name, data in files.items():
        (OUT / f"{name}.bin").write_bytes(data)
    write_manifest(OUT / "manifest.json", manifest)
    batches = sum(len(e["batches"]) for e in manifest["files"].values())
    print(f"wrote {len(files)} files ({batches} batches) and manifest.json to {OUT}; each read "
          f"back through both libraries; {partitioner} partitioner vectors agree with murmur2")


if __name__ == "__main__":
    main()
