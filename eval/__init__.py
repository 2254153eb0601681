"""Evaluation: the harness, pass@k metrics, Ray-distributed execution, the leaderboard, and the `subgoal` CLI."""
