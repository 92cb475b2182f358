"""`mcphub search QUERY`: the tool search a model gets in search mode, for people debugging why
a tool is (not) found.

It asks the running hub (`GET /me/search`) to search as the token's principal, on `/mcp` or on
a profile (`--profile NAME`): the same index, the same policy filter, the same ranking as
`search_tools`. The table shows the rank, the exposed name, the server and why the tool matched
(the words of the query found in its name, description or parameters, and the related words
found through synonyms); never a score, which means nothing outside one search. `--json` prints
the hub's answer, the definitions included. Exit code 1 when nothing is found.

It follows `hub.cli.runner`'s conventions (`--url`, `--token`, `--json`, one-line errors); `hub.cli`
registers it.
"""

from __future__ import annotations

from typing import Annotated, Any, Final
from urllib.parse import quote, urlencode

import typer

from hub.app import DEFAULT_SEARCH_LIMIT, MAX_SEARCH_LIMIT
from hub.cli.client import admin_get
from hub.cli.options import DEFAULT_URL, JsonOption, TokenOption, UrlOption
from hub.cli.render import print_table
from hub.cli.runner import out, run_command

__all__ = ["search"]

_FIELD_LABELS: Final = {
    "name": "name",
    "description": "description",
    "parameters": "parameters",
    "parameter_descriptions": "parameter descriptions",
    "related": "related words",
}
_SNIPPET_CHARS: Final = 100


def _why(matched: dict[str, list[str]]) -> str:
    """One line saying which words matched where (`name: create, issue; related words: folder`)."""
    parts = [f"{label}: {', '.join(matched[field])}" for field, label in _FIELD_LABELS.items() if matched.get(field)]
    return "; ".join(parts) or "-"


def _snippet(description: str | None) -> str:
    text = " ".join((description or "").split())
    return text if len(text) <= _SNIPPET_CHARS else text[: _SNIPPET_CHARS - 3].rstrip() + "..."


def search(
    query: Annotated[str, typer.Argument(metavar="QUERY", help="What the model would search for, in plain words.")],
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=MAX_SEARCH_LIMIT, help="Most tools to show.")
    ] = DEFAULT_SEARCH_LIMIT,
    profile: Annotated[
        str | None, typer.Option("--profile", help="Search a profile's tools (/profiles/NAME/mcp) instead of /mcp.")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Search the tools the token's principal may use, as search_tools does for a model: rank,
    exposed name, server, and why each matched. Exit code 1 when nothing is found."""

    async def run() -> None:
        params: dict[str, Any] = {"q": query, "limit": limit}
        if profile is not None:
            params["profile"] = profile
        data = await admin_get(url, f"/me/search?{urlencode(params, quote_via=quote)}", token)
        if json_output:
            out.print_json(data=data)
        else:
            where = f"profile {data['profile']}" if data.get("profile") else "/mcp"
            out.print(f"catalog mode for you on {where}: {data['mode']}", markup=False)
            rows: list[list[Any]] = [
                [str(r["rank"]), r["name"], r["server_id"] or "-", _why(r["matched"]), _snippet(r["description"])]
                for r in data["results"]
            ]
            if rows:
                print_table(("rank", "exposed name", "server", "why it matched", "description"), rows, whole=(1,))
            else:
                out.print(f"no tool found for {query!r}", markup=False)
        if not data["results"]:
            raise typer.Exit(1)

    run_command(run)
