"""The steps that drive the world: send prompts, switch profiles, wait, break things.

Each is one :class:`sim.scenario.steps.Step` (its fields, parser, handler and renderer);
``docs/scenarios.md`` documents them.
"""

from __future__ import annotations

import attrs

from persisters.errors import TurnRewriteError
from persisters.model import (
    TurnQuery,
    TurnSaveOptions,
    extract_runtime_key,
    metadata_of_payload,
    trim_space,
)
from sim.runtime.faults import KINDS, POINTS, FaultRule
from sim.scenario.steps import (
    DAY_MS,
    PIPELINES,
    WITHIN_MS,
    ExpectationFailed,
    Field,
    Pairs,
    Step,
    StepEnv,
    StepFields,
    written,
)

CONV = Field(
    "conv", "conv", "the conversation (a template's name: each of its conversations)", required=True
)


@attrs.frozen
class Send(Step):
    """Queue a prompt; wait for its final save, or only for its inference to start."""

    key = "send"
    fields = (
        CONV,
        Field(
            "turn",
            "turn",
            "a name for this turn, unique within its conversation; later steps refer to it",
        ),
        Field("prompt", "string", "the user's message", required=True),
        Field(
            "wait",
            "boolean",
            "true: the step returns once the turn's final save is done; false: once its "
            "inference started (it may queue behind another)",
            default=True,
        ),
        Field(
            "profile",
            "profile",
            "run this prompt under this profile (the conversation switches to it when the "
            "prompt starts)",
        ),
        Field(
            "resume",
            "turn",
            "resume the saved run of this earlier turn: the inference starts from that "
            "turn's latest stored snapshot (a new turn; the checkpoint stays as saved)",
        ),
    )

    conv: str
    prompt: str
    turn: str | None = None
    wait: bool = True
    profile: str | None = None
    resume: str | None = None  # the turn (named by an earlier send) whose saved run goes on

    @classmethod
    def from_yaml(cls, f: StepFields) -> Send:
        conv = f.read("conv")
        label = f.new_turn("turn", conv) if "turn" in f else None
        return cls(
            conv=conv,
            prompt=f.read("prompt"),
            turn=label,
            wait=f.get("wait", True),
            profile=f.get("profile"),
            resume=f.known_turn("resume", conv) if "resume" in f else None,
        )

    def to_yaml(self) -> Pairs:
        return written(
            ("conv", self.conv),
            ("turn", self.turn, None),
            ("prompt", self.prompt),
            ("wait", self.wait, True),
            ("profile", self.profile, None),
            ("resume", self.resume, None),
        )

    async def run(self, env: StepEnv) -> None:
        resume = env.prompt(self.conv, self.resume).turn_id if self.resume else None
        prompt = await env.convs[self.conv].send(
            self.prompt,
            wait=self.wait,
            profile=self.profile,
            label=self.turn,
            resume_turn_id=resume,
        )
        if self.turn:
            env.labels[(self.conv, self.turn)] = prompt

    def conversation(self) -> str | None:
        return self.conv

    def turn_defined(self) -> str | None:
        return self.turn

    def turn_needed(self) -> str | None:
        return self.resume

    def profile_named(self) -> str | None:
        return self.profile

    def simpler(self) -> Step | None:
        return attrs.evolve(self, wait=True) if not self.wait else None


@attrs.frozen
class SwitchProfile(Step):
    """Move a conversation's pointer: now, ``at`` ms later, or at a seeded random moment."""

    key = "switch_profile"
    fields = (
        CONV,
        Field("profile", "profile", "the profile to switch to", required=True),
        Field(
            "at",
            "delay",
            "when: absent, now (the step waits for the switch); a number, that many virtual "
            "ms later in the background; `random`, at a seeded random moment in "
            "[0, within_ms]",
            high=DAY_MS,
        ),
        WITHIN_MS,
    )

    conv: str
    profile: str
    at: int | str | None = None  # None: now; int: ms from now (background); "random"
    within_ms: int = 1000

    @classmethod
    def from_yaml(cls, f: StepFields) -> SwitchProfile:
        at: int | str | None = f.get("at")
        return cls(
            conv=f.read("conv"),
            profile=f.read("profile"),
            at=at,
            within_ms=f.get("within_ms", 1000),
        )

    def to_yaml(self) -> Pairs:
        return written(
            ("conv", self.conv),
            ("profile", self.profile),
            ("at", self.at, None),
            ("within_ms", self.within_ms, 1000),
        )

    async def run(self, env: StepEnv) -> None:
        conv = env.convs[self.conv]
        if self.at is None:
            await conv.switch_profile(self.profile, origin=env.current)
            return
        if self.at == "random":
            index = len(env.background)
            rng = env.world.streams.stream(f"at/{self.conv}/{index}")
            delay = rng.randint(0, self.within_ms)
        else:
            delay = int(self.at)

        async def later() -> None:
            await env.world.sleep(delay)
            await conv.switch_profile(self.profile, origin=origin)

        origin = env.current
        task = env.world.kernel.spawn(later, name=f"{self.conv}/switch@{delay}")
        env.background.append((self.conv, task))

    def conversation(self) -> str | None:
        return self.conv

    def profile_named(self) -> str | None:
        return self.profile

    def simpler(self) -> Step | None:
        return attrs.evolve(self, at=None, within_ms=1000) if self.at is not None else None


@attrs.frozen
class WaitIdle(Step):
    """Wait until a conversation (or ``all``) has nothing queued, running or scheduled."""

    key = "wait_idle"
    fields = (
        Field(
            "conv",
            "conv_or_all",
            "the conversation (a template's name: each of its conversations), or `all`",
            required=True,
        ),
    )
    shorthand = "conv"

    conv: str  # a conversation name or "all"

    @classmethod
    def from_yaml(cls, f: StepFields) -> WaitIdle:
        return cls(f.read("conv"))

    def to_yaml(self) -> Pairs:
        return [("conv", self.conv)]

    async def run(self, env: StepEnv) -> None:
        await env.wait_idle(self.conv)

    def conversation(self) -> str | None:
        return self.conv


@attrs.frozen
class Sleep(Step):
    """Advance virtual time."""

    key = "sleep"
    fields = (Field("ms", "integer", "virtual milliseconds to wait", required=True, high=DAY_MS),)
    shorthand = "ms"

    ms: int

    @classmethod
    def from_yaml(cls, f: StepFields) -> Sleep:
        return cls(f.read("ms"))

    def to_yaml(self) -> Pairs:
        return [("ms", self.ms)]

    async def run(self, env: StepEnv) -> None:
        await env.world.sleep(self.ms)


@attrs.frozen
class Cancel(Step):
    """Cancel a conversation's in-flight inference."""

    key = "cancel"
    fields = (CONV,)
    shorthand = "conv"

    conv: str

    @classmethod
    def from_yaml(cls, f: StepFields) -> Cancel:
        return cls(f.read("conv"))

    def to_yaml(self) -> Pairs:
        return [("conv", self.conv)]

    async def run(self, env: StepEnv) -> None:
        env.convs[self.conv].cancel_inference()

    def conversation(self) -> str | None:
        return self.conv


@attrs.frozen
class Crash(Step):
    """Crash a conversation's actor (its supervisor restarts it)."""

    key = "crash"
    fields = (CONV,)
    shorthand = "conv"

    conv: str

    @classmethod
    def from_yaml(cls, f: StepFields) -> Crash:
        return cls(f.read("conv"))

    def to_yaml(self) -> Pairs:
        return [("conv", self.conv)]

    async def run(self, env: StepEnv) -> None:
        env.convs[self.conv].crash()

    def conversation(self) -> str | None:
        return self.conv


@attrs.frozen
class MakeReadOnly(Step):
    """The database stops accepting writes (a file turned read-only mid-run)."""

    key = "make_readonly"

    @classmethod
    def from_yaml(cls, f: StepFields) -> MakeReadOnly:
        return cls()

    def to_yaml(self) -> Pairs:
        return []  # written as make_readonly: {}

    async def run(self, env: StepEnv) -> None:
        await env.world.kernel.io(env.world.raw_store.make_read_only)


@attrs.frozen
class InjectFault(Step):
    """Arm a named fault point (a save, an inference, an actor)."""

    key = "inject_fault"
    fields = (
        Field("point", "choice", "the fault point to arm", choices=POINTS, default="store.save"),
        Field("conv", "conv", "only for this conversation (a template: each of its own)"),
        Field("phase", "phase", "only saves of (or an inference just before) this phase"),
        Field("pipeline", "choice", "only saves of this pipeline", choices=PIPELINES),
        Field(
            "kind",
            "choice",
            "transient faults are retried; permanent ones surface",
            choices=KINDS,
            default="permanent",
        ),
        Field("times", "integer", "how many times it fires", low=1, high=1_000_000, default=1),
        Field("skip", "integer", "matches to let pass first", high=1_000_000, default=0),
    )

    point: str = "store.save"
    conv: str | None = None
    phase: str | None = None
    pipeline: str | None = None
    kind: str = "permanent"  # transient | permanent
    times: int = 1
    skip: int = 0

    @classmethod
    def from_yaml(cls, f: StepFields) -> InjectFault:
        return cls(
            point=f.get("point", "store.save"),
            conv=f.get("conv"),
            phase=f.get("phase"),
            pipeline=f.get("pipeline"),
            kind=f.get("kind", "permanent"),
            times=f.get("times", 1),
            skip=f.get("skip", 0),
        )

    def to_yaml(self) -> Pairs:
        return written(
            ("point", self.point, "store.save"),
            ("conv", self.conv, None),
            ("phase", self.phase, None),
            ("pipeline", self.pipeline, None),
            ("kind", self.kind, "permanent"),
            ("times", self.times, 1),
            ("skip", self.skip, 0),
        )

    async def run(self, env: StepEnv) -> None:
        env.world.faults.add(
            FaultRule(
                point=self.point,
                kind=self.kind,
                times=self.times,
                skip=self.skip,
                conv_id=env.conv_id(self.conv) if self.conv else None,
                phase=self.phase,
                pipeline=self.pipeline,
            )
        )

    def conversation(self) -> str | None:
        return self.conv

    def simpler(self) -> Step | None:
        return attrs.evolve(self, times=1) if self.times > 1 else None


@attrs.frozen
class Resave(Step):
    """A second writer (the real system's command-line persister) re-saves a turn."""

    key = "resave"
    fields = (
        CONV,
        Field("turn", "turn", "the turn (named by an earlier send)", required=True),
        Field("runtime_key", "string", "the runtime the save carries (else taken `from`)"),
        Field(
            "from",
            "choice",
            "where the carried runtime comes from without `runtime_key`: the stored turn's "
            "metadata or the conversation's pointer",
            choices=("metadata", "pointer"),
            default="metadata",
        ),
        Field(
            "refusal_expected",
            "boolean",
            "true: the store's refusal is an accepted outcome",
            default=False,
        ),
    )

    conv: str
    turn: str
    runtime_key: str | None = None  # explicit value; or take it from ``source``
    source: str = "metadata"  # metadata | pointer (the YAML field `from`)
    refusal_expected: bool = False

    @classmethod
    def from_yaml(cls, f: StepFields) -> Resave:
        conv = f.read("conv")
        return cls(
            conv=conv,
            turn=f.known_turn("turn", conv),
            runtime_key=f.get("runtime_key"),
            source=f.get("from", "metadata"),
            refusal_expected=f.get("refusal_expected", False),
        )

    def to_yaml(self) -> Pairs:
        return written(
            ("conv", self.conv),
            ("turn", self.turn),
            ("runtime_key", self.runtime_key, None),
            ("from", self.source, "metadata"),
            ("refusal_expected", self.refusal_expected, False),
        )

    async def run(self, env: StepEnv) -> None:
        world = env.world
        conv = env.convs[self.conv]
        prompt = env.prompt(self.conv, self.turn)
        turn_id = prompt.turn_id or "turn"
        found = await world.store.list(TurnQuery(conv_id=conv.conv_id, turn_id=turn_id, limit=1))
        payload = found[0].payload if found else "{}"
        if self.runtime_key is not None:
            runtime = self.runtime_key
        elif self.source == "pointer":
            runtime = conv.current_runtime_key
        else:
            runtime = extract_runtime_key(metadata_of_payload(payload))
        context = {
            "conv_id": conv.conv_id,
            "session_id": conv.session_id,
            "turn_id": turn_id,
            "turn": self.turn,
            "phase": "final",
            "carried_runtime_key": runtime,
        }
        try:
            result = await world.store.save(
                conv.conv_id,
                conv.session_id,
                turn_id,
                "final",
                world.now_ms(),
                payload,
                TurnSaveOptions(runtime_key=runtime),
            )
        except TurnRewriteError as exc:
            world.recorder.emit(
                "turn.resave_refused", **context, error=str(exc), expected=self.refusal_expected
            )
            if not self.refusal_expected:
                raise ExpectationFailed(f"the second writer's save was refused: {exc}") from None
            return
        world.recorder.emit(
            "turn.resaved",
            **context,
            runtime_key=result.runtime_key,
            inference_id=result.inference_id,
            snapshot_id=result.snapshot_id,
        )

    def conversation(self) -> str | None:
        return self.conv

    def turn_needed(self) -> str | None:
        return self.turn


@attrs.frozen
class UpdateProfile(Step):
    """A profile's runtime gets a new version (``rebuilder@v1`` -> ``rebuilder@v2``)."""

    key = "update_profile"
    fields = (
        Field("profile", "profile", "the profile whose runtime changes", required=True),
        Field(
            "runtime_key",
            "text",
            "its new runtime, e.g. rebuilder@v2 (conversations on it move their pointer)",
            required=True,
        ),
    )

    profile: str
    runtime_key: str

    @classmethod
    def from_yaml(cls, f: StepFields) -> UpdateProfile:
        return cls(f.profile(), trim_space(f.string("runtime_key", allow_empty=True)))

    def to_yaml(self) -> Pairs:
        return [("profile", self.profile), ("runtime_key", self.runtime_key)]

    async def run(self, env: StepEnv) -> None:
        world = env.world
        previous = world.profiles.update(self.profile, self.runtime_key)
        world.recorder.emit(
            "profile.updated",
            profile=self.profile,
            runtime_key=self.runtime_key,
            previous_runtime_key=previous,
            step=env.current,
        )
        # each conversation on the profile moves its pointer, in its own actor, in order
        for conv in env.convs.values():
            await conv.refresh_profile(self.profile, origin=env.current)

    def profile_named(self) -> str | None:
        return self.profile
