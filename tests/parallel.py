"""How the suite shares out among parallel workers (pytest-xdist, `--dist loadgroup`: `make test`),
and the order of the `serial` run beside them.

Each worker is a process of its own, so what a test changes in its process (environment
variables, sse-starlette's `AppStatus`, its file descriptors and child processes) is seen by no
other test running at the same time. What crosses processes is made safe where it is created:
every server listens on 127.0.0.1 port 0, every hub keeps its state in a temporary directory,
each worker starts its own Redis (`tests.cluster_fixtures`), the one-time installs into `.cache/`
(npm reference servers, the conformance suite, mcp-proxy's venv) and of the OS packages run
under a file lock.

Every test runs on whichever worker is free next, except the tests of one `xdist_group`, which run
on one worker one after another in file order. A test joins a group

- by its marker, `@pytest.mark.xdist_group(name)`, for a test that shares with others something
  that cannot be shared across processes at once (none does today: see README "Tests"), or
- here, when it uses a fixture of module, class or package scope (a served hub, three replicas
  behind HAProxy, a rendered kustomization): it joins the group of its module, so that fixture is
  built once per run rather than once per worker that happens to get one of its tests, and tests
  that rely on the state the module's earlier tests left (a replica restarted, a Redis killed)
  still run after them. A module-scoped `anyio_backend` (a string, free to build) does not count.

`make test` runs the `serial` tests (`-m serial`) one at a time in a process of their own while
the workers run the rest. There the conformance runs go last (`serial_order`): the two load tests
have bounds of minutes, but the conformance checks have sub-second windows, and the first seconds
of the parallel run are its busiest (every worker importing and collecting the suite and starting
its fork server at once).
"""

from __future__ import annotations

import pytest

_SHARED_SCOPES = frozenset({"module", "class", "package"})
_FREE_FIXTURES = frozenset({"anyio_backend"})
"""Module-scoped fixtures that hold nothing (building them on every worker costs nothing)."""


def module_group(item: pytest.Item) -> str | None:
    """The group (the module's path, e.g. `tests/test_cli.py`) of a test that uses a fixture of
    module, class or package scope other than `_FREE_FIXTURES`; None for any other test."""
    # `_fixtureinfo` is pytest's private record of a test function's fixture closure (public
    # `Item` API has only the names); items that are not functions (e.g. doctests) lack it.
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    for name, definitions in info.name2fixturedefs.items():
        # The last definition is the one this test gets (the closest override).
        if name not in _FREE_FIXTURES and definitions and definitions[-1].scope in _SHARED_SCOPES:
            return item.nodeid.split("::", 1)[0]
    return None


def serial_order(items: list[pytest.Item]) -> None:
    """Put the tests marked `conformance` after the others, each keeping its order (in place)."""
    items.sort(key=lambda item: item.get_closest_marker("conformance") is not None)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook turns groups into node ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("markexpr") == "serial":
        serial_order(items)  # the `serial` run of `make test`, beside the workers
    if not config.pluginmanager.hasplugin("xdist"):
        return  # no workers: nothing to share out (and no `xdist_group` marker registered)
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        group = module_group(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


def ungrouped(items: list[pytest.Item]) -> list[str]:
    """The node ids of tests with an `xdist_group` that pytest-xdist did not suffix with it
    (`<node id>@<group>`, what its `loadgroup` scheduler groups by)."""
    return [item.nodeid for item in items if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]


@pytest.hookimpl(trylast=True)  # after xdist has suffixed the node ids
def pytest_collection_finish(session: pytest.Session) -> None:
    """On a `--dist loadgroup` worker: refuse to run when the groups did not take effect.

    They would be lost silently: every test of a group free to run on any worker at once, a
    module's fixture built on each, and tests that need their module's earlier tests run out of
    order. pytest 9.2 with pytest-xdist 3.8 does that (pytest-dev/pytest-xdist#1386), hence the
    pin in pyproject.toml."""
    if not hasattr(session.config, "workerinput") or not session.config.getvalue("loadgroup"):
        return
    lost = ungrouped(session.items)
    if lost:
        raise pytest.UsageError(
            f"pytest-xdist did not group {len(lost)} tests marked with an xdist_group (e.g. {lost[0]}):"
            " this pytest and pytest-xdist do not work together (pytest-dev/pytest-xdist#1386)"
        )
