"""User-facing errors of the evaluation harness and leaderboard."""


class EvalError(Exception):
    pass
