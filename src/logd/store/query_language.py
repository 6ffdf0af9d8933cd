"""The search language of `logd query` and of a webhook's `match`, parsed once for any backend.

Two modes, one tree (`Term`, `Column`, `And`, `Or`, `Not`):

- plain (`logd query WORDS`): every word must appear; `"double quotes"` make a phrase (one left
  open closes at the end). Nothing else is syntax, so any text is a query.
- expression (`logd query --fts`, `[[webhooks]] match`): words, `"phrases"` (`""` is a quote
  inside one), `prefix*`, `AND`, `OR`, `NOT` (upper case; `a b` means `a AND b`; `NOT` binds
  tightest, then `AND`, then `OR`), `( … )` and the column filters `message:` and `error:`.
  A mistake is a `QueryError` naming the problem and its position (1 = the first character).

Words are compared case- and accent-insensitively beyond Latin: `fold` maps the stored text and
each word of a query the same way (Turkish dotted and dotless i, Greek accents and final sigma,
German ß and ss), and a backend compares folded words. A word with no letter or digit (`-`,
`*` alone, `…`) cannot be in a word index and is left out, as search engines leave out stop
words; a query with no word left matches everything, like no text at all (`parse` gives None).

Plain Python on purpose: `logd query` imports it before it opens the store.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from logd.errors import QueryError

__all__ = ["COLUMNS", "And", "Column", "Node", "Not", "Or", "Term", "fold", "parse", "words"]

#: Column filters a user may write (`error:timeout`), by the name they write.
COLUMNS = ("message", "error")
#: Parentheses a query may nest, and operators (AND, OR, NOT, a column) inside each other.
#: A backend parses what it is given with a bounded stack (FTS5 failed at 33 operators deep,
#: measured on every shape of nesting), so the tree stays well below that.
MAX_DEPTH = 16
MAX_NESTING = 20


@dataclass(frozen=True, slots=True)
class Term:
    """A word or phrase, folded; `prefix` when its last word may be the start of a longer one."""

    text: str
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class Column:
    """`expr` must match within one column (`message` or `error`)."""

    name: str
    expr: Node


@dataclass(frozen=True, slots=True)
class And:
    """Every part matches."""

    parts: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """At least one part matches."""

    parts: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    """`keep` matches and none of `drop` does."""

    keep: Node
    drop: tuple[Node, ...]


Node = Term | Column | And | Or | Not


# -- folding --------------------------------------------------------------------------------

# What casefold and NFKD leave that still differs between spellings of one word: the dotless
# i (Turkish: BAĞLANTI is the same word in lower case with a dotless i). Casefold already makes
# the Greek final sigma a plain sigma. NUL separates words like any control character, but
# SQLite's JSON functions, which carry folded text into the index, end a string there.
_AFTER = str.maketrans({"\u0131": "i", "\x00": " "})
_SURROGATES = re.compile("[\ud800-\udfff]")


@lru_cache(maxsize=1)
def _marks() -> re.Pattern[str]:
    """Every combining mark (canonical combining class > 0), as one character class.

    Built on first use from the running Python's Unicode tables (~90 ms), for long text only:
    a query is short, and `logd query` should not wait for a table it hardly needs.
    """
    ranges: list[tuple[int, int]] = []
    for cp in range(0x300, 0x20000):  # no combining mark lies outside this span
        if unicodedata.combining(chr(cp)):
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1] = (ranges[-1][0], cp)
            else:
                ranges.append((cp, cp))
    return re.compile("[" + "".join(f"{chr(a)}-{chr(b)}" for a, b in ranges) + "]+")


def fold(text: str) -> str:
    """`text` as the word index holds it: ASCII unchanged, else casefolded, marks dropped.

    NFKD splits letters from their accents (é, ά, İ) and compatibility forms from what they
    stand for (ﬁ, full-width letters); the marks go; casefold maps case, ß to ss and the final
    sigma to sigma; the dotless i becomes i. ASCII text comes back as it is (the tokenizer
    folds ASCII case itself), so the stored text of most entries needs no copy. Same rule for
    stored text and queries.
    """
    if text.isascii():
        return text
    text = unicodedata.normalize("NFKD", text.casefold())
    if len(text) < 256:
        text = "".join(c for c in text if not unicodedata.combining(c))
    else:
        text = _marks().sub("", text)
    return text.casefold().translate(_AFTER)


def words(text: str) -> bool:
    """Whether `text` holds a word an index can hold: a letter, a digit or a private-use mark."""
    return any(c.isalnum() or unicodedata.category(c) == "Co" for c in text)


# -- parsing --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "word", "phrase", "column", "and", "or", "not", "(", ")"
    text: str
    pos: int  # 1-based, for messages
    prefix: bool = False


_OPERATORS = {"AND": "and", "OR": "or", "NOT": "not"}
_BREAK = frozenset(' \t\n\r\f\v()"')


def parse(text: str, *, plain: bool = False) -> Node | None:
    """The tree of a query, or None when it has no word to search for.

    `plain`: the words of `logd query` without `--fts` (never an error). Otherwise the
    expression language of `--fts` and webhook `match`; raises `QueryError` naming the problem
    and its position.
    """
    # A lone surrogate (bytes that were not UTF-8 on the command line) cannot reach a
    # database; NUL ends a string in SQLite's query parsers. Both are no word anyway.
    text = _SURROGATES.sub("\ufffd", text).replace("\x00", " ")
    if plain:
        return _plain(text)
    return _Parser(_lex(text), len(text)).parse()


def _term(text: str, prefix: bool = False) -> Term | None:
    folded = fold(text)
    return Term(folded, prefix) if words(folded) else None


def _plain(text: str) -> Node | None:
    """Words and "phrases", all required; an unclosed quote runs to the end."""
    parts: list[Node] = []
    for i, chunk in enumerate(text.split('"')):
        if i % 2:  # inside quotes: one phrase
            found = _term(chunk)
            if found is not None:
                parts.append(found)
        else:
            parts.extend(t for t in map(_term, chunk.split()) if t is not None)
    return _join(And, parts)


def _join(kind: type[And] | type[Or], parts: list[Node]) -> Node | None:
    """`kind` of `parts`, merging nested parts of the same kind; one part is itself."""
    flat: list[Node] = []
    for part in parts:
        flat.extend(part.parts if isinstance(part, kind) else (part,))
    if not flat:
        return None
    return flat[0] if len(flat) == 1 else kind(tuple(flat))


def _lex(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "()":
            tokens.append(_Token(c, c, i + 1))
            i += 1
        elif c == '"':
            start, i, chunks = i, i + 1, []
            while True:
                end = text.find('"', i)
                if end < 0:
                    raise QueryError(
                        f"the quote at position {start + 1} is never closed",
                        hint='close the phrase with ", or drop --fts to search for the words',
                    )
                chunks.append(text[i:end])
                if text.startswith('"', end + 1):  # "" inside a phrase is one quote
                    chunks.append('"')
                    i = end + 2
                    continue
                i = end + 1
                break
            prefix = text.startswith("*", i)
            i += prefix
            tokens.append(_Token("phrase", "".join(chunks), start + 1, prefix))
        else:
            start = i
            while i < n and text[i] not in _BREAK and not text[i].isspace():
                i += 1
            tokens.extend(_word(text[start:i], start + 1))
    return tokens


def _word(word: str, pos: int) -> list[_Token]:
    """One bare word: an operator, a column filter (and what follows its colon), or a word."""
    if word in _OPERATORS:
        return [_Token(_OPERATORS[word], word, pos)]
    name, colon, rest = word.partition(":")
    if colon and name.lower() in COLUMNS:
        column = _Token("column", f"{name.lower()}:", pos)
        return [column, *_word(rest, pos + len(name) + 1)] if rest else [column]
    if len(word) > 1 and word.endswith("*"):
        return [_Token("word", word[:-1], pos, prefix=True)]
    return [_Token("word", word, pos)]


def _nesting(node: Node) -> int:
    """How many operators deep `node` goes (a word is 0)."""
    if isinstance(node, Term):
        return 0
    if isinstance(node, Column):
        return 1 + _nesting(node.expr)
    parts = (node.keep, *node.drop) if isinstance(node, Not) else node.parts
    return 1 + max(map(_nesting, parts))


class _Parser:
    """Recursive descent over the tokens: or := and (OR and)*; and := not ([AND] not)*;
    not := unary (NOT unary)*; unary := [column:] primary; primary := word | phrase | (or)."""

    def __init__(self, tokens: list[_Token], length: int) -> None:
        self.tokens, self.i, self.end, self.depth = tokens, 0, length + 1, 0

    def parse(self) -> Node | None:
        if not self.tokens:
            return None
        node = self._or()
        if self.i < len(self.tokens):  # only a stray ")" stops the loops early
            raise self._error(self.tokens[self.i], "has no ( to close")
        return node

    def _peek(self) -> _Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _error(self, token: _Token | None, problem: str) -> QueryError:
        return QueryError(
            f"{token.text!r} at position {token.pos} {problem}"
            if token
            else f"{problem} at the end of the query",
            hint='write words, "phrases", prefix*, AND, OR, NOT, ( ), message: or error:; '
            "or drop --fts to search for the words as typed",
        )

    def _or(self) -> Node | None:
        parts = [self._and()]
        while (token := self._peek()) is not None and token.kind == "or":
            self.i += 1
            parts.append(self._operand(token, self._and))
        return _join(Or, [p for p in parts if p is not None])

    def _and(self) -> Node | None:
        parts = [self._not()]
        while (token := self._peek()) is not None and token.kind not in ("or", ")"):
            if token.kind == "and":
                self.i += 1
                parts.append(self._operand(token, self._not))
            else:
                parts.append(self._not())
        return _join(And, [p for p in parts if p is not None])

    def _not(self) -> Node | None:
        keep = self._unary()
        drop: list[Node] = []
        while (token := self._peek()) is not None and token.kind == "not":
            self.i += 1
            if keep is None:
                raise self._error(token, "needs a word before it, as in `timeout NOT retry`")
            part = self._operand(token, self._unary)
            if part is not None:
                drop.append(part)
        if keep is None or not drop:
            return keep
        if isinstance(keep, Not):  # (a NOT b) NOT c: one list of what to leave out
            return Not(keep.keep, (*keep.drop, *drop))
        return Not(keep, tuple(drop))

    def _operand(self, after: _Token, parse: Callable[[], Node | None]) -> Node | None:
        """What follows an operator: there must be something."""
        token = self._peek()
        if token is None or token.kind in ("and", "or", "not", ")"):
            raise self._error(after, "needs a word after it")
        return parse()

    def _unary(self) -> Node | None:
        token = self._peek()
        if token is not None and token.kind == "column":
            self.i += 1
            nxt = self._peek()
            if nxt is None or nxt.kind not in ("word", "phrase", "("):
                raise self._error(token, 'needs a word, a "phrase" or ( … ) right after it')
            inner = self._primary()
            return None if inner is None else Column(token.text[:-1], inner)
        return self._primary()

    def _primary(self) -> Node | None:
        token = self._peek()
        if token is None:
            raise self._error(None, "a word is missing")
        if token.kind in ("word", "phrase"):
            self.i += 1
            return _term(token.text, token.prefix)
        if token.kind == "(":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self._error(token, f"nests parentheses deeper than {MAX_DEPTH}")
            self.i += 1
            if (close := self._peek()) is not None and close.kind == ")":
                raise self._error(token, "opens an empty group")
            node = self._or()
            close = self._peek()
            if close is None or close.kind != ")":
                raise self._error(token, "is never closed")
            if node is not None and _nesting(node) > MAX_NESTING:
                raise self._error(
                    token, f"nests AND, OR, NOT and columns more than {MAX_NESTING} deep"
                )
            self.i += 1
            self.depth -= 1
            return node
        if token.kind == ")":
            raise self._error(token, "has no ( to close")
        raise self._error(token, "needs a word before it")
