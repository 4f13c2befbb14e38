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
    PIPELINES,
    ExpectationFailed,
    Pairs,
    Step,
    StepEnv,
    StepFields,
    written,
)

DAY_MS = 86_400_000


@attrs.frozen
class Send(Step):
    """Queue a prompt; wait for its final save, or only for its inference to start."""

    key = "send"
    required = ("conv", "prompt")
    optional = ("turn", "wait", "profile")

    conv: str
    prompt: str
    turn: str | None = None
    wait: bool = True
    profile: str | None = None

    @classmethod
    def from_yaml(cls, f: StepFields) -> Send:
        conv = f.conv()
        label = f.new_turn("turn", conv) if "turn" in f else None
        return cls(
            conv=conv,
            prompt=f.string("prompt"),
            turn=label,
            wait=f.boolean("wait") if "wait" in f else True,
            profile=f.profile() if "profile" in f else None,
        )

    def to_yaml(self) -> Pairs:
        return written(
            ("conv", self.conv),
            ("turn", self.turn, None),
            ("prompt", self.prompt),
            ("wait", self.wait, True),
            ("profile", self.profile, None),
        )

    async def run(self, env: StepEnv) -> None:
        prompt = await env.convs[self.conv].send(
            self.prompt, wait=self.wait, profile=self.profile, label=self.turn
        )
        if self.turn:
            env.labels[self.turn] = prompt

    def conversation(self) -> str | None:
        return self.conv

    def turn_defined(self) -> str | None:
        return self.turn

    def profile_named(self) -> str | None:
        return self.profile

    def simpler(self) -> Step | None:
        return attrs.evolve(self, wait=True) if not self.wait else None


@attrs.frozen
class SwitchProfile(Step):
    """Move a conversation's pointer: now, ``at`` ms later, or at a seeded random moment."""

    key = "switch_profile"
    required = ("conv", "profile")
    optional = ("at", "within_ms")

    conv: str
    profile: str
    at: int | str | None = None  # None: now; int: ms from now (background); "random"
    within_ms: int = 1000

    @classmethod
    def from_yaml(cls, f: StepFields) -> SwitchProfile:
        at: int | str | None = None
        if "at" in f:
            value = f.value("at")
            if value == "random":
                at = "random"
            elif isinstance(value, int) and not isinstance(value, bool):
                at = f.integer("at", high=DAY_MS)
            else:
                raise f.wrong_type("at", "'random' or a delay in virtual milliseconds")
        return cls(
            conv=f.conv(),
            profile=f.profile(),
            at=at,
            within_ms=f.integer("within_ms", low=1, high=DAY_MS) if "within_ms" in f else 1000,
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
    required = ("conv",)
    shorthand = "conv"

    conv: str  # a conversation name or "all"

    @classmethod
    def from_yaml(cls, f: StepFields) -> WaitIdle:
        return cls(f.conv(allow_all=True))

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
    required = ("ms",)
    shorthand = "ms"

    ms: int

    @classmethod
    def from_yaml(cls, f: StepFields) -> Sleep:
        return cls(f.integer("ms", high=DAY_MS))

    def to_yaml(self) -> Pairs:
        return [("ms", self.ms)]

    async def run(self, env: StepEnv) -> None:
        await env.world.sleep(self.ms)


@attrs.frozen
class Cancel(Step):
    """Cancel a conversation's in-flight inference."""

    key = "cancel"
    required = ("conv",)
    shorthand = "conv"

    conv: str

    @classmethod
    def from_yaml(cls, f: StepFields) -> Cancel:
        return cls(f.conv())

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
    required = ("conv",)
    shorthand = "conv"

    conv: str

    @classmethod
    def from_yaml(cls, f: StepFields) -> Crash:
        return cls(f.conv())

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
    optional = ("point", "conv", "phase", "pipeline", "kind", "times", "skip")

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
            point=f.choice("point", POINTS) if "point" in f else "store.save",
            conv=f.conv() if "conv" in f else None,
            phase=f.phase() if "phase" in f else None,
            pipeline=f.choice("pipeline", PIPELINES) if "pipeline" in f else None,
            kind=f.choice("kind", KINDS) if "kind" in f else "permanent",
            times=f.integer("times", low=1, high=1_000_000) if "times" in f else 1,
            skip=f.integer("skip", high=1_000_000) if "skip" in f else 0,
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
    required = ("conv", "turn")
    optional = ("runtime_key", "from", "refusal_expected")

    conv: str
    turn: str
    runtime_key: str | None = None  # explicit value; or take it from ``source``
    source: str = "metadata"  # metadata | pointer (the YAML field `from`)
    refusal_expected: bool = False

    @classmethod
    def from_yaml(cls, f: StepFields) -> Resave:
        conv = f.conv()
        return cls(
            conv=conv,
            turn=f.known_turn("turn", conv),
            runtime_key=f.string("runtime_key") if "runtime_key" in f else None,
            source=f.choice("from", ("metadata", "pointer")) if "from" in f else "metadata",
            refusal_expected=f.boolean("refusal_expected") if "refusal_expected" in f else False,
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
        prompt = env.prompt(self.turn)
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
    required = ("profile", "runtime_key")

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
