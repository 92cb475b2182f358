"""How the suite shares out among parallel workers (`tests.parallel`), checked on small test
modules collected by an inner pytest run (pytester): which tests join their module's
`xdist_group`, and the order of the `serial` run."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT

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


_GROUPED = """
import os
import pytest

@pytest.fixture(scope="module")
def served():
    yield "one hub for the module"

@pytest.mark.parametrize("n", range(6))
def test_in_the_modules_group(served, n):
    print("worker", os.environ["PYTEST_XDIST_WORKER"])

@pytest.mark.parametrize("n", range(6))
def test_anywhere(n): pass
"""


@pytest.mark.slow
def test_the_tests_of_a_group_run_on_one_worker_under_loadgroup(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real run (two workers, `--dist loadgroup`): what `make test` relies on, and what
    `tests.parallel` checks on every worker (it refuses to run when the groups are lost)."""
    pytester.makepyfile(test_grouped=_GROUPED)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the inner run imports `tests.parallel`
    result = pytester.runpytest_subprocess(
        "-p", "tests.parallel", "-n", "2", "--dist", "loadgroup", "-v", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=12)
    grouped = [line for line in result.outlines if "PASSED" in line and "test_in_the_modules_group" in line]
    assert len(grouped) == 6
    assert all(line.rstrip().endswith("@test_grouped.py") for line in grouped)
    assert len({line.split("]", 1)[0] for line in grouped}) == 1  # one worker: "[gw0" or "[gw1"


def test_a_worker_refuses_tests_whose_group_was_lost(pytester: pytest.Pytester) -> None:
    from tests.parallel import ungrouped

    pytester.makepyfile(test_grouped=_GROUPED)
    items, _ = pytester.inline_genitems("-p", "tests.parallel", "-p", "no:xdist")
    for item in items:
        item.add_marker(pytest.mark.xdist_group("lost"))
    assert ungrouped(items) == [item.nodeid for item in items]
    assert ungrouped([]) == []


_SERIAL = """
import pytest

@pytest.mark.serial
@pytest.mark.conformance
def test_a_conformance_run(): pass

@pytest.mark.serial
def test_a_load(): pass

def test_not_serial(): pass

@pytest.mark.serial
def test_another_load(): pass
"""


def test_the_serial_run_puts_the_conformance_runs_last_and_other_runs_keep_file_order(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\nmarkers =\n    serial\n    conformance\n")
    pytester.makepyfile(test_serial=_SERIAL)

    def collected(*args: str) -> list[str]:
        result = pytester.runpytest("-p", "tests.parallel", "-p", "no:xdist", "--collect-only", "-q", *args)
        return [line.split("::", 1)[1] for line in result.outlines if line.startswith("test_serial.py::")]

    assert collected("-m", "serial") == ["test_a_load", "test_another_load", "test_a_conformance_run"]
    assert collected() == ["test_a_conformance_run", "test_a_load", "test_not_serial", "test_another_load"]
