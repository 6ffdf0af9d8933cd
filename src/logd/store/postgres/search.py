"""Full-text search in PostgreSQL that answers as the SQLite store's FTS5 index does.

PostgreSQL's own parser splits text differently from FTS5's `unicode61` tokenizer (it keeps
`foo-bar`, `x@y.com` and `1.2.3` whole), so neither `to_tsvector` nor `to_tsquery` is used:
words are cut here exactly as `unicode61` cuts them (runs of letters, digits and private-use
characters; everything else separates), from text folded by `query_language.fold`, and the
`tsvector` and `tsquery` are written out as literals ('simple' semantics: no stemming, no stop
words). The parsed search language (`query_language.parse`) compiles to a `tsquery`:

    word            'word'              prefix*         'prefix':*
    "two words"     'two' <-> 'words'   message:/error: the words' weight (A / B)
    a b, a AND b    a & b               a OR b          a | b          a NOT b   a & !b

An entry's words carry their column as the weight (message A, error B, the record's other
values C), and each column's positions start past the previous column's last, so a phrase
never spans two columns (FTS5 matches a phrase within one column). Limits PostgreSQL sets:
positions stop at 16,383 (a phrase later in a long record is not found; its words are), a
word is cut at 2,046 bytes, and a record keeps its first ~900 KB of distinct words.
"""

from __future__ import annotations

import re

from logd.store.query_language import And, Column, Node, Or, Term, fold

#: Runs of what FTS5's unicode61 tokenizer keeps in a token: letters and digits (Unicode
#: categories L* and N*, what `str.isalnum` tests) and private-use characters (Co).
_WORD = re.compile("(?:[^\\W_]|[\ue000-\uf8ff\U000f0000-\U000ffffd\U00100000-\U0010fffd])+")
#: PostgreSQL's limits on a tsvector: a lexeme's bytes, a position, positions per lexeme, and
#: the whole value (1 MB; kept well under).
MAX_WORD_BYTES = 2046
MAX_POSITION = 16383
MAX_POSITIONS = 255
MAX_VECTOR_BYTES = 900_000
#: The weight of each indexed column, as `message:` and `error:` ask for them.
WEIGHTS = {"message": "A", "error": "B", "values": "C"}


def tokens(text: str) -> list[str]:
    """The words of `text` as the index holds them: folded, lower case, cut as FTS5 cuts."""
    return [_cap(w) for w in _WORD.findall(fold(text).lower())]


def _cap(word: str) -> str:
    if len(word) * 4 <= MAX_WORD_BYTES:  # fast path: no UTF-8 character is over 4 bytes
        return word
    return word.encode()[:MAX_WORD_BYTES].decode(errors="ignore")


def _quote(word: str) -> str:
    """A lexeme as a tsvector/tsquery literal: in single quotes, `'` and `\\` doubled."""
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


def tsvector(message: str, error: str | None, values: str | None) -> str:
    """The `tsvector` literal of an entry's message, error and other values (see module doc)."""
    found: dict[str, list[str]] = {}
    size = 0
    position = 1
    for text, weight in ((message, "A"), (error, "B"), (values, "C")):
        if not text:
            continue
        for word in tokens(text):
            places = found.get(word)
            if places is None:
                size += len(word) + 8
                if size > MAX_VECTOR_BYTES:
                    break
                places = found[word] = []
            if len(places) < MAX_POSITIONS:
                places.append(f"{min(position, MAX_POSITION)}{weight}")
            position += 1
        position += 1  # a gap: no phrase runs from one column into the next
    return " ".join(f"{_quote(w)}:{','.join(p)}" for w, p in found.items())


def tsquery(node: Node) -> str:
    """The `tsquery` literal of a parsed query (`query_language.parse`, not None)."""
    return _compile(node, "")


def _compile(node: Node, weight: str) -> str:
    if isinstance(node, Term):
        words = tokens(node.text)
        last = len(words) - 1
        parts = [
            _quote(w)
            + (":*" + weight if node.prefix and i == last else f":{weight}" * bool(weight))
            for i, w in enumerate(words)
        ]
        return parts[0] if len(parts) == 1 else "(" + " <-> ".join(parts) + ")"
    if isinstance(node, Column):
        return _compile(node.expr, WEIGHTS[node.name])
    if isinstance(node, And):
        return "(" + " & ".join(_compile(p, weight) for p in node.parts) + ")"
    if isinstance(node, Or):
        return "(" + " | ".join(_compile(p, weight) for p in node.parts) + ")"
    keep = _compile(node.keep, weight)
    drops = " & ".join(f"!{_compile(d, weight)}" for d in node.drop)
    return f"({keep} & {drops})"
