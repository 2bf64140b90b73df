"""Community simulation: a synthetic community, the firmware's own code for every token, the
clinic path and the matching engine, measured against the ground truth (docs/simulation.md).

    from host_tools.simulation import SimulationConfig, simulate, write_report
    results = simulate(SimulationConfig(population=1000, days=14))   # JSON-ready dict
    write_report(results, "report/")                                  # summary.md, plots

Modules: community (people, homes, venues, who is where), radio (propagation and reception),
contacts (positions, ground truth, radio links), tokens (identifiers, scan windows,
aggregation, records), clinic (outbox/upload or codec), exposure (matching engine), runner
(orchestration and metrics), report (Markdown and PNG plots).
"""
from .report import write as write_report
from .runner import SimulationConfig, SimulationError, simulate, wearable_profiles

__all__ = ["SimulationConfig", "SimulationError", "simulate", "wearable_profiles", "write_report"]
