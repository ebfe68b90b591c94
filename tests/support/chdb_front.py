"""A stand-in ClickHouse HTTP server for the tests: the real engine, embedded.

It runs the ClickHouse engine from chdb (PyPI `chdb-core`) in one persistent
session on a database folder (`--data`), so tables and rows survive a restart,
and answers the part of ClickHouse's HTTP interface (port 8123) that clients
such as the Rust `clickhouse` crate use:

- `GET`/`POST /` with the SQL in the `query` URL parameter, the body, or both
  (the URL part first); a `multipart/form-data` body with `query` and
  `param_<name>` fields; `param_<name>` URL parameters for `{name:Type}`
  placeholders. `GET` runs read-only statements only, as ClickHouse does.
- `GET /ping` and `GET /` without a query answer `Ok.`.
- The result comes in the query's own `FORMAT`, else `default_format`, else
  TabSeparated, always uncompressed (ClickHouse also only compresses with
  `enable_http_compression=1`; an `Accept-Encoding: lz4` is fine to ignore).
- `INSERT ... [FORMAT F]` with the rows in the body (`Content-Length` or
  chunked), optionally in ClickHouse's compressed block framing
  (`decompress=1`: per block a 16-byte CityHash128 checksum, which is not
  verified, a method byte (0x82 LZ4, 0x02 none), u32 LE compressed size with
  the 9-byte header, u32 LE raw size, the data). The rows stream into the
  engine in format F (TabSeparated without a FORMAT, Values after `VALUES`).
- Every other URL parameter is a setting, applied with `SET` for that request
  and reset afterwards (an unknown one fails with Code 115, as on a server);
  `database` (or `X-ClickHouse-Database`) picks the current database.
- Credentials from basic auth, `X-ClickHouse-User`/`X-ClickHouse-Key` or the
  `user`/`password` parameters must match `--user`/`--password` (default
  `default`, empty); otherwise Code 516 AUTHENTICATION_FAILED, HTTP 403.
- Errors look like ClickHouse's: the HTTP status its server maps the code to
  (404 for an unknown database or table, 400 for a syntax error, 500 ...),
  `X-ClickHouse-Exception-Code: N` and the body
  `Code: N. DB::Exception: ... (NAME) (version V (official build))`.

Statements run one at a time under a lock. chdb 26.x answers `async_insert=1`
inserts synchronously, so rows are visible as soon as the insert returns. The
server time zone is `--timezone` (UTC). Needs `chdb-core` and `lz4` on the
path (scripts/install-chdb.sh); logs a line per request to stderr unless
`CHDB_FRONT_QUIET=1`.

    python3 chdb_front.py --port 8123 --data /tmp/ch [--user U --password P]
"""

import argparse
import base64
import email.parser
import json
import os
import re
import socket
import struct
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import lz4.block  # PyPI lz4; chdb is imported once the time zone is set

# URL parameters that belong to the HTTP interface rather than to settings.
NOT_SETTINGS = {
    "query", "database", "default_format", "decompress", "compress", "user",
    "password", "quota_key", "query_id", "session_id", "session_timeout",
    "session_check", "buffer_size", "wait_end_of_query", "role", "stacktrace",
    "client_protocol_version",
}
# How ClickHouse's HTTP handler maps errors to statuses, by name
# (src/Server/HTTP/exceptionCodeToHTTPStatus.cpp); anything else is 500.
STATUS_BY_NAME = {
    401: "REQUIRED_PASSWORD",
    403: "UNKNOWN_USER WRONG_PASSWORD AUTHENTICATION_FAILED SET_NON_GRANTED_ROLE",
    400: "BAD_ARGUMENTS CANNOT_COMPILE_REGEXP CANNOT_PARSE_TEXT "
         "CANNOT_PARSE_ESCAPE_SEQUENCE CANNOT_PARSE_QUOTED_STRING CANNOT_PARSE_DATE "
         "CANNOT_PARSE_DATETIME CANNOT_PARSE_NUMBER CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING "
         "CANNOT_PARSE_IPV4 CANNOT_PARSE_IPV6 CANNOT_PARSE_INPUT_ASSERTION_FAILED "
         "CANNOT_PARSE_UUID DUPLICATE_COLUMN ILLEGAL_COLUMN UNKNOWN_ELEMENT_IN_AST "
         "UNKNOWN_TYPE_OF_AST_NODE THERE_IS_NO_COLUMN TOO_DEEP_AST TOO_BIG_AST "
         "UNEXPECTED_AST_STRUCTURE SYNTAX_ERROR INCORRECT_DATA TYPE_MISMATCH "
         "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
    404: "UNKNOWN_TABLE UNKNOWN_FUNCTION UNKNOWN_IDENTIFIER UNKNOWN_TYPE UNKNOWN_STORAGE "
         "UNKNOWN_DATABASE UNKNOWN_SETTING UNKNOWN_DIRECTION_OF_SORTING "
         "UNKNOWN_AGGREGATE_FUNCTION UNKNOWN_FORMAT UNKNOWN_DATABASE_ENGINE "
         "UNKNOWN_TYPE_OF_QUERY UNKNOWN_ROLE",
    413: "QUERY_IS_TOO_LARGE",
    501: "NOT_IMPLEMENTED",
    503: "SOCKET_TIMEOUT CANNOT_OPEN_FILE CANNOT_SCHEDULE_TASK",
    411: "HTTP_LENGTH_REQUIRED",
    408: "TIMEOUT_EXCEEDED",
}
CONTENT_TYPES = {
    "tabseparated": "text/tab-separated-values", "tsv": "text/tab-separated-values",
    "tsvwithnames": "text/tab-separated-values", "csv": "text/csv",
    "json": "application/json", "jsoneachrow": "application/x-ndjson",
    "jsoncompact": "application/json",
}
READ_ONLY = re.compile(r"\s*(\(\s*)*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXISTS|EXPLAIN)\b", re.I)
INSERT = re.compile(r"\s*INSERT\b", re.I)
TRAILING_FORMAT = re.compile(r"^(.*?)\s+FORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$", re.I | re.S)
TRAILING_VALUES = re.compile(r"^(.*?)\s+VALUES\s*$", re.I | re.S)
ERROR_CODE = re.compile(r"Code: (\d+)\.")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ClickHouseError(Exception):
    """An error to answer like ClickHouse: its code and message, or the engine's
    whole `Code: N. DB::Exception: ...` text (`full`)."""

    def __init__(self, code, message, full=False):
        super().__init__(message)
        self.code, self.full = code, full


def from_engine(error):
    """Wraps an error raised by chdb, which already reads `Code: N. DB::...`."""
    text = str(error)
    match = ERROR_CODE.search(text)
    if not match:
        return ClickHouseError(1001, text)
    return ClickHouseError(int(match.group(1)), text[match.start():], full=True)


def decompress_blocks(data):
    """Undoes ClickHouse's compressed block framing (`decompress=1`)."""
    out, pos = bytearray(), 0
    while pos < len(data):
        if len(data) - pos < 25:
            raise ClickHouseError(271, "Truncated compressed block header")
        method, size, raw_size = struct.unpack_from("<BII", data, pos + 16)
        payload = data[pos + 25 : pos + 16 + size]
        if size < 9 or len(payload) != size - 9:
            raise ClickHouseError(271, "Truncated compressed block")
        if method == 0x82:
            try:
                out += lz4.block.decompress(payload, uncompressed_size=raw_size)
            except lz4.block.LZ4BlockError as error:
                raise ClickHouseError(271, f"Cannot decompress LZ4 block: {error}")
        elif method == 0x02:
            out += payload
        else:
            raise ClickHouseError(271, f"Unknown compression method 0x{method:02x}")
        pos += 16 + size
    return bytes(out)


def quote_identifier(name):
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def quote_literal(value):
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Engine:
    """One chdb session on a database folder; statements run one at a time."""

    def __init__(self, path):
        from chdb import session
        self.session = session.Session(path)
        self.lock = threading.Lock()
        self.version = self._call("SELECT version()").bytes().decode().strip()
        errors = self._call("SELECT DISTINCT code, name FROM system.errors "
                            "SETTINGS system_events_show_zero_values = 1")
        self.names = {int(code): name for code, name in
                      (line.split("\t") for line in errors.bytes().decode().splitlines())}
        codes = {name: code for code, name in self.names.items()}
        self.statuses = {codes[name]: status for status, names in STATUS_BY_NAME.items()
                         for name in names.split() if name in codes}

    def error_text(self, error):
        """The body and the HTTP status ClickHouse would answer `error` with."""
        text = str(error)
        if not error.full:
            name = self.names.get(error.code, "UNKNOWN_EXCEPTION")
            text = f"Code: {error.code}. DB::Exception: {text} ({name})"
        if "(version " not in text:
            text += f" (version {self.version} (official build))"
        return text + "\n", self.statuses.get(error.code, 500)

    def run(self, sql, fmt, settings, database, params, data=None):
        """Runs one statement with per-request settings; returns (bytes, summary)."""
        with self.lock:
            applied = []
            try:
                for name, value in settings:
                    self._call(f"SET {name} = {quote_literal(value)}")
                    applied.append(name)
                if database:
                    self._call(f"USE {quote_identifier(database)}")
                if data is None:
                    result = self._call(sql, fmt, params or None)
                    return result.bytes(), {"read_rows": result.rows_read(),
                                            "read_bytes": result.bytes_read()}
                return b"", self._insert(sql, data)
            finally:
                for name in applied:
                    self._quiet(f"SET {name} = DEFAULT")
                self._quiet("USE default")  # also after a `USE` in the SQL

    def _insert(self, sql, data):
        match = TRAILING_FORMAT.match(sql)
        if match:
            sql, fmt = match.group(1), match.group(2)
        elif TRAILING_VALUES.match(sql):
            sql, fmt = TRAILING_VALUES.match(sql).group(1), "Values"
        else:
            fmt = "TabSeparated"
        try:
            inserter = self.session.send_insert(sql, fmt)
        except Exception as error:
            raise from_engine(error)
        try:
            inserter.append(data)
            result = inserter.finish()
        except Exception as error:
            try:
                inserter.cancel()
            except Exception:
                pass
            raise from_engine(error)
        return {"written_rows": result.rows_written, "written_bytes": result.bytes_written}

    def _call(self, sql, fmt="TabSeparated", params=None):
        try:
            return self.session.query(sql, fmt, params=params)
        except Exception as error:
            raise from_engine(error)

    def _quiet(self, sql):
        try:
            self.session.query(sql, "TabSeparated")
        except Exception as error:
            print(f"chdb_front: {sql}: {error}", file=sys.stderr)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else a reply in two writes waits ~40 ms
    server_version = "chdb_front"
    engine = None  # set by main()
    user = "default"
    password = ""

    def do_GET(self):
        self.handle_request(read_only=True)

    def do_POST(self):
        self.handle_request(read_only=False)

    def handle_request(self, read_only):
        query_id = str(uuid.uuid4())
        try:
            body = self.read_body()
            url = urlsplit(self.path)
            if url.path == "/ping" or (url.path == "/" and not url.query and not body):
                return self.reply(200, b"Ok.\n", "text/html; charset=UTF-8")
            if url.path != "/":
                return self.reply(404, f"There is no handle {url.path}\n\nUse / or /ping "
                                  "for health checks.\n".encode(), "text/plain; charset=UTF-8")
            params = parse_qsl(url.query, keep_blank_values=True)
            args = dict(params)
            query_id = args.get("query_id") or query_id
            self.authenticate(args)
            fields = self.form_fields(body)
            if fields is not None:
                params += [(k, v) for k, v in fields.items() if k != "query"]
                args["query"] = args.get("query", "") + fields.get("query", "")
                body = b""
            if args.get("decompress", "0") not in ("", "0", "false"):
                body = decompress_blocks(body)
            sql, data = args.get("query", ""), None
            if sql and body and INSERT.match(sql):
                data = body
            elif body:
                sql = f"{sql}\n{body.decode('utf-8')}" if sql else body.decode("utf-8")
            if not sql.strip():
                raise ClickHouseError(62, "Empty query.")
            if read_only and not READ_ONLY.match(sql):
                raise ClickHouseError(164, "Cannot execute query in readonly mode. For "
                                           "queries over HTTP, method POST is required.")
            settings = [(k, v) for k, v in params
                        if k not in NOT_SETTINGS and not k.startswith("param_")]
            for name, _ in settings:
                if not IDENTIFIER.match(name):
                    raise ClickHouseError(115, f"Unknown setting '{name}'")
            query_params = {k[6:]: v for k, v in params if k.startswith("param_")}
            fmt = args.get("default_format") or "TabSeparated"
            database = args.get("database") or self.headers.get("X-ClickHouse-Database")
            started = time.monotonic()
            result, summary = self.engine.run(sql, fmt, settings, database,
                                              query_params, data)
            summary["elapsed_ns"] = int((time.monotonic() - started) * 1e9)
            match = TRAILING_FORMAT.match(sql)
            fmt = match.group(2) if match and data is None else fmt
            content_type = CONTENT_TYPES.get(fmt.lower(), "application/octet-stream")
            self.reply(200, result, content_type + "; charset=UTF-8", {
                "X-ClickHouse-Query-Id": query_id,
                "X-ClickHouse-Format": fmt,
                "X-ClickHouse-Timezone": os.environ.get("TZ", "UTC"),
                "X-ClickHouse-Summary": json.dumps(
                    {k: str(v) for k, v in summary.items()}, separators=(",", ":")),
            })
        except ClickHouseError as error:
            self.fail(error, query_id)
        except Exception as error:  # a bug here, or a malformed request
            self.fail(ClickHouseError(1001, f"{type(error).__name__}: {error}"), query_id)

    def read_body(self):
        # Acknowledge at once: a client that writes the head and the body
        # separately without TCP_NODELAY (hyper) otherwise waits ~40 ms.
        if hasattr(socket, "TCP_QUICKACK"):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def form_fields(self, body):
        """The fields of a multipart/form-data body, or None for any other body."""
        content_type = self.headers.get("Content-Type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            return None
        message = email.parser.BytesParser().parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        return {part.get_param("name", header="content-disposition"):
                part.get_payload(decode=True).decode("utf-8")
                for part in message.get_payload()}

    def authenticate(self, args):
        user, password = args.get("user"), args.get("password")
        if "X-ClickHouse-User" in self.headers or "X-ClickHouse-Key" in self.headers:
            user = self.headers.get("X-ClickHouse-User")
            password = self.headers.get("X-ClickHouse-Key")
        authorization = self.headers.get("Authorization", "")
        if authorization.lower().startswith("basic "):
            decoded = base64.b64decode(authorization[6:].strip()).decode("utf-8")
            user, _, password = decoded.partition(":")
        user = user or "default"
        if user != self.user or (password or "") != self.password:
            raise ClickHouseError(516, f"{user}: Authentication failed: password is "
                                       "incorrect, or there is no user with such name.")

    def fail(self, error, query_id):
        text, status = self.engine.error_text(error)
        self.reply(status, text.encode(),
                   "text/plain; charset=UTF-8",
                   {"X-ClickHouse-Exception-Code": str(error.code),
                    "X-ClickHouse-Query-Id": query_id})

    def reply(self, status, body, content_type, headers=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        if os.environ.get("CHDB_FRONT_QUIET") != "1":
            sys.stderr.write(f"{self.log_date_time_string()} {format % args}\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--data", required=True, help="database folder, kept")
    parser.add_argument("--user", default="default")
    parser.add_argument("--password", default="")
    parser.add_argument("--timezone", default="UTC", help="the server time zone")
    args = parser.parse_args()
    os.environ["TZ"] = args.timezone  # read by the engine when it loads
    time.tzset()
    os.makedirs(args.data, exist_ok=True)
    Handler.engine = Engine(args.data)
    Handler.user, Handler.password = args.user, args.password
    ThreadingHTTPServer.request_queue_size = 128  # many clients connect at once
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    print(f"chdb_front: ClickHouse {Handler.engine.version} on "
          f"http://{args.host}:{server.server_port}/ data {args.data}",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
