"""Prod rows' cells as stored: small batches written plain, large ones compressed, both read
back exactly."""

from __future__ import annotations

import pyarrow as pa

from trainer.monitoring.prod_rows import COMPRESS_FROM_BYTES, decode, encode


def _compressed(data: bytes) -> bool:
    reader = pa.ipc.MessageReader.open_stream(pa.BufferReader(data))
    reader.read_next_message()  # the schema
    batch = reader.read_next_message()
    # The record batch's body is smaller than its buffers when they are compressed.
    return batch.body.size < decode(data).nbytes


def test_a_single_row_is_written_plain_and_reads_back_exactly():
    table = pa.table({"x": ["1.5"], "city": [None], "when": ["2026-12-07"]})
    data = encode(table)
    assert decode(data).equals(table)
    assert not _compressed(data)


def test_a_large_batch_is_compressed_and_reads_back_exactly():
    rows = COMPRESS_FROM_BYTES // 4
    table = pa.table({"x": ["12.5"] * rows, "city": ["Lyon", None] * (rows // 2)})
    data = encode(table)
    assert decode(data).equals(table)
    assert _compressed(data)
    assert len(data) < table.nbytes // 2
