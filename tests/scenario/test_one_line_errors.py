"""Errors that used to span several lines are one line with file:line:col (issue 14, 9):
unknown YAML tags (on values, lists and mappings), ``<<`` merge keys, click's usage block
(a directory given as --db, an unknown option, a missing argument); and the cap on what
one scenario's prompts make the store write, counted after aliases and ``repeat``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sim.scenario.parse import parse_scenario
from sim.scenario.reader import MAX_PROMPT_BYTES, ScenarioError

HEAD = "name: s\nprofiles: {p: {runtime_key: p@v1}}\nconversations: {c1: {profile: p}}\n"
SEND = "steps: [{send: {conv: c1, turn: t1, prompt: hi}}]\n"


def turnsim(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sim", *args], capture_output=True, text=True, cwd=cwd, timeout=60
    )


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        (HEAD.replace("p@v1", "!weird p@v1") + SEND, "2:29", "unknown YAML tag '!weird'"),
        (HEAD + "steps: !seq [{send: {conv: c1, turn: t1, prompt: hi}}]\n", "4:8", "tag '!seq'"),
        (HEAD.replace("{profile: p}", "!obj {profile: p}") + SEND, "3:21", "tag '!obj'"),
        ("name: !!python/object:os.system x\n" + HEAD[8:] + SEND, "1:7", "'!!python/object"),
        (HEAD + "steps: [{send: {conv: c1, turn: t1, prompt: !!binary aGk=}}]\n", "4", "!!binary"),
        (
            "name: s\nprofiles: {p: {runtime_key: p@v1}}\nconversations: {c1: {<<: {profile: p}}}\n"
            + SEND,
            "3:22",
            "merge keys (<<) are not supported",
        ),
    ],
)
def test_tags_and_merge_keys_are_one_line(
    tmp_path: Path, text: str, where: str, words: str
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, str(path))
    assert all("\n" not in e.message for e in caught.value.errors)
    done = turnsim("run", str(path), cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"turnsim: {path}:{where}") and words in lines[0], lines


@pytest.mark.parametrize(
    "args",
    [
        ["run", "s.yaml", "--db", "folder"],
        ["run", "s.yaml", "--bogus"],
        ["run", "s.yaml", "--seed", "minus-one"],
        ["db", "doctor"],
        ["serve", "--db", "folder", "--port", "no"],
        ["nosuchcommand"],
    ],
)
def test_usage_errors_are_one_line(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "s.yaml").write_text(HEAD + SEND)
    (tmp_path / "folder").mkdir()
    done = turnsim(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Usage:" not in done.stderr, lines
    assert lines[0].startswith("turnsim"), lines


def test_help_and_version_still_work(tmp_path: Path) -> None:
    assert turnsim("--version", cwd=tmp_path).returncode == 0
    done = turnsim("run", "--help", cwd=tmp_path)
    assert done.returncode == 0 and "Usage:" in done.stdout


def bomb(copies: int, size: int) -> str:
    steps = "".join(
        f"  - send: {{conv: c1, turn: t{i}, prompt: *p}}\n"
        if i
        else f"  - send: {{conv: c1, turn: t0, prompt: &p {'x' * size}}}\n"
        for i in range(copies)
    )
    return HEAD + "steps:\n" + steps


def test_prompts_past_the_cap_after_alias_expansion_are_refused(tmp_path: Path) -> None:
    size = 20_000
    copies = MAX_PROMPT_BYTES // size + 1  # a 20 kB file that would store over 1 MiB
    text = bomb(copies, size)
    assert len(text) < 30_000
    with pytest.raises(ScenarioError, match=r"more than 1048576 bytes \(1 MiB\)") as caught:
        parse_scenario(text, "bomb.yaml")
    (error,) = caught.value.errors
    assert error.line == 4 + copies  # the step that crosses the cap
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    done = turnsim("run", str(path), cwd=tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1


def test_prompts_up_to_the_cap_load(tmp_path: Path) -> None:
    size = 20_000
    parse_scenario(bomb(MAX_PROMPT_BYTES // size, size), "ok.yaml")
