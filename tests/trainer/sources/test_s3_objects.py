"""Data by reference in a real S3-compatible server (SeaweedFS): listing a prefix or a glob,
reading CSV and Parquet objects, writing the output, and the refusals."""

from __future__ import annotations

import io

import pandas as pd
import pyarrow.parquet as pq
import pytest

from sluice_common.errors import ApiError
from trainer.sources import by_reference
from trainer.sources import files as datasource
from trainer.sources.files import DataSettings, Output


class Context:
    job_id = "s3"
    cancelled = False

    def progress(self, **values):
        pass

    def check(self):
        pass


@pytest.fixture(scope="module")
def bucket(s3):
    name = s3.create_bucket("sluice-data-test")
    client = s3.client()
    frame = pd.DataFrame({"a": [1.5, 2.5, 3.5], "b": ["x", "y", "x"], "target": [0, 1, 0]})
    client.put_object(Bucket=name, Key="in/p0.csv", Body=frame.to_csv(index=False).encode())
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    client.put_object(Bucket=name, Key="in/sub/p1.parquet", Body=buffer.getvalue())
    client.put_object(Bucket=name, Key="in/notes.json", Body=b"{}")
    client.put_object(Bucket=name, Key="in/_SUCCESS", Body=b"")
    return name


def settings_for(s3, bucket, **overrides) -> DataSettings:
    values = dict(
        buckets=(bucket,),
        s3_endpoint=s3.endpoint,
        s3_region="us-east-1",
        s3_key=s3.access_key,
        s3_secret=s3.secret_key,
    )
    values.update(overrides)
    return DataSettings(**values)


def test_a_prefix_and_a_glob_name_the_data_files(s3, bucket):
    settings = settings_for(s3, bucket)
    found = datasource.resolve_files(f"s3://{bucket}/in/", settings)
    assert [f.name for f in found] == [
        f"s3://{bucket}/in/p0.csv",
        f"s3://{bucket}/in/sub/p1.parquet",
    ]
    assert [f.format for f in found] == ["csv", "parquet"]
    globbed = datasource.resolve_files(f"s3://{bucket}/in/*.csv", settings)
    assert [f.name for f in globbed] == [f"s3://{bucket}/in/p0.csv"]
    table, report = by_reference.read_all(found, settings, Context())
    assert table.num_rows == 6 and report["files"] == 2
    assert report["formats"] == {"csv": 1, "parquet": 1}


def test_predictions_are_written_to_the_bucket_once(s3, bucket):
    settings = settings_for(s3, bucket)
    output = datasource.resolve_output(f"s3://{bucket}/out/p.parquet", settings)
    assert isinstance(output, Output) and output.s3
    writer = by_reference.OutputWriter(output, settings)
    import pyarrow as pa

    writer.write(pa.table({"file": ["f"], "row": [0], "prediction": [1.0]}))
    assert writer.close()["rows"] == 1
    body = s3.client().get_object(Bucket=bucket, Key="out/p.parquet")["Body"].read()
    assert pq.read_table(io.BytesIO(body)).to_pydict()["prediction"] == [1.0]
    with pytest.raises(ApiError) as err:
        datasource.resolve_output(f"s3://{bucket}/out/p.parquet", settings)
    assert err.value.status == 409


@pytest.mark.parametrize(
    ("uri", "overrides", "status", "code"),
    [
        ("s3://not-listed/in/", {}, 403, "bucket_not_allowed"),
        ("s3:///in/", {}, 400, "invalid_data_uri"),
        ("s3://{bucket}/in/../x/", {}, 400, "invalid_data_uri"),
        ("s3://{bucket}/nothing/", {}, 404, "no_data_files"),
        ("s3://{bucket}/in/", {"s3_secret": "wrong"}, 403, "s3_access_denied"),
    ],
)
def test_refusals(s3, bucket, uri, overrides, status, code):
    with pytest.raises(ApiError) as err:
        datasource.resolve_files(uri.format(bucket=bucket), settings_for(s3, bucket, **overrides))
    assert (err.value.status, err.value.code) == (status, code), err.value.message
