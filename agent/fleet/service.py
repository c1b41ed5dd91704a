"""``get_config`` and ``set_config`` on the box: validate, put in place, restart, judge, answer.

``set_config`` runs on the command thread: the desired document gets the box's secrets back
(where the station left them redacted), is validated with the same model and the same
one-line errors as the file at start, is refused when it would change the box's name or
state folder or may cut it off without ``allow_disconnect``, and is then written beside the
current config on trial (``LocalConfig.begin``) before the agent restarts to run it.

After the restart ``resume`` (at the channel's start) either starts the trial check, on a
thread of its own, or answers a change an earlier run finished: confirmed (done), or rolled
back (error ``rolled_back`` with what failed). A rollback restarts the agent once more, into
the previous config, and that run answers: the reply waits in the outbox for the link.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from roadside.agent.commands.replies import Replies
from roadside.agent.fleet.check import CheckResult, LinkView, TrialCheck
from roadside.agent.fleet.local import LocalConfig, Trial, TrialState
from roadside.agent.fleet.restart import RestartRequest
from roadside.agent.hardware.liveness import PipelineLiveness
from roadside.agent.pipeline import PipelineStats
from roadside.agent.uplink.status import StatusReporter
from roadside.config.agent import AgentConfig, parse_config
from roadside.config.document import (
    DESIRED,
    config_hash,
    cutting_changes,
    diff,
    document,
    fixed_key_changes,
    keep_secrets,
    redact,
    to_toml,
)
from roadside.errors import ConfigError
from roadside.wire.commands import ErrorCode, SetConfigParams

log = logging.getLogger(__name__)


class ConfigService:
    """Owns the config side of the command channel; see the module doc.

    ``liveness`` and ``stats`` are the pipeline's (judged during a trial), ``link`` the
    uplink, ``status`` the reporter whose hashes the retained status carries, and
    ``refresh_status`` publishes it again once a trial ends.
    """

    def __init__(
        self,
        cfg: AgentConfig,
        local: LocalConfig,
        restart: RestartRequest,
        status: StatusReporter,
        refresh_status: Callable[[], None],
        link: LinkView | None,
        liveness: PipelineLiveness | None,
        stats: PipelineStats | None,
    ) -> None:
        self.cfg = cfg
        self.local = local
        self.restart = restart
        self.status = status
        self.refresh_status = refresh_status
        self.link = link
        self.liveness = liveness
        self.stats = stats
        self.started = time.time()
        self.result: CheckResult | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the command thread -------------------------------------------------------------
    def get(self, rq: str, replies: Replies) -> None:
        result: dict[str, Any] = {"cfg": redact(document(self.cfg)), "h": config_hash(self.cfg)}
        trial = self.local.trial
        if trial is not None and trial.state == TrialState.TRYING:
            result["trial"] = {"rq": trial.request_id, "prev": trial.previous_hash}
        replies.done(rq, result)

    def set(self, rq: str, requester: str, params: SetConfigParams, replies: Replies) -> None:
        if self.local.trying:
            assert self.local.trial is not None
            replies.error(
                rq,
                ErrorCode.BUSY,
                f"config {self.local.trial.config_hash} (request {self.local.trial.request_id}) "
                "is still on trial on this box: wait for its answer",
            )
            return
        running = document(self.cfg)
        try:
            desired = keep_secrets(params.config, running)
            new = parse_config(desired, DESIRED)
        except ConfigError as exc:
            replies.error(rq, ErrorCode.BAD_CONFIG, str(exc))
            return
        new_hash, old_hash = config_hash(new), config_hash(self.cfg)
        changes = diff(running, document(new))  # secrets included: a new password counts
        fixed = fixed_key_changes(changes)
        if fixed:
            replies.error(
                rq,
                ErrorCode.BAD_CONFIG,
                f"{DESIRED}: {', '.join(fixed)} cannot be changed from the station (the box's "
                "name and its state folder); change them on the box",
            )
            return
        if new_hash == old_hash and not changes:
            replies.done(rq, {"h": new_hash, "changed": 0})
            return
        cutting = cutting_changes(self.cfg, new, changes)
        if cutting and not params.allow_disconnect:
            replies.error(
                rq,
                ErrorCode.WOULD_DISCONNECT,
                f"this change of {', '.join(cutting)} may cut the box off from the station; "
                "send it again allowing that (roadside fleet config set --allow-disconnect): "
                "it is rolled back by itself if the box cannot reach the broker",
            )
            return
        trial = Trial(
            request_id=rq,
            requester=requester,
            config_hash=new_hash,
            previous_hash=old_hash,
            health_s=params.health_s or self.cfg.fleet.health_s,
            max_starts=self.cfg.fleet.max_starts,
            link_change=bool(cutting),
            asked=time.time(),
        )
        self.local.begin(trial, self._file_text(new, rq, requester))
        replies.progress(rq, None, f"config {new_hash} written; restarting to apply it")
        self.restart.ask(f"to apply config {new_hash} (request {rq})")

    def owns(self, rq: str) -> bool:
        """Whether the request is the change this service will answer itself."""
        return self.local.trial is not None and self.local.trial.request_id == rq

    # -- after a start ------------------------------------------------------------------
    def resume(self, replies: Replies) -> None:
        """Answer a change an earlier run finished, or start judging the one on trial."""
        trial = self.local.trial
        if trial is None:
            return
        if trial.state == TrialState.ROLLED_BACK:
            replies.error(
                trial.request_id,
                ErrorCode.ROLLED_BACK,
                f"config {trial.config_hash} rolled back: {trial.reason}; the previous config "
                f"({trial.previous_hash}) runs again",
            )
            self.local.finished()
        elif trial.state == TrialState.CONFIRMED:
            self._answer_confirmed(trial, replies)
        elif self.liveness is not None and self.stats is not None:
            self._thread = threading.Thread(
                target=self._judge, args=(trial, replies), name="config-trial", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    # -- the trial thread ---------------------------------------------------------------
    def _judge(self, trial: Trial, replies: Replies) -> None:
        assert self.liveness is not None and self.stats is not None
        check = TrialCheck(self.liveness, self.stats, self.link, trial.health_s, trial.link_change)
        try:
            result = check.run(self._stop)
        except Exception as exc:  # the check itself failing is no reason to keep the config
            log.exception("the config trial check failed")
            result = CheckResult(False, f"the health check failed: {exc}")
        if result is None:
            return  # stopping: the next start counts and judges again
        self.result = result
        if result.healthy:
            self.local.confirm()
            self.status.config, self.status.trial = trial.config_hash, None
            self.refresh_status()
            self._answer_confirmed(trial, replies, result.reason)
        else:
            self.local.roll_back(result.reason)
            self.restart.ask(f"to undo config {trial.config_hash}: {result.reason}")

    def _answer_confirmed(self, trial: Trial, replies: Replies, seen: str = "") -> None:
        replies.done(
            trial.request_id,
            {
                "h": trial.config_hash,
                "prev": trial.previous_hash,
                "changed": 1,
                "starts": trial.starts,
                "took_s": round((trial.ended or time.time()) - trial.asked, 1),
                **({"seen": seen} if seen else {}),
            },
        )
        self.local.finished()

    # -- named steps --------------------------------------------------------------------
    @staticmethod
    def _file_text(cfg: AgentConfig, rq: str, requester: str) -> bytes:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        head = (
            f"# Written by the station (roadside fleet config set), request {rq} by "
            f"{requester}, {stamp}.\n# The config before it is kept beside this file "
            "(.previous). docs/fleet.md explains changes and rollbacks.\n\n"
        )
        return (head + to_toml(document(cfg))).encode()
