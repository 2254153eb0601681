"""Problem sets, the benchmark registry, the run store and dataset builders."""

from data.problem import Problem

__all__ = ["Problem"]
