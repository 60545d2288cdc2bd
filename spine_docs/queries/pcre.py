"""A user's regular expression in the dialect both engines agree on.

A filter's pattern is run by a MongoDB server (PCRE) or by the embedded catalog and mongomock
(Python's ``re``). Most syntax means the same in both (``(?P<name>...)``, ``(?i)``,
lookarounds, ``\\A``, ``$``); where it does not, :func:`to_pcre` decides:

* translated, so that both engines match what the server matches: ``\\d \\w \\s`` and their
  negations ``\\D \\W \\S`` (Python's are Unicode-aware, PCRE's ASCII unless ``(*UCP)``) become
  explicit ASCII classes, ``\\b`` and ``\\B`` the same boundaries written with lookarounds;
* refused with :class:`PatternError` naming the construct: ``\\Z`` (end of text in Python,
  "end or before a final newline" in PCRE: use ``$``), the inline flags ``a``, ``L`` and ``u``
  (PCRE has none of them), ``\\N{...}``, ``\\u``/``\\U`` escapes and ``\\v`` (other meanings or
  none in PCRE: write the character itself), POSIX classes ``[[:alpha:]]`` (a set of
  characters in Python), ``{,n}`` (a literal in older PCRE: write ``{0,n}``), and ``\\D \\W \\S``
  inside ``[...]`` (write them outside a set).

Example: ``to_pcre(r"run_\\d+")`` is ``"run_[0-9]+"``.
"""

from __future__ import annotations

_WORD = "A-Za-z0-9_"
_SPACE = r"\t\n\x0b\f\r "
#: inside a set: the members of the class
_IN_SET = {"d": "0-9", "w": _WORD, "s": _SPACE}
#: outside a set: the class itself
_CLASS = {"d": "[0-9]", "D": "[^0-9]", "w": f"[{_WORD}]", "W": f"[^{_WORD}]",
          "s": f"[{_SPACE}]", "S": f"[^{_SPACE}]",
          "b": f"(?:(?<=[{_WORD}])(?![{_WORD}])|(?<![{_WORD}])(?=[{_WORD}]))",
          "B": f"(?:(?<=[{_WORD}])(?=[{_WORD}])|(?<![{_WORD}])(?![{_WORD}]))"}
_REFUSED_ESCAPES = {
    "Z": "\\Z (end of text in Python, end or before a final newline in MongoDB's PCRE): use $",
    "N": "\\N (a named character in Python, any character but a newline in PCRE): write the character",
    "u": "\\u (not an escape in PCRE): write the character itself",
    "U": "\\U (not an escape in PCRE): write the character itself",
    "v": "\\v (a vertical tab in Python, any vertical space in PCRE): write \\x0b",
}
_REFUSED_FLAGS = {"a": "ASCII", "L": "LOCALE", "u": "UNICODE"}


class PatternError(ValueError):
    """A construct that MongoDB's PCRE lacks or reads differently; the message names it."""


def to_pcre(pattern: str) -> str:
    """``pattern`` (already accepted by Python's ``re``) rewritten so that PCRE and Python's
    ``re`` match the same strings; :class:`PatternError` for what cannot be (see the module
    docstring)."""
    out: list[str] = []
    i, n = 0, len(pattern)
    in_set = False
    set_start = 0
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            e = pattern[i + 1]
            if e in _REFUSED_ESCAPES:
                raise PatternError(f"{_REFUSED_ESCAPES[e]}")
            if in_set:
                if e in "DWS":
                    raise PatternError(f"\\{e} inside [...] (its meaning differs between Python and "
                                       f"MongoDB's PCRE): write it outside the set")
                out.append(_IN_SET.get(e, c + e))  # \b in a set is a backspace in both
            else:
                out.append(_CLASS.get(e, c + e))
            i += 2
            continue
        if in_set:
            if c == "[" and pattern.startswith("[:", i):
                end = pattern.find(":]", i + 2)
                name = pattern[i:end + 2] if end != -1 else "[:"
                raise PatternError(f"the POSIX class {name} (a set of characters in Python): "
                                   f"write the characters, e.g. [A-Za-z] for [:alpha:]")
            if c == "]" and i > set_start:
                in_set = False
            out.append(c)
            i += 1
            continue
        if c == "[":
            in_set = True
            j = i + 1
            if j < n and pattern[j] == "^":
                j += 1
            set_start = j + 1  # a "]" right after "[" or "[^" is a member
            out.append(pattern[i:j])
            i = j
            continue
        if c == "(" and pattern.startswith("(?", i):
            j = i + 2
            while j < n and (pattern[j].isalpha() or pattern[j] == "-"):
                j += 1
            flags = pattern[i + 2:j]
            if j < n and pattern[j] in ":)" and flags and all(f.isalpha() or f == "-" for f in flags):
                bad = [f for f in flags if f in _REFUSED_FLAGS]
                if bad:
                    raise PatternError(f"the inline flag (?{bad[0]}) ({_REFUSED_FLAGS[bad[0]]}): "
                                       f"MongoDB's PCRE has no such flag")
        if c == "{" and pattern.startswith("{,", i):
            raise PatternError("{,n} (up to n in Python, a literal in older PCRE): write {0,n}")
        out.append(c)
        i += 1
    return "".join(out)
