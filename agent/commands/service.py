"""The command side of the agent, assembled: transfers, the command channel, snapshots, and
(when given) the config service that answers config changes.

Built by the agent when the station link is configured: the transfer sender (a bulk source
of the uplink), the channel listening on ``cmd/#``, and the best-frame keeper, whose
``observe`` the assembly connects to the pipeline. "Snapshot now" reads the newest frame
from the ``LatestFrame`` capture tap it is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from roadside.agent.commands.channel import CommandChannel
from roadside.agent.commands.jobs import ClipMaker
from roadside.agent.commands.snapshots import BestFrames
from roadside.agent.frames import LatestFrame
from roadside.agent.hardware.tamper import TAMPER_SNAPSHOTS
from roadside.agent.transfer.sender import TransferSender, device_signer
from roadside.agent.uplink import Uplink
from roadside.config.agent import AgentConfig

if TYPE_CHECKING:
    from roadside.agent.fleet.service import ConfigService


class CommandService:
    """Owns the transfer sender, the command channel and the best frames; ``start`` before
    the uplink. ``best.observe`` is a pipeline frame observer."""

    def __init__(
        self,
        cfg: AgentConfig,
        uplink: Uplink,
        latest: LatestFrame,
        clips: ClipMaker | None = None,
        config: ConfigService | None = None,
    ) -> None:
        c = cfg.commands
        self.latest = latest
        self.best = BestFrames(
            Path(cfg.data_dir) / "bestframes",
            c.best_frames,
            c.snapshot_width,
            c.snapshot_quality,
            also=[Path(cfg.data_dir) / TAMPER_SNAPSHOTS],
            max_bytes=int(c.best_frames_bytes),
        )
        self.sender = TransferSender(
            uplink, cfg.data_dir, cfg.transfer, device_signer(cfg.transfer, cfg.mqtt)
        )
        self.channel = CommandChannel(
            uplink,
            self.sender,
            c,
            cfg.data_dir,
            clips=clips,
            latest=self.latest,
            best=self.best,
            config=config,
        )

    def start(self) -> None:
        self.sender.start()
        self.channel.start()

    def stop(self) -> None:
        self.channel.stop()
        self.best.flush()
        self.sender.stop()
