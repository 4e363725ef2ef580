"""Data by reference: which files a `data_uri` names, and each file read as a table of cells.

A `data_uri` is `s3://bucket/prefix/` (or a glob of keys) in a bucket listed in
SLUICE_DATA_BUCKETS, or a path or glob under SLUICE_DATA_ROOT (relative to it, or absolute
inside it). Every file is resolved, symlinks included, and refused when it lies outside the
root: a request never reads or writes anything else on the trainer or the workers. Listings
stay inside too: a link to a folder outside the root is never entered (nor listed), and a
folder reached again through a link is listed once.

Files are read into the same cells an upload becomes: a CSV by the upload's own parser (its
encoding, delimiter and header rules), a Parquet file with its typed columns, which the model's
cell rules read as they read typed values. Both run on the trainer or on a Dask worker.
"""

from __future__ import annotations

import fnmatch
import io
import logging
import os
import time
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sluice_common import error_codes, settings
from sluice_common.errors import ApiError
from sluice_common.tables.encoding import decode_text
from sluice_common.tables.parsing import parse_csv, read_header, sniff_delimiter

log = logging.getLogger(__name__)
CSV_SUFFIXES = (".csv", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
OUTPUT_SUFFIXES = (".csv", ".parquet")
GLOB_CHARS = "*?["


@dataclass(frozen=True)
class DataSettings:
    """Where data may be read and written (picklable: it travels to the workers)."""

    root: str | None = None
    buckets: tuple[str, ...] = ()
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_key: str | None = field(default=None, repr=False)
    s3_secret: str | None = field(default=None, repr=False)
    max_files: int = 10_000
    max_file_bytes: int = 2 * 2**30

    @classmethod
    def from_config(cls, config) -> DataSettings:
        buckets = tuple(b.strip() for b in (config.get("SLUICE_DATA_BUCKETS") or "").split(","))
        return cls(
            root=config.get("SLUICE_DATA_ROOT") or None,
            buckets=tuple(b for b in buckets if b),
            s3_endpoint=config.get("SLUICE_DATA_S3_ENDPOINT") or None,
            # boto3's own variables, passed through (the Dask workers get them too)
            s3_region=settings.value("AWS_DEFAULT_REGION"),
            s3_key=settings.value("AWS_ACCESS_KEY_ID"),
            s3_secret=settings.value("AWS_SECRET_ACCESS_KEY"),
            max_files=int(config.get("DATA_MAX_FILES", 10_000)),
            max_file_bytes=int(float(config.get("DATA_MAX_FILE_MB", 2048)) * 2**20),
        )


@dataclass(frozen=True)
class DataFile:
    """One input file: its name as the user sees it, where it is, its size and format."""

    name: str  # relative to the data root, or s3://bucket/key
    location: str  # an absolute local path, or bucket/key
    size: int
    format: str  # csv or parquet
    s3: bool = False


@dataclass(frozen=True)
class Output:
    """Where a prod job writes its predictions."""

    name: str
    location: str
    format: str
    s3: bool = False
    token: str = field(default_factory=lambda: os.urandom(8).hex())


def s3_filesystem(settings: DataSettings):
    """pyarrow's S3 client for the configured endpoint and account."""
    from pyarrow import fs

    options = {"region": settings.s3_region or "us-east-1"}
    if settings.s3_endpoint:
        scheme, _, host = settings.s3_endpoint.partition("://")
        options.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
    if settings.s3_key:
        options.update(access_key=settings.s3_key, secret_key=settings.s3_secret or "")
    options.update(connect_timeout=10, request_timeout=60)
    return fs.S3FileSystem(**options)


def _format_of(name: str, suffixes=CSV_SUFFIXES + PARQUET_SUFFIXES) -> str | None:
    lower = name.lower()
    if not lower.endswith(suffixes):
        return None
    return "parquet" if lower.endswith(PARQUET_SUFFIXES) else "csv"


def _too_many(count: int, limit: int) -> ApiError:
    return ApiError(
        error_codes.TOO_MANY_FILES,
        f"The data_uri matches {count} or more files; at most {limit} are read per request. "
        "Merge small files or point at fewer.",
    )


def _local_root(settings: DataSettings) -> str:
    if not settings.root:
        raise ApiError(
            error_codes.DATA_ROOT_NOT_CONFIGURED,
            "This trainer reads no local paths: the operator sets SLUICE_DATA_ROOT to a "
            "directory shared with the workers (or use an s3:// URI).",
        )
    return os.path.realpath(settings.root)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _outside(uri: str) -> ApiError:
    return ApiError(
        error_codes.OUTSIDE_DATA_ROOT,
        f"{uri[:200]!r} resolves outside the data root; give a path inside SLUICE_DATA_ROOT "
        "(relative to it, or absolute within it).",
    )


def _local_path(uri: str, root: str) -> str:
    """The URI as an absolute path, refused when it (before any glob) leaves the root."""
    if "\0" in uri:
        raise ApiError(error_codes.INVALID_DATA_URI, "data_uri holds a NUL character.")
    path = uri[len("file://") :] if uri.lower().startswith("file://") else uri
    path = os.path.normpath(os.path.join(root, path))
    fixed = path
    for index, char in enumerate(path):
        if char in GLOB_CHARS:
            fixed = os.path.dirname(path[:index] + "x")
            break
    if not _inside(os.path.realpath(fixed), root):
        raise _outside(uri)
    return path


def _check_uri(uri: str) -> str:
    uri = (uri or "").strip()
    if not uri or len(uri) > 2048:
        raise ApiError(error_codes.INVALID_DATA_URI, "data_uri must be 1-2048 characters.")
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme not in ("", "s3", "file"):
        raise ApiError(
            error_codes.UNSUPPORTED_DATA_URI,
            f"data_uri scheme {scheme[:20]!r} is not supported; use s3://bucket/prefix/ or a "
            "path under the data root.",
        )
    return uri


def resolve_files(uri: str, settings: DataSettings) -> list[DataFile]:
    """The CSV and Parquet files a data_uri names, sorted by name; 4xx when it names none or
    anything outside what this trainer may read."""
    uri = _check_uri(uri)
    files = (
        _s3_files(uri, settings) if uri.lower().startswith("s3://") else _local_files(uri, settings)
    )
    if not files:
        raise ApiError(
            error_codes.NO_DATA_FILES,
            f"No .csv or .parquet file matches {uri[:200]!r}.",
        )
    for item in files:
        if item.size > settings.max_file_bytes:
            raise ApiError(
                error_codes.DATA_FILE_TOO_LARGE,
                f"{item.name[:200]!r} is {item.size / 2**20:.0f} MB; files of at most "
                f"{settings.max_file_bytes / 2**20:.0f} MB are read (one file is one partition): "
                "split it into several files.",
            )
    return files


def _local_files(uri: str, settings: DataSettings) -> list[DataFile]:
    root = _local_root(settings)
    path = _local_path(uri, root)
    listing = _Listing(root)
    if any(char in path for char in GLOB_CHARS):
        matches = _bounded(_glob(path, listing), settings, root)
        explicit = False
    elif os.path.isdir(path):
        matches = _bounded(_walk(path, listing), settings, root)
        explicit = False
    elif os.path.exists(path):
        matches, explicit = [path], True
    else:
        raise ApiError(
            error_codes.NO_DATA_FILES, f"{uri[:200]!r} does not exist under the data root."
        )
    files = []
    for match in sorted(matches):
        real = os.path.realpath(match)
        if not _inside(real, root):
            raise _outside(uri) if explicit else _link_outside(os.path.relpath(match, root))
        fmt = _format_of(match)
        if fmt is None:
            if explicit:
                raise ApiError(
                    error_codes.UNSUPPORTED_FORMAT,
                    f"{uri[:200]!r} is neither .csv nor .parquet.",
                )
            continue
        if not os.path.isfile(real):
            continue
        if len(files) >= settings.max_files:
            raise _too_many(len(files) + 1, settings.max_files)
        files.append(DataFile(os.path.relpath(match, root), real, os.path.getsize(real), fmt))
    if listing.links_out:
        log.warning(
            "data_uri %r: %d folder link(s) leading outside the data root not followed",
            uri[:200],
            listing.links_out,
        )
        if not files:
            raise ApiError(
                error_codes.NO_DATA_FILES,
                f"No .csv or .parquet file matches {uri[:200]!r} inside the data root; "
                f"{listing.links_out} folder link(s) leading outside it were not followed.",
            )
    return files


def _link_outside(name: str) -> ApiError:
    return ApiError(
        error_codes.OUTSIDE_DATA_ROOT,
        f"{name[:200]!r}, which the data_uri names, links to a file outside the data root and "
        "is not read: remove the link, move the file inside SLUICE_DATA_ROOT, or narrow the "
        "data_uri.",
    )


LISTING_SECONDS = 10.0


def _hidden(relative: str) -> bool:
    """Files and folders whose names start with . or _ (checkpoints, _temporary, _SUCCESS)."""
    return any(part.startswith((".", "_")) for part in relative.split("/") if part)


@dataclass
class _Listing:
    """One listing's bounds: the root it stays in, its deadline, the links it did not follow."""

    root: str
    deadline: float = field(default_factory=lambda: time.monotonic() + LISTING_SECONDS)
    links_out: int = 0  # folder links that resolve outside the root

    def entries(self, folder: str, real: str, follow: bool):
        """(name, path, real path, is a folder to enter) of a folder's visible entries, in
        name order. A folder link is entered only when `follow` and it resolves inside the
        root; a file link is returned as found (the caller refuses one that leads out)."""
        try:
            with os.scandir(folder) as found:
                entries = sorted(found, key=lambda e: e.name)
        except OSError:  # gone, unreadable, or not a folder
            return
        for entry in entries:
            if time.monotonic() > self.deadline:
                raise _too_broad()
            if entry.name.startswith((".", "_")):
                continue
            try:
                if not entry.is_symlink():
                    target = os.path.join(real, entry.name)
                    yield entry.name, entry.path, target, entry.is_dir(follow_symlinks=False)
                    continue
                target = os.path.realpath(entry.path)
                if not entry.is_dir():  # a file link, a dangling one or a loop of links
                    yield entry.name, entry.path, target, False
                elif not _inside(target, self.root):
                    self.links_out += 1
                elif follow:
                    yield entry.name, entry.path, target, True
            except OSError:
                continue


def _too_broad() -> ApiError:
    return ApiError(
        error_codes.DATA_URI_TOO_BROAD,
        f"Listing the data_uri took over {LISTING_SECONDS:.0f} s (a very large tree); point at "
        "a narrower folder or pattern.",
    )


def _walk(path: str, listing: _Listing):
    """Every visible file under a folder; folder links are not entered."""
    return _matches(path, os.path.realpath(path), ["**"], listing, follow=False)


def _glob(path: str, listing: _Listing):
    """The paths a glob matches, as glob.glob(recursive=True) finds them: fnmatch per
    segment, `**` any number of folders; but links to folders outside the root are not
    entered, and each real folder is listed once per segment (no loops)."""
    parts = path.split(os.sep)
    cut = next(i for i, part in enumerate(parts) if any(c in part for c in GLOB_CHARS))
    base = os.sep.join(parts[:cut]) or os.sep
    return _matches(base, os.path.realpath(base), parts[cut:], listing, follow=True)


def _positions(pattern: list[str], at: int) -> list[int]:
    """The parts that apply in a folder reached at part `at`: a `**` may also match no
    folder, so the parts after it apply there too."""
    found = [at]
    while pattern[at] == "**" and at + 1 < len(pattern):
        at += 1
        found.append(at)
    return found


def _matches(base: str, real: str, pattern: list[str], listing: _Listing, follow: bool):
    # Depth-first with a stack of its own (deep trees would exhaust Python's recursion); each
    # folder is listed once for all the parts that apply in it.
    todo, seen = [(base, real, (0,))], set()
    while todo:
        folder, real, starts = todo.pop()
        active = {p for start in starts for p in _positions(pattern, start)}
        active = sorted(p for p in active if (real, p) not in seen)
        if not active:
            continue
        seen.update((real, p) for p in active)
        deeper: dict[str, tuple[str, set]] = {}
        for name, path, target, is_folder in listing.entries(folder, real, follow):
            matched = False
            for at in active:
                part, last = pattern[at], at == len(pattern) - 1
                if part != "**" and not fnmatch.fnmatchcase(name, part):
                    continue
                if is_folder and (part == "**" or not last):
                    deeper.setdefault(path, (target, set()))[1].add(at if part == "**" else at + 1)
                elif last and not is_folder and not matched:
                    matched = True
                    yield path
        # Folders in name order.
        todo.extend((path, target, tuple(ats)) for path, (target, ats) in reversed(deeper.items()))


def _bounded(matches, settings: DataSettings, root: str) -> list[str]:
    """Matches, each real file once, cut off at the file limit."""
    seen, kept = set(), []
    for match in matches:
        if _hidden(os.path.relpath(match, root)) or not _format_of(match):
            continue
        real = os.path.realpath(match)
        if real in seen:
            continue
        seen.add(real)
        kept.append(match)
        if len(kept) > settings.max_files:
            raise _too_many(len(kept), settings.max_files)
    return sorted(kept)


def _bucket_and_key(uri: str, settings: DataSettings) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ApiError(
            error_codes.INVALID_DATA_URI, "An s3:// URI needs a bucket: s3://bucket/prefix/."
        )
    if bucket not in settings.buckets:
        raise ApiError(
            error_codes.BUCKET_NOT_ALLOWED,
            f"Bucket {bucket[:63]!r} is not one this trainer may use; the operator lists allowed "
            "buckets in SLUICE_DATA_BUCKETS.",
        )
    if ".." in key.split("/"):
        raise ApiError(error_codes.INVALID_DATA_URI, "An s3 key may not contain '..' segments.")
    return bucket, key


def _s3_error(err: Exception, uri: str) -> ApiError:
    text = str(err)
    if any(sign in text for sign in ("AccessDenied", "ACCESS_DENIED", "403", "InvalidAccessKeyId")):
        return ApiError(
            error_codes.S3_ACCESS_DENIED,
            f"The object store refused the trainer's credentials for {uri[:200]!r}.",
        )
    if "NoSuchBucket" in text:
        return ApiError(error_codes.NO_DATA_FILES, f"The bucket of {uri[:200]!r} does not exist.")
    return ApiError(
        error_codes.S3_UNAVAILABLE,
        f"The object store could not be read for {uri[:200]!r} ({text[:200]}); try again later.",
    )


def _s3_files(uri: str, settings: DataSettings) -> list[DataFile]:
    from pyarrow import fs

    bucket, key = _bucket_and_key(uri, settings)
    pattern = None
    prefix = key
    for index, char in enumerate(key):
        if char in GLOB_CHARS:
            prefix, pattern = key[:index].rpartition("/")[0], key
            break
    s3 = s3_filesystem(settings)
    try:
        info = s3.get_file_info(f"{bucket}/{prefix}".rstrip("/"))
        if info.type == fs.FileType.File and pattern is None:
            entries = [info]
            explicit = True
        else:
            selector = fs.FileSelector(f"{bucket}/{prefix}".rstrip("/"), recursive=True)
            selector.allow_not_found = True
            entries = s3.get_file_info(selector)
            explicit = False
    except OSError as err:
        raise _s3_error(err, uri) from err
    files = []
    for entry in sorted(entries, key=lambda e: e.path):
        if entry.type != fs.FileType.File:
            continue
        object_key = entry.path.split("/", 1)[1] if "/" in entry.path else ""
        if pattern is not None and not fnmatch.fnmatchcase(object_key, pattern):
            continue
        if not explicit and _hidden(object_key[len(prefix) :]):
            continue
        fmt = _format_of(object_key)
        if fmt is None:
            if explicit:
                raise ApiError(
                    error_codes.UNSUPPORTED_FORMAT, f"{uri[:200]!r} is neither .csv nor .parquet."
                )
            continue
        if len(files) >= settings.max_files:
            raise _too_many(len(files) + 1, settings.max_files)
        files.append(DataFile(f"s3://{entry.path}", entry.path, int(entry.size or 0), fmt, s3=True))
    return files


def resolve_output(uri: str, settings: DataSettings) -> Output:
    """Where predictions go: a new .csv or .parquet file under the root or an allowed bucket."""
    uri = _check_uri(uri)
    fmt = _format_of(uri, OUTPUT_SUFFIXES)
    if fmt is None or any(char in uri for char in GLOB_CHARS):
        raise ApiError(
            error_codes.INVALID_OUTPUT_URI,
            "output_uri must name one new file ending in .parquet or .csv (no wildcards).",
        )
    if uri.lower().startswith("s3://"):
        bucket, key = _bucket_and_key(uri, settings)
        from pyarrow import fs

        try:
            exists = (
                s3_filesystem(settings).get_file_info(f"{bucket}/{key}").type
                != fs.FileType.NotFound
            )
        except OSError as err:
            raise _s3_error(err, uri) from err
        if exists:
            raise _output_exists(uri)
        return Output(uri, f"{bucket}/{key}", fmt, s3=True)
    root = _local_root(settings)
    path = _local_path(uri, root)
    folder = os.path.realpath(os.path.dirname(path))
    if not _inside(folder, root):
        raise _outside(uri)
    if not os.path.isdir(folder):
        raise ApiError(
            error_codes.INVALID_OUTPUT_URI,
            f"The folder of {uri[:200]!r} does not exist under the root.",
        )
    target = os.path.join(folder, os.path.basename(path))
    if len(os.path.basename(target).encode()) > 200:
        raise ApiError(error_codes.INVALID_OUTPUT_URI, "The output file's name is over 200 bytes.")
    if os.path.basename(target).startswith("."):
        raise ApiError(
            error_codes.INVALID_OUTPUT_URI, "The output file's name may not start with '.'."
        )
    if os.path.lexists(target):
        raise _output_exists(uri)
    if os.path.lexists(target + ".partial"):
        raise ApiError(
            error_codes.OUTPUT_IN_PROGRESS,
            f"{uri[:200]!r} is being written by another job (or one cut off left "
            f"{os.path.basename(target)}.partial: remove it).",
        )
    return Output(os.path.relpath(target, root), target, fmt)


def _output_exists(uri: str) -> ApiError:
    return ApiError(
        error_codes.OUTPUT_EXISTS,
        f"{uri[:200]!r} already exists; predictions never overwrite a file. Pick a new name.",
    )


def _read_bytes(item: DataFile, settings: DataSettings) -> bytes:
    if not item.s3:
        # Checked again at read time: a link swapped in since the request was accepted must
        # not lead out of the root (and the file itself is opened without following links).
        real = os.path.realpath(item.location)
        if real != item.location or not _inside(real, _local_root(settings)):
            raise _outside(item.name)
        try:
            handle = os.fdopen(os.open(real, os.O_RDONLY | os.O_NOFOLLOW), "rb")
        except OSError as err:
            raise ApiError(
                error_codes.NO_DATA_FILES,
                f"{item.name[:200]!r} can no longer be read ({err.strerror}).",
            ) from err
        with handle:
            return handle.read(settings.max_file_bytes + 1)
    try:
        with s3_filesystem(settings).open_input_stream(item.location) as stream:
            return stream.read(settings.max_file_bytes + 1)
    except OSError as err:
        raise _s3_error(err, item.name) from err


def _plain_columns(table: pa.Table, name: str) -> pa.Table:
    """Parquet columns as cells the model's rules read: dictionaries decoded, decimals and
    dates as their values; nested columns are refused."""
    columns = []
    for field_, column in zip(table.schema, table.columns, strict=True):
        kind = field_.type
        if pa.types.is_dictionary(kind):
            column = column.cast(kind.value_type)
            kind = kind.value_type
        if pa.types.is_decimal(kind) or pa.types.is_float16(kind):
            column = column.cast(pa.float64())
        elif pa.types.is_uint64(kind):
            column = column.cast(pa.large_string())  # exact; beyond 2**53 a float would round
        elif pa.types.is_duration(kind) or pa.types.is_time(kind) or pa.types.is_interval(kind):
            raise ApiError(
                error_codes.UNSUPPORTED_COLUMN,
                f"{name}: column {field_.name!r} is {kind}; store it as a number (say, seconds) "
                "or as text.",
            )
        elif pa.types.is_date(kind):
            column = column.cast(pa.timestamp("s"))
        elif pa.types.is_timestamp(kind) and kind.tz is not None:
            column = column.cast(pa.timestamp(kind.unit))
        elif pa.types.is_boolean(kind):
            column = pc.if_else(column, "true", "false")
        elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            try:
                column = column.cast(pa.large_string())
            except pa.ArrowInvalid as err:
                raise ApiError(
                    error_codes.UNSUPPORTED_COLUMN, f"{name}: column {field_.name!r} is not text."
                ) from err
        elif pa.types.is_nested(kind):
            raise ApiError(
                error_codes.UNSUPPORTED_COLUMN,
                f"{name}: column {field_.name!r} is {kind}; only flat columns can be read.",
            )
        columns.append(column)
    return pa.table(columns, names=[str(n) for n in table.column_names])


def read_cells(item: DataFile, settings: DataSettings) -> tuple[pa.Table, dict]:
    """One file's cells (the upload's text cells for a CSV, typed values for Parquet) and what
    was detected about it. Errors name the file."""
    raw = _read_bytes(item, settings)
    if len(raw) > settings.max_file_bytes:
        raise ApiError(error_codes.DATA_FILE_TOO_LARGE, f"{item.name[:200]!r} grew past the limit.")
    if item.format == "parquet":
        try:
            table = pq.read_table(io.BytesIO(raw))
        except (pa.ArrowException, OSError) as err:
            raise ApiError(
                error_codes.INVALID_PARQUET,
                f"{item.name[:200]!r} is not readable Parquet ({str(err)[:200]}).",
            ) from err
        del raw
        return _plain_columns(table, item.name), {"format": "parquet", "rows": table.num_rows}
    try:
        parsed = parse_csv(raw)
    except ApiError as err:
        if err.code in ("no_rows", "empty_file"):  # exports often hold empty parts: 0 rows
            return _empty_csv(raw), {"format": "csv", "rows": 0}
        raise ApiError(err.error_code, f"{item.name[:200]}: {err.message}") from err
    del raw
    # large_string, as every text column of a data_uri's files (_empty_csv, unify): a cast
    # of the offsets only.
    table = parsed.table.cast(
        pa.schema([pa.field(name, pa.large_string()) for name in parsed.table.column_names])
    )
    return table, {
        "format": "csv",
        "rows": table.num_rows,
        "encoding": parsed.encoding,
        "delimiter": parsed.delimiter,
        **({"comment_lines": parsed.comment_lines} if parsed.comment_lines else {}),
    }


def _empty_csv(raw: bytes) -> pa.Table:
    """A header-only file's columns with no rows; no columns for an empty file."""
    try:
        text, _ = decode_text(raw)
        names = read_header(text, sniff_delimiter(text)) if text.strip() else []
    except ApiError:
        names = []
    return pa.table({n: pa.array([], pa.large_string()) for n in names})


def align(table: pa.Table, columns: list[str], name: str) -> pa.Table:
    """A file's table with the first file's columns in its order; 422 when they differ."""
    if table.num_rows == 0 and not table.column_names:
        return pa.table({c: pa.array([], pa.large_string()) for c in columns})
    have = table.column_names
    if have == columns:
        return table
    missing = [c for c in columns if c not in have]
    extra = [c for c in have if c not in columns]
    if missing or extra:
        detail = []
        if missing:
            detail.append(f"lacks {', '.join(map(repr, missing[:10]))}")
        if extra:
            detail.append(f"has other columns {', '.join(map(repr, extra[:10]))}")
        raise ApiError(
            error_codes.COLUMNS_DIFFER,
            f"{name[:200]!r} {' and '.join(detail)}: every file of a data_uri must have the same "
            "columns.",
        )
    return table.select(columns)


def write_output(output: Output, settings: DataSettings):
    """An open binary stream to the output (a temporary name locally, renamed when done)."""
    if output.s3:
        try:  # a key of this job's own, moved into place when complete (by_reference)
            return s3_filesystem(settings).open_output_stream(
                output.location + ".partial-" + output.token
            )
        except OSError as err:
            raise _s3_error(err, output.name) from err
    folder = os.path.dirname(output.location)
    if os.path.realpath(folder) != folder or not _inside(folder, _local_root(settings)):
        raise _outside(output.name)  # the folder was swapped for a link since the request
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        return os.fdopen(os.open(output.location + ".partial", flags, 0o644), "wb")
    except FileExistsError as err:
        raise _output_exists(output.name) from err


def _common_type(types: list[pa.DataType]) -> pa.DataType:
    if all(t == types[0] for t in types):
        return types[0]
    if all(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_null(t) for t in types):
        return pa.float64()
    return pa.large_string()


def unify(tables: list[pa.Table]) -> list[pa.Table]:
    """Tables of the same columns with one type per column: a column that is text in one file
    and numbers in another is text in all (its cells are read by the model's rules either way)."""
    if len(tables) <= 1:
        return tables
    names = tables[0].column_names
    target = {name: _common_type([t.schema.field(name).type for t in tables]) for name in names}
    return [
        t
        if all(t.schema.field(n).type == target[n] for n in names)
        else pa.table([t.column(n).cast(target[n]) for n in names], names=names)
        for t in tables
    ]
