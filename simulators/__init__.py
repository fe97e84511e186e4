"""Simulated welfare devices that publish real MQTT: a seeded registry, scenarios, a publisher.

demo_registry   an invented municipality's devices (all four families)
build_plan      a scenario as timed messages plus the Expectation of what gets stored
SCENARIOS       the scenario names and their builders
publish         send a plan with QoS 1 and wait for every PUBACK
run_live        the demo's endless traffic until a stop event (LiveTraffic decides what)
add_arguments, run   the `wgw simulate` command
"""

from simulators.cli import add_arguments, run
from simulators.fleet import demo_registry
from simulators.live import LiveTraffic, run_live
from simulators.model import Expectation, Plan, SimMessage
from simulators.plan import build_plan
from simulators.publisher import PublishError, PublishReport, publish
from simulators.scenarios import SCENARIOS

__all__ = [
    "SCENARIOS",
    "Expectation",
    "LiveTraffic",
    "Plan",
    "PublishError",
    "PublishReport",
    "SimMessage",
    "add_arguments",
    "build_plan",
    "demo_registry",
    "publish",
    "run",
    "run_live",
]
