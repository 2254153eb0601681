"""User-facing errors of the prover (missing optional backend, bad model path, bad template, ...)."""


class ProverError(Exception):
    pass
