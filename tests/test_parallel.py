"""How the suite shares out among parallel workers (`tests.parallel`), checked on a small test
module collected by an inner pytest run (pytester): which tests join their module's `xdist_group`."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

_MODULE = """
import pytest

@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"

@pytest.fixture(scope="module")
def served():
    yield "one hub for the module"

@pytest.fixture(scope="class")
def per_class():
    return "one per class"

@pytest.fixture
def uses_served(served):
    return served

def test_uses_the_module_fixture(served): pass
def test_uses_it_through_another_fixture(uses_served): pass
def test_uses_only_the_module_scoped_backend(anyio_backend): pass
def test_uses_nothing_shared(tmp_path): pass

@pytest.mark.xdist_group("own")
def test_has_a_group_of_its_own(served): pass

class TestShared:
    def test_uses_the_class_fixture(self, per_class): pass
"""


def _groups(pytester: pytest.Pytester, *args: str) -> dict[str, str | None]:
    pytester.makepyfile(test_shared=_MODULE)
    items, _ = pytester.inline_genitems("-p", "tests.parallel", *args)
    groups: dict[str, str | None] = {}
    for item in items:
        marker = item.get_closest_marker("xdist_group")
        groups[item.name] = None if marker is None else str(marker.args[0])
    return groups


def test_tests_using_a_module_or_class_fixture_join_their_modules_group_and_the_rest_run_anywhere(
    pytester: pytest.Pytester,
) -> None:
    assert _groups(pytester) == {
        "test_uses_the_module_fixture": "test_shared.py",
        "test_uses_it_through_another_fixture": "test_shared.py",
        "test_uses_only_the_module_scoped_backend": None,
        "test_uses_nothing_shared": None,
        "test_has_a_group_of_its_own": "own",
        "test_uses_the_class_fixture": "test_shared.py",
    }


def test_without_xdist_no_group_is_added(pytester: pytest.Pytester) -> None:
    groups = _groups(pytester, "-p", "no:xdist")
    assert groups["test_uses_the_module_fixture"] is None
    assert groups["test_has_a_group_of_its_own"] == "own"
