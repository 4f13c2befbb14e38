"""A writer other than the pipelines, as a scenario step: the real command-line persister
saving a turn the pipelines never saw (the first writer of that turn).

The second writer, re-saving a turn the pipelines wrote, is ``resave`` in
:mod:`sim.scenario.actions`. ``docs/scenarios.md`` documents both.
"""

from __future__ import annotations

from typing import Any

import attrs

from persisters.errors import StoreError
from persisters.model import (
    FINAL,
    KEY_INFERENCE_ID,
    KEY_RUNTIME,
    KEY_SESSION_ID,
    Block,
    Turn,
    TurnSaveOptions,
    trim_space,
)
from sim.runtime.conversation import Prompt
from sim.scenario.steps import ExpectationFailed, Field, Pairs, Step, StepEnv, StepFields, written

#: How a ``cli_save`` turn's metadata holds its runtime (``runtime_as``).
RUNTIME_SHAPES = ("string", "object", "nested")


def _runtime_metadata(runtime_key: str, shape: str) -> Any:
    if shape == "object":
        return {"runtime_key": runtime_key}
    if shape == "nested":
        return {"profile": {"slug": runtime_key}}
    return runtime_key


@attrs.frozen
class CliSave(Step):
    """The real command-line persister saves a turn the pipelines never saw (first writer)."""

    key = "cli_save"
    fields = (
        Field("conv", "conv", "the conversation whose turn it saves", required=True),
        Field("runtime_key", "text", "what the turn's metadata names ('': none)", required=True),
        Field("turn", "turn", "a name for the saved turn"),
        Field("prompt", "string", "the turn's user message", default="from the command line"),
        Field(
            "runtime_as",
            "choice",
            "how the metadata holds the runtime",
            choices=RUNTIME_SHAPES,
            default="string",
        ),
        Field("session", "string", "the session handed to the persister (default: none)"),
        Field(
            "metadata_session",
            "boolean",
            "the metadata carries the conversation's session",
            default=True,
        ),
        Field("refusal_expected", "boolean", "the store is expected to refuse it", default=False),
    )

    conv: str
    runtime_key: str  # what the turn's metadata names ("": none)
    turn: str | None = None
    prompt: str = "from the command line"
    runtime_as: str = "string"  # string | object | nested: the metadata's shape
    session: str | None = None  # handed to the persister; None: the turn's metadata decides
    metadata_session: bool = True  # the metadata carries the conversation's session
    refusal_expected: bool = False

    @classmethod
    def from_yaml(cls, f: StepFields) -> CliSave:
        conv = f.conv()
        return cls(
            conv=conv,
            runtime_key=f.string("runtime_key", allow_empty=True),
            turn=f.new_turn("turn", conv) if "turn" in f else None,
            prompt=f.string("prompt") if "prompt" in f else "from the command line",
            runtime_as=f.choice("runtime_as", RUNTIME_SHAPES) if "runtime_as" in f else "string",
            session=f.string("session") if "session" in f else None,
            metadata_session=f.boolean("metadata_session") if "metadata_session" in f else True,
            refusal_expected=f.boolean("refusal_expected") if "refusal_expected" in f else False,
        )

    def to_yaml(self) -> Pairs:
        return written(
            ("conv", self.conv),
            ("turn", self.turn, None),
            ("prompt", self.prompt, "from the command line"),
            ("runtime_key", self.runtime_key),
            ("runtime_as", self.runtime_as, "string"),
            ("session", self.session, None),
            ("metadata_session", self.metadata_session, True),
            ("refusal_expected", self.refusal_expected, False),
        )

    def _turn(self, env: StepEnv, turn_id: str, inference_id: str) -> Turn:
        conv = env.convs[self.conv]
        metadata: dict[str, Any] = {KEY_INFERENCE_ID: inference_id}
        if self.metadata_session:
            metadata[KEY_SESSION_ID] = conv.session_id
        if self.runtime_key:
            metadata[KEY_RUNTIME] = _runtime_metadata(self.runtime_key, self.runtime_as)
        blocks = (Block("user", self.prompt), Block("llm_text", "[cli] reply"))
        return Turn(id=turn_id, blocks=blocks, metadata=metadata, data={"writer": "cli"})

    async def run(self, env: StepEnv) -> None:
        world = env.world
        conv = env.convs[self.conv]
        # the command line's own session: its own id streams, the pipelines' stay as they are
        turn_id = world.ids.new("cli-turn", conv.conv_id)
        inference_id = world.ids.new("cli-inference", conv.conv_id)
        turn = self._turn(env, turn_id, inference_id)
        # as pinocchio's cliTurnStorePersister: the session it was given, else the
        # metadata's; the runtime passed only when the metadata holds a plain string
        session = trim_space(self.session or "")
        if not session:
            value = turn.metadata.get(KEY_SESSION_ID)
            session = trim_space(value) if isinstance(value, str) else ""
        carried = trim_space(self.runtime_key) if self.runtime_as == "string" else ""
        prompt = Prompt(world.kernel, self.prompt, None, self.turn)
        prompt.turn_id, prompt.inference_id = turn_id, inference_id
        if self.turn:
            env.labels[(self.conv, self.turn)] = prompt
        prompt.started.set()
        prompt.finished.set()
        context = {
            "conv_id": conv.conv_id,
            "session_id": session,
            "turn_id": turn_id,
            "turn": self.turn,
            "phase": FINAL,
            "inference_id": inference_id,
            "carried_runtime_key": carried,
        }
        error = ""
        if not session:
            error = "cli turn persister: sessionID is empty (none given, none in the metadata)"
        else:
            try:
                result = await world.store.save(
                    conv.conv_id,
                    session,
                    turn_id,
                    FINAL,
                    world.now_ms(),
                    turn.serialize(),
                    TurnSaveOptions(runtime_key=carried, inference_id=inference_id),
                )
            except StoreError as exc:
                error = str(exc)
        if error:
            prompt.outcome = "refused"
            world.recorder.emit(
                "turn.cli_save_refused", **context, error=error, expected=self.refusal_expected
            )
            if not self.refusal_expected:
                raise ExpectationFailed(f"the command-line persister's save failed: {error}")
            return
        prompt.outcome, prompt.runtime_key = "completed", result.runtime_key
        world.recorder.emit(
            "turn.cli_saved",
            **context,
            runtime_key=result.runtime_key,
            snapshot_id=result.snapshot_id,
            created_turn=result.created_turn,
        )

    def conversation(self) -> str | None:
        return self.conv

    def turn_defined(self) -> str | None:
        return self.turn
