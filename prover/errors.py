"""User-facing errors of the prover (missing optional backend, bad model path, bad template, ...)."""

from lean_env.errors import UserError


class ProverError(UserError):
    pass
