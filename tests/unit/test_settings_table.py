"""Every command's options, walked: one variable each, one meaning each, defaults written once."""

from __future__ import annotations

import argparse
import inspect
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import detector.cli
import producer.cli
from beatwatch.artifact import SHIPPED_MODEL_DIR
from beatwatch.cli import COMMANDS, build_parser
from beatwatch.kafka import KafkaSettings
from beatwatch.settings import ENV_ATTR, LEGACY_ENV_ATTR
from beatwatch.tools.broker import EmbeddedBroker
from beatwatch.tools.console.state import Store
from detector.service import DetectorSettings
from producer.service import ProducerSettings

# Options with no variable, on purpose: lists (``nargs``), and the subcommands of
# ``model`` and ``data``, which act on files named on the command line.
FLAG_ONLY = {
    ("train", "--records"): "a list of record names",
    ("evaluate", "--records"): "a list of record names",
    ("produce", "--record"): "a list of record paths",
    ("data fetch", "--source"): "names what to fetch",
    ("data fetch", "--from"): "names what to fetch",
    ("data fetch", "--records"): "names what to fetch",
    ("model publish", "--from"): "names the files to act on",
    ("model publish", "--to"): "names the files to act on",
    ("model publish", "--no-switch"): "one publish's choice",
    ("model activate", "--root"): "names the files to act on",
}

# Variables read by several commands with the same meaning but a different
# default, and why the default differs.
SAME_MEANING_OTHER_DEFAULT = {
    "BEATWATCH_BOOTSTRAP_SERVERS": "demo: unset starts an embedded broker instead",
}

# Older names still read when a command's own variable is unset (docs/commands.md).
LEGACY = {"BEATWATCH_METRICS_PORT"}


@pytest.fixture(autouse=True)
def _no_beatwatch_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defaults are what a clean environment gets, not a developer's own settings."""
    for name in list(os.environ):
        if name.startswith("BEATWATCH_"):
            monkeypatch.delenv(name)


def _options(parser: argparse.ArgumentParser, where: str) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{where} {name}")
        elif action.option_strings and action.dest not in {"help", "version"}:
            yield where, action


def _all_options() -> list[tuple[str, argparse.Action]]:
    found = []
    for command in COMMANDS:
        parser = build_parser([command])
        subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        found += list(_options(subparsers.choices[command], command))
    return found


def _meaning(action: argparse.Action) -> tuple[object, ...]:
    kind = getattr(action.type, "__name__", repr(action.type))
    return (action.default, kind, tuple(action.choices or ()), action.nargs)


def test_every_option_has_a_variable_or_is_listed_as_flag_only() -> None:
    missing = [
        f"{command} {action.option_strings[-1]}"
        for command, action in _all_options()
        if getattr(action, ENV_ATTR, None) is None
        and (command, action.option_strings[-1]) not in FLAG_ONLY
        and action.dest != "log_level"  # after a subcommand: the top level's, with its variable
    ]
    assert not missing, f"options without a BEATWATCH_* variable: {missing}"
    listed = {(command, action.option_strings[-1]) for command, action in _all_options()}
    assert set(FLAG_ONLY) <= listed  # no stale entry
    assert getattr(build_parser([])._option_string_actions["--log-level"], ENV_ATTR) == (
        "BEATWATCH_LOG_LEVEL"
    )


def test_no_two_commands_read_one_variable_with_different_meanings() -> None:
    meanings: dict[str, dict[tuple[object, ...], list[str]]] = {}
    for command, action in _all_options():
        variable = getattr(action, ENV_ATTR, None)
        if variable is None:
            continue
        uses = meanings.setdefault(variable, {})
        uses.setdefault(_meaning(action), []).append(f"{command} {action.option_strings[-1]}")
    clashes = {
        variable: uses
        for variable, uses in meanings.items()
        if len(uses) > 1 and variable not in SAME_MEANING_OTHER_DEFAULT
    }
    assert not clashes, f"one variable, several meanings: {clashes}"
    assert set(SAME_MEANING_OTHER_DEFAULT) <= set(meanings)  # no stale exception


def test_legacy_variables_are_no_commands_own() -> None:
    primary = {getattr(action, ENV_ATTR, None) for _, action in _all_options()}
    legacy = {name for _, action in _all_options() for name in getattr(action, LEGACY_ENV_ATTR, ())}
    assert legacy == LEGACY
    assert not legacy & primary


def test_help_shows_each_options_variable_and_default() -> None:
    for command, action in _all_options():
        variable = getattr(action, ENV_ATTR, None)
        if variable is None:
            continue
        assert action.help is not None and f"[{variable}" in action.help, (command, action.help)
        if action.default not in (None, False, argparse.SUPPRESS):
            assert f"default {action.default}]" in action.help, (command, action.help)


def _parse(command: str, argv: list[str]) -> argparse.Namespace:
    return build_parser([command]).parse_args([command, *argv])


def test_detect_defaults_are_detector_settings_defaults() -> None:
    parsed = detector.cli.settings_from_args(_parse("detect", []))
    assert parsed == DetectorSettings(kafka=KafkaSettings(), model_dir=Path(SHIPPED_MODEL_DIR))


def test_produce_defaults_are_producer_settings_defaults() -> None:
    parsed = producer.cli._settings(_parse("produce", []))
    assert parsed == ProducerSettings(kafka=KafkaSettings())


def test_console_defaults_are_the_stores_defaults() -> None:
    parsed = _parse("console", [])
    store = inspect.signature(Store).parameters
    for name in ("max_streams", "alerts_per_stream", "alerting_window_s"):
        assert getattr(parsed, name) == store[name].default, name


def test_broker_defaults_are_the_embedded_brokers_defaults() -> None:
    parsed = _parse("broker", [])
    assert parsed.storage == inspect.signature(EmbeddedBroker).parameters["storage"].default
    start = inspect.signature(EmbeddedBroker.start).parameters["timeout_s"].default
    assert parsed.start_timeout_s == start


@pytest.mark.parametrize(("command", "default"), [("produce", -1), ("detect", 9108)])
def test_each_command_has_its_own_metrics_port_variable(
    monkeypatch: pytest.MonkeyPatch, command: str, default: int
) -> None:
    other = "detect" if command == "produce" else "produce"
    monkeypatch.setenv(f"BEATWATCH_{other.upper()}_METRICS_PORT", "9300")
    assert _parse(command, []).metrics_port == default
    monkeypatch.setenv(f"BEATWATCH_{command.upper()}_METRICS_PORT", "9301")
    assert _parse(command, []).metrics_port == 9301


@pytest.mark.parametrize("command", ["produce", "detect"])
def test_the_shared_metrics_port_variable_still_works_below_the_commands_own(
    monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    monkeypatch.setenv("BEATWATCH_METRICS_PORT", "9302")
    assert _parse(command, []).metrics_port == 9302
    monkeypatch.setenv(f"BEATWATCH_{command.upper()}_METRICS_PORT", "9303")
    assert _parse(command, []).metrics_port == 9303


def test_the_detectors_model_variable_is_not_the_producers_segmentation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The image sets BEATWATCH_MODEL for the detector; a producer replaying records
    # in the same image must still cut beats with its own default segmentation.
    monkeypatch.setenv("BEATWATCH_MODEL", "/app/models/ecg5000")
    assert _parse("produce", []).model is None
    monkeypatch.setenv("BEATWATCH_PRODUCE_MODEL", "/models/mitbih")
    assert _parse("produce", []).model == "/models/mitbih"


@pytest.mark.parametrize(
    ("argv", "level"),
    [
        (["alerts"], "INFO"),
        (["--log-level", "DEBUG", "alerts"], "DEBUG"),
        (["alerts", "--log-level", "ERROR"], "ERROR"),
        (["--log-level", "DEBUG", "alerts", "--log-level", "WARNING"], "WARNING"),
    ],
)
def test_log_level_is_accepted_before_and_after_the_subcommand(argv: list[str], level: str) -> None:
    assert build_parser(argv).parse_args(argv).log_level == level


def test_log_level_has_a_variable_and_the_flag_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEATWATCH_LOG_LEVEL", "WARNING")
    assert _parse("alerts", []).log_level == "WARNING"
    assert _parse("alerts", ["--log-level", "ERROR"]).log_level == "ERROR"
