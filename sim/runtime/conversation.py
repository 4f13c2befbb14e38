"""Conversation actors: a mailbox of commands, a prompt queue, one inference at a time.

Semantics, as in the real server and domain.md:

* a profile switch moves the conversation's ``current_runtime_key`` pointer at once, also
  while an inference is in flight, and persists it in the conversation index; so does a
  new version of the conversation's profile (``refresh_profile``);
* prompts queue while an inference runs (``queue_depth``) and run one at a time, in order;
* each inference gets a fresh turn id and inference id and binds its runtime when it
  starts (rule 3); a conversation whose profile resolves to no runtime refuses to start
  one (rule 8);
* the final persister runs for every inference, completed, failed or cancelled;
* a crashed actor is restarted by its supervisor from the store, keeping its session.
"""

from __future__ import annotations

from typing import Protocol

import attrs

from persisters.errors import StoreError
from persisters.model import Block, Turn, TurnQuery
from persisters.store import ConversationIndex
from sim.errors import NoRuntimeError, UnknownProfileError
from sim.runtime import inference, recovery
from sim.runtime.faults import InjectedCrash
from sim.runtime.history import HistoryLoadError, turn_of_snapshot
from sim.runtime.inference import InferenceEnv
from sim.runtime.kernel import Kernel, Mailbox, SimCancelled, SimEvent, SimTask
from sim.runtime.recorder import Recorder

#: Where a conversation's pipelines take the session from: the conversation's own, or
#: (``metadata``) none handed, so each turn's ``geppetto.session_id@v1``.
SESSION_SOURCES = ("conversation", "metadata")
#: When phase snapshots are written: while the engine waits (``sync``), or in the
#: background while the inference goes on (``async``, as langgraph's async durability).
DURABILITIES = ("sync", "async")


class ConversationEnv(InferenceEnv, Protocol):
    """What a conversation actor may use of the world: its inferences' environment plus
    the kernel (tasks, mailboxes, events), the conversation index and the recorder."""

    kernel: Kernel
    index: ConversationIndex
    recorder: Recorder


class Prompt:
    """One prompt and, once it ran, the turn it produced."""

    def __init__(
        self,
        kernel: Kernel,
        text: str,
        profile: str | None,
        label: str | None,
        resume_turn_id: str | None = None,
    ) -> None:
        self.text = text
        self.profile = profile
        self.label = label
        #: continue the saved run of this turn (its latest stored snapshot) instead
        self.resume_turn_id = resume_turn_id
        self.started = SimEvent(kernel)
        self.finished = SimEvent(kernel)
        self.turn_id = ""
        self.inference_id = ""
        self.runtime_key = ""
        self.outcome = "queued"
        self.error: str | None = None


@attrs.frozen
class _Send:
    prompt: Prompt


@attrs.frozen
class _Switch:
    slug: str
    done: SimEvent
    outcome: list[Exception | None]
    origin: int | None
    #: "profile_updated": only if on ``slug`` and its runtime changed (a new version)
    reason: str = "switch_profile"


@attrs.frozen
class _Cancel:
    pass


@attrs.frozen
class _Stop:
    pass


@attrs.frozen
class _Crash:
    pass


class Conversation:
    """One conversation: supervisor + actor + inference worker, all simulated tasks."""

    def __init__(
        self,
        world: ConversationEnv,
        conv_id: str,
        session_id: str,
        profile: str,
        *,
        session_from: str = "conversation",
        history: bool = False,
        durability: str = "sync",
        reopened: bool = False,
    ) -> None:
        self.world = world
        #: Opened by a server's boot after a restart: recover its interrupted turns first.
        self.reopened = reopened
        self._killed = False  # the server process died (a cold restart)
        self.conv_id = conv_id
        self.session_id = session_id
        #: "metadata": the pipelines are handed no session and read each turn's metadata
        self.session_from = session_from
        #: feed the conversation's history (its latest stored final) into every inference
        self.history = history
        #: "async": phase snapshots are written in the background (see inference.Binding)
        self.durability = durability
        self.profile_slug = profile
        self.start_profile = profile  # what a chat that resolves its model once would use
        self.last_turn_id = ""  # the previous inference's turn id
        self.current_runtime_key = ""
        self.turns_started = 0
        self.restarts = 0
        self.max_restarts = 3
        self._mailbox = Mailbox(world.kernel, f"{conv_id}/commands")
        self._prompts = Mailbox(world.kernel, f"{conv_id}/prompts")
        self._inflight: Prompt | None = None
        self._inflight_task: SimTask | None = None
        self._outstanding = 0  # prompts sent and not yet finished
        self._redeliver: object | None = None  # a command taken when the actor crashed
        self._idle = SimEvent(world.kernel)
        self._idle.set()
        self.task: SimTask | None = None

    # -- the public face (called from other simulated tasks) ----------------------------

    @property
    def queue_depth(self) -> int:
        """Prompts waiting behind the in-flight inference."""
        return self._prompts.depth

    @property
    def inflight(self) -> Prompt | None:
        return self._inflight

    @property
    def busy(self) -> bool:
        return not self._idle.is_set

    def send_nowait(
        self,
        text: str,
        *,
        profile: str | None = None,
        label: str | None = None,
        resume_turn_id: str | None = None,
    ) -> Prompt:
        """Queue a prompt and return at once; await ``prompt.finished`` to follow it.

        ``resume_turn_id``: the inference continues the saved run of that turn (its latest
        stored snapshot) instead of starting from the conversation's history.
        """
        return self._enqueue(Prompt(self.world.kernel, text, profile, label, resume_turn_id))

    def _enqueue(self, prompt: Prompt) -> Prompt:
        self._outstanding += 1
        if self._idle.is_set:
            self._idle = SimEvent(self.world.kernel)
        self._mailbox.put(_Send(prompt))
        return prompt

    async def send(
        self,
        text: str,
        *,
        wait: bool = True,
        profile: str | None = None,
        label: str | None = None,
        resume_turn_id: str | None = None,
    ) -> Prompt:
        """Queue a prompt; return once its final save is done, or once it started."""
        prompt = self.send_nowait(text, profile=profile, label=label, resume_turn_id=resume_turn_id)
        await (prompt.finished if wait else prompt.started).wait()
        return prompt

    async def switch_profile(self, slug: str, *, origin: int | None = None) -> None:
        """Switch the profile; returns once the pointer moved and was persisted.

        ``origin`` (a scenario step index) is recorded with the switch for reports.
        """
        cmd = _Switch(slug, SimEvent(self.world.kernel), [None], origin)
        self._mailbox.put(cmd)
        await cmd.done.wait()
        if cmd.outcome[0] is not None:
            raise cmd.outcome[0]

    async def refresh_profile(self, slug: str, *, origin: int | None = None) -> None:
        """Profile ``slug`` now resolves to another runtime (a new version of it): if this
        conversation is on it, its pointer moves there, as a switch does (reason
        ``profile_updated``); an inference in flight keeps the runtime it started with.
        Returns once the actor took the command (and persisted the pointer)."""
        cmd = _Switch(slug, SimEvent(self.world.kernel), [None], origin, "profile_updated")
        self._mailbox.put(cmd)
        await cmd.done.wait()
        if cmd.outcome[0] is not None:
            raise cmd.outcome[0]

    def cancel_inference(self) -> None:
        """Ask the actor to cancel the in-flight inference (its final save still runs)."""
        self._mailbox.put(_Cancel())

    def stop(self) -> None:
        self._mailbox.put(_Stop())

    def crash(self) -> None:
        """Make the actor crash when it takes this command (its supervisor restarts it)."""
        self._mailbox.put(_Crash())

    async def deliver_scheduled(self, prompt: Prompt) -> None:
        """A scheduled event (a reminder) reaches this conversation; returns once its
        inference finished. It goes through the actor's mailbox like any message, so it
        runs alone, in order (the conversation's lock); the bug variant
        ``unlocked-scheduled-events`` runs it right here, outside the actor."""
        direct = self.world.build.scheduled_delivery == "direct"
        self.world.recorder.emit(
            "schedule.fired",
            conv_id=self.conv_id,
            session_id=self.session_id,
            turn=prompt.label,
            delivery="direct" if direct else "actor",
        )
        if not direct:
            await self._enqueue(prompt).finished.wait()
            return
        await self._infer(prompt)

    def kill(self) -> list[Prompt]:
        """The server process dies: the actor, its worker and the in-flight inference stop
        where they are (no final save runs) and the prompt queue, in memory, is gone.
        Returns the prompts it held: the in-flight one ``interrupted``, the others
        ``lost``. Await ``task.finished`` for the actor to be gone."""
        self._killed = True
        inflight = self._inflight
        held = [inflight] if inflight is not None else []
        for item in [self._redeliver, *self._mailbox.drain()]:
            if isinstance(item, _Send):
                held.append(item.prompt)
        held.extend(self._prompts.drain())
        held = [p for p in held if not p.finished.is_set]  # (one may have just finished)
        for prompt in held:
            started = prompt is inflight and prompt.started.is_set
            prompt.outcome = "interrupted" if started else "lost"
            prompt.started.set()
            prompt.finished.set()
        self._redeliver = None
        if self.task is not None:
            self.task.cancel()
        return held

    async def wait_idle(self) -> None:
        while not self._idle.is_set:
            await self._idle.wait()

    # -- supervisor ---------------------------------------------------------------------

    async def supervise(self) -> None:
        """Run the actor; restart it from the store when it crashes (bounded)."""
        await self._restore(first=True)
        if self.reopened and self.world.build.recover_on_boot:
            await recovery.recover(self.world, self.conv_id, lambda: self.current_runtime_key)
        while True:
            try:
                await self._serve()
                return
            except Exception as exc:
                self.world.recorder.emit(
                    "conversation.crashed",
                    conv_id=self.conv_id,
                    session_id=self.session_id,
                    error=str(exc),
                    error_type=type(exc).__name__,
                    restarts=self.restarts,
                )
                if self.restarts >= self.max_restarts:
                    raise
                self.restarts += 1
                await self._restore(first=False)

    async def _restore(self, *, first: bool) -> None:
        """Load the pointer from the conversation index (it outlives the actor)."""
        world = self.world
        record = await world.index.get(self.conv_id)
        if record is not None:
            # An evicted or crashed conversation keeps its session (no split history).
            self.session_id = record.session_id or self.session_id
            self.profile_slug = record.profile_slug or self.profile_slug
            self.current_runtime_key = record.current_runtime_key
            if first:
                await world.index.touch(self.conv_id, world.now_ms())
        else:
            self.current_runtime_key = world.profiles.resolve(self.profile_slug)
            await world.index.set_current_runtime(
                self.conv_id,
                self.session_id,
                self.current_runtime_key,
                self.profile_slug,
                world.now_ms(),
            )
        world.recorder.emit(
            "conversation.started" if first else "conversation.restarted",
            conv_id=self.conv_id,
            session_id=self.session_id,
            profile=self.profile_slug,
            runtime_key=self.current_runtime_key,
            restarts=self.restarts,
        )

    # -- actor --------------------------------------------------------------------------

    async def _serve(self) -> None:
        kernel = self.world.kernel
        # Unsupervised: a bug in the worker stops the run loudly instead of stalling it.
        worker = kernel.spawn(self._work, name=f"{self.conv_id}/worker")
        try:
            while True:
                cmd = self._redeliver or await self._mailbox.receive()
                self._redeliver = None
                try:
                    self.world.faults.check("actor.crash", conv_id=self.conv_id)
                except InjectedCrash:
                    self._redeliver = cmd  # the restarted actor takes it: nothing is lost
                    raise
                if isinstance(cmd, _Send):
                    self._prompts.put(cmd.prompt)
                    self.world.recorder.emit(
                        "prompt.queued",
                        conv_id=self.conv_id,
                        session_id=self.session_id,
                        turn=cmd.prompt.label,
                        depth=self._prompts.depth,
                        inflight=self._inflight is not None,
                    )
                elif isinstance(cmd, _Switch):
                    try:
                        if cmd.reason == "switch_profile" or self._updated(cmd.slug):
                            await self._switch(cmd.slug, reason=cmd.reason, step=cmd.origin)
                    except UnknownProfileError as exc:
                        cmd.outcome[0] = exc
                        self.world.recorder.emit(
                            "profile.switch_refused",
                            conv_id=self.conv_id,
                            session_id=self.session_id,
                            profile=cmd.slug,
                            error=str(exc),
                        )
                    cmd.done.set()
                elif isinstance(cmd, _Cancel):
                    if self._inflight_task is not None:
                        self.world.recorder.emit(
                            "inference.cancel_requested",
                            conv_id=self.conv_id,
                            session_id=self.session_id,
                            turn_id=self._inflight.turn_id if self._inflight else "",
                        )
                        self._inflight_task.cancel()
                elif isinstance(cmd, _Crash):
                    raise InjectedCrash(f"conversation {self.conv_id!r} crashed on request")
                elif isinstance(cmd, _Stop):
                    self.world.recorder.emit(
                        "conversation.stopped",
                        conv_id=self.conv_id,
                        session_id=self.session_id,
                    )
                    return
        finally:
            worker.cancel()
            await worker.finished.wait()

    def _updated(self, slug: str) -> bool:
        """Whether this conversation is on profile ``slug`` and it now resolves elsewhere."""
        if slug != self.profile_slug:
            return False
        return self.world.profiles.resolve(slug) != self.current_runtime_key

    async def _switch(self, slug: str, *, reason: str, step: int | None = None) -> None:
        world = self.world
        runtime_key = world.profiles.resolve(slug)  # raises UnknownProfileError
        previous = self.current_runtime_key
        # The pointer moves at once, in this actor, so no hook can read a half-made switch.
        self.profile_slug = slug
        self.current_runtime_key = runtime_key
        inflight = self._inflight
        world.recorder.emit(
            "profile.switched",
            conv_id=self.conv_id,
            session_id=self.session_id,
            profile=slug,
            runtime_key=runtime_key,
            previous_runtime_key=previous,
            inflight_inference_id=inflight.inference_id if inflight else "",
            inflight_turn_id=inflight.turn_id if inflight else "",
            inflight_turn=inflight.label if inflight else None,
            inflight_runtime_key=inflight.runtime_key if inflight else "",
            reason=reason,
            step=step,
        )
        await self._persist_index("set_current_runtime", runtime_key=runtime_key, profile=slug)

    async def _work(self) -> None:
        kernel = self.world.kernel
        while True:
            prompt = await self._prompts.receive()
            self._inflight = prompt
            task = kernel.spawn(
                self._infer, prompt, name=f"{self.conv_id}/inference", supervised=True
            )
            self._inflight_task = task
            try:
                await task.finished.wait()
            except SimCancelled:
                task.cancel()  # the actor is stopping: the inference ends, its final save runs
                await task.finished.wait()
                raise
            finally:
                self._inflight = None
                self._inflight_task = None
                self._outstanding -= 1
                if self._outstanding == 0:
                    self._idle.set()
            if task.error is not None and not isinstance(task.error, SimCancelled):
                raise task.error

    # -- one inference ------------------------------------------------------------------

    async def _infer(self, prompt: Prompt) -> None:
        world = self.world
        if prompt.profile and prompt.profile != self.profile_slug:
            await self._switch(prompt.profile, reason="prompt")  # the prompt's own runtime
        slug = world.build.profile_for_inference(self.start_profile, self.profile_slug)
        profile = world.profiles.get(slug)
        checkpoint: Turn | None = None
        history: tuple[Block, ...] = ()
        try:
            if prompt.resume_turn_id is not None:
                checkpoint = await self._checkpoint(prompt.resume_turn_id)
            elif self.history:
                history = await world.build.load_history(world, self.conv_id, self.session_id)
            binding = inference.bind(
                world,
                self.conv_id,
                self.session_id,
                slug,
                hand_session=self.session_from != "metadata",
                previous_turn_id=self.last_turn_id,
                attributed=self.history or checkpoint is not None,
                durability=self.durability,
            )
        except (NoRuntimeError, HistoryLoadError) as error:
            prompt.outcome, prompt.error = "refused", str(error)
            world.recorder.emit(
                "inference.refused",
                conv_id=self.conv_id,
                session_id=self.session_id,
                turn=prompt.label,
                profile=slug,
                error=str(error),
            )
            prompt.started.set()
            prompt.finished.set()
            return
        turn = inference.first_turn(binding, prompt.text, history)
        if checkpoint is not None:
            turn = world.build.resume(checkpoint, turn)
        binding = attrs.evolve(binding, turn_id=turn.id, carried=len(turn.blocks) - 1)
        self.turns_started += 1
        self.last_turn_id = binding.turn_id
        prompt.turn_id, prompt.inference_id = binding.turn_id, binding.inference_id
        prompt.runtime_key = binding.runtime_key
        prompt.outcome = "running"
        context = {  # what every event of this inference carries
            "conv_id": self.conv_id,
            "session_id": self.session_id,
            "turn_id": binding.turn_id,
            "turn": prompt.label,
            "inference_id": binding.inference_id,
            "runtime_key": binding.runtime_key,
        }
        fed: dict[str, object] = {}  # only history and resumed runs say what they were fed
        if checkpoint is not None:
            fed = {"resumed_from": prompt.resume_turn_id, "history_blocks": binding.carried}
        elif self.history:
            fed = {"history_blocks": len(history)}
        if self.durability != "sync":  # snapshots written behind the inference, by choice
            fed["durability"] = self.durability
        world.recorder.emit(
            "inference.started",
            **context,
            profile=slug,
            queue_depth=self._prompts.depth,
            **fed,
        )
        prompt.started.set()
        outcome, error = await inference.execute(
            world,
            binding,
            turn,
            profile,
            self.turns_started,
            lambda: self.current_runtime_key,
            lambda: self._killed,
        )
        prompt.outcome, prompt.error = outcome, error
        await self._persist_index("touch")  # activity, not the pointer
        world.recorder.emit("inference.finished", **context, outcome=outcome, error=error)
        prompt.finished.set()

    async def _checkpoint(self, turn_id: str) -> Turn:
        """The saved run of ``turn_id``: its latest stored snapshot, as a turn."""
        found = await self.world.store.list(
            TurnQuery(conv_id=self.conv_id, turn_id=turn_id, limit=1)
        )
        if not found:
            raise HistoryLoadError(
                f"conversation {self.conv_id!r}: no stored snapshot of turn {turn_id!r} to "
                "resume from"
            )
        return turn_of_snapshot(found[0])

    async def _persist_index(
        self, operation: str, *, runtime_key: str = "", profile: str = ""
    ) -> None:
        """Write the conversation index; a store failure is surfaced, never fatal or silent."""
        world = self.world
        try:
            if operation == "touch":
                await world.index.touch(self.conv_id, world.now_ms())
            else:
                await world.index.set_current_runtime(
                    self.conv_id, self.session_id, runtime_key, profile, world.now_ms()
                )
        except StoreError as exc:
            world.recorder.emit(
                "conversation.index_save_failed",
                conv_id=self.conv_id,
                session_id=self.session_id,
                operation=operation,
                runtime_key=runtime_key,
                error=str(exc),
                error_type=type(exc).__name__,
            )
