"""What the console tells an officer, in the language in force: object classes, directions,
audit states, and a sentence for every way a footage request can end or wait.

Boxes explain errors in English for technicians; officers read the sentence for the error's
reason code instead (the box's own words stay in the audit log).
"""

from __future__ import annotations

from roadside.central.i18n import N_, _

CLASSES = {
    "person": N_("person"),
    "bicycle": N_("bicycle"),
    "car": N_("car"),
    "motorcycle": N_("motorcycle"),
    "bus": N_("bus"),
    "truck": N_("truck"),
    "dog": N_("dog"),
    "cow": N_("cow"),
}
DIRECTIONS = {
    "N": N_("north"),
    "NE": N_("north-east"),
    "E": N_("east"),
    "SE": N_("south-east"),
    "S": N_("south"),
    "SW": N_("south-west"),
    "W": N_("west"),
    "NW": N_("north-west"),
}
ROLES = {"viewer": N_("viewer"), "investigator": N_("investigator"), "admin": N_("admin")}
AUDIT_STATES = {
    "sent": N_("sent, waiting for the box"),
    "working": N_("in progress"),
    "done": N_("done"),
    "error": N_("refused or failed"),
    "timeout": N_("no answer in time"),
    "answered": N_("answered"),
    "failed": N_("could not be sent"),
    "cancelled": N_("cancelled"),
}
ACTIONS = {
    "clip": N_("clip"),
    "snapshot": N_("picture"),
    "live": N_("live view"),
    "events": N_("events"),
    "devices": N_("boxes"),
    "login": N_("login"),
    "login-failed": N_("failed login"),
    "user": N_("account change"),
}
ERRORS = {
    "out_of_range": N_(
        "The box no longer holds footage of that time: it has been recorded over (the oldest "
        "footage goes first), or the box was not recording then."
    ),
    "not_found": N_(
        "The box no longer keeps this picture: it keeps the best frames of its latest events only."
    ),
    "unavailable": N_("The box has no recording or camera picture to send from."),
    "too_large": N_("The file is too large for the link: ask for a shorter time or low quality."),
    "deadline": N_(
        "The link is too slow: the upload did not finish in the time allowed. Ask for a "
        "shorter time or low quality."
    ),
    "busy": N_("The box is busy with other requests. Try again in a few minutes."),
    "expired": N_("The request waited too long for the box and was not carried out."),
    "cancelled": N_("The request was cancelled."),
    "bad_params": N_("The box refused the request: its parameters are not valid."),
    "bad_request": N_("The box refused the request: it could not read it."),
    "unknown_command": N_("The box refused the request: its software does not know it."),
    "failed": N_("The box failed to carry out the request."),
    "no_file": N_(
        "The box says the file was sent, but the station has not stored it. Is the station "
        "service (roadside central run) running?"
    ),
}


def class_label(cls: str | None) -> str:
    if not cls:
        return "-"
    return _(CLASSES[cls]) if cls in CLASSES else cls


def direction_label(direction: str | None) -> str:
    if not direction:
        return "-"
    return _(DIRECTIONS[direction]) if direction in DIRECTIONS else direction


def audit_state(state: str) -> str:
    return _(AUDIT_STATES[state]) if state in AUDIT_STATES else state


def action_label(action: str) -> str:
    return _(ACTIONS[action]) if action in ACTIONS else action


def error_sentence(code: str | None) -> str:
    return _(ERRORS.get(code or "failed", ERRORS["failed"]))
