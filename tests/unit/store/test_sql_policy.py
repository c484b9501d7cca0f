"""The SQL policy's judgement of the engine's parse, with trees shaped as parseQueryToJSON gives.

The trees here are written by hand in the engine's JSON shape (the integration
tests in tests/integration/vmpulse/test_reader.py feed real SQL through the
engine); each case is one rule, so a broken rule names itself.
"""

from __future__ import annotations

from typing import Any

import pytest

from store.exceptions import QueryRejected
from store.sql_policy import (
    DENIED_FUNCTIONS,
    MAX_SQL_LENGTH,
    ReadPolicy,
    denied_functions,
    judge_ast,
    judge_query_tree,
    precheck,
)

POLICY = ReadPolicy(database="vmpulse", tables=frozenset({"system_metrics", "disk_usage"}))


def ident(name: str) -> dict[str, Any]:
    parts = name.split(".")
    node: dict[str, Any] = {"type": "Identifier", "name": name}
    if len(parts) > 1:
        node["name_parts"] = parts
    return node


def table(name: str) -> dict[str, Any]:
    return {**ident(name), "type": "TableIdentifier"}


def lit(value: object) -> dict[str, Any]:
    return {"type": "Literal", "value": {"field_type": "String", "value": value}}


def fn(name: str, *args: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Function", "name": name, "arguments": exprs(*args)}


def exprs(*children: dict[str, Any]) -> dict[str, Any]:
    return {"type": "ExpressionList", "children": list(children)}


def element(expression: dict[str, Any]) -> dict[str, Any]:
    return {"type": "TablesInSelectQueryElement", "table_expression": expression}


def from_table(name: str) -> dict[str, Any]:
    return element({"type": "TableExpression", "database_and_table_name": table(name)})


def from_function(name: str, *args: dict[str, Any]) -> dict[str, Any]:
    return element({"type": "TableExpression", "table_function": fn(name, *args)})


def from_subquery(query: dict[str, Any]) -> dict[str, Any]:
    sub = {"type": "Subquery", "children": [query]}
    return element({"type": "TableExpression", "subquery": sub})


def select(
    *items: dict[str, Any], sources: tuple[dict[str, Any], ...] = (), **clauses: Any
) -> dict[str, Any]:
    query: dict[str, Any] = {"type": "SelectQuery", "select": exprs(*items), **clauses}
    if sources:
        query["tables"] = {"type": "TablesInSelectQuery", "children": list(sources)}
    return {
        "type": "SelectWithUnionQuery",
        "union_mode": "UNION_DEFAULT",
        "list_of_selects": exprs(query),
        "is_outfile_append": False,
        "is_outfile_truncate": False,
        "is_into_outfile_with_stdout": False,
    }


def rejected(tree: dict[str, Any]) -> str:
    with pytest.raises(QueryRejected) as info:
        judge_ast(tree, POLICY)
    return str(info.value)


@pytest.mark.parametrize(
    "tree",
    [
        select(lit(1)),
        select(ident("vm_id"), sources=(from_table("system_metrics"),)),
        select(ident("x"), sources=(from_table("vmpulse.disk_usage"),)),
        select(ident("number"), sources=(from_table("system.numbers"),)),
        select(ident("name"), sources=(from_table("system.functions"),)),
        select(ident("number"), sources=(from_function("numbers", lit(10)),)),
        select(ident("a"), sources=(from_function("generateRandom", lit("a UInt8")),)),
        select(ident("v"), sources=(from_function("values", lit("v UInt8"), lit(1)),)),
        select(fn("avg", ident("cpu")), where=fn("in", ident("vm_id"), ident("system_metrics"))),
        select(ident("n"), sources=(from_subquery(select(lit(1))),)),
    ],
)
def test_reads_of_the_metric_data_pass(tree: dict[str, Any]) -> None:
    judge_ast(tree, POLICY)


def test_a_cte_may_shadow_a_name_but_its_body_is_judged_too() -> None:
    cte = {"type": "WithElement", "name": "recent", "subquery": select(lit(1))}
    tree = select(ident("x"), sources=(from_table("recent"),), **{"with": exprs(cte)})
    judge_ast(tree, POLICY)
    bad_body = select(ident("x"), sources=(from_table("secret.t"),))
    cte = {"type": "WithElement", "name": "recent", "subquery": bad_body}
    tree = select(ident("x"), sources=(from_table("recent"),), **{"with": exprs(cte)})
    assert "table secret.t is not allowed" in rejected(tree)


@pytest.mark.parametrize(
    ("kind", "statement"),
    [
        ("InsertQuery", "INSERT"),
        ("AlterQuery", "ALTER"),
        ("CreateQuery", "CREATE"),
        ("DropQuery", "DROP"),
        ("KillQueryQuery", "KILL QUERY"),
        ("SystemQuery", "SYSTEM"),
        ("OptimizeQuery", "OPTIMIZE"),
        ("ShowTablesQuery", "SHOW TABLES"),
        ("ExplainQuery", "EXPLAIN"),
        ("SetQuery", "SET"),
    ],
)
def test_only_select_statements(kind: str, statement: str) -> None:
    assert rejected({"type": kind}) == f"only SELECT queries are allowed, not {statement}"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"out_file": lit("/tmp/x")}, "INTO OUTFILE is not allowed"),
        ({"is_into_outfile_with_stdout": True}, "INTO OUTFILE is not allowed"),
        ({"format_ast": ident("JSON")}, "FORMAT is not allowed"),
        ({"settings_ast": {"type": "SetQuery", "changes": []}}, "SETTINGS are not allowed"),
    ],
)
def test_no_output_options(extra: dict[str, Any], message: str) -> None:
    assert rejected({**select(lit(1)), **extra}).startswith(message)


def test_settings_are_refused_at_any_depth() -> None:
    inner = select(lit(1), settings={"type": "SetQuery", "changes": [{"name": "readonly"}]})
    tree = select(ident("x"), sources=(from_subquery(inner),))
    assert rejected(tree).startswith("SETTINGS are not allowed")


def test_query_parameters_and_unknown_nodes_are_refused() -> None:
    assert "parameters" in rejected(select({"type": "QueryParameter", "name": "p"}))
    assert rejected(select({"type": "Dictionary"})) == (
        "Dictionary is not allowed in a read-only query"
    )


@pytest.mark.parametrize(
    "name",
    [
        *("file", "url", "s3", "hdfs", "remote", "remoteSecure", "cluster", "mysql", "postgresql"),
        *("jdbc", "odbc", "executable", "input", "dictionary", "merge", "Python", "loop", "zeros"),
    ],
)
def test_only_computing_table_functions(name: str) -> None:
    tree = select(ident("x"), sources=(from_function(name, lit("a")),))
    assert rejected(tree).startswith(f"table function {name}() is not allowed")


@pytest.mark.parametrize(
    "name", ["file", "FILE", "dictGet", "joinGet", "hostName", "getMacro", "getServerSetting"]
)
def test_denied_scalar_functions_anywhere(name: str) -> None:
    nested = fn("concat", lit("a"), fn(name, lit("/etc/hostname")))
    assert rejected(select(nested)).startswith(f"function {name}() is not allowed")
    assert "not allowed" in rejected(select(lit(1), where=nested))
    lam = fn("lambda", fn("tuple", ident("x")), fn(name, ident("x")))
    for apply in (
        {"type": "ColumnsApplyTransformer", "lambda": lam, "lambda_arg": "x"},
        {"type": "ColumnsApplyTransformer", "func_name": name},
    ):
        transformers = {"type": "ColumnsTransformerList", "children": [apply]}
        star = {"type": "Asterisk", "transformers": transformers}
        assert "not allowed" in rejected(select(star))


@pytest.mark.parametrize(
    "name", ["secret.t", "system.tables", "system.processes", "default.t", "a.b.c", "t"]
)
def test_tables_outside_the_allow_list(name: str) -> None:
    assert rejected(select(ident("x"), sources=(from_table(name),))).startswith(
        f"table {name} is not allowed"
    )


def test_a_table_named_on_the_right_of_in_is_a_table() -> None:
    tree = select(lit(1), where=fn("notIn", ident("x"), ident("secret.t")))
    assert rejected(tree).startswith("table secret.t is not allowed")


def test_a_literal_that_looks_like_a_node_is_data() -> None:
    disguised = {"type": "Literal", "value": {"type": "Function", "name": "file"}}
    judge_ast(select(disguised), POLICY)


def test_query_tree_resolution_is_checked() -> None:
    allowed = (
        "QUERY id: 0\n  JOIN TREE\n    TABLE id: 3, alias: __table1, table_name: "
        "vmpulse.system_metrics\n    TABLE id: 5, table_name: system.one\n"
        "    TABLE_FUNCTION id: 7, table_function_name: numbers\n"
        "    FUNCTION id: 8, function_name: avg, function_type: aggregate\n"
    )
    judge_query_tree(allowed, POLICY)
    for line, message in (
        ("TABLE id: 9, alias: __table2, table_name: other.s", "table other.s"),
        ("TABLE id: 9, table_name: system.tables", "table system.tables"),
        ("TABLE_FUNCTION id: 9, table_function_name: url", "table function url()"),
        ("FUNCTION id: 9, function_name: hostName, function_type: ordinary", "function hostName"),
    ):
        with pytest.raises(QueryRejected, match=message):
            judge_query_tree(allowed + line + "\n", POLICY)


def test_denied_functions_come_from_the_catalogue() -> None:
    catalogue = [
        ("hostName", "", "Other", "System"),
        ("hostname", "hostName", "Other", "System"),
        ("dictGetString", "", "Dictionary", "System"),
        ("aiGenerate", "", "AI", "System"),
        ("AIGenerate", "aiGenerate", "", "System"),
        ("my_script", "", "", "ExecutableUserDefined"),
        ("plus", "", "Arithmetic", "System"),
        ("addressToSymbol", "", "Introspection", "System"),
    ]
    denied = denied_functions(catalogue)
    assert {"hostname", "dictgetstring", "aigenerate", "my_script", "addresstosymbol"} <= denied
    assert "plus" not in denied
    assert denied >= DENIED_FUNCTIONS


def test_text_is_bounded_before_the_engine_sees_it() -> None:
    assert precheck("  SELECT 1  ") == "SELECT 1"
    with pytest.raises(QueryRejected, match="empty"):
        precheck(" \n ")
    with pytest.raises(QueryRejected, match="longer than"):
        precheck("SELECT " + "1" * MAX_SQL_LENGTH)
