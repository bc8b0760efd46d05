"""Applying a pushed config while the agent runs, and rolling it back when it fails.

The health acknowledgement names the version the cloud wants this gateway to run
(`HealthAck.desired_config_version`); when it is newer than the one in force (and not one that
already failed here), `apply` runs once, as its own task:

1. fetch it (`GET /v1/config`, signed with the device key) and verify it against the key pinned at
   enrolment: this device, the digest, a version newer than the one in force
   (`wire.remoteconfig.verify_config`); then run the agent's checker on it with this gateway's own
   sections (`agent.remote.pushed_config`). A config that fails any of these is refused: logged,
   reported (`refused: <reason>`), never written; the running config stays;
2. write it: the file in force becomes the last good one, the new one the file in force (each by
   `agent.remote.write_atomic`: a kill -9 leaves the old or the new, never a mix);
3. switch (`switch`, the runtime's): only the sources whose config changed are stopped and
   started again; the buffer, the uplink and every other source keep running, and readings the
   stopped sources handed over are committed under the old version first (provenance);
4. watch a health window (`cloud.config_apply_window_s`): every restarted source up and an upload
   acknowledged since the switch (`problem`, the runtime's, says what is still wrong);
5. keep it (`applied`) or roll back: the previous file back in force, the sources switched back,
   and `rolled back: <reason>` reported. A version that failed is not tried again until a newer
   one is pushed.

A failure to fetch (the receiver away) is not a refusal: the next acknowledgement tries again.
Other sections than `[[sources]]` (`[metrics]`, `[clock]`) take effect at the next start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import msgspec

from agent.errors import AgentError, ConfigError
from agent.remote import (
    FAILED_NAME,
    GOOD_NAME,
    PENDING_NAME,
    PUSHED_NAME,
    Running,
    pushed_config,
    remove_durably,
    write_atomic,
)
from wire.errors import RemoteConfigError
from wire.remoteconfig import SignedConfig, verify_config

log = logging.getLogger(__name__)

Fetch = Callable[[], Awaitable[SignedConfig | None]]
Switch = Callable[[Running], Awaitable[set[str]]]  # -> names of the sources (re)started
Problem = Callable[[set[str], int], str | None]  # (restarted sources, switch time) -> reason


class Applier:
    def __init__(
        self,
        running: Running,
        *,
        fetch: Fetch,
        switch: Switch,
        problem: Problem,
        now_ms: Callable[[], int],
        window_s: float,
    ) -> None:
        self.running = running
        self._fetch, self._switch, self._problem = fetch, switch, problem
        self._now_ms = now_ms
        self._window_s = window_s
        # what the health report says about the last apply (a start can already know one)
        self.result: str | None = running.note
        self.busy = False
        self._failed: set[int] = {running.failed} if running.failed else set()

    def wants(self, desired: int | None) -> bool:
        """Whether the acknowledged desired version calls for an apply now."""
        return (
            self.running.key is not None
            and desired is not None
            and desired > self.running.pushed_version
            and desired not in self._failed
            and not self.busy
        )

    async def apply(self, desired: int) -> None:
        self.busy = True
        try:
            await self._apply(desired)
        finally:
            self.busy = False

    async def _apply(self, desired: int) -> None:
        current = self.running
        key = current.key
        if key is None:  # pragma: no cover - `wants` said no
            return
        try:
            signed = await self._fetch()
        except AgentError as exc:
            log.warning(
                "config v%d not fetched (%s); the next acknowledgement retries", desired, exc
            )
            return
        try:
            if signed is None:
                raise RemoteConfigError("the receiver has no config for this gateway")
            verify_config(
                key,
                signed,
                device_id=current.config.device.id,
                newer_than=current.pushed_version,
            )
            config = pushed_config(current, signed)
        except (RemoteConfigError, ConfigError) as exc:
            self._remember_failed(desired if signed is None else signed.version)
            self.result = f"refused: {str(exc).splitlines()[0]}"
            log.error("config v%d refused: %s; config %s stays", desired, exc, current.version)
            return
        new = Running(
            config,
            f"v{signed.version}",
            current.directory,
            current.local,
            current.key,
            signed,
        )
        directory = current.directory
        try:
            # the marker first: a start that finds it knows the window was never passed
            write_atomic(directory / PENDING_NAME, new.version.encode("ascii"))
            if current.signed is not None:
                write_atomic(directory / GOOD_NAME, msgspec.json.encode(current.signed))
            else:  # the good one is agent.toml alone: no older pushed file may stand for it
                remove_durably(directory / GOOD_NAME)
            write_atomic(directory / PUSHED_NAME, msgspec.json.encode(signed))
        except OSError as exc:  # the disk: the config in force is unchanged (atomic writes)
            self.result = f"refused: cannot write {PUSHED_NAME}: {exc.strerror}"
            log.error("config %s not applied: %s", new.version, self.result)
            return
        since = self._now_ms()
        restarted = await self._switch(new)
        self.running = new
        failure = await self._watch(restarted, since)
        if failure is None:
            remove_durably(directory / PENDING_NAME)
            self.result = "applied"
            log.info("config %s applied (sources restarted: %s)", new.version, sorted(restarted))
            return
        if current.signed is not None:
            write_atomic(current.directory / PUSHED_NAME, msgspec.json.encode(current.signed))
        else:
            remove_durably(current.directory / PUSHED_NAME)
        remove_durably(directory / PENDING_NAME)
        await self._switch(current)
        self.running = current
        self._remember_failed(signed.version)
        self.result = f"rolled back: {failure}"
        log.error("config %s rolled back to %s: %s", new.version, current.version, failure)

    def _remember_failed(self, version: int) -> None:
        """Not tried again, in this run or the next (agent.remote.FAILED_NAME)."""
        self._failed.add(version)
        try:
            write_atomic(self.running.directory / FAILED_NAME, str(version).encode("ascii"))
        except OSError as exc:  # only costs one more attempt after a restart
            log.warning("cannot record failed config v%d: %s", version, exc.strerror)

    async def _watch(self, restarted: set[str], since_ms: int) -> str | None:
        """After the whole window: None if its conditions hold, else why not. The whole window,
        not the first good moment: a source that opens and fails a second later must count."""
        await asyncio.sleep(self._window_s)
        return self._problem(restarted, since_ms)
