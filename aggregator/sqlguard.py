"""Statement guard of the read-only endpoint: decides, with ClickHouse's own parser, whether one
request body is a single harmless read (SELECT/WITH, SHOW, DESCRIBE, EXISTS, EXPLAIN of those) of
the data and the schema, not of the server's inside (other queries, stacks, disks, users)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

READONLY = 164
SYNTAX_ERROR = 62
ACCESS_DENIED = 497

# Table functions a reader may use in FROM: they only generate data or read local tables.
SAFE_TABLE_FUNCTIONS = frozenset(
    name.lower()
    for name in (
        "numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateSeries", "primes",
        "values", "null", "view", "viewIfPermitted", "viewExplain", "merge", "dictionary",
        "generateRandom", "format", "loop", "mergeTreeIndex", "mergeTreeProjection",
    )
)

# Functions reaching outside the database (files, network, processes, the Python interpreter).
# The running server's system.table_functions is added to this at start, minus the safe list,
# so a table function added by a future chDB is refused until someone vouches for it.
DENIED_FUNCTIONS = frozenset(
    name.lower()
    for name in (
        "file", "fileCluster", "url", "urlCluster", "s3", "s3Cluster", "gcs", "oss", "cosn",
        "hdfs", "hdfsCluster", "remote", "remoteSecure", "cluster", "clusterAllReplicas",
        "mysql", "postgresql", "mongodb", "redis", "sqlite", "odbc", "jdbc", "executable",
        "python", "azureBlobStorage", "azureBlobStorageCluster", "iceberg", "icebergS3",
        "icebergAzure", "icebergHDFS", "icebergLocal", "icebergCluster", "deltaLake", "hudi",
        "paimon", "input", "filesystem", "arrowstream", "arrowFlight", "ytsaurus", "bigquery",
        "hive", "eval", "catboostEvaluate", "naiveBayesClassifier", "prometheusQuery",
    )
)
# Families whose members keep growing; never prefixes of ordinary scalar functions (URLHierarchy…).
DENIED_PREFIXES = ("iceberg", "deltalake", "hudi", "paimon", "azureblob")

# Root node kinds of EXPLAIN AST that are reads. SHOW variants print under several spellings.
ALLOWED_ROOTS = ("SelectWithUnionQuery", "Show", "SHOW", "Describe", "Exists")

# The system tables a reader may read: what clickhouse-connect reads when it connects (settings),
# what its SQLAlchemy dialect reads for Superset (databases, tables, columns, functions, indices,
# projections; SHOW TABLES/DATABASES/COLUMNS read these too), the number generators and the
# catalogues of types, formats, engines. The others show the server's inside: other readers' SQL
# and its literals (processes, query_log), stack traces, file paths (disks), metrics, users.
SYSTEM_DATABASE = "system"
ALLOWED_SYSTEM_TABLES = frozenset(
    name.lower()
    for name in (
        "one", "numbers", "numbers_mt", "zeros", "zeros_mt",
        "settings", "databases", "tables", "columns", "functions", "table_functions",
        "data_skipping_indices", "projections", "dictionaries", "merge_tree_settings",
        "data_type_families", "formats", "table_engines", "time_zones", "collations",
        "aggregate_function_combinators", "keywords",
    )
)
# Functions that read the server's own code and threads (ClickHouse's INTROSPECTION grant); the
# readers also run with allow_introspection_functions = 0.
INTROSPECTION_FUNCTIONS = frozenset(
    name.lower() for name in ("addressToLine", "addressToLineWithInlines", "addressToSymbol", "demangle", "tid", "logTrace")
)
# Functions whose second argument may name a table: `x IN system.processes`.
IN_FUNCTIONS = frozenset(
    name.lower()
    for name in ("in", "notIn", "globalIn", "globalNotIn", "nullIn", "notNullIn", "globalNullIn", "globalNotNullIn",
                 "inIgnoreSet", "notInIgnoreSet", "nullInIgnoreSet", "notNullInIgnoreSet")
)
# Table functions whose first argument names a database (merge's may be a regexp of names).
DATABASE_TABLE_FUNCTIONS = frozenset(name.lower() for name in ("merge", "mergeTreeIndex", "mergeTreeProjection"))
# SHOW statements about the server, not the schema: running queries, merges, clusters, caches,
# users, roles, grants (access entities print as `SHOW <ENTITIES> query`, kind SHOW).
DENIED_SHOW_ROOTS = ("ShowProcesslistQuery", "ShowPrivilegesQuery", "ShowGrantsQuery", "ShowAccessQuery")
# ShowTables stands for several statements in EXPLAIN AST; these, told apart by formatQuery.
DENIED_SHOW_FORMS = ("SHOW MERGES", "SHOW CLUSTER", "SHOW FILESYSTEM", "SHOW PROCESSLIST")

_NODE = re.compile(r"^( *)(\S+)(?: (\S+))?")


class Refused(Exception):
    """The request is not a single harmless read; `code` is the ClickHouse error code to answer."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Read:
    """An allowed read: the FORMAT it names, if any, and whether it is a SELECT (chDB streams the
    result of a SELECT only; SHOW, DESCRIBE, EXISTS, EXPLAIN answer whole)."""

    format: str | None
    select: bool


@dataclass
class _Node:
    kind: str
    name: str
    depth: int
    children: list[_Node] = field(default_factory=list)


def denied_functions(conn: Any) -> frozenset[str]:
    """DENIED_FUNCTIONS plus every table function this server knows that is not known safe."""
    raw = conn._conn.query("SELECT name FROM system.table_functions", "TSVRaw").bytes().decode()
    known = {n.strip().lower() for n in raw.splitlines() if n.strip()}
    return DENIED_FUNCTIONS | (known - SAFE_TABLE_FUNCTIONS)


def check(conn: Any, sql: str, params: dict[str, str], denied: frozenset[str], database: str) -> Read:
    """Raise Refused unless `sql` is one allowed read; `database` resolves unqualified table names.

    `conn` is a reader connection (readonly=1): EXPLAIN AST runs there, after chDB's
    parse-only classify_query has proved the body is exactly one statement — EXPLAIN AST on
    `a; b` would run `b`.
    """
    # classify_query lives on the raw pybind connection under chdb's sqlite-like wrapper.
    verdict = conn._conn.classify_query(sql)
    count = int(verdict["statement_count"])
    kind = getattr(verdict["query_class"], "name", str(verdict["query_class"]))
    if count == 0:
        raise Refused(SYNTAX_ERROR, syntax_error(conn, sql))
    if count > 1:
        raise Refused(SYNTAX_ERROR, f"Multi-statements are not allowed: this endpoint runs one statement per request, got {count}")
    if kind != "READ_ONLY":
        raise Refused(READONLY, f"Cannot execute query in readonly mode: this endpoint only runs SELECT, SHOW, DESCRIBE, EXISTS and EXPLAIN (statement class {kind})")
    text = conn._conn.query("EXPLAIN AST " + sql, "TSVRaw", params=params).bytes().decode("utf-8", "replace")
    root = parse_ast(text)
    if root.kind == "ShowTables":
        form = _formatted(conn, sql, params).upper()
        if form.startswith(DENIED_SHOW_FORMS):
            raise Refused(ACCESS_DENIED, f"Not enough privileges: {' '.join(form.split()[:2])} shows the server's inside and is not allowed on this endpoint")
    return Read(format=_check_tree(root, denied, database.lower()), select=root.kind == "SelectWithUnionQuery")


def _formatted(conn: Any, sql: str, params: dict[str, str]) -> str:
    """The statement as ClickHouse's formatter writes it (keywords in one spelling, comments gone)."""
    text = conn._conn.query("SELECT formatQuery({q:String})", "TSVRaw", params={"q": escape_param(sql)}).bytes()
    return str(text.decode("utf-8", "replace")).strip()


def syntax_error(conn: Any, sql: str) -> str:
    """ClickHouse's own syntax error text, from formatQuery on the body passed as a parameter
    (never spliced into SQL, so nothing of it can run)."""
    try:
        conn._conn.query("SELECT formatQuery({q:String})", "TSVRaw", params={"q": escape_param(sql)})
    except Exception as exc:  # the parse error is what we want
        text = str(exc)
        m = re.search(r"DB::Exception: (.*?)(?: : In scope SELECT formatQuery.*)?(?: \(SYNTAX_ERROR\))?$", text, re.S)
        return (m.group(1) if m else text).strip()
    return "Syntax error"


def escape_param(value: str) -> str:
    """A query parameter value is read in TabSeparated escaping."""
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def parse_ast(text: str) -> _Node:
    """The indented EXPLAIN AST listing as a tree (one space of indent per level)."""
    stack: list[_Node] = []
    root: _Node | None = None
    for line in text.splitlines():
        m = _NODE.match(line)
        if not m or not line.strip():
            continue
        node = _Node(kind=m.group(2), name=m.group(3) or "", depth=len(m.group(1)))
        while stack and stack[-1].depth >= node.depth:
            stack.pop()
        if stack:
            stack[-1].children.append(node)
        elif root is None:
            root = node
        stack.append(node)
    if root is None:
        raise Refused(SYNTAX_ERROR, "Empty query")
    return root


def _check_tree(root: _Node, denied: frozenset[str], database: str) -> str | None:
    if root.kind in DENIED_SHOW_ROOTS or root.kind == "SHOW":
        raise Refused(ACCESS_DENIED, f"Not enough privileges: {root.kind} shows the server's inside and is not allowed on this endpoint")
    if root.kind == "Explain":
        inner = [c for c in root.children if c.kind == "SelectWithUnionQuery"]
        if not inner:
            raise Refused(READONLY, "EXPLAIN is allowed of a SELECT only")
    elif not root.kind.startswith(ALLOWED_ROOTS):
        raise Refused(READONLY, f"Cannot execute query in readonly mode: {root.kind} is not allowed on this endpoint")
    _walk(root, None, denied, database)
    if root.kind == "SelectWithUnionQuery":
        formats = [c.name for c in root.children if c.kind == "Identifier"]
        return formats[-1] if formats else None
    return None


def _walk(node: _Node, parent: _Node | None, denied: frozenset[str], database: str) -> None:
    if node.kind in ("SelectWithUnionQuery", "Explain") and any(c.kind == "Literal" for c in node.children):
        # The only literal hanging directly under a query node is the INTO OUTFILE target.
        raise Refused(READONLY, "INTO OUTFILE is not allowed on this endpoint")
    if node.kind == "TableIdentifier":
        _check_table(node.name, database)
    if node.kind == "Function":
        name = node.name.lower()
        if name in denied or name.startswith(DENIED_PREFIXES):
            raise Refused(READONLY, f"Function {node.name} reaches outside the database and is not allowed on this endpoint")
        if name in INTROSPECTION_FUNCTIONS:
            raise Refused(ACCESS_DENIED, f"Not enough privileges: introspection function {node.name} is not allowed on this endpoint")
        in_table_position = parent is not None and parent.kind == "TableExpression"
        if in_table_position and name not in SAFE_TABLE_FUNCTIONS:
            raise Refused(READONLY, f"Table function {node.name} is not allowed on this endpoint")
        arguments = node.children[0].children if node.children and node.children[0].kind == "ExpressionList" else []
        if name in IN_FUNCTIONS and len(arguments) == 2 and arguments[1].kind == "Identifier":
            _check_table(arguments[1].name, database)
        if in_table_position and name in DATABASE_TABLE_FUNCTIONS:
            _check_database_argument(node.name, arguments[0] if len(arguments) > 1 else None, database)
        elif in_table_position:
            for argument in arguments:
                # loop(system.processes), loop(processes); format(JSONEachRow, …) names no table.
                if argument.kind == "Identifier" and ("." in argument.name or name == "loop"):
                    _check_table(argument.name, database)
    for child in node.children:
        _walk(child, node, denied, database)


def _check_table(name: str, database: str) -> None:
    """Refuse a system table off the allow-list, named `system.t` or `t` with `system` current."""
    db, _, table = name.rpartition(".")
    if (db.strip("`").lower() or database) == SYSTEM_DATABASE and table.strip("`").lower() not in ALLOWED_SYSTEM_TABLES:
        raise Refused(ACCESS_DENIED, f"Not enough privileges: system.{table} is not readable on this endpoint"
                                     f" (readers may read system.{{{', '.join(sorted(ALLOWED_SYSTEM_TABLES))}}})")


def _check_database_argument(function: str, argument: _Node | None, database: str) -> None:
    """merge(db, 'regexp') and kin: the database must be named plainly, and not be `system`."""
    if argument is None:
        named = database
    elif argument.kind == "Identifier":
        named = argument.name.strip("`").lower()
    elif argument.kind == "Literal" and argument.name.startswith("'"):
        named = argument.name.strip("'").lower()
    else:
        raise Refused(ACCESS_DENIED, f"Not enough privileges: {function} must name its database plainly on this endpoint")
    if named == SYSTEM_DATABASE:
        raise Refused(ACCESS_DENIED, f"Not enough privileges: {function} over the system database is not allowed on this endpoint")
