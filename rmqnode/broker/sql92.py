"""RocketMQ's SQL92 message selector (module `filter` of 4.9.8: SelectorParser.jj and the
expression classes), as its broker evaluates it. No I/O: text in, a compiled Selector out.

What Java does, and so what this does:

* Properties are the message's properties, all strings; `TAGS` is simply the property the
  tag travels in. Literals are Integer (Long past 32 bits or with an L), Double, String,
  TRUE/FALSE and NULL.
* A comparison converts a string to the other side's type (Integer.valueOf, Long.valueOf,
  Double.valueOf, Boolean.valueOf), and fails when it cannot; `<`, `<=`, `>`, `>=` between
  two strings compare them as doubles. Mismatched types that Java does not convert (a
  number against a boolean) compare as "less". A comparison with a missing property is
  NULL (unknown); AND, OR and NOT use three-valued logic; only TRUE selects a message.
* An evaluation that throws in Java (a property `abc` compared with 5) selects nothing,
  whatever the rest of the expression says: ExpressionMessageFilter catches it and answers
  false.
* The parser stops after the first complete expression (JmsSelector has no <EOF>), so text
  after it is ignored unless the next token is not even a token.
* Errors read as Java's MQFilterException.getMessage(): the cause's class and message, on
  one line (JavaCC's "Was expecting" list is left out).

Hostile text is bounded: at most MAX_LENGTH characters, MAX_DEPTH levels of nesting, no
recursion beyond them, and linear parsing (one token of look-ahead, two at most). Compiled
selectors are cached by text (Java caches 100 in SelectorParser.PARSE_CACHE), failures too,
so a subscription is parsed once, not per pull or per message.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from rmqnode.broker.java_values import (NUMBER_FORMAT, EvalError, Long, java_compare,
                                        java_text, parse_double)
from rmqnode.validation import quote

MAX_LENGTH = 8192
MAX_DEPTH = 64
CACHE_SIZE = 256

_PARSE_ERROR = "org.apache.rocketmq.filter.parser.ParseException"
_LEXICAL_ERROR = "org.apache.rocketmq.filter.parser.TokenMgrError"
_RUNTIME = "java.lang.RuntimeException"

Props = Mapping[str, str]
Evaluator = Callable[[Props], object]


class FilterError(ValueError):
    """An expression Java's SqlFilter.compile refuses; str() is the one-line remark Java's
    CHECK_CLIENT_CONFIG answers with (MQFilterException.getMessage())."""


# -- the tree -------------------------------------------------------------------------------

CONSTANT, PROPERTY, BOOLEAN, OTHER = "constant", "property", "boolean", "other"


@dataclass
class Node:
    """An expression: its kind as Java's parser checks it (a ConstantExpression, a
    PropertyExpression, a BooleanExpression or neither), its evaluator, and how to show it."""
    kind: str
    evaluate: Evaluator
    show: Callable[[], str]
    value: object = None
    boolean_constant: bool = False
    depth: int = 1

    def text(self) -> str:
        return self.show()


def _constant(value: object) -> Node:
    return Node(CONSTANT, lambda props: value, lambda: java_text(value), value,
                boolean_constant=value is None or type(value) is bool)


def _property(name: str) -> Node:
    return Node(PROPERTY, lambda props: props.get(name), lambda: name)


def _derived(kind: str, evaluate: Evaluator, show: Callable[[], str], *children: Node) -> Node:
    depth = 1 + max(c.depth for c in children)
    if depth > MAX_DEPTH:
        raise FilterError(f"{_PARSE_ERROR}: expression nested deeper than {MAX_DEPTH} levels")
    return Node(kind, evaluate, show, depth=depth)


def _binary(symbol: str, evaluate: Evaluator, left: Node, right: Node) -> Node:
    return _derived(BOOLEAN, evaluate, lambda: f"({left.text()} {symbol} {right.text()})",
                    left, right)


def _runtime(message: str) -> FilterError:
    return FilterError(f"{_RUNTIME}: {message}")


def _check_less_than_operand(node: Node) -> None:
    """Only numbers (and what may evaluate to one) go with <, <=, >, >=."""
    numeric = node.kind == CONSTANT and type(node.value) in (int, Long, float)
    if node.kind == BOOLEAN or (node.kind == CONSTANT and not numeric):
        raise _runtime(f"Value {quote(node.text())} cannot be compared.")


def _ordering(symbol: str, test: Callable[[int], bool], left: Node, right: Node) -> Node:
    _check_less_than_operand(left)
    _check_less_than_operand(right)
    lf, rf = left.evaluate, right.evaluate

    def evaluate(props: Props) -> bool | None:
        lv = lf(props)
        if lv is None:
            return None
        rv = rf(props)
        if rv is None:
            return None
        if type(lv) is str and type(rv) is str:
            lv, rv = parse_double(lv), parse_double(rv)
        return test(java_compare(lv, rv))
    return _binary(symbol, evaluate, left, right)


def _raw_equal(left: Node, right: Node) -> Node:
    lf, rf = left.evaluate, right.evaluate

    def evaluate(props: Props) -> bool | None:
        lv, rv = lf(props), rf(props)
        if lv is None:  # NULL = x is unknown, x = NULL false, NULL = NULL true (IS NULL)
            return True if rv is None else None
        if rv is None:
            return False
        return java_compare(lv, rv) == 0
    return _binary("==", evaluate, left, right)


def _equal(left: Node, right: Node) -> Node:
    for node in (left, right):
        if node.kind == CONSTANT and node.value is None:
            raise _runtime(f"{quote(node.text())} cannot be compared.")
    if left.kind == right.kind == CONSTANT and left.boolean_constant \
            and not right.boolean_constant:
        raise _runtime(f"{quote(left.text())} cannot be compared with {quote(right.text())}")
    return _raw_equal(left, right)


def _not(node: Node) -> Node:
    inner = node.evaluate

    def evaluate(props: Props) -> bool | None:
        value = inner(props)
        return None if value is None else not value
    return _derived(BOOLEAN, evaluate, lambda: f"(NOT {node.text()})", node)


def _negate(node: Node) -> Node:
    inner = node.evaluate

    def evaluate(props: Props) -> object:
        value = inner(props)
        kind = type(value)
        return kind(-value) if kind in (int, Long, float) else None  # type: ignore[operator]
    return _derived(OTHER, evaluate, lambda: f"(- {node.text()})", node)


def _boolean(node: Node) -> Node:
    """asBooleanExpression: a property becomes a BooleanCast (a string is never a Boolean,
    so it is FALSE when set, NULL when not); anything else that is not boolean is refused."""
    if node.kind == BOOLEAN or node.boolean_constant:
        return node
    if node.kind == PROPERTY:
        inner = node.evaluate
        return _derived(BOOLEAN, lambda props: None if inner(props) is None else False,
                        node.show, node)
    raise FilterError(f"{_PARSE_ERROR}: Expression will not result in a boolean value: "
                      f"{quote(node.text())}")


def _logic(symbol: str, decisive: bool, nodes: list[Node]) -> Node:
    """AND (decisive FALSE) or OR (decisive TRUE) over a whole chain at once: Java's
    left-nested pairs evaluate the same way, left to right, stopping at the decisive value,
    and a flat chain keeps a long `a AND b AND ...` from nesting deep."""
    evaluators = [n.evaluate for n in nodes]

    def evaluate(props: Props) -> bool | None:
        unknown = False
        for each in evaluators:
            value = each(props)
            if value is None:
                unknown = True
            elif value is decisive:
                return decisive
        return None if unknown else not decisive

    def show() -> str:
        text = nodes[0].text()
        for node in nodes[1:]:
            text = f"({text} {symbol} {node.text()})"
        return text
    return _derived(BOOLEAN, evaluate, show, *nodes)


def _in(left: Node, values: list[str], negated: bool) -> Node:
    if left.kind != PROPERTY:
        raise _runtime(f"Expected a property for In expression, got: {quote(left.text())}")
    inner, members = left.evaluate, frozenset(values)

    def evaluate(props: Props) -> bool | None:
        value = inner(props)
        return None if value is None else (value in members) != negated
    symbol = "NOT IN" if negated else "IN"
    return _derived(BOOLEAN, evaluate,
                    lambda: f"{left.text()} {symbol} ( {', '.join(values)} )", left)


def _between(value: Node, low: Node, high: Node, negated: bool) -> Node:
    if negated:
        return _logic("||", True, [_ordering("<", lambda c: c < 0, value, low),
                                   _ordering(">", lambda c: c > 0, value, high)])
    if low.kind == high.kind == CONSTANT:
        if low.value is None or high.value is None:
            raise _runtime("Illegal values of between, values can not be null!")
        try:
            inverted = java_compare(high.value, low.value) < 0
        except EvalError as exc:
            raise _runtime(str(exc)) from None
        if inverted:
            raise _runtime("Illegal values of between, left value(%s) must less than or equal"
                           " to right value(%s)" % (quote(low.value), quote(high.value)))
    return _logic("&&", False, [_ordering(">=", lambda c: c >= 0, value, low),
                                _ordering("<=", lambda c: c <= 0, value, high)])


ORDERING: dict[str, Callable[[int], bool]] = {
    ">": lambda c: c > 0, ">=": lambda c: c >= 0, "<": lambda c: c < 0, "<=": lambda c: c <= 0}


# -- tokens ---------------------------------------------------------------------------------

KEYWORDS = ("NOT", "AND", "OR", "BETWEEN", "IN", "TRUE", "FALSE", "NULL", "IS")
EOF, DECIMAL, FLOAT, STRING, ID = "<EOF>", "<DECIMAL_LITERAL>", "<FLOATING_POINT_LITERAL>", \
    "<STRING_LITERAL>", "<ID>"
_SKIPPED = re.compile(r"[ \t\n\r\f]+|--[^\n\r]*(?:\r\n|\n|\r)|/\*[^*]*\*+(?:[^*/][^*]*\*+)*/")
_TOKENS = [
    (DECIMAL, re.compile(r"0|[1-9][0-9]*[lL]?")),
    (FLOAT, re.compile(r"[0-9]+\.[0-9]*(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?"
                       r"|[0-9]+[eE][+-]?[0-9]+")),
    (STRING, re.compile(r"'(?:''|[^'])*'")),
    (ID, re.compile(r"[a-zA-Z_$][a-zA-Z0-9_$]*")),
    ("operator", re.compile(r"<>|>=|<=|[=<>(),+-]")),
]


@dataclass
class Token:
    kind: str
    image: str
    at: int


class Lexer:
    """JavaCC's token manager, lazily: the longest match wins (a keyword over an equally long
    identifier), a `--` comment needs its line end, and text is read only as far as the
    parser looks, so garbage past the expression's end errs only if it is the next token."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def next(self) -> Token:
        text = self.text
        skipped = _SKIPPED.match(text, self.pos)
        while skipped:
            self.pos = skipped.end()
            skipped = _SKIPPED.match(text, self.pos)
        start = self.pos
        if start >= len(text):
            return Token(EOF, "", max(start - 1, -1))
        kind, end = "", start
        for name, pattern in _TOKENS:
            found = pattern.match(text, start)
            if found and found.end() > end:
                kind, end = name, found.end()
        if not kind:
            raise self.error(start)
        image = text[start:end]
        if kind == "operator":
            kind = '"' + image + '"'
        elif kind == ID and image.upper() in KEYWORDS:
            kind = '"' + image.upper() + '"'
        self.pos = end
        return Token(kind, image, start)

    def error(self, at: int) -> FilterError:
        """TokenMgrError's message; what an unfinished string or comment read so far is
        shown as `after`."""
        rest = self.text[at:]
        if rest[:1] == "'" or rest[:2] == "/*":
            line, column = position(self.text, len(self.text) - 1)
            return FilterError(f"{_LEXICAL_ERROR}: Lexical error at line {line}, column "
                               f"{column}.  Encountered: <EOF> after : {quote(rest)}")
        line, column = position(self.text, at)
        return FilterError(f"{_LEXICAL_ERROR}: Lexical error at line {line}, column {column}."
                           f"  Encountered: {quote(rest[0])} ({ord(rest[0])}), after : ''")


def position(text: str, at: int) -> tuple[int, int]:
    """JavaCC's line and column of text[at] (tab stops every 8, CR LF one line end)."""
    line, column, previous = 1, 0, ""
    for char in text[:at + 1]:
        if previous == "\n" or (previous == "\r" and char != "\n"):
            line, column = line + 1, 0
        column = column + 8 - column % 8 if char == "\t" else column + 1
        previous = char
    return line, column


# -- the grammar ----------------------------------------------------------------------------

class Parser:
    """SelectorParser.jj's productions, top-down with JavaCC's look-ahead: one token, two for
    IS NULL / IS NOT NULL and NOT BETWEEN / NOT IN."""

    def __init__(self, text: str) -> None:
        self.lexer = Lexer(text)
        self.tokens: list[Token] = []
        self.nesting = 0

    def peek(self, ahead: int = 0) -> Token:
        while len(self.tokens) <= ahead:
            self.tokens.append(self.lexer.next())
        return self.tokens[ahead]

    def take(self, kind: str) -> Token:
        token = self.peek()
        if token.kind != kind:
            raise self.unexpected()
        return self.tokens.pop(0)

    def accept(self, *kinds: str) -> bool:
        if [self.peek(i).kind for i in range(len(kinds))] == list(kinds):
            del self.tokens[:len(kinds)]
            return True
        return False

    def unexpected(self) -> FilterError:
        token = self.peek()
        shown = EOF if token.kind == EOF else f" {token.kind} {quote(token.image)} "
        line, column = position(self.lexer.text, token.at) if token.at >= 0 else (1, 0)
        return FilterError(f'{_PARSE_ERROR}: Encountered "{shown}" at line {line}, column '
                           f"{column}.")

    def selector(self) -> Node:
        return _boolean(self.or_expression())

    def or_expression(self) -> Node:
        nodes = [self.and_expression()]
        while self.accept('"OR"'):
            nodes.append(self.and_expression())
        return nodes[0] if len(nodes) == 1 else _logic("||", True, [_boolean(n) for n in nodes])

    def and_expression(self) -> Node:
        nodes = [self.equality_expression()]
        while self.accept('"AND"'):
            nodes.append(self.equality_expression())
        return nodes[0] if len(nodes) == 1 else _logic("&&", False,
                                                       [_boolean(n) for n in nodes])

    def equality_expression(self) -> Node:
        left = self.comparison_expression()
        while self.peek().kind in ('"="', '"<>"', '"IS"'):
            if self.accept('"="'):
                left = _equal(left, self.comparison_expression())
            elif self.accept('"<>"'):
                left = _not(_equal(left, self.comparison_expression()))
            elif self.accept('"IS"', '"NULL"'):
                left = _raw_equal(left, _constant(None))
            else:
                for kind in ('"IS"', '"NOT"', '"NULL"'):
                    self.take(kind)
                left = _not(_raw_equal(left, _constant(None)))
        return left

    def comparison_expression(self) -> Node:
        left = self.unary()
        while self.peek().kind in ('">"', '">="', '"<"', '"<="', '"BETWEEN"', '"NOT"', '"IN"'):
            negated = self.peek().kind == '"NOT"'
            symbol = self.peek(negated).kind
            if negated and symbol not in ('"BETWEEN"', '"IN"'):
                raise self.unexpected()
            del self.tokens[:1 + negated]
            if symbol == '"BETWEEN"':
                low = self.unary()
                self.take('"AND"')
                left = _between(left, low, self.unary(), negated)
            elif symbol == '"IN"':
                self.take('"("')
                values = [self.string()]
                while self.accept('","'):
                    values.append(self.string())
                self.take('")"')
                left = _in(left, values, negated)
            else:
                left = _ordering(symbol.strip('"'), ORDERING[symbol.strip('"')], left,
                                 self.unary())
        return left

    def unary(self) -> Node:
        kind = self.peek().kind
        if kind in ('"+"', '"-"', '"NOT"', '"("'):
            self.tokens.pop(0)
            self.nesting += 1
            if self.nesting > MAX_DEPTH:
                raise FilterError(f"{_PARSE_ERROR}: expression nested deeper than {MAX_DEPTH}"
                                  " levels")
            if kind == '"("':
                node = self.or_expression()
                self.take('")"')
            else:
                node = self.unary()
                node = node if kind == '"+"' else \
                    _negate(node) if kind == '"-"' else _not(_boolean(node))
            self.nesting -= 1
            return node
        return self.literal()

    def string(self) -> str:
        return self.take(STRING).image[1:-1].replace("''", "'")

    def literal(self) -> Node:
        """primaryExpr's literal or variable (the parenthesis is handled with the prefixes)."""
        token = self.peek()
        if token.kind == STRING:
            return _constant(self.string())
        if token.kind not in LITERALS:
            raise self.unexpected()
        self.tokens.pop(0)
        return LITERALS[token.kind](token.image)


def _decimal(image: str) -> int:
    """ConstantExpression.createFromDecimal: a Long, narrowed to an Integer when it fits."""
    digits = image.rstrip("lL")
    if len(digits) > 19 or int(digits) >= 1 << 63:
        raise FilterError(f'{NUMBER_FORMAT}: For input string: {quote(digits)}')
    value = int(digits)
    return value if value < 1 << 31 else Long(value)


def _float(image: str) -> float:
    """ConstantExpression.createFloat, which also refuses 0.0 (less than Double.MIN_VALUE)."""
    value = float(image)
    if value == float("inf"):
        raise _runtime(f"{image} is greater than 1.7976931348623157E308")
    if value < 5e-324:
        raise _runtime(f"{image} is less than 4.9E-324")
    return value


LITERALS: dict[str, Callable[[str], Node]] = {
    ID: _property, DECIMAL: lambda image: _constant(_decimal(image)),
    FLOAT: lambda image: _constant(_float(image)), '"TRUE"': lambda _: _constant(True),
    '"FALSE"': lambda _: _constant(False), '"NULL"': lambda _: _constant(None)}


# -- compiled selectors ---------------------------------------------------------------------

@dataclass(frozen=True)
class Selector:
    """A compiled expression; shared by every subscription with the same text."""
    text: str
    evaluate: Evaluator

    def matches(self, props: Props) -> bool:
        """ExpressionMessageFilter.isMatchedByCommitLog: only TRUE selects, and an
        evaluation Java would throw from selects nothing."""
        try:
            return self.evaluate(props) is True
        except EvalError:
            return False


_cache: OrderedDict[str, Selector | FilterError] = OrderedDict()


def compile_selector(text: str) -> Selector:
    """SqlFilter.compile with its cache: the same text is parsed once, its failure too."""
    cached = _cache.get(text)
    if cached is None:
        cached = _compile(text)
        _cache[text] = cached
        if len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    else:
        _cache.move_to_end(text)
    if isinstance(cached, FilterError):
        raise cached
    return cached


def _compile(text: str) -> Selector | FilterError:
    if len(text) > MAX_LENGTH:
        return FilterError(f"{_PARSE_ERROR}: expression longer than {MAX_LENGTH} characters")
    try:
        return Selector(text, Parser(text).selector().evaluate)
    except FilterError as exc:
        return exc
