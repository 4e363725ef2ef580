"""Which files a data_uri names and how each is read (trainer/sources/files.py), on real files."""

from __future__ import annotations

import datetime as dt
import decimal
import glob
import os
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sluice_common.errors import ApiError
from trainer.sources import files as datasource
from trainer.sources.files import DataSettings


@pytest.fixture
def root(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a.csv").write_text("x,y\n1,2\n")
    (tmp_path / "d" / "sub" / "b.CSV").write_text("x,y\n3,4\n")
    (tmp_path / "d" / ".hidden.csv").write_text("x,y\n5,6\n")
    (tmp_path / "d" / "_SUCCESS").write_text("")
    (tmp_path / "d" / "notes.md").write_text("hello")
    return tmp_path


def names(uri, root):
    return [f.name for f in datasource.resolve_files(uri, DataSettings(root=str(root)))]


def test_a_directory_names_its_data_files_in_order(root):
    assert names("d/", root) == ["d/a.csv", "d/sub/b.CSV"]
    assert names(str(root / "d"), root) == ["d/a.csv", "d/sub/b.CSV"]  # absolute, inside
    assert names("d/**/*.CSV", root) == ["d/sub/b.CSV"]


def test_a_link_swapped_in_after_the_request_is_refused_at_read_time(root, tmp_path_factory):
    settings = DataSettings(root=str(root))
    (item,) = datasource.resolve_files("d/a.csv", settings)
    outside = tmp_path_factory.mktemp("outside")
    (outside / "a.csv").write_text("secret,s\n1,2\n")
    os.rename(root / "d", root / "d-old")
    os.symlink(outside, root / "d")
    with pytest.raises(ApiError) as err:
        datasource.read_cells(item, settings)
    assert err.value.code == "outside_data_root"


def test_an_output_folder_swapped_for_a_link_is_refused(root, tmp_path_factory):
    settings = DataSettings(root=str(root))
    (root / "out").mkdir()
    output = datasource.resolve_output("out/p.csv", settings)
    os.rename(root / "out", root / "out-old")
    os.symlink(tmp_path_factory.mktemp("elsewhere"), root / "out")
    with pytest.raises(ApiError) as err:
        datasource.write_output(output, settings)
    assert err.value.code == "outside_data_root"


def test_parquet_types_become_cells_the_rules_read(root):
    table = pa.table(
        {
            "level": pa.array(["a", "b", "a"]).dictionary_encode(),
            "amount": pa.array([decimal.Decimal("1.50"), None, decimal.Decimal("2.25")]),
            "day": pa.array([dt.date(2024, 1, 2)] * 3),
            "at": pa.array([dt.datetime(2024, 1, 2, 3, 4)] * 3, pa.timestamp("s", tz="UTC")),
            "flag": pa.array([True, False, None]),
        }
    )
    pq.write_table(table, root / "d" / "typed.parquet")
    settings = DataSettings(root=str(root))
    (item,) = datasource.resolve_files("d/typed.parquet", settings)
    cells, report = datasource.read_cells(item, settings)
    assert report == {"format": "parquet", "rows": 3}
    assert cells.column("level").to_pylist() == ["a", "b", "a"]
    assert cells.column("amount").to_pylist() == [1.5, None, 2.25]
    assert cells.schema.field("day").type == pa.timestamp("s")
    assert cells.schema.field("at").type.tz is None
    assert cells.column("flag").to_pylist() == ["true", "false", None]


def test_nested_parquet_columns_are_refused_naming_them(root):
    pq.write_table(pa.table({"tags": [[1, 2], [3]]}), root / "d" / "nested.parquet")
    settings = DataSettings(root=str(root))
    (item,) = datasource.resolve_files("d/nested.parquet", settings)
    with pytest.raises(ApiError) as err:
        datasource.read_cells(item, settings)
    assert err.value.status == 422 and "'tags'" in err.value.message


def test_a_column_typed_differently_across_files_is_read_as_text_in_all():
    numbers = pa.table({"v": pa.array([1, 2])})
    text = pa.table({"v": pa.array(["3", "x"])})
    floats = pa.table({"v": pa.array([0.5, 1e20])})
    unified = datasource.unify([numbers, text, floats])
    assert [t.schema.field("v").type for t in unified] == [pa.large_string()] * 3
    assert unified[2].column("v").to_pylist() == ["0.5", "1e+20"]  # shortest round-trip text
    assert datasource.unify([numbers, floats])[0].schema.field("v").type == pa.float64()


def test_limits(root):
    with pytest.raises(ApiError) as err:
        datasource.resolve_files("d/", DataSettings(root=str(root), max_files=1))
    assert err.value.code == "too_many_files"
    with pytest.raises(ApiError) as err:
        datasource.resolve_files("d/", DataSettings(root=str(root), max_file_bytes=3))
    assert err.value.status == 413
    with pytest.raises(ApiError) as err:
        datasource.resolve_files("d/", DataSettings())
    assert err.value.code == "data_root_not_configured"
    with pytest.raises(ApiError) as err:
        datasource.resolve_files("d/\0x", DataSettings(root=str(root)))
    assert err.value.code == "invalid_data_uri"


def test_hidden_folders_and_link_loops_are_not_read(root):
    (root / "d" / "_temporary" / "0").mkdir(parents=True)
    (root / "d" / "_temporary" / "0" / "part.csv").write_text("x,y\n9,9\n")
    (root / "d" / ".ipynb_checkpoints").mkdir()
    (root / "d" / ".ipynb_checkpoints" / "a-checkpoint.csv").write_text("x,y\n9,9\n")
    os.symlink(".", root / "d" / "loop")  # a folder that links to itself
    assert names("d/", root) == ["d/a.csv", "d/sub/b.CSV"]
    assert names("d/**/*.csv", root) == ["d/a.csv"]  # each real file once


def test_header_only_and_empty_files_count_as_no_rows(root):
    (root / "d" / "header.csv").write_text("x,y\n")
    (root / "d" / "empty.csv").write_text("")
    settings = DataSettings(root=str(root))
    for name in ("d/header.csv", "d/empty.csv"):
        (item,) = datasource.resolve_files(name, settings)
        cells, report = datasource.read_cells(item, settings)
        assert cells.num_rows == 0 and report["rows"] == 0
        assert datasource.align(cells, ["x", "y"], name).column_names == ["x", "y"]


def test_an_output_being_written_is_refused(root):
    (root / "out").mkdir()
    (root / "out" / "p.csv.partial").write_text("")
    with pytest.raises(ApiError) as err:
        datasource.resolve_output("out/p.csv", DataSettings(root=str(root)))
    assert err.value.code == "output_in_progress"


def test_parquet_numbers_keep_their_values_or_are_refused(root):
    big = 2**60 + 1
    pq.write_table(
        pa.table({"u": pa.array([big, 1], pa.uint64()), "h": pa.array([1.5, 2.0], pa.float16())}),
        root / "d" / "n.parquet",
    )
    pq.write_table(pa.table({"t": pa.array([1, 2], pa.duration("s"))}), root / "d" / "t.parquet")
    settings = DataSettings(root=str(root))
    (item,) = datasource.resolve_files("d/n.parquet", settings)
    cells, _ = datasource.read_cells(item, settings)
    assert cells.column("u").to_pylist() == [str(big), "1"]  # exact, not rounded to a float
    assert cells.column("h").to_pylist() == [1.5, 2.0]
    (item,) = datasource.resolve_files("d/t.parquet", settings)
    with pytest.raises(ApiError) as err:
        datasource.read_cells(item, settings)
    assert err.value.status == 422 and "'t'" in err.value.message


def test_a_registered_versions_rules_are_found_after_its_copy_is_gone(tmp_path):
    from trainer.lifecycle.registry import RULES_CODE_PATH
    from trainer.model.sluice_model import load_rules
    from trainer.pipeline import cluster_parts

    copy = tmp_path / "sluice_cells.py"
    copy.write_bytes(open(RULES_CODE_PATH, "rb").read())
    rules = load_rules(str(copy))
    copy.unlink()  # as MLflow's temporary download is removed after loading
    assert cluster_parts.rules_source(rules) == open(RULES_CODE_PATH, "rb").read()


# --- listings stay inside the root ---------------------------------------------------------


def test_a_glob_finds_what_glob_finds_inside_the_root(tmp_path):
    """Same matches as glob.glob(recursive=True): fnmatch per segment, `**` any depth, links
    to folders inside the root followed; hidden names and other suffixes left out as before."""
    for path in (
        "a/x.csv",
        "a/b/y.csv",
        "a/b/c/z.parquet",
        "ab/x.csv",
        "b/a/x.CSV",
        "x.csv",
        "a/_t/x.csv",
        "a/.d/x.csv",
        "a/b/n.txt",
        "e/w.csv",
    ):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x\n1\n")
    os.symlink(tmp_path / "e", tmp_path / "a" / "b" / "to-e")  # inside the root: followed
    patterns = [
        "**/*.csv",
        "*/*.csv",
        "**",
        "a/**/*.csv",
        "**/a/*",
        "a*/**/x.csv",
        "[ab]/*",
        "**/b/**/*.parquet",
        "a/**/**/*.csv",
        "**/*.CSV",
        "*.csv",
        "a/b/to-e/*",
    ]
    for pattern in patterns:
        expected = {  # each real file once: e/w.csv is also a/b/to-e/w.csv
            os.path.realpath(found)
            for found in glob.glob(str(tmp_path / pattern), recursive=True)
            if os.path.isfile(found)
            and found.lower().endswith((".csv", ".txt", ".parquet"))
            and not datasource._hidden(os.path.relpath(found, tmp_path))
        }
        assert expected, pattern  # every pattern matches something here
        found = [os.path.realpath(tmp_path / name) for name in names(pattern, tmp_path)]
        assert sorted(found) == sorted(expected), pattern


def test_links_out_of_the_root_and_link_loops_end_the_listing_at_once(root, tmp_path_factory):
    (root / "d" / "sub" / "c.csv").write_text("x,y\n7,8\n")
    os.symlink("/", root / "d" / "slash")  # the whole machine
    os.symlink(tmp_path_factory.mktemp("elsewhere"), root / "d" / "sub" / "away")
    os.symlink(root, root / "d" / "sub" / "up")  # an ancestor: a loop
    os.symlink("..", root / "d" / "sub" / "parent")
    for uri, expected in [
        ("**/*.csv", ["d/a.csv", "d/sub/c.csv"]),
        ("d/**/*.csv", ["d/a.csv", "d/sub/c.csv"]),
        ("d/", ["d/a.csv", "d/sub/b.CSV", "d/sub/c.csv"]),
        ("*/*/*.csv", ["d/sub/c.csv"]),
    ]:
        started = time.monotonic()
        assert names(uri, root) == expected, uri
        assert time.monotonic() - started < 2, uri


def test_a_folder_with_only_links_out_of_the_root_names_them(root):
    (root / "e").mkdir()
    os.symlink("/", root / "e" / "slash")
    for uri in ("e/", "e/**/*.csv"):
        with pytest.raises(ApiError) as err:
            names(uri, root)
        assert err.value.code == "no_data_files"
        assert "1 folder link(s) leading outside it were not followed" in err.value.message
    with pytest.raises(ApiError) as err:  # named through the link: refused before listing
        names("e/slash/etc/*.csv", root)
    assert err.value.code == "outside_data_root"


def test_a_link_to_a_file_outside_the_root_is_refused_not_read(root, tmp_path_factory):
    secret = tmp_path_factory.mktemp("outside") / "secret.csv"
    secret.write_text("password,p\nhunter2,1\n")
    os.symlink(secret, root / "d" / "sub" / "leak.csv")
    os.symlink(secret, root / "d" / "sub" / "notes.md")  # not a data file: never looked at
    for uri in ("d/", "d/**/*.csv", "d/sub/leak.csv"):
        with pytest.raises(ApiError) as err:
            names(uri, root)
        assert err.value.code == "outside_data_root", uri
        assert "d/sub/leak.csv" in err.value.message and "hunter2" not in err.value.message
    os.unlink(root / "d" / "sub" / "leak.csv")
    assert names("d/", root) == ["d/a.csv", "d/sub/b.CSV"]
