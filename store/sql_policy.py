"""What an admin's SQL may touch, judged on the engine's own parse, never on the text.

The one rule set for every entry point (``POST /api/query``, ``vmpulse query``).
The engine does the parsing; this module only judges what it returns:

1. ``formatQuery`` turns the text into the engine's canonical form of exactly
   one statement (several statements are a syntax error there), and
   ``parseQueryToJSON`` of that canonical text is the tree judged here by
   :func:`judge_ast`. The canonical text is what then runs, so what runs is
   what was judged: comments, quoting, case, whitespace and unicode tricks are
   resolved by the same parser that executes.
2. :func:`judge_ast` allows one ``SELECT`` (``WITH``, ``UNION``, ``INTERSECT``,
   ``EXCEPT`` and subqueries of ``SELECT``\\ s): no ``INTO OUTFILE``, no
   ``FORMAT`` (answers are JSON), no ``SETTINGS`` anywhere (limits are the
   reader's, and the session is ``readonly=1`` besides), no query parameters.
   Every node type must be one this module knows; a new kind of node is
   refused until someone has looked at it. Tables: the metric database's
   own, the query's CTEs, and :data:`SYSTEM_TABLES`. Table functions: only
   :data:`TABLE_FUNCTIONS`, which compute rows and read nothing. Scalar
   functions: none of :data:`DENIED_FUNCTIONS`, :data:`DENIED_PREFIXES` or
   :data:`DENIED_CATEGORIES`, nor their aliases, nor executable UDFs
   (:func:`denied_functions` builds the set from the engine's
   ``system.functions``).
3. :func:`judge_query_tree` checks the analyzer's resolution
   (``EXPLAIN QUERY TREE`` of the canonical text, run only after step 2
   passed, because analysis folds constants and so runs functions): every
   table the query resolves to, also through ``IN`` and CTE scoping, must be
   allowed.

Why an allow-list of system tables: ``system.tables``, ``databases``,
``parts``, ``disks`` show host paths; ``processes``, ``query_log`` other
users' queries; ``settings``, ``server_settings``, ``macros``, ``clusters``,
``users``, ``grants`` the server's configuration. What is left describes the
engine itself (functions, formats, types) or generates rows.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from store.exceptions import QueryRejected

__all__ = [
    "DENIED_CATEGORIES",
    "DENIED_FUNCTIONS",
    "DENIED_PREFIXES",
    "MAX_SQL_LENGTH",
    "SYSTEM_TABLES",
    "TABLE_FUNCTIONS",
    "ReadPolicy",
    "denied_functions",
    "judge_ast",
    "judge_query_tree",
    "parse_refusal",
    "precheck",
]

MAX_SQL_LENGTH = 20_000

SYSTEM_TABLES = frozenset(
    {
        "one",
        "numbers",
        "numbers_mt",
        "columns",  # names and types; on a server only of tables the reader may see
        "functions",
        "table_functions",
        "aggregate_function_combinators",
        "data_type_families",
        "formats",
        "table_engines",
        "collations",
        "time_zones",
        "keywords",
    }
)
"""``system`` tables that describe the engine or generate rows, and nothing of the host."""

TABLE_FUNCTIONS = frozenset(
    {"numbers", "numbers_mt", "generate_series", "generateSeries", "generateRandom", "values"}
    | {"view"}  # view(SELECT ...): its subquery is part of the judged tree
)
"""Table functions that compute rows; every other one reads or reaches out (compared
without case, as the engine resolves them)."""

DENIED_FUNCTIONS = frozenset(
    name.lower()
    for name in (
        # the host's files and disks
        "file",
        "filesystemAvailable",
        "filesystemCapacity",
        "filesystemUnreserved",
        # other tables, databases and servers by name, past the table checks
        "joinGet",
        "joinGetOrNull",
        "hasColumnInTable",  # its long form connects to another server
        "assignCentroid",  # may read its centroids from a dictionary by name
        # the host and the server's configuration
        "hostName",
        "FQDN",
        "fullHostName",
        "displayName",
        "getMacro",
        "getServerPort",
        "tcpPort",
        "serverUUID",
        "getOSKernelVersion",
        "getServerSetting",
        "getMergeTreeSetting",
        "showCertificate",
        "getClientHTTPHeader",
        # side effects outside the query: the server log, Keeper
        "logTrace",
        "generateSerialID",
        "zookeeperSessionUptime",
        # models the server loads from its own files
        "naiveBayesClassifier",
        "naiveBayesClassifierWithProb",
        "naiveBayesClassifierWithAllProbs",
    )
)
"""Scalar functions (lower case) that reach outside the metric data or show the host."""

DENIED_PREFIXES = ("dict",)
"""Name families denied whole (lower case): ``dictGet*``, ``dictHas``, ``dictIsIn`` read
dictionaries, whose sources may be files, URLs, other servers or programs."""

DENIED_CATEGORIES = frozenset({"Dictionary", "Embedded Dictionary", "Introspection", "AI"})
"""``system.functions`` categories denied whole: dictionaries read any source, the
introspection functions read the binary and the server's threads, the AI
functions call external services."""

_OUTPUT_OPTIONS = {
    "out_file": "INTO OUTFILE is not allowed: results come back as JSON",
    "is_into_outfile_with_stdout": "INTO OUTFILE is not allowed: results come back as JSON",
    "format_ast": "FORMAT is not allowed: results come back as JSON",
    "format": "FORMAT is not allowed: results come back as JSON",
    "compression": "INTO OUTFILE is not allowed: results come back as JSON",
    "settings_ast": "SETTINGS are not allowed: the limits of a read are fixed",
}

# Node types whose every field is either a child node or a plain value: nothing
# of them is hidden from the walk below. Anything else is refused by name.
_NODE_TYPES = frozenset(
    {
        "SelectWithUnionQuery",
        "SelectIntersectExceptQuery",
        "SelectQuery",
        "Subquery",
        "ExpressionList",
        "Identifier",
        "TableIdentifier",
        "Literal",
        "Function",
        "Asterisk",
        "QualifiedAsterisk",
        "ColumnsRegexpMatcher",
        "QualifiedColumnsRegexpMatcher",
        "ColumnsListMatcher",
        "QualifiedColumnsListMatcher",
        "ColumnsTransformerList",
        "ColumnsApplyTransformer",
        "ColumnsExceptTransformer",
        "ColumnsReplaceTransformer",
        "ColumnsReplaceTransformer::Replacement",
        "TablesInSelectQuery",
        "TablesInSelectQueryElement",
        "TableExpression",
        "TableJoin",
        "ArrayJoin",
        "SampleRatio",
        "OrderByElement",
        "InterpolateElement",
        "WithElement",
        "WindowDefinition",
        "WindowListElement",
    }
)
_REFUSED_NODES = {
    "SetQuery": "SETTINGS are not allowed: the limits of a read are fixed",
    "QueryParameter": "query parameters ({name:Type}) are not supported",
}
# IN and its relatives take a table by bare name as their right-hand side.
_IN_FUNCTIONS = frozenset(
    {"in", "notin", "globalin", "globalnotin", "nullin", "notnullin", "globalnullin"}
    | {"globalnotnullin"}
)
_UNSERIALIZABLE = re.compile(r"AST node of type '([A-Za-z:]+)[^']*' does not support JSON")
_TREE_TABLE = re.compile(r"\btable_name: ([^\s,]+)")
_TREE_TABLE_FUNCTION = re.compile(r"\btable_function_name: ([^\s,]+)")
_TREE_FUNCTION = re.compile(r"\bfunction_name: ([^\s,]+)")


@dataclasses.dataclass(frozen=True, slots=True)
class ReadPolicy:
    """What reads may touch: the metric database's tables plus the fixed allow-lists."""

    database: str
    tables: frozenset[str]
    denied_functions: frozenset[str] = DENIED_FUNCTIONS
    system_tables: frozenset[str] = SYSTEM_TABLES
    table_functions: frozenset[str] = TABLE_FUNCTIONS

    def allows_table(self, database: str | None, table: str, ctes: frozenset[str]) -> bool:
        if database is None:
            return table in self.tables or table in ctes
        if database == "system":
            return table in self.system_tables
        return database == self.database and table in self.tables

    def describe_tables(self) -> str:
        system = ", ".join(f"system.{t}" for t in sorted(self.system_tables))
        return f"the tables of database {self.database!r}, the query's CTEs and {system}"


def denied_functions(catalogue: Iterable[tuple[str, str, str, str]]) -> frozenset[str]:
    """The denied scalar functions (lower case), from ``system.functions`` rows.

    Each row is ``(name, alias_to, categories, origin)``. Denied: the static
    :data:`DENIED_FUNCTIONS`, every function of :data:`DENIED_CATEGORIES`, every
    executable user-defined function (it runs a program), and every alias of
    a denied function (``hostname`` of ``hostName``).
    """
    rows = list(catalogue)
    denied = set(DENIED_FUNCTIONS)
    for name, _, categories, origin in rows:
        listed = {c.strip() for c in categories.split(",")} if categories else set()
        if listed & DENIED_CATEGORIES or origin == "ExecutableUserDefined":
            denied.add(name.lower())
    for name, alias_to, _, _ in rows:
        if alias_to and alias_to.lower() in denied:
            denied.add(name.lower())
    return frozenset(denied)


def precheck(sql: str) -> str:
    """The text to hand to the engine's parser, or QueryRejected before any engine work."""
    text = sql.strip()
    if not text:
        raise QueryRejected("empty query")
    if len(text) > MAX_SQL_LENGTH:
        raise QueryRejected(f"query longer than {MAX_SQL_LENGTH} characters")
    return text


def parse_refusal(engine_message: str) -> QueryRejected:
    """The refusal for text the engine would not parse into JSON (syntax, several statements).

    The engine has no JSON form for statements such as CREATE USER: those are
    named like the statements :func:`judge_ast` refuses.
    """
    unserializable = _UNSERIALIZABLE.search(engine_message)
    if unserializable is not None:
        kind = unserializable.group(1)
        if kind.endswith("Query"):
            return QueryRejected(f"only SELECT queries are allowed, not {_statement_name(kind)}")
        return QueryRejected(f"{kind} is not allowed in a read-only query")
    return QueryRejected(f"not one valid statement: {engine_message}")


def judge_ast(ast: Mapping[str, Any], policy: ReadPolicy) -> None:
    """Raise QueryRejected unless ``ast`` (``parseQueryToJSON``) is a read the policy allows."""
    kind = ast.get("type")
    if kind != "SelectWithUnionQuery":
        raise QueryRejected(f"only SELECT queries are allowed, not {_statement_name(kind)}")
    for key, message in _OUTPUT_OPTIONS.items():
        if ast.get(key) not in (None, False):
            raise QueryRejected(message)
    nodes = list(_nodes(ast))
    ctes = frozenset(str(n.get("name", "")) for n in nodes if n.get("type") == "WithElement")
    # a Function in a TableExpression's table_function slot is a table function
    table_functions = {
        id(n["table_function"])
        for n in nodes
        if n.get("type") == "TableExpression" and isinstance(n.get("table_function"), dict)
    }
    for node in nodes:  # first the kinds refused whole, whatever holds them
        if node.get("type") in _REFUSED_NODES:
            raise QueryRejected(_REFUSED_NODES[str(node["type"])])
    for node in nodes:
        _judge_node(node, policy, ctes, table_functions)


def judge_query_tree(tree: str, policy: ReadPolicy) -> None:
    """Raise QueryRejected unless every table, table function and function resolved is allowed.

    ``tree`` is the text of ``EXPLAIN QUERY TREE``: resolved tables appear as
    ``table_name: db.table``, whatever name, alias or CTE the query used.
    """
    for name in _TREE_TABLE.findall(tree):
        database, dot, table = name.partition(".")
        if not dot or not policy.allows_table(database, table, frozenset()):
            raise QueryRejected(
                f"table {name} is not allowed: a read may use {policy.describe_tables()}"
            )
    for name in _TREE_TABLE_FUNCTION.findall(tree):
        _check_table_function(name, policy)
    for name in _TREE_FUNCTION.findall(tree):
        _check_function(name, policy)


def _statement_name(kind: object) -> str:
    """``ShowTablesQuery`` -> ``SHOW TABLES``: the statement as an admin wrote it."""
    text = str(kind or "this statement").removesuffix("Query")
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text).upper()


def _nodes(node: Any) -> Iterator[dict[str, Any]]:
    """Every AST node under ``node`` (itself included), depth first.

    A Literal's value is data, not syntax: its fields are not walked, so a
    string that looks like a node cannot be mistaken for one.
    """
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            if "type" in item:
                yield item
                if item["type"] == "Literal":
                    continue
            stack.extend(reversed(list(item.values())))


def _judge_node(
    node: dict[str, Any], policy: ReadPolicy, ctes: frozenset[str], table_functions: set[int]
) -> None:
    kind = node.get("type")
    if kind not in _NODE_TYPES:
        raise QueryRejected(f"{kind} is not allowed in a read-only query")
    if kind == "SelectWithUnionQuery":
        for key, message in _OUTPUT_OPTIONS.items():
            if node.get(key) not in (None, False):
                raise QueryRejected(message)
    elif kind == "TableIdentifier":
        _check_table(node, policy, ctes)
    elif kind == "Function" and id(node) in table_functions:
        _check_table_function(str(node.get("name", "")), policy)
    elif kind == "Function":
        name = str(node.get("name", ""))
        _check_function(name, policy)
        if name.lower() in _IN_FUNCTIONS:
            args = (node.get("arguments") or {}).get("children") or []
            if len(args) == 2 and args[1].get("type") == "Identifier":
                _check_table(args[1], policy, ctes)
    elif kind == "ColumnsApplyTransformer" and node.get("func_name"):
        _check_function(str(node["func_name"]), policy)


def _check_table(node: Mapping[str, Any], policy: ReadPolicy, ctes: frozenset[str]) -> None:
    parts = node.get("name_parts") or [node.get("name", "")]
    if len(parts) == 1:
        database, table = None, str(parts[0])
    elif len(parts) == 2:
        database, table = str(parts[0]), str(parts[1])
    else:
        database, table = ".".join(map(str, parts[:-1])), str(parts[-1])
    if not policy.allows_table(database, table, ctes):
        name = table if database is None else f"{database}.{table}"
        raise QueryRejected(
            f"table {name} is not allowed: a read may use {policy.describe_tables()}"
        )


def _check_table_function(name: str, policy: ReadPolicy) -> None:
    if name.lower() not in {t.lower() for t in policy.table_functions}:
        allowed = ", ".join(sorted(policy.table_functions))
        raise QueryRejected(
            f"table function {name}() is not allowed: a read may use {allowed} only"
        )


def _check_function(name: str, policy: ReadPolicy) -> None:
    lowered = name.lower()
    if lowered in policy.denied_functions or lowered.startswith(DENIED_PREFIXES):
        raise QueryRejected(f"function {name}() is not allowed: it reaches outside the metric data")
