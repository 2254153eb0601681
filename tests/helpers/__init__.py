"""Helpers shared by several test modules (test modules never import each other): CLI runs, tiny models and
runs, training data, the check service. Fakes of what cannot exist here live in tests/fakes."""
