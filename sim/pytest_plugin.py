"""The pytest plugin: turnsim scenario files as test items, in any project.

Installed with the package (entry point ``pytest11``, plugin name ``turnsim``; ``-p
no:turnsim`` turns it off). What a project may rely on:

* **Which files.** A YAML file is collected when its path (relative to pytest's rootdir)
  matches a glob of the ``turnsim_paths`` ini option. By default (``**/scenarios/**/*.yaml``
  and ``.yml``) only files that *look like* scenarios are collected: their top level names
  ``steps`` and ``conversations``. An unrelated ``scenarios/deploy.yaml`` is left alone, so
  the plugin never breaks a project that merely has it installed. Once a project sets
  ``turnsim_paths``, every matching file is its scenario: a malformed one fails
  collection with each problem at ``file:line:column``.
* **Items.** One per anyio backend (``name[asyncio]``, ``name[trio]``; ``--turnsim-backend``
  picks one), or one per seed and backend with ``--turnsim-seeds A..B``
  (``name[asyncio-seed3]``). A scenario file's ``markers:`` become the items' markers
  (``-m "not slow"``); ``xfail:`` marks them expected to fail (a failing scenario, not a
  crash of the harness, is what counts).
* **Failures** show the run's report (invariant, conversation/turn/phase, expected vs
  actual, causing step, replay command) and the text timeline of the failing
  conversations. Each item records ``turnsim_seed``, ``turnsim_variant``,
  ``turnsim_backend`` and ``turnsim_replay`` as properties (junit XML ``<property>``).

It sits above ``sim.scenario`` and ``sim.logs`` (it shows a run with the timeline of
``sim.logs``), beside ``sim.cli``.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The conformance kit's checks (persisters.testing) fail with pytest's assertion diffs:
# their module must be registered before anything imports it, which a plugin is.
pytest.register_assert_rewrite("persisters.contract")

BACKENDS = ("asyncio", "trio")
DEFAULT_PATHS = ("**/scenarios/**/*.yaml", "**/scenarios/**/*.yml")
#: Lines of timeline a failure shows at most (the replay command shows everything).
MAX_TIMELINE_LINES = 200
#: A scenario's top level: its own keys at the start of a line.
_TOP_KEY = re.compile(r"^(steps|conversations)[ \t]*:", re.M)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("turnsim", "turnsim scenario files")
    group.addoption(
        "--turnsim-variant",
        default=None,
        metavar="A+B",
        help="run collected scenarios with these bug variants",
    )
    group.addoption(
        "--turnsim-seed",
        type=int,
        default=None,
        metavar="N",
        help="override the seed of every collected scenario",
    )
    group.addoption(
        "--turnsim-seeds",
        default=None,
        metavar="A..B",
        help="explore: one item per seed A..B (inclusive) for every collected scenario",
    )
    group.addoption(
        "--turnsim-backend",
        choices=BACKENDS,
        default=None,
        help="run the items on this anyio backend only (default: both)",
    )
    parser.addini(
        "turnsim_paths",
        type="args",
        default=None,
        help="globs (relative to rootdir, ** for any folders) of turnsim scenario files; "
        f"default {' '.join(DEFAULT_PATHS)}, collecting only files that look like scenarios",
    )


def pytest_configure(config: pytest.Config) -> None:
    seeds = config.getoption("--turnsim-seeds")
    if seeds is not None:
        parse_seeds(seeds)  # a bad range stops the run at once, with pytest's usage error
    config.addinivalue_line("markers", "turnsim: a turnsim scenario file's item")


def parse_seeds(text: str) -> range:
    """``A..B`` (inclusive) or one seed ``N``; a :class:`pytest.UsageError` otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:\.\.\s*(\d+)\s*)?", text)
    if match is None:
        raise pytest.UsageError(f"--turnsim-seeds {text!r}: expected A..B, e.g. 0..99")
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) is not None else first
    if last < first:
        raise pytest.UsageError(f"--turnsim-seeds {text!r}: {last} is before {first}")
    return range(first, last + 1)


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A path glob as a regex over ``/``-separated relative paths: ``*`` and ``?`` stay in
    one folder, ``**/`` is any number of folders (none included)."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def looks_like_scenario(path: Path) -> bool:
    """Whether a file's top level names ``steps`` and ``conversations`` (read cheaply:
    no YAML parsing, so a file that is no scenario costs nothing and breaks nothing)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(1 << 20).decode("utf-8", "replace")
    except OSError:
        return False
    return {m.group(1) for m in _TOP_KEY.finditer(head)} == {"steps", "conversations"}


def _patterns(config: pytest.Config) -> tuple[list[re.Pattern[str]], bool]:
    """The compiled globs, and whether the project chose them (then every match counts)."""
    cached = getattr(config, "_turnsim_patterns", None)
    if cached is None:
        chosen = config.getini("turnsim_paths")
        globs = list(chosen) if chosen else list(DEFAULT_PATHS)
        cached = ([glob_regex(g) for g in globs], bool(chosen))
        config._turnsim_patterns = cached  # type: ignore[attr-defined]
    return cached


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix not in (".yaml", ".yml"):
        return None
    config = parent.config
    try:
        relative = file_path.relative_to(config.rootpath).as_posix()
    except ValueError:
        relative = file_path.as_posix()
    patterns, chosen = _patterns(config)
    if not any(p.fullmatch(relative) for p in patterns):
        return None
    if not chosen and not looks_like_scenario(file_path):
        return None
    return ScenarioFile.from_parent(parent, path=file_path)


class ScenarioFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        from sim.scenario.parse import ScenarioError, load_scenario

        try:
            scenario = load_scenario(_display_path(self.path))
        except ScenarioError as exc:
            raise self.CollectError(str(exc)) from None
        config = self.config
        backend = config.getoption("--turnsim-backend")
        backends = (backend,) if backend else BACKENDS
        seeds_text = config.getoption("--turnsim-seeds")
        seeds: list[int | None] = list(parse_seeds(seeds_text)) if seeds_text else [None]
        for seed in seeds:
            for backend in backends:
                suffix = backend if seed is None else f"{backend}-seed{seed}"
                item = ScenarioItem.from_parent(
                    self,
                    name=f"{scenario.name}[{suffix}]",
                    scenario=scenario,
                    backend=backend,
                    seed=seed,
                )
                item.add_marker("turnsim")
                for marker in scenario.markers:
                    item.add_marker(marker)
                if scenario.xfail is not None:
                    item.add_marker(pytest.mark.xfail(reason=scenario.xfail, raises=ScenarioFailed))
                yield item


class ScenarioFailed(Exception):
    """A scenario ran and failed (an invariant, an expectation): the item's failure."""


class ScenarioItem(pytest.Item):
    def __init__(self, *, scenario: Any, backend: str, seed: int | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.backend = backend
        self.seed = seed

    def runtest(self) -> None:
        import anyio

        from sim.runtime.variants import parse_variants
        from sim.scenario.result import replay_command
        from sim.scenario.runner import run_scenario

        config = self.config
        variants = parse_variants(config.getoption("--turnsim-variant"))
        override = config.getoption("--turnsim-seed")
        seed = self.seed if self.seed is not None else override
        effective = self.scenario.seed if seed is None else seed
        for name, value in (
            ("turnsim_seed", str(effective)),
            ("turnsim_variant", "+".join(variants) or "none"),
            ("turnsim_backend", self.backend),
            ("turnsim_replay", replay_command(self.scenario.path, effective, variants)),
        ):
            self.user_properties.append((name, value))
        result = anyio.run(
            lambda: run_scenario(self.scenario, seed=seed, variants=variants),
            backend=self.backend,
        )
        if not result.passed:
            raise ScenarioFailed(failure_text(result, width=_width(config)))

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


def _width(config: pytest.Config) -> int:
    try:
        return max(config.get_terminal_writer().fullwidth, 60)
    except Exception:  # no terminal writer (xdist workers, odd plugins): a fixed width
        return 100


def failure_text(result: Any, *, width: int = 100) -> str:
    """A failed run for people: its report, then the timeline of the conversations that
    failed (all of them when no failure names one), at most
    :data:`MAX_TIMELINE_LINES` lines of it."""
    from sim.logs.render import Screen, timeline_lines
    from sim.logs.timeline import build_timelines

    failing = {f.conv_id for f in result.failures if f.conv_id}
    out = io.StringIO()
    screen = Screen(out, color=False, width=width)
    for run in build_timelines(result.events):
        if failing:
            run.conversations = {k: v for k, v in run.conversations.items() if k in failing}
        for segments in timeline_lines(run):
            screen.write(segments)
    lines = out.getvalue().rstrip("\n").splitlines()
    if len(lines) > MAX_TIMELINE_LINES:
        more = len(lines) - MAX_TIMELINE_LINES
        lines = lines[:MAX_TIMELINE_LINES]
        lines.append(f"… {more} more lines: {result.replay} --log-file run.jsonl, then")
        lines.append("  turnsim logs run.jsonl --timeline")
    which = "the failing conversations" if failing else "the run"
    return "\n".join([result.describe(), "", f"timeline of {which}:", *lines])
