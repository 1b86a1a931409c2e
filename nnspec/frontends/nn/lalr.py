"""A small LALR(1) driver that runs the grammar's Lark tables without importing Lark.

``nnspec check`` parses every spec; Lark's own runtime costs a third of a check's start-up
(importing it, reading its tables) and its parser loop is general (interactive parsing,
ambiguity, error recovery). This driver replays exactly what Lark's contextual lexer and
LALR parser do on input that parses: the same regular expressions tried in the same order
per parser state, the same keyword rule (a name that spells a keyword accepted there is that
keyword), the same line counting, the same reductions and the same children handed to the
syntax-tree builder (placeholders, inlined ``_rules``, ``?rules`` of one child). It is data,
written from a Lark parser by ``tables.write_tables`` (``grammar/nnspec.driver.json``, with
the digest of the grammar and the Lark version it was made from).

On any input it cannot take (a character no terminal matches, a token the state does not
accept) it raises :class:`Reject`, and the caller parses the text again with Lark, whose
exception then says what is wrong: every syntax error is Lark's, word for word.
"""

from __future__ import annotations

import re


class Reject(Exception):
    """The text does not parse (or needs something this driver does not do): ask Lark."""


class Tok(str):
    """A token: the text, with Lark's attributes (``lark.Token`` without Lark)."""

    __slots__ = ("type", "start_pos", "value", "line", "column", "end_line", "end_column",
                 "end_pos")

    def __repr__(self) -> str:
        return f"Token({self.type!r}, {self.value!r})"


class _Inline:
    """An ``_inlined`` rule's children, spliced into its parent's."""

    __slots__ = ("children",)

    def __init__(self, children):
        self.children = children


class Driver:
    """The tables of one grammar, bound to a syntax-tree builder."""

    def __init__(self, data: dict, builder):
        self.start = data["start"]
        self.end = data["end"]
        # states[s][symbol] = next state (shift, >= 0) or ~rule (reduce, < 0)
        self.states = data["states"]
        self.state_lexer = data["state_lexer"]
        # (rule, size, callback, or None for a ``?rule`` that hands its one child through)
        self.rules = [(origin, size, None if _unit(size, expand1, keep, tail) else
                       _callback(builder, name, expand1, keep, tail))
                      for origin, size, name, expand1, keep, tail in data["rules"]]
        self.rank = {name: i for i, (name, _) in enumerate(data["terminals"])}
        self._pattern = dict(data["terminals"])
        self._match: dict = {}
        self.union = data["union"]
        self._scan = None
        self.ignore = frozenset(data["ignore"])
        self.newline = frozenset(data["newline"])
        self._lexer_data = data["lexers"]
        self._lexers: list = [None] * len(self._lexer_data)

    def _matcher(self, name: str):
        m = self._match.get(name)
        if m is None:
            m = self._match[name] = re.compile(self._pattern[name]).match
        return m

    def _lexer(self, i: int):
        """Lexer i (one per set of terminals a state accepts): (the terminals it accepts,
        its keywords, the terminals it accepts that the common scan does not try, with their
        rank, and its terminals in order with their matchers, made on first need)."""
        lx = self._lexers[i]
        if lx is None:
            d = self._lexer_data[i]
            union = set(self.union)
            extra = tuple(sorted((self.rank[t], t) for t in d["allow"] if t not in union))
            lx = self._lexers[i] = (frozenset(d["allow"]), d["unless"],
                                    tuple((r, self._matcher(t)) for r, t in extra),
                                    d["allow"])
        return lx

    def _slow(self, allow: list, text: str, pos: int):
        """What the state's own scanner matches: its terminals tried one by one, in order."""
        for name in allow:
            m = self._matcher(name)(text, pos)
            if m is not None:
                return m.group(0), name
        raise Reject()

    def parse(self, text: str):
        """Parse ``text``: the builder's result for the start rule; Reject if it does not
        parse. Each token is matched by one scan of the common terminals, which gives what
        the state's scanner would whenever its winner is a terminal the state accepts and no
        terminal the scan left out, ranked before it, matches there; else the state's
        terminals are tried one by one."""
        states, rules, state_lexer = self.states, self.rules, self.state_lexer
        lexers, rank = self._lexers, self.rank
        ignore, newline = self.ignore, self.newline
        scan = self._scan
        if scan is None:
            scan = self._scan = re.compile("|".join(
                f"(?P<{t}>{self._pattern[t]})" for t in self.union)).match
        stack = [self.start]
        values: list = []
        pos, line, line_start, end = 0, 1, 0, len(text)
        new = str.__new__
        while True:
            # ---- the next token, lexed in the state the parser is in
            i = state_lexer[stack[-1]]
            allow, unless, extra, order = lexers[i] or self._lexer(i)
            tok = None
            while pos < end:
                m = scan(text, pos)
                if m is not None and m.lastgroup in allow:
                    type_ = m.lastgroup
                    value = m.group(0)
                    if extra:
                        r = rank[type_]
                        for er, ematch in extra:
                            if er < r and ematch(text, pos) is not None:
                                value, type_ = self._slow(order, text, pos)
                                break
                else:
                    value, type_ = self._slow(order, text, pos)
                start, col, start_line = pos, pos - line_start + 1, line
                if type_ in newline:
                    n = value.count("\n")
                    if n:
                        line += n
                        line_start = pos + value.rindex("\n") + 1
                pos += len(value)
                if type_ in ignore:
                    continue
                tok = new(Tok, value)
                tok.type = unless[type_].get(value, type_) if type_ in unless else type_
                tok.value = value
                tok.start_pos, tok.line, tok.column = start, start_line, col
                tok.end_line, tok.end_column, tok.end_pos = line, pos - line_start + 1, pos
                break
            kind = tok.type if tok is not None else "$END"
            # ---- reduce while the state asks to, then shift the token
            while True:
                act = states[stack[-1]].get(kind)
                if act is None:
                    raise Reject()
                if act >= 0:
                    if tok is None or act == self.end:
                        raise Reject()
                    stack.append(act)
                    values.append(tok)
                    break
                origin, size, callback = rules[~act]
                if callback is None:  # its one child is its value
                    del stack[-1]
                    goto = states[stack[-1]][origin]
                    stack.append(goto)
                    if tok is None and goto == self.end:
                        return values[-1]
                    continue
                if size:
                    children = values[-size:]
                    del stack[-size:]
                    del values[-size:]
                else:
                    children = []
                value = callback(children)
                goto = states[stack[-1]][origin]
                stack.append(goto)
                values.append(value)
                if tok is None and goto == self.end:
                    return value


def _unit(size: int, expand1: bool, keep, tail: int) -> bool:
    """A ``?rule`` of one symbol, kept: its value is its child's."""
    return size == 1 and expand1 and not tail and keep in (None, [[0, False, 0]])


def _callback(builder, name: str, expand1: bool, keep, tail: int):
    """What Lark's parse-tree builder does with a rule's children: keep those listed (with
    the placeholders before each, ``tail`` after the last), splice in inlined rules' children,
    hand one child of a ``?rule`` through, and call the builder's method for the rule."""
    method = getattr(builder, name, None)
    if method is None:
        if not name.startswith("_"):
            def method(children):  # a tree Lark would build: let Lark build it
                raise Reject()
        else:
            method = _Inline
    if expand1:
        inner = method

        def method(children):
            return children[0] if len(children) == 1 else inner(children)
    if keep is None:
        return method
    if not tail and all(not splice and not nones for _, splice, nones in keep):
        picks = [i for i, _, _ in keep]
        return lambda children: method([children[i] for i in picks])

    def filtered(children):
        out: list = []
        for i, splice, nones in keep:
            if nones:
                out += [None] * nones
            if splice:
                if out:
                    out += children[i].children
                else:
                    out = children[i].children
            else:
                out.append(children[i])
        if tail:
            out += [None] * tail
        return method(out)
    return filtered
