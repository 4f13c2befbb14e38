"""pytest plugin: every scenario file under a ``scenarios/`` folder is a test item.

Installed with the package (entry point ``pytest11``), so ``pytest scenarios/`` just works.
Each file gives one item per anyio backend (``[asyncio]``, ``[trio]``). A failing item
shows the same report as ``turnsim run`` (invariant, conversation/turn/phase, expected vs
actual, causing step, replay line) followed by the log events of the failing
conversations. A malformed file fails collection with ``file:line:column``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from persisters.model import dumps

# The conformance kit's checks (persisters.testing) fail with pytest's assertion diffs:
# their module must be registered before anything imports it, which a plugin is.
pytest.register_assert_rewrite("persisters.contract")

BACKENDS = ("asyncio", "trio")
MAX_EVENTS_SHOWN = 60


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("turnsim")
    group.addoption(
        "--turnsim-variant",
        default=None,
        help="run collected scenarios with these bug variants (a+b)",
    )
    group.addoption(
        "--turnsim-seed",
        type=int,
        default=None,
        help="override the seed of every collected scenario",
    )


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix in (".yaml", ".yml") and file_path.parent.name == "scenarios":
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        from sim.scenario.parse import ScenarioError, load_scenario

        try:
            scenario = load_scenario(_display_path(self.path))
        except ScenarioError as exc:
            raise self.CollectError(str(exc)) from None
        for backend in BACKENDS:
            yield ScenarioItem.from_parent(
                self, name=f"{scenario.name}[{backend}]", scenario=scenario, backend=backend
            )


class ScenarioFailed(Exception):
    pass


class ScenarioItem(pytest.Item):
    def __init__(self, *, scenario: Any, backend: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.backend = backend

    def runtest(self) -> None:
        from sim.scenario.runner import run_scenario

        config = self.config
        result = anyio.run(
            lambda: run_scenario(
                self.scenario,
                seed=config.getoption("--turnsim-seed"),
                variants=(config.getoption("--turnsim-variant") or "").split("+")
                if config.getoption("--turnsim-variant")
                else (),
            ),
            backend=self.backend,
        )
        if not result.passed:
            raise ScenarioFailed(_failure_text(result))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ScenarioFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"scenario {self.scenario.name} [{self.backend}]"


def _display_path(path: Path) -> str:
    """Relative to the working directory when below it, so replay lines can be pasted."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _failure_text(result: Any) -> str:
    lines = [result.describe(), "", "log events of the failing conversations:"]
    convs = {f.conv_id for f in result.failures if f.conv_id}
    events = [e for e in result.events if not convs or e.get("conv_id") in convs]
    if len(events) > MAX_EVENTS_SHOWN:
        lines.append(f"  (last {MAX_EVENTS_SHOWN} of {len(events)})")
        events = events[-MAX_EVENTS_SHOWN:]
    lines.extend(f"  {dumps(e)}" for e in events)
    return "\n".join(lines)
