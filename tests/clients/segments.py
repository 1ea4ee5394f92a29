"""Reads the batch headers a partition holds on disk, to see what the broker stored.

The format is Kafka's RecordBatch v2 (the README's "On disk" section: one directory per partition,
`<topic>-<partition>`, segment files `*.log`). Only the fixed 61-byte header is read: enough to
tell that a client's compressed batch was stored as the client built it, not re-encoded.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

# baseOffset i64, batchLength i32, partitionLeaderEpoch i32, magic i8, crc u32, attributes i16,
# lastOffsetDelta i32, baseTimestamp i64, maxTimestamp i64, producerId i64, producerEpoch i16,
# baseSequence i32, recordsCount i32: 61 bytes, big-endian.
HEADER = struct.Struct(">qiibIhiqqqhii")
# batchLength counts from partitionLeaderEpoch (byte 12) to the end of the batch.
LENGTH_BASE = 12


@dataclass(frozen=True)
class StoredBatch:
    base_offset: int
    size: int
    codec: int
    records: int


def partition_dir(data_dir: Path, topic: str, partition: int) -> Path:
    found = [p for p in data_dir.rglob(f"{topic}-{partition}") if p.is_dir()]
    assert len(found) == 1, (
        f"expected one directory {topic}-{partition} under {data_dir}, found {found}"
    )
    return found[0]


def stored_batches(data_dir: Path, topic: str, partition: int) -> list[StoredBatch]:
    """Every batch in the partition's segments, in order. A segment may be preallocated (zero
    filled past its end), so a zero length or a magic other than 2 ends that segment."""
    batches = []
    for segment in sorted(partition_dir(data_dir, topic, partition).glob("*.log")):
        data = segment.read_bytes()
        pos = 0
        while pos + HEADER.size <= len(data):
            (
                base,
                length,
                _epoch,
                magic,
                _crc,
                attributes,
                _lod,
                _bts,
                _mts,
                _pid,
                _pe,
                _bs,
                count,
            ) = HEADER.unpack_from(data, pos)
            if length <= 0 or magic != 2:
                break
            size = LENGTH_BASE + length
            batches.append(StoredBatch(base, size, attributes & 0x7, count))
            pos += size
    return batches
