"""The SQL92 selector on its own, table-driven from the semantics of Java's filter module
(ComparisonExpression, LogicExpression, UnaryExpression, ConstantExpression, the JavaCC
grammar): what each expression evaluates to for given message properties (TRUE, FALSE,
NULL, or the exception Java throws, which selects nothing), and which texts fail to compile
with which message."""

from __future__ import annotations

import time

import pytest

from rmqnode.broker import sql92
from rmqnode.broker.sql92 import EvalError, FilterError, compile_selector

PROPS = {"a": "5", "s": "abc", "f": "1.5", "big": "3000000000", "t": "TRUE", "TAGS": "TagA",
         "neg": "-2", "nan": "NaN", "z": "-0.0", "pad": " 7 ", "plus": "+5"}
THROWS = "throws"


@pytest.mark.parametrize("expression, want", [
    # numbers: the property converted to the literal's type
    ("a = 5", True), ("a = 5L", True), ("a = 5.0", True), ("a > 4", True), ("a >= 5", True),
    ("a < 5", False), ("a <= 4.9", False), ("a <> 5", False), ("5 = a", True), ("4 < a", True),
    ("plus = 5", True), ("neg = -2", True), ("neg < -1", True), ("a > - -4", True),
    ("f > 1", THROWS),                # Integer.valueOf("1.5")
    ("f > 1.0", True), ("f = 1.5", True),
    ("big > 1", THROWS),              # beyond Integer
    ("big > 1L", THROWS),             # 1L fits an Integer, so it is one
    ("big > 2147483648", True),       # a Long literal
    ("pad = 7", THROWS), ("pad = 7.0", True),         # Double.valueOf trims, parseInt does not
    ("nan = 0.5", False), ("nan > 1.0", True),        # Double.compareTo: NaN above all
    ("z = 0.5", False), ("z < 1e-300", True),
    # strings
    ("s = 'abc'", True), ("s = 'ABC'", False), ("s <> 'x'", True), ("s = 5", THROWS),
    ("TAGS = 'TagA'", True), ("TAGS IN ('TagA', 'TagB')", True), ("TAGS NOT IN ('TagA')", False),
    ("s IN ('a', 'b', 'c', 'd', 'e', 'abc')", True), ("'it''s' = 'it''s'", True),
    ("s = f", False), ("s > f", THROWS),              # two strings ordered as doubles
    ("a > f", True), ("f < a", True),
    # booleans: TRUE/FALSE, Boolean.valueOf for a property, never ordered
    ("t = TRUE", True), ("s = FALSE", True), ("TRUE", True), ("FALSE", False), ("NULL", None),
    ("5 = TRUE", False), ("(a = 5) = TRUE", True), ("(a = 5) = 1", False),
    ("TRUE = (a = 5)", True),
    # NULL: a missing property
    ("x = 1", None), ("x > 1", None), ("1 < x", None), ("NOT (x = 1)", None), ("x <> 1", None),
    ("x IS NULL", True), ("a IS NULL", False), ("x IS NOT NULL", False), ("x = y", True),
    ("a = x", False), ("x = a", None), ("x IN ('a')", None), ("x NOT IN ('a')", None),
    ("x BETWEEN 1 AND 2", None), ("-x = 1", None), ("-s = 1", None),
    # three-valued logic, left to right, stopping at the decisive value
    ("x = 1 AND a = 5", None), ("x = 1 AND a = 4", False), ("x = 1 OR a = 5", True),
    ("x = 1 OR a = 4", None), ("a = 4 AND s = 5", False), ("s = 5 AND a = 4", THROWS),
    ("a = 5 OR s = 5", True), ("s = 5 OR a = 5", THROWS),
    ("NOT a = 5", False),             # (NOT a) = 5: NOT binds first, a Boolean is no number
    ("NOT x", None), ("a", False), ("x", None), ("NOT a", True),
    # BETWEEN
    ("a BETWEEN 1 AND 5", True), ("a BETWEEN 6 AND 9", False), ("a NOT BETWEEN 6 AND 9", True),
    ("a BETWEEN -1 AND -5", False), ("a BETWEEN 5 AND 5.0", True),
    # the text after the first complete expression is not read
    ("a = 5 b c", True), ("a = 5 )", True), ("a = 5 -- comment\n OR x", True),
    ("a > --4", True),                # no line end: two minus signs, not a comment
    ("a /* c */ = 5", True), ("a = 5 -- no line end", True), ("A = 5", None),         # names keep their case
    ("a = 007", False),               # 0, then 0 and 7 left unread
    ("tags = 'TagA'", None), ("and_or = 1", None),
])
def test_evaluation(expression, want):
    selector = compile_selector(expression)
    if want == THROWS:
        with pytest.raises(EvalError):
            selector.evaluate(PROPS)
        assert selector.matches(PROPS) is False
    else:
        assert selector.evaluate(PROPS) is want
        assert selector.matches(PROPS) is (want is True)


@pytest.mark.parametrize("expression, message", [
    ("", 'ParseException: Encountered "<EOF>" at line 1, column 0.'),
    ("a >", 'ParseException: Encountered "<EOF>" at line 1, column 3.'),
    ("a =\n  (", 'ParseException: Encountered "<EOF>" at line 2, column 3.'),
    ("a = = 1", "ParseException: Encountered \" \"=\" '=' \" at line 1, column 5."),
    ("a IS 5", "ParseException: Encountered \" <DECIMAL_LITERAL> '5' \" at line 1, column 6."),
    ("a NOT 5", "ParseException: Encountered \" \"NOT\" 'NOT' \" at line 1, column 3."),
    ("a IN (1)", "ParseException: Encountered \" <DECIMAL_LITERAL> '1' \""),
    ("5", "ParseException: Expression will not result in a boolean value: '5'"),
    ("'x'", "ParseException: Expression will not result in a boolean value:"),
    ("-a", "ParseException: Expression will not result in a boolean value: '(- a)'"),
    ("a = 1 AND 2", "ParseException: Expression will not result in a boolean value: '2'"),
    ("a > 'x'", "RuntimeException: Value \"'x'\" cannot be compared."),
    ("a > TRUE", "RuntimeException: Value 'TRUE' cannot be compared."),
    ("a > NULL", "RuntimeException: Value 'NULL' cannot be compared."),
    ("(a = 1) > 2", "RuntimeException: Value '(a == 1)' cannot be compared."),
    ("a > 1 > 2", "RuntimeException: Value '(a > 1)' cannot be compared."),
    ("NOT a BETWEEN 1 AND 2", "RuntimeException: Value '(NOT a)' cannot be compared."),
    ("a = NULL", "RuntimeException: 'NULL' cannot be compared."),
    ("TRUE = 5", "RuntimeException: 'TRUE' cannot be compared with '5'"),
    ("a BETWEEN 5 AND 1", "RuntimeException: Illegal values of between, left value('5') must "
                          "less than or equal to right value('1')"),
    ("a BETWEEN NULL AND 1", "RuntimeException: Illegal values of between, values can not be"),
    ("a BETWEEN 1 AND 'x'", 'RuntimeException: java.lang.NumberFormatException: For input '
                            'string: "x"'),
    ("a BETWEEN 'x' AND 'y'", "RuntimeException: Value \"'x'\" cannot be compared."),
    ("1 IN ('a')", "RuntimeException: Expected a property for In expression, got: '1'"),
    ("1e10 IN ('a')", "got: '1.0E10'"),
    ("a > 0.0", "RuntimeException: 0.0 is less than 4.9E-324"),
    ("a > 1e999", "RuntimeException: 1e999 is greater than 1.7976931348623157E308"),
    ("a > 9223372036854775808", "NumberFormatException: For input string: "
                                "'9223372036854775808'"),
    ("a = #", "TokenMgrError: Lexical error at line 1, column 5.  Encountered: '#' (35), "
              "after : ''"),
    ("a = 'x", "TokenMgrError: Lexical error at line 1, column 6.  Encountered: <EOF> "
               "after : \"'x\""),
    ("a = 1 /* x", "TokenMgrError: Lexical error at line 1, column 10.  Encountered: <EOF>"),
    ("é = 1", "TokenMgrError: Lexical error at line 1, column 1.  Encountered: 'é' (233)"),
])
def test_compile_errors(expression, message):
    with pytest.raises(FilterError) as caught:
        compile_selector(expression)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("expression", [
    "(" * 10_000 + "a = 1" + ")" * 10_000, "NOT " * 2000 + "a", "- " * 3000 + "a > 1",
    "a = 1 = " * 100 + "TRUE", "a" + " IS NULL" * 100, "x" * (sql92.MAX_LENGTH + 1),
])
def test_hostile_expressions_fail_cleanly(expression):
    with pytest.raises(FilterError) as caught:
        compile_selector(expression)
    assert len(str(caught.value)) < 200


def test_long_flat_chains_compile_and_run_in_linear_time():
    terms = [f"p{i} = '{i}'" for i in range(400)]
    for joiner in (" AND ", " OR "):
        started = time.perf_counter()
        selector = compile_selector(joiner.join(terms))
        assert selector.evaluate({f"p{i}": str(i) for i in range(400)}) is True
        assert time.perf_counter() - started < 1.0
    deep = compile_selector("(" * 60 + "a = 5" + ")" * 60)
    assert deep.matches(PROPS)


def test_compiled_once_per_text():
    first = compile_selector("a = 5 AND TAGS = 'TagA'")
    assert compile_selector("a = 5 AND TAGS = 'TagA'") is first
    with pytest.raises(FilterError) as one:
        compile_selector("a >")
    with pytest.raises(FilterError) as two:
        compile_selector("a >")
    assert one.value is two.value
    for i in range(sql92.CACHE_SIZE + 10):  # bounded: old texts go
        compile_selector(f"a = {i}")
    assert len(sql92._cache) == sql92.CACHE_SIZE
