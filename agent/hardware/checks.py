"""The appliance half of ``roadside agent check``: pins, broker, disk, clock and power.

Each function tries one thing and returns a line for the technician; it raises
``RoadsideError`` for a failure and ``CheckWarning`` for a pass with a caveat.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from roadside.agent.clock import clock_state
from roadside.agent.hardware import health
from roadside.config.agent import AgentConfig, HardwareConfig, MqttConfig
from roadside.errors import RoadsideError

GIB = 1024**3
MIN_FREE_BYTES = 1 * GIB  # without a recording budget: warn below this much free space
BROKER_TIMEOUT_S = 3.0


class CheckWarning(Exception):
    """A check that passes with a caveat (clock not yet synced, an optional broker away)."""


def gpio(hw: HardwareConfig) -> str:
    """Claim every configured pin once, with the pin factory this box would use."""
    pins = hw.pins()
    if not pins:
        return "no pins configured"
    from gpiozero import LED, Button, Device, DigitalOutputDevice, MotionSensor
    from gpiozero.exc import GPIOZeroError

    devices = []
    try:
        try:
            if hw.status_led is not None:
                devices.append(LED(hw.status_led.pin, active_high=hw.status_led.active_high))
            if hw.ir_light is not None and hw.ir_light.pin is not None:
                devices.append(
                    DigitalOutputDevice(hw.ir_light.pin, active_high=hw.ir_light.active_high)
                )
            door = ""
            if hw.tamper is not None:
                switch = Button(hw.tamper.pin, pull_up=hw.tamper.pull_up)
                devices.append(switch)
                opened = switch.is_pressed == (hw.tamper.open_when == "pressed")
                door = f", door {'OPEN' if opened else 'closed'}"
            if hw.pir is not None:
                devices.append(MotionSensor(hw.pir.pin))
        except (GPIOZeroError, OSError, RuntimeError) as exc:
            raise RoadsideError(
                f"cannot claim the pins ({exc}); on a Raspberry Pi check the pin numbers and "
                "that the user is in the 'gpio' group; on other boards remove the "
                "[hardware] pins (gpiozero drives Raspberry Pi pins only)"
            ) from None
        factory = type(Device.pin_factory).__name__
    finally:
        for device in devices:
            device.close()
    named = ", ".join(f"{name} {pin}" for name, pin in pins.items())
    return f"{named} via {factory}{door}"


def broker(mqtt: MqttConfig, required: bool) -> str:
    """A TCP connection to the broker (no MQTT handshake: that is the agent's job)."""
    port = mqtt.effective_port
    start = time.perf_counter()
    try:
        with socket.create_connection((mqtt.host, port), timeout=BROKER_TIMEOUT_S):
            pass
    except OSError as exc:
        detail = f"{mqtt.host}:{port} unreachable ({exc})"
        if required:
            raise RoadsideError(
                f"{detail}; events wait in the outbox until it answers (check the SIM, APN "
                "and the [mqtt] host)"
            ) from None
        raise CheckWarning(f"{detail}; not used: 'mqtt' is not in events.sinks") from None
    return f"{mqtt.host}:{port} reachable in {(time.perf_counter() - start) * 1000:.0f} ms"


def recording_budget(cfg: AgentConfig) -> int | None:
    """Bytes the recording ring may fill, when the config records at all."""
    recording = getattr(cfg, "recording", None)
    if recording is None or getattr(recording, "mode", None) == "off":
        return None
    for name in ("max_bytes", "budget_bytes", "ring_bytes"):
        value = getattr(recording, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def disk(cfg: AgentConfig) -> str:
    """Free space where ``data_dir`` lives against what the recordings may take, after the
    space ``recording.keep_free_bytes`` leaves free for the outbox and the system."""
    data = Path(cfg.data_dir)
    usage = health.disk_mib(data)
    if usage is None:
        raise RoadsideError(f"data_dir {data}: its filesystem cannot be read")
    _used_mib, free_mib = usage
    free = int(free_mib * 1024 * 1024)
    held = health.tree_bytes(data) or 0
    budget = recording_budget(cfg)
    if budget is not None:
        keep_free = int(getattr(cfg.recording, "keep_free_bytes", 0) or 0)
        available = free + held
        room = available - keep_free
        if keep_free and room < budget:
            left = f"{room / GIB:.1f} GiB" if room > 0 else "nothing"
            raise RoadsideError(
                f"data_dir {data}: {available / GIB:.1f} GiB available (free + already held), "
                f"recording.keep_free_bytes keeps {keep_free / GIB:.1f} GiB free, leaving "
                f"{left} for a recording budget of {budget / GIB:.1f} GiB; lower one of "
                "them or use a bigger card"
            )
        if room < budget:
            raise RoadsideError(
                f"data_dir {data}: {available / GIB:.1f} GiB available (free + already held) "
                f"but the recording budget is {budget / GIB:.1f} GiB; lower it or use a bigger card"
            )
        return (
            f"{free / GIB:.1f} GiB free, recording budget {budget / GIB:.1f} GiB fits "
            f"with {keep_free / GIB:.2f} GiB kept free"
        )
    if free < MIN_FREE_BYTES:
        raise CheckWarning(f"only {free / GIB:.2f} GiB free under {data}")
    return f"{free / GIB:.1f} GiB free under {data}"


def clock() -> str:
    """Whether the kernel says the clock is NTP-synchronised (events carry ns=1 until then)."""
    synced = clock_state()
    if synced is None:
        raise CheckWarning("cannot tell whether the clock is synchronised")
    if not synced:
        raise CheckWarning(
            f"not NTP-synchronised (now {time.strftime('%Y-%m-%d %H:%M:%S %Z')}); events are "
            "marked ns=1 until it is: check network time (timedatectl, chrony)"
        )
    return f"NTP-synchronised, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}"


def power() -> str:
    """Under-voltage and throttling flags (Raspberry Pi) and the SoC temperature."""
    temp = health.cpu_temp_c()
    flags = health.throttled()
    shown = f"SoC {temp:.0f} °C" if temp is not None else "no temperature sensor"
    if flags is None:
        return f"{shown}, no throttling flags on this board"
    problems = []
    if flags & health.UNDER_VOLTAGE_NOW:
        problems.append("under-voltage NOW")
    elif flags & health.UNDER_VOLTAGE_SINCE_BOOT:
        problems.append("under-voltage since boot")
    if flags & health.THROTTLED_NOW:
        problems.append("throttled NOW")
    if problems:
        raise CheckWarning(
            f"{shown}, {', '.join(problems)} (flags {flags:#x}): use the official "
            "power supply and a short thick cable"
        )
    return f"{shown}, power good (flags {flags:#x})"
