"""Discrete-event core: a clock, an event heap and named random streams. Knows no model."""

from pfsim.engine.rng import RandomStreams
from pfsim.engine.simulator import Priority, Simulator

__all__ = ["Priority", "RandomStreams", "Simulator"]
