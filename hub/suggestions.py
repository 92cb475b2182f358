""" "Did you mean ...?": the names closest to one a caller asked for that does not exist.

The endpoint asks for suggestions only on its error path (an unknown tool or prompt, JSON-RPC
-32602) and only among the names the calling principal may see, so a suggestion never discloses
a name its policy hides, and a hidden name is answered exactly like an unknown one spelled the
same distance away. A successful call never gets here.

Similarity is `difflib.SequenceMatcher.ratio()` (Ratcliff/Obershelp, 0..1), case-insensitive.
The part before a name's last `__` is its namespace (the server prefix), so:

- a name with the prefix the caller typed is compared by what follows it (`everything__ecoh`
  is close to `everything__echo`, not to `everything__touch`);
- a name with another prefix is compared whole (`everythng__echo` -> `everything__echo`);
- when the caller typed no `__`, a name is also compared by what follows its prefix (callers
  often type a tool's original name: `echo` -> `everything__echo`).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Final

import anyio
import anyio.to_thread

from hub.naming import SEPARATOR

__all__ = ["MAX_SUGGESTIONS", "close_names", "suggest"]

MAX_SUGGESTIONS: Final = 3
"""At most this many names are suggested."""
_CUTOFF: Final = 0.6
"""Least similarity of a suggestion (`difflib.get_close_matches`' default)."""
_MARGIN: Final = 0.1
"""A name scoring more than this below the best suggestion is left out (`everything__ecoh`
suggests `everything__echo`, not also `everything__add` for their shared prefix)."""
_MAX_ASKED_CHARS: Final = 200
"""A longer asked-for name gets no suggestions (exposed names have at most 64 characters, MCP
tool names at most 128): bounds the work one request can cause."""
_INLINE_NAMES: Final = 1000
"""Up to this many candidate names are compared on the event loop (a few ms); more are compared
in a worker thread, one computation at a time, so a big catalog never stalls the loop."""

_limiter: anyio.CapacityLimiter | None = None


def close_names(asked: str, names: Sequence[str], *, limit: int = MAX_SUGGESTIONS) -> list[str]:
    """The names in `names` most similar to `asked`, best first (ties by name): at most `limit`
    (default 3), none below 0.6 similarity or more than 0.1 below the best, never `asked`
    itself; empty when `asked` is empty or longer than 200 characters.

    Cost: one cheap upper-bound pass over `names` (`quick_ratio`), then full comparisons in
    decreasing bound order until no remaining name can enter the result; about 10 ms per 1,000
    names. Call it on error paths only.
    """
    if not asked or len(asked) > _MAX_ASKED_CHARS or limit <= 0:
        return []
    asked_folded = asked.casefold()
    asked_prefix, separator, asked_tail = asked_folded.rpartition(SEPARATOR)
    whole = difflib.SequenceMatcher(autojunk=False)
    whole.set_seq2(asked_folded)  # SequenceMatcher caches what it learns about seq2
    tail = difflib.SequenceMatcher(autojunk=False)
    tail.set_seq2(asked_tail)
    # (upper bound of the similarity, matcher, compared form, name)
    bounds: list[tuple[float, difflib.SequenceMatcher[str], str, str]] = []
    for name in names:
        if name == asked:
            continue
        folded = name.casefold()
        prefix, has_prefix, rest = folded.rpartition(SEPARATOR)
        if separator and has_prefix and prefix == asked_prefix:
            forms = [(tail, rest)]
        elif separator or not has_prefix:
            forms = [(whole, folded)]
        else:
            forms = [(whole, folded), (whole, rest)]
        for matcher, form in forms:
            matcher.set_seq1(form)
            if matcher.real_quick_ratio() >= _CUTOFF:
                bound = matcher.quick_ratio()
                if bound >= _CUTOFF:
                    bounds.append((bound, matcher, form, name))
    bounds.sort(key=lambda entry: (-entry[0], entry[3]))  # equal bounds in name order: ties go by name
    top: list[tuple[float, str]] = []  # (-similarity, name), best first, at most `limit`
    for bound, matcher, form, name in bounds:
        full = len(top) == limit
        floor = max(_CUTOFF, -top[0][0] - _MARGIN if top else 0.0, -top[-1][0] if full else 0.0)
        if bound < floor or (full and bound == floor):
            break  # sorted by bound: no later comparison can enter the result
        matcher.set_seq1(form)
        score = matcher.ratio()
        if score < floor:
            continue
        previous = next((entry for entry in top if entry[1] == name), None)
        if previous is not None:
            if -previous[0] >= score:
                continue
            top.remove(previous)
        top.append((-score, name))
        top.sort()
        del top[limit:]
    if not top:
        return []
    best = -top[0][0]
    return [name for negative, name in top if -negative >= best - _MARGIN]


async def suggest(asked: str, names: Sequence[str], *, limit: int = MAX_SUGGESTIONS) -> list[str]:
    """`close_names(asked, names, limit=limit)`, computed in a worker thread (one at a time for
    the whole process) when there are more than 1,000 names, else inline."""
    if len(names) <= _INLINE_NAMES:
        return close_names(asked, names, limit=limit)
    global _limiter
    if _limiter is None:
        _limiter = anyio.CapacityLimiter(1)
    return await anyio.to_thread.run_sync(lambda: close_names(asked, names, limit=limit), limiter=_limiter)
