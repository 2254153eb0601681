"""Problem sets, the benchmark registry, the run store and dataset builders."""

from data.problem import Problem
from data.registry import load_problems

__all__ = ["Problem", "load_problems"]
