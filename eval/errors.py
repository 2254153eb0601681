"""User-facing errors of the evaluation harness and leaderboard."""


from lean_env.errors import UserError


class EvalError(UserError):
    pass
